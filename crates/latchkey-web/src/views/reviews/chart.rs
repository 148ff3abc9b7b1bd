//! The progress chart, drawn on the server as SVG (no script, no CDN): decided, undecided
//! and revoked items over the campaign's time, with a title and a legend for screen readers.

use latchkey_reviews::timeline::Point;
use std::fmt::Write;

const W: f64 = 640.0;
const H: f64 = 220.0;
const PAD_L: f64 = 44.0;
const PAD_R: f64 = 12.0;
const PAD_T: f64 = 12.0;
const PAD_B: f64 = 30.0;

/// (series, colour, dash) — colours pass WCAG AA contrast on white; dashes tell them apart
/// without colour.
const SERIES: [(&str, &str, &str); 3] = [
    ("Decided", "#1f5fa8", ""),
    ("Undecided", "#8a4b00", "6 4"),
    ("Revoked", "#a11d2b", "2 3"),
];

fn value(p: &Point, s: usize) -> i64 {
    match s {
        0 => p.decided,
        1 => p.undecided,
        _ => p.revoked,
    }
}

/// The SVG markup. Every text in it is generated here from numbers and dates, never from
/// user input, so it is safe to embed unescaped.
pub fn svg(points: &[Point], total: i64) -> String {
    let max = total.max(1) as f64;
    let n = points.len().max(2) as f64 - 1.0;
    let x = |i: usize| PAD_L + (W - PAD_L - PAD_R) * (i as f64 / n);
    let y = |v: i64| PAD_T + (H - PAD_T - PAD_B) * (1.0 - v as f64 / max);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" width="100%" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg"><title id="chart-title">Decided, undecided and revoked items over time (of {total})</title>"#
    );
    // Axes and grid.
    for frac in [0.0, 0.5, 1.0] {
        let v = (max * frac).round() as i64;
        let yy = y(v);
        let _ = write!(
            out,
            r##"<line x1="{PAD_L}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#d0d4da" stroke-width="1"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#333">{v}</text>"##,
            W - PAD_R,
            PAD_L - 6.0,
            yy + 4.0
        );
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let _ = write!(
            out,
            r##"<text x="{PAD_L}" y="{:.1}" font-size="11" fill="#333">{}</text><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#333">{}</text>"##,
            H - 8.0,
            first.at.date(),
            W - PAD_R,
            H - 8.0,
            last.at.date()
        );
    }
    for (s, (name, colour, dash)) in SERIES.iter().enumerate() {
        let pts: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(value(p, s))))
            .collect();
        let _ = write!(
            out,
            r#"<polyline data-series="{}" fill="none" stroke="{colour}" stroke-width="2.5" stroke-dasharray="{dash}" points="{}"><title>{name}</title></polyline>"#,
            name.to_lowercase(),
            pts.join(" ")
        );
    }
    out.push_str("</svg>");
    out
}

/// The chart's legend entries: (name, colour, dash).
pub fn legend() -> &'static [(&'static str, &'static str, &'static str)] {
    &SERIES
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn three_series_scaled_to_the_total() {
        let pts = vec![
            Point {
                at: datetime!(2026-01-01 0:00 UTC),
                decided: 0,
                undecided: 4,
                revoked: 0,
            },
            Point {
                at: datetime!(2026-01-02 0:00 UTC),
                decided: 4,
                undecided: 0,
                revoked: 1,
            },
        ];
        let s = svg(&pts, 4);
        assert_eq!(s.matches("<polyline").count(), 3);
        assert!(s.contains(r##"data-series="decided" fill="none" stroke="#1f5fa8" stroke-width="2.5" stroke-dasharray="" points="44.0,190.0 628.0,12.0""##), "{s}");
        assert!(s.contains("2026-01-01") && s.contains("2026-01-02"));
    }
}
