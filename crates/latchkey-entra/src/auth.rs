//! Client-credentials tokens from the Microsoft identity platform: acquired, cached until shortly
//! before expiry, refreshed once for all concurrent callers, and their `roles` claim decoded.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::endpoints::Endpoints;
use crate::ids::{ClientId, TenantId};

/// The customer's app registration: tenant, client id and client secret (never printed).
#[derive(Clone)]
pub struct ClientCredentials {
    pub tenant: TenantId,
    pub client_id: ClientId,
    pub client_secret: SecretString,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

/// Why no token could be obtained. Each message says what to do, in the admin's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "The client secret is not valid (AADSTS{code}): paste the secret's Value (not its Secret ID) from Entra > App registrations > Certificates & secrets, or create a new secret there and paste it here."
    )]
    InvalidSecret { code: u32 },
    #[error(
        "The client secret has expired (AADSTS7000222): create a new secret in Entra > App registrations > Certificates & secrets and paste it here."
    )]
    ExpiredSecret,
    #[error(
        "No client secret was sent (AADSTS7000218): paste the client secret of the app registration."
    )]
    MissingSecret,
    #[error(
        "Tenant '{tenant}' was not found (AADSTS90002): check the Directory (tenant) ID in Entra > Overview, and that the Microsoft Graph domain matches the tenant's cloud (commercial, US Government or China)."
    )]
    TenantNotFound { tenant: String },
    #[error(
        "No application with client ID {client_id} exists in this tenant (AADSTS700016): check the Application (client) ID in Entra > App registrations, and that the app is registered in (or consented to by) this tenant."
    )]
    AppNotFound { client_id: String },
    #[error(
        "The token scope {scope} was refused (AADSTS{code}): the Microsoft Graph domain setting must be the Graph host of the tenant's cloud, such as graph.microsoft.com."
    )]
    InvalidScope { code: u32, scope: String },
    #[error(
        "Admin consent has not been granted for this app (AADSTS{code}): in Entra > Enterprise applications > your app > Permissions, click \"Grant admin consent\", then test again."
    )]
    ConsentRequired { code: u32 },
    #[error("Microsoft sign-in refused the request ({error}{}): {description}", code.map(|c| format!(", AADSTS{c}")).unwrap_or_default())]
    Refused {
        status: u16,
        error: String,
        code: Option<u32>,
        /// First line of `error_description` (no trace ids).
        description: String,
    },
    #[error(
        "Microsoft sign-in is temporarily unavailable (HTTP {status}): the request will be retried later."
    )]
    Unavailable { status: u16 },
    #[error("Could not reach the login authority {authority}: {reason}.")]
    Network { authority: String, reason: String },
    #[error(
        "The login authority answered with something that is not a token ({0}): check the login authority setting."
    )]
    Malformed(String),
}

impl AuthError {
    /// Worth retrying later without changing any setting.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AuthError::Unavailable { .. } | AuthError::Network { .. }
        )
    }

    /// The AADSTS code, when the identity platform gave one.
    pub fn aadsts_code(&self) -> Option<u32> {
        match self {
            AuthError::InvalidSecret { code }
            | AuthError::InvalidScope { code, .. }
            | AuthError::ConsentRequired { code } => Some(*code),
            AuthError::ExpiredSecret => Some(7_000_222),
            AuthError::MissingSecret => Some(7_000_218),
            AuthError::TenantNotFound { .. } => Some(90_002),
            AuthError::AppNotFound { .. } => Some(700_016),
            AuthError::Refused { code, .. } => *code,
            _ => None,
        }
    }

    /// Which connector setting to fix, when one is to blame (`"client_secret"`, `"tenant_id"`, ...).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            AuthError::InvalidSecret { .. }
            | AuthError::ExpiredSecret
            | AuthError::MissingSecret => Some("client_secret"),
            AuthError::TenantNotFound { .. } => Some("tenant_id"),
            AuthError::AppNotFound { .. } => Some("client_id"),
            AuthError::InvalidScope { .. } => Some("graph_domain"),
            AuthError::Network { .. } | AuthError::Malformed(_) => Some("login_authority"),
            _ => None,
        }
    }
}

/// The claims of an app-only access token that Latchkey uses. Decoded without a signature check:
/// the token came straight from the authority over TLS, and Graph validates it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// Granted application permissions (e.g. `User.Read.All`); absent when none are consented.
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub tid: Option<String>,
    #[serde(default)]
    pub appid: Option<String>,
    #[serde(default)]
    pub app_displayname: Option<String>,
    /// Object id of the app's service principal in the tenant.
    #[serde(default)]
    pub oid: Option<String>,
    #[serde(default)]
    pub aud: Option<String>,
    #[serde(default)]
    pub exp: Option<i64>,
}

impl TokenClaims {
    /// Reads the payload of a JWT (`header.payload.signature`).
    pub fn decode(jwt: &str) -> Result<Self, AuthError> {
        let payload = jwt
            .split('.')
            .nth(1)
            .ok_or_else(|| AuthError::Malformed("the access token is not a JWT".into()))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| {
                AuthError::Malformed("the access token payload is not base64url".into())
            })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            AuthError::Malformed(format!("the access token claims are not readable: {e}"))
        })
    }

    /// Whether `permission` is granted (case-insensitive, as Graph compares them).
    pub fn has_role(&self, permission: &str) -> bool {
        self.roles
            .iter()
            .any(|r| r.eq_ignore_ascii_case(permission))
    }
}

/// A bearer token with its decoded claims. Debug output never shows the token.
#[derive(Clone)]
pub struct AccessToken {
    value: Arc<SecretString>,
    expires_at: Instant,
    claims: Arc<TokenClaims>,
    generation: u64,
}

impl AccessToken {
    pub fn claims(&self) -> &TokenClaims {
        &self.claims
    }
    /// Granted application permissions.
    pub fn roles(&self) -> &[String] {
        &self.claims.roles
    }
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }
    /// The secret value, for the `Authorization` header only.
    pub(crate) fn bearer(&self) -> &str {
        self.value.expose_secret()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[redacted]")
            .field(
                "expires_in",
                &self.expires_at.saturating_duration_since(Instant::now()),
            )
            .field("roles", &self.claims.roles)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct TokenErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    error_codes: Vec<u32>,
}

/// Acquires and caches client-credentials tokens for one connector. Share it (`Arc`) between
/// all the tasks of a sync: concurrent callers wait for a single token request.
pub struct TokenProvider {
    http: reqwest::Client,
    endpoints: Endpoints,
    creds: ClientCredentials,
    cache: tokio::sync::Mutex<Option<AccessToken>>,
    generation: AtomicU64,
    acquired: AtomicU64,
    max_margin: Duration,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("authority", &self.endpoints.login_authority().as_str())
            .field("creds", &self.creds)
            .finish()
    }
}

impl TokenProvider {
    /// `http` should come from [`crate::endpoints::http_client`] (no redirects, safe resolver).
    pub fn new(http: reqwest::Client, endpoints: Endpoints, creds: ClientCredentials) -> Self {
        TokenProvider {
            http,
            endpoints,
            creds,
            cache: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
            acquired: AtomicU64::new(0),
            max_margin: Duration::from_secs(300),
        }
    }

    /// Refresh this long before expiry at most (default 5 minutes; a quarter of the lifetime for
    /// short-lived tokens).
    pub fn with_refresh_margin(mut self, margin: Duration) -> Self {
        self.max_margin = margin;
        self
    }

    pub fn tenant(&self) -> &TenantId {
        &self.creds.tenant
    }
    pub fn client_id(&self) -> ClientId {
        self.creds.client_id
    }
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The first three characters of the client secret: what Entra shows as the secret's `hint`
    /// in `passwordCredentials`, to tell which secret is in use. Not enough to use the secret.
    pub fn secret_hint(&self) -> Option<String> {
        let s = self.creds.client_secret.expose_secret();
        (s.chars().count() >= 3).then(|| s.chars().take(3).collect())
    }

    /// How many tokens were obtained from the authority so far.
    pub fn tokens_acquired(&self) -> u64 {
        self.acquired.load(Ordering::Relaxed)
    }

    /// A token valid for a while yet: the cached one, or a new one.
    pub async fn token(&self) -> Result<AccessToken, AuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(t) = cache.as_ref()
            && Instant::now() < t.expires_at
        {
            return Ok(t.clone());
        }
        let t = self.acquire().await?;
        *cache = Some(t.clone());
        Ok(t)
    }

    /// Called when Graph rejected `rejected` (401): fetches a new token unless another caller
    /// already replaced it, so a burst of 401s costs one token request.
    pub async fn refresh(&self, rejected: &AccessToken) -> Result<AccessToken, AuthError> {
        let mut cache = self.cache.lock().await;
        if let Some(t) = cache.as_ref()
            && t.generation != rejected.generation
            && Instant::now() < t.expires_at
        {
            return Ok(t.clone());
        }
        *cache = None;
        let t = self.acquire().await?;
        *cache = Some(t.clone());
        Ok(t)
    }

    /// Drops the cached token (e.g. after the secret was changed).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    async fn acquire(&self) -> Result<AccessToken, AuthError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.request_token().await {
                Err(e) if e.is_transient() && attempt < 3 => {
                    tracing::warn!(attempt, error = %e, "token request failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn request_token(&self) -> Result<AccessToken, AuthError> {
        let url = self.endpoints.token_url(&self.creds.tenant);
        let scope = self.endpoints.token_scope();
        let client_id = self.creds.client_id.to_string();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", self.creds.client_secret.expose_secret()),
            ("scope", scope.as_str()),
        ];
        let authority = self
            .endpoints
            .login_authority()
            .as_str()
            .trim_end_matches('/')
            .to_string();
        let started = Instant::now();
        let resp =
            self.http
                .post(url)
                .form(&form)
                .send()
                .await
                .map_err(|e| AuthError::Network {
                    authority: authority.clone(),
                    reason: crate::graph::describe_reqwest_error(&e),
                })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| AuthError::Network {
            authority: authority.clone(),
            reason: crate::graph::describe_reqwest_error(&e),
        })?;
        tracing::debug!(
            tenant = %self.creds.tenant,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "token request"
        );
        if status.is_success() {
            let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
                AuthError::Malformed(format!("HTTP {status} without an access_token"))
            })?;
            let lifetime = parsed
                .expires_in
                .as_ref()
                .and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                })
                .unwrap_or(3599);
            let claims = TokenClaims::decode(&parsed.access_token)?;
            let lifetime = Duration::from_secs(lifetime);
            let margin = self.max_margin.min(lifetime / 4);
            self.acquired.fetch_add(1, Ordering::Relaxed);
            return Ok(AccessToken {
                value: Arc::new(SecretString::from(parsed.access_token)),
                expires_at: started + lifetime - margin,
                claims: Arc::new(claims),
                generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            });
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(AuthError::Unavailable {
                status: status.as_u16(),
            });
        }
        let err: TokenErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        Err(map_token_error(status.as_u16(), err, &self.creds, &scope))
    }
}

fn aadsts_from(description: &str) -> Option<u32> {
    let rest = description.split("AADSTS").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn map_token_error(
    status: u16,
    body: TokenErrorBody,
    creds: &ClientCredentials,
    scope: &str,
) -> AuthError {
    let code = body
        .error_codes
        .first()
        .copied()
        .or_else(|| aadsts_from(&body.error_description));
    match code {
        Some(c @ (7_000_215 | 7_000_216)) => AuthError::InvalidSecret { code: c },
        Some(7_000_222) => AuthError::ExpiredSecret,
        Some(7_000_218) => AuthError::MissingSecret,
        Some(90_002 | 90_023) => AuthError::TenantNotFound {
            tenant: creds.tenant.to_string(),
        },
        Some(700_016) => AuthError::AppNotFound {
            client_id: creds.client_id.to_string(),
        },
        Some(c @ (1_002_012 | 70_011 | 500_011)) => AuthError::InvalidScope {
            code: c,
            scope: scope.to_string(),
        },
        Some(c @ (65_001 | 65_004 | 650_051 | 650_052 | 650_056 | 650_057)) => {
            AuthError::ConsentRequired { code: c }
        }
        _ => {
            let first = body.error_description.lines().next().unwrap_or("").trim();
            let first = first
                .split_once(": ")
                .filter(|(p, _)| p.starts_with("AADSTS"))
                .map(|(_, r)| r)
                .unwrap_or(first);
            let description = if first.is_empty() {
                format!("HTTP {status}")
            } else {
                first.to_string()
            };
            AuthError::Refused {
                status,
                error: if body.error.is_empty() {
                    "error".into()
                } else {
                    body.error
                },
                code,
                description,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> ClientCredentials {
        ClientCredentials {
            tenant: TenantId::parse("contoso.onmicrosoft.com").unwrap(),
            client_id: ClientId::parse("11111111-2222-3333-4444-555555555555").unwrap(),
            client_secret: SecretString::from("s3cr3t-value".to_string()),
        }
    }

    fn body(error: &str, code: u32, text: &str) -> TokenErrorBody {
        TokenErrorBody {
            error: error.into(),
            error_description: format!("AADSTS{code}: {text}\r\nTrace ID: x\r\nCorrelation ID: y"),
            error_codes: vec![code],
        }
    }

    #[test]
    fn identity_platform_errors_map_to_actionable_types() {
        let c = creds();
        let s = "https://graph.microsoft.com/.default";
        assert_eq!(
            map_token_error(
                401,
                body("invalid_client", 7000215, "Invalid client secret provided."),
                &c,
                s
            ),
            AuthError::InvalidSecret { code: 7000215 }
        );
        let e = map_token_error(401, body("invalid_client", 7000222, "expired"), &c, s);
        assert_eq!(
            e.to_string(),
            "The client secret has expired (AADSTS7000222): create a new secret in Entra > App registrations > Certificates & secrets and paste it here."
        );
        assert_eq!(e.field(), Some("client_secret"));
        assert!(matches!(
            map_token_error(400, body("invalid_tenant", 90002, "Tenant"), &c, s),
            AuthError::TenantNotFound { .. }
        ));
        assert!(matches!(
            map_token_error(400, body("unauthorized_client", 700016, "App"), &c, s),
            AuthError::AppNotFound { .. }
        ));
        assert!(matches!(
            map_token_error(400, body("invalid_scope", 1002012, "scope"), &c, s),
            AuthError::InvalidScope { code: 1002012, .. }
        ));
        assert!(matches!(
            map_token_error(400, body("invalid_scope", 70011, "scope"), &c, s),
            AuthError::InvalidScope { code: 70011, .. }
        ));
        assert!(matches!(
            map_token_error(400, body("invalid_grant", 65001, "consent"), &c, s),
            AuthError::ConsentRequired { code: 65001 }
        ));
        // Only the AADSTS prefix in the description, no error_codes array.
        let b = TokenErrorBody {
            error: "invalid_client".into(),
            error_description: "AADSTS7000222: The provided client secret keys are expired.".into(),
            error_codes: vec![],
        };
        assert_eq!(map_token_error(401, b, &c, s), AuthError::ExpiredSecret);
        let other = map_token_error(
            400,
            body(
                "invalid_request",
                900144,
                "The request body must contain 'x'.",
            ),
            &c,
            s,
        );
        assert_eq!(
            other.to_string(),
            "Microsoft sign-in refused the request (invalid_request, AADSTS900144): The request body must contain 'x'."
        );
        assert!(!other.is_transient());
        assert!(AuthError::Unavailable { status: 503 }.is_transient());
    }

    #[test]
    fn claims_are_decoded_from_the_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            r#"{"roles":["User.Read.All","Group.Read.All"],"tid":"t","appid":"a","exp":1}"#,
        );
        let jwt = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        let c = TokenClaims::decode(&jwt).unwrap();
        assert!(c.has_role("user.read.all"));
        assert_eq!(c.tid.as_deref(), Some("t"));
        let none = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"tid":"t"}"#);
        assert!(
            TokenClaims::decode(&format!("h.{none}.s"))
                .unwrap()
                .roles
                .is_empty()
        );
        assert!(TokenClaims::decode("not-a-jwt").is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = creds();
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let t = AccessToken {
            value: Arc::new(SecretString::from("eyJ.secret.token".to_string())),
            expires_at: Instant::now(),
            claims: Arc::new(TokenClaims::default()),
            generation: 1,
        };
        assert!(!format!("{t:?}").contains("secret.token"));
    }
}
