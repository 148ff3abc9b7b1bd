//! Server-rendered pages, one module per page, each with its own template in `templates/`.

pub mod access;
pub mod account;
pub mod api_clients;
pub mod apps;
pub mod connectors;
pub mod dashboard;
pub mod grants;
pub mod invite;
pub mod login;
pub mod outbox;
pub mod people;
pub mod reviews;
pub mod signup;
pub mod tasks;
pub mod vault;

use crate::auth::SignedIn;
use askama::Template;
use askama_web::WebTemplate;

/// What the page chrome needs: who is signed in and what they may see.
pub struct Nav {
    pub org_name: String,
    pub display_name: String,
    pub role_label: &'static str,
    pub csrf_token: String,
    pub is_super_admin: bool,
    /// Super or Connector Administrator: sees everyone's requests and the policies.
    pub is_admin: bool,
    /// Which section is current, for `aria-current`.
    pub section: &'static str,
}

impl Nav {
    pub fn new(who: &SignedIn, section: &'static str) -> Self {
        Self {
            org_name: who.org_name.clone(),
            display_name: who.display_name.clone(),
            role_label: who.role.label(),
            csrf_token: who.csrf_token.clone(),
            is_super_admin: who.role.can_manage_people(),
            is_admin: who.role.can_manage_connectors(),
            section,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub title: &'static str,
    pub message: String,
}

/// A problem with one form field, shown next to it.
#[derive(Clone, Debug)]
pub struct FieldProblem {
    pub field: &'static str,
    pub message: String,
}

/// Looks up the problem for `field` in templates: `{% if let Some(m) = problem(errors, "email") %}`.
pub fn problem<'a>(errors: &'a [FieldProblem], field: &str) -> Option<&'a str> {
    errors
        .iter()
        .find(|p| p.field == field)
        .map(|p| p.message.as_str())
}

/// A time as pages show it: `2030-01-31 18:00 UTC`.
pub fn when(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())
}

/// Only same-site relative paths are allowed as a post-sign-in destination.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.contains("://") =>
        {
            n.to_string()
        }
        _ => "/dashboard".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn open_redirects_are_refused() {
        assert_eq!(safe_next(Some("/settings/people")), "/settings/people");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "evil",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/dashboard", "{bad}");
        }
        assert_eq!(safe_next(None), "/dashboard");
    }
}
