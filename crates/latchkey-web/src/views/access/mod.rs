//! JIT access pages: the "Request access" catalog and request form, a request's page (its
//! timeline, and deciding, cancelling, releasing and extending it), "My access", the
//! "Approvals" inbox, the administrators' list of every request, the policy editor, and the
//! audit log.

pub mod audit;
pub mod catalog;
pub mod policy;
pub mod requests;

use crate::auth::SignedIn;
use crate::error::WebError;
use axum::response::Redirect;
use latchkey_access::{AccessError, Caller};
use time::OffsetDateTime;

pub fn caller(who: &SignedIn) -> Caller {
    Caller::person(who.user_id, who.email.clone(), who.role)
}

/// A redirect to `path` with a message to show there (`notice` or `error`).
pub fn back(path: &str, kind: &str, message: &str) -> Redirect {
    let sep = if path.contains('?') { '&' } else { '?' };
    let m: String = url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
    Redirect::to(&format!("{path}{sep}{kind}={m}"))
}

/// The words for a refused command; unknown (or another organization's) objects are 404.
pub fn refusal(e: AccessError) -> Result<String, WebError> {
    Ok(match e {
        AccessError::NotFound => return Err(WebError::NotFound),
        AccessError::Forbidden(m) | AccessError::Conflict(m) => m,
        AccessError::Invalid(problems) => problems
            .into_iter()
            .map(|p| format!("{}: {}", p.field.replace('_', " "), p.message))
            .collect::<Vec<_>>()
            .join("; "),
        AccessError::Store(e) => return Err(e.into()),
    })
}

/// "2 h 30 min", "45 s".
pub fn human(secs: i64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d} d"));
    }
    if h > 0 {
        parts.push(format!("{h} h"));
    }
    if m > 0 {
        parts.push(format!("{m} min"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s} s"));
    }
    parts.join(" ")
}

pub fn when(t: &Option<OffsetDateTime>) -> String {
    t.map(|t| at(&t)).unwrap_or_default()
}

pub fn at(t: &OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Durations a person can pick: common ones up to the maximum, plus the default and the
/// maximum themselves.
pub fn duration_choices(default: i64, max: i64) -> Vec<(i64, String)> {
    let mut v: Vec<i64> = [
        900, 1800, 3600, 7200, 14_400, 28_800, 86_400, 259_200, 604_800,
    ]
    .into_iter()
    .filter(|d| *d <= max)
    .collect();
    v.push(default.min(max));
    v.push(max);
    v.sort();
    v.dedup();
    v.into_iter().map(|d| (d, human(d))).collect()
}

/// The CSS class of a state's badge.
pub fn state_class(state: &str) -> &'static str {
    match state {
        "active" => "badge badge-ok",
        "pending" | "approved" | "provisioning" => "badge badge-pending",
        "denied" | "failed" | "timed_out" => "badge badge-error",
        _ => "badge badge-muted",
    }
}

pub fn risk_class(risk: &str) -> &'static str {
    match risk {
        "low" => "badge badge-ok",
        "high" => "badge badge-error",
        _ => "badge badge-pending",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(9000), "2 h 30 min");
        assert_eq!(human(45), "45 s");
        assert_eq!(human(0), "0 s");
        let c: Vec<i64> = duration_choices(600, 3600)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        assert_eq!(c, [600, 900, 1800, 3600]);
        let c: Vec<i64> = duration_choices(8, 8).into_iter().map(|(d, _)| d).collect();
        assert_eq!(c, [8]);
    }
}
