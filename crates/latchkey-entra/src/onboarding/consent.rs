//! OAuth onboarding: admin consent to Latchkey's own multi-tenant app.
//!
//! The callback's `tenant` and `admin_consent` parameters are unauthenticated: anyone can
//! type them into a URL. Consent counts only once a client-credentials token for the
//! entered tenant is actually obtained with Latchkey's app, and the token's `tid` is the
//! tenant the callback names.

use crate::auth::{AuthError, ClientCredentials, TokenClaims, TokenProvider};
use crate::endpoints::{Endpoints, http_client};
use crate::ids::{ClientId, TenantId};
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

/// Latchkey's own multi-tenant app registration (server configuration).
#[derive(Clone)]
pub struct LatchkeyApp {
    pub client_id: ClientId,
    pub client_secret: SecretString,
}

impl std::fmt::Debug for LatchkeyApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatchkeyApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

/// `{authority}/{tenant}/v2.0/adminconsent?client_id&scope={graph}/.default&redirect_uri&state`.
pub fn admin_consent_url(
    endpoints: &Endpoints,
    tenant: &TenantId,
    app: &ClientId,
    redirect_uri: &str,
    state: &str,
) -> Url {
    let base = endpoints.login_authority().as_str().trim_end_matches('/');
    let mut url = Url::parse(&format!("{base}/{}/v2.0/adminconsent", tenant.as_segment()))
        .expect("authority URL");
    url.query_pairs_mut()
        .append_pair("client_id", &app.as_uuid().to_string())
        .append_pair("scope", &endpoints.token_scope())
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", state);
    url
}

/// The query of the redirect back from the admin-consent endpoint.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ConsentCallback {
    pub admin_consent: Option<String>,
    pub tenant: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// What went wrong with a consent, in words for the person who tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error(
        "Consent was declined{}. Ask a Global Administrator (or Privileged Role Administrator) of the tenant to click Login with Microsoft and accept, then try again.",
        code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default()
    )]
    Declined { code: Option<u32> },
    #[error("Microsoft did not complete the consent ({error}{}): {description}", code.map(|c| format!(", AADSTS{c}")).unwrap_or_default())]
    Failed {
        error: String,
        code: Option<u32>,
        description: String,
    },
    #[error(
        "Consent was granted in tenant {got}, but this connector is for tenant {expected}. Sign in with an administrator account of {expected} (or change the tenant ID), then try again."
    )]
    WrongTenant { expected: String, got: String },
    #[error(
        "Microsoft reported consent, but Latchkey could not get a token for the tenant with its app: {0} Wait a minute (consent takes time to apply) and test the connection again."
    )]
    NotVerified(String),
    #[error(
        "The answer from Microsoft is incomplete (no tenant and no error). Start again with Login with Microsoft."
    )]
    Incomplete,
}

impl ConsentError {
    /// Worth retrying later without anything changing (propagation delays, outages).
    pub fn is_transient(&self) -> bool {
        matches!(self, ConsentError::NotVerified(_))
    }
}

/// The verified result of a consent.
#[derive(Debug, Clone)]
pub struct ConsentOutcome {
    /// The tenant's GUID (from the token).
    pub tenant_guid: String,
    /// Application permissions Latchkey's app holds in the tenant.
    pub roles: Vec<String>,
}

fn aadsts_code(description: &str) -> Option<u32> {
    let start = description.find("AADSTS")? + 6;
    let digits: String = description[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Reads the callback's own verdict (before any verification): the error it carries, or the
/// tenant it claims.
pub fn read_callback(cb: &ConsentCallback) -> Result<String, ConsentError> {
    if let Some(error) = cb.error.as_deref().filter(|e| !e.is_empty()) {
        let description = cb.error_description.clone().unwrap_or_default();
        let first_line = description.lines().next().unwrap_or_default().to_string();
        let code = aadsts_code(&description);
        return Err(match (error, code) {
            ("access_denied" | "consent_required" | "permission_denied", _) | (_, Some(65004)) => {
                ConsentError::Declined { code }
            }
            _ => ConsentError::Failed {
                error: error.to_string(),
                code,
                description: first_line,
            },
        });
    }
    match cb
        .tenant
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(t) => Ok(t.to_string()),
        None => Err(ConsentError::Incomplete),
    }
}

/// Proves a consent: obtains a token for `entered` with Latchkey's app and checks that its
/// `tid` is the tenant the callback claimed (and the entered one, when that is a GUID).
pub async fn verify_consent(
    endpoints: &Endpoints,
    entered: &TenantId,
    claimed_tenant: &str,
    app: &LatchkeyApp,
) -> Result<ConsentOutcome, ConsentError> {
    let claimed = claimed_tenant.trim().to_ascii_lowercase();
    if let Some(guid) = entered.guid() {
        let expected = guid.hyphenated().to_string();
        if claimed != expected {
            return Err(ConsentError::WrongTenant {
                expected,
                got: claimed,
            });
        }
    }
    let http =
        http_client(endpoints.policy()).map_err(|e| ConsentError::NotVerified(e.to_string()))?;
    let tokens = TokenProvider::new(
        http,
        endpoints.clone(),
        ClientCredentials {
            tenant: entered.clone(),
            client_id: app.client_id,
            client_secret: app.client_secret.clone(),
        },
    );
    let token = tokens
        .token()
        .await
        .map_err(|e: AuthError| ConsentError::NotVerified(e.to_string()))?;
    let claims: &TokenClaims = token.claims();
    let tid = claims.tid.clone().unwrap_or_default().to_ascii_lowercase();
    if tid != claimed {
        return Err(ConsentError::WrongTenant {
            expected: if tid.is_empty() {
                entered.as_segment()
            } else {
                tid
            },
            got: claimed,
        });
    }
    Ok(ConsentOutcome {
        tenant_guid: tid,
        roles: claims.roles.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_url_carries_scope_redirect_and_state() {
        let e = Endpoints::global();
        let t = TenantId::parse("contoso.onmicrosoft.com").unwrap();
        let app = ClientId::parse("11111111-2222-3333-4444-555555555555").unwrap();
        let url = admin_consent_url(
            &e,
            &t,
            &app,
            "https://latchkey.example.com/connectors/oauth/callback",
            "st8",
        );
        assert_eq!(url.host_str(), Some("login.microsoftonline.com"));
        assert_eq!(url.path(), "/contoso.onmicrosoft.com/v2.0/adminconsent");
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["scope"], "https://graph.microsoft.com/.default");
        assert_eq!(q["state"], "st8");
        assert_eq!(q["client_id"], "11111111-2222-3333-4444-555555555555");
    }

    #[test]
    fn callback_errors_become_sentences() {
        let denied = ConsentCallback {
            error: Some("consent_required".into()),
            error_description: Some("AADSTS65004: The resource owner or authorization server denied the request.\r\nTrace ID: x".into()),
            ..Default::default()
        };
        let e = read_callback(&denied).unwrap_err();
        assert_eq!(e, ConsentError::Declined { code: Some(65004) });
        assert!(e.to_string().contains("Global Administrator"));
        let odd = ConsentCallback {
            error: Some("server_error".into()),
            error_description: Some("AADSTS50000: boom\nTrace".into()),
            ..Default::default()
        };
        let e = read_callback(&odd).unwrap_err();
        assert!(
            e.to_string().contains("AADSTS50000") && !e.to_string().contains("Trace"),
            "{e}"
        );
        assert_eq!(
            read_callback(&ConsentCallback::default()).unwrap_err(),
            ConsentError::Incomplete
        );
        let ok = ConsentCallback {
            tenant: Some(" abc ".into()),
            admin_consent: Some("True".into()),
            ..Default::default()
        };
        assert_eq!(read_callback(&ok).unwrap(), "abc");
    }
}
