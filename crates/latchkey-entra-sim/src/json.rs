//! Fast hand-written JSON output for the hot paths (user and member pages), plus time formatting.

use uuid::Uuid;

/// Whether any byte needs escaping in a JSON string: a control character, `"` or `\`.
/// Eight bytes at a time (SWAR): this check dominates the cost of serving big pages.
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let control = v.wrapping_sub(LO * 0x20) & !v & HI;
        if (control | has_zero(v ^ (LO * b'"' as u64)) | has_zero(v ^ (LO * b'\\' as u64))) != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Appends `s` as a JSON string literal.
#[inline]
pub(crate) fn str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
    } else {
        for ch in s.chars() {
            match ch {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
                }
                c => {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
    }
    out.push(b'"');
}

pub(crate) fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

#[inline]
pub(crate) fn uuid(out: &mut Vec<u8>, id: &Uuid) {
    let mut buf = [0u8; 36];
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

pub(crate) fn bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

pub(crate) fn opt_bool(out: &mut Vec<u8>, b: Option<bool>) {
    match b {
        Some(b) => bool(out, b),
        None => out.extend_from_slice(b"null"),
    }
}

/// `"key":` (the key must not need escaping).
#[inline]
pub(crate) fn key(out: &mut Vec<u8>, first: &mut bool, k: &str) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.push(b'"');
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Appends `"YYYY-MM-DDTHH:MM:SSZ"` without allocating (hot path of user pages).
pub(crate) fn ts(out: &mut Vec<u8>, secs: i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        out.push(b'"');
        out.extend_from_slice(fmt_ts(secs).as_bytes());
        out.push(b'"');
        return;
    }
    let two = |out: &mut Vec<u8>, v: u32| {
        out.push(b'0' + (v / 10) as u8);
        out.push(b'0' + (v % 10) as u8);
    };
    out.push(b'"');
    let y = y as u32;
    two(out, y / 100);
    two(out, y % 100);
    out.push(b'-');
    two(out, m);
    out.push(b'-');
    two(out, d);
    out.push(b'T');
    two(out, (rem / 3600) as u32);
    out.push(b':');
    two(out, ((rem % 3600) / 60) as u32);
    out.push(b':');
    two(out, (rem % 60) as u32);
    out.extend_from_slice(b"Z\"");
}

pub(crate) fn opt_ts(out: &mut Vec<u8>, secs: Option<i64>) {
    match secs {
        Some(s) => ts(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Unix seconds to `YYYY-MM-DDTHH:MM:SSZ` (Graph's format), without the `time` crate on the hot path.
pub(crate) fn fmt_ts(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        y,
        m,
        d,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses the date-times a Graph client sends in `$filter` (`2024-01-01T00:00:00Z`, fractional seconds, offsets, or a bare date).
pub(crate) fn parse_ts(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    if s.len() == 10 {
        let with_time = format!("{s}T00:00:00Z");
        return time::OffsetDateTime::parse(&with_time, &Rfc3339)
            .ok()
            .map(|t| t.unix_timestamp());
    }
    None
}

pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let mut out = Vec::new();
        ts(&mut out, 1_700_000_000);
        assert_eq!(out, b"\"2023-11-14T22:13:20Z\"");
        assert_eq!(fmt_ts(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_ts(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_ts("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(parse_ts("2023-11-14T22:13:20.123Z"), Some(1_700_000_000));
        assert_eq!(parse_ts("1970-01-02"), Some(86_400));
        assert_eq!(parse_ts("nope"), None);
    }

    #[test]
    fn escape_detection_matches_the_simple_rule() {
        let samples = [
            "",
            "plain ascii text here",
            "quote\"inside",
            "back\\slash",
            "tab\there",
            "ünïcödé ok",
            "x\u{1}y",
            "0123456789abcdef\"",
        ];
        for s in samples {
            let simple = s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
            assert_eq!(needs_escape(s.as_bytes()), simple, "{s:?}");
        }
        for b in 0u8..=255 {
            let v = [b'a', b'a', b'a', b, b'a', b'a', b'a', b'a', b'a'];
            assert_eq!(needs_escape(&v), b < 0x20 || b == b'"' || b == b'\\', "{b}");
        }
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = Vec::new();
        str(&mut out, "a\"b\\c\nd");
        assert_eq!(String::from_utf8(out).unwrap(), r#""a\"b\\c\nd""#);
    }
}
