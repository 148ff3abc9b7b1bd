//! Admin consent for Latchkey's own multi-tenant app (the OAuth connector mode): the URL to send
//! the admin to, and the reading of what the identity platform sends back.
//!
//! What comes back is untrusted: `tenant` and `admin_consent=True` prove nothing until a
//! client-credentials token for the entered tenant is actually obtained with Latchkey's app
//! (then run [`crate::probe::probe`], which also checks the organization is the entered tenant).
//! Checking `state` (single use, bound to the session and connector) is the caller's job.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::endpoints::Endpoints;
use crate::ids::{ClientId, TenantId};

/// `{authority}/{tenant}/v2.0/adminconsent?client_id=..&scope={graph}/.default&redirect_uri=..&state=..`
///
/// The `.default` scope asks for every application permission configured on the app registration.
pub fn admin_consent_url(
    endpoints: &Endpoints,
    tenant: &TenantId,
    client_id: ClientId,
    redirect_uri: &Url,
    state: &str,
) -> Url {
    let base = endpoints.login_authority().as_str().trim_end_matches('/');
    let mut url = Url::parse(&format!("{base}/{}/v2.0/adminconsent", tenant.as_segment()))
        .expect("authority and tenant are validated");
    url.query_pairs_mut()
        .append_pair("client_id", &client_id.to_string())
        .append_pair("scope", &endpoints.token_scope())
        .append_pair("redirect_uri", redirect_uri.as_str())
        .append_pair("state", state);
    url
}

/// A callback that reports consent (still to be verified with a token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentCallback {
    pub state: String,
    /// The tenant the admin consented in, as claimed by the redirect (untrusted).
    pub tenant: Option<String>,
    pub scope: Option<String>,
}

impl ConsentCallback {
    /// Whether the claimed tenant is the entered one. Only decidable for a GUID tenant; for a
    /// domain, `None` (the probe's organization check decides).
    pub fn claims_tenant(&self, entered: &TenantId) -> Option<bool> {
        let claimed = self.tenant.as_deref()?;
        entered
            .guid()
            .map(|g| claimed.eq_ignore_ascii_case(&g.to_string()))
    }
}

/// A callback that reports no consent. Messages say what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error(
        "Consent was declined{}: a Global Administrator (or Privileged Role Administrator) must click \"Login with Microsoft\" again and accept the permissions.",
        code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default()
    )]
    Declined {
        code: Option<u32>,
        description: String,
    },
    #[error("Microsoft sign-in reported an error ({error}): {description}")]
    Other { error: String, description: String },
    #[error(
        "The consent callback carries no state: start again from the connector's settings with \"Login with Microsoft\"."
    )]
    MissingState,
    #[error(
        "The consent callback says neither that consent was granted nor why not: start again with \"Login with Microsoft\"."
    )]
    Incomplete,
}

/// Reads the callback's query string (`admin_consent=True&tenant=..&state=..` or
/// `error=..&error_description=..&state=..`).
pub fn parse_admin_consent_callback(query: &str) -> Result<ConsentCallback, ConsentError> {
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(error) = get("error") {
        let description = get("error_description").unwrap_or_default();
        let code = description
            .split("AADSTS")
            .nth(1)
            .map(|r| {
                r.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|d| d.parse().ok());
        let first = description.lines().next().unwrap_or("").to_string();
        return Err(match error.as_str() {
            "access_denied" | "consent_required" | "permission_denied" => ConsentError::Declined {
                code,
                description: first,
            },
            _ => ConsentError::Other {
                error,
                description: if first.is_empty() {
                    "no description".into()
                } else {
                    first
                },
            },
        });
    }
    let state = get("state")
        .filter(|s| !s.is_empty())
        .ok_or(ConsentError::MissingState)?;
    if !get("admin_consent").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(ConsentError::Incomplete);
    }
    Ok(ConsentCallback {
        state,
        tenant: get("tenant"),
        scope: get("scope"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_url_follows_the_cloud() {
        let e = Endpoints::for_cloud(crate::Cloud::UsGovHigh).unwrap();
        let t = TenantId::parse("contoso.onmicrosoft.us").unwrap();
        let c = ClientId::parse("11111111-2222-3333-4444-555555555555").unwrap();
        let u = admin_consent_url(
            &e,
            &t,
            c,
            &Url::parse("https://latchkey.example/cb").unwrap(),
            "s1",
        );
        assert_eq!(
            u.as_str(),
            "https://login.microsoftonline.us/contoso.onmicrosoft.us/v2.0/adminconsent?client_id=11111111-2222-3333-4444-555555555555&scope=https%3A%2F%2Fgraph.microsoft.us%2F.default&redirect_uri=https%3A%2F%2Flatchkey.example%2Fcb&state=s1"
        );
    }

    #[test]
    fn callbacks_are_read() {
        let ok = parse_admin_consent_callback(
            "admin_consent=True&tenant=72f988bf-86f1-41af-91ab-2d7cd011db47&state=abc&scope=x",
        )
        .unwrap();
        assert_eq!(ok.state, "abc");
        let guid = TenantId::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap();
        assert_eq!(ok.claims_tenant(&guid), Some(true));
        assert_eq!(
            ok.claims_tenant(&TenantId::parse("contoso.com").unwrap()),
            None
        );
        let e = parse_admin_consent_callback(
            "admin_consent=True&error=consent_required&error_description=AADSTS65004%3a+The+resource+owner+or+authorization+server+denied+the+request.&state=abc",
        )
        .unwrap_err();
        assert_eq!(
            e,
            ConsentError::Declined {
                code: Some(65004),
                description:
                    "AADSTS65004: The resource owner or authorization server denied the request."
                        .into()
            }
        );
        assert!(
            e.to_string()
                .starts_with("Consent was declined (AADSTS65004)")
        );
        let e = parse_admin_consent_callback(
            "error=permission_denied&error_description=The+admin+canceled+the+request&state=abc",
        )
        .unwrap_err();
        assert!(matches!(e, ConsentError::Declined { code: None, .. }));
        assert_eq!(
            parse_admin_consent_callback("admin_consent=True&tenant=x"),
            Err(ConsentError::MissingState)
        );
        assert_eq!(
            parse_admin_consent_callback("state=abc"),
            Err(ConsentError::Incomplete)
        );
        assert!(matches!(
            parse_admin_consent_callback("error=server_error&state=a"),
            Err(ConsentError::Other { .. })
        ));
    }
}
