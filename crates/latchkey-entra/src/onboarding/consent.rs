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

pub use crate::consent::{ConsentCallback, admin_consent_url, parse_admin_consent_callback};

/// What went wrong with a consent, in words for the person who tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    /// The callback itself reports no consent (declined, an error, or incomplete).
    #[error(transparent)]
    Callback(#[from] crate::consent::ConsentError),
    #[error(
        "Consent was granted in tenant {got}, but this connector is for tenant {expected}. Sign in with an administrator account of {expected} (or change the tenant ID), then try again."
    )]
    WrongTenant { expected: String, got: String },
    #[error(
        "Microsoft reported consent, but Latchkey could not get a token for the tenant with its app: {0} Wait a minute (consent takes time to apply) and test the connection again."
    )]
    NotVerified(String),
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
    fn callback_refusals_keep_their_sentences() {
        let e: ConsentError = parse_admin_consent_callback(
            "error=consent_required&error_description=AADSTS65004%3A+declined&state=s",
        )
        .unwrap_err()
        .into();
        assert!(e.to_string().contains("Global Administrator"), "{e}");
        assert!(!e.is_transient());
        assert!(ConsentError::NotVerified("x".into()).is_transient());
    }
}
