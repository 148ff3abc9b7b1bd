//! "Sign in with Microsoft" for organization members: OpenID Connect authorization code with
//! PKCE (S256) against Latchkey's own multi-tenant app, on the `organizations` endpoint.
//!
//! The browser goes to [`SignInClient::authorize_url`] with a single-use `state`, a `nonce` and
//! the PKCE challenge (the caller keeps `state`, nonce and verifier server-side and binds them to
//! the browser). Microsoft redirects back with `code` and `state` in the query
//! (`response_mode=query`: a cross-site form_post would not carry SameSite cookies). The code is
//! redeemed with the verifier ([`SignInClient::redeem_code`]) and the `id_token` validated
//! ([`SignInClient::validate_id_token`]): RS256 only, signed by a key of the authority's JWKS
//! ([`jwks::KeyCache`]), `aud` = our client id, `iss` = `{authority}/{tid}/v2.0` for the token's
//! own `tid`, the `nonce` we sent, `exp`/`nbf` with a minute of leeway.
//!
//! Which organization the `tid` belongs to, and which Latchkey user the `oid` is, is the
//! caller's business: nothing here trusts the tenant just because the token names it.

pub mod id_token;
pub mod jwks;

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use sha2::Digest;
use url::Url;

use crate::endpoints::{Endpoints, http_client};
use crate::onboarding::LatchkeyApp;
pub use id_token::{Rejected, VerifiedIdentity};

/// The tenant segment for a multi-tenant app that signs in work and school accounts.
pub const TENANT_SEGMENT: &str = "organizations";

/// The scopes asked for: an id_token with the person's name and username.
pub const SCOPES: &str = "openid profile email";

/// A PKCE verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    /// A 256-bit verifier (43 URL-safe characters) and `BASE64URL(SHA256(verifier))`.
    pub fn generate() -> Self {
        let verifier = latchkey_crypto::random_token(32);
        let challenge = challenge_for(&verifier);
        Pkce {
            verifier,
            challenge,
        }
    }
}

/// The S256 challenge of a verifier.
pub fn challenge_for(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// What the authorize URL carries.
pub struct AuthorizeRequest<'a> {
    pub redirect_uri: &'a Url,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
    /// Prefills (or, on the simulated tenant, chooses) the account.
    pub login_hint: Option<&'a str>,
}

/// Why a sign-in with Microsoft did not complete, in words for the person who tried.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("Microsoft did not sign you in{}: {description}", code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default())]
    Provider {
        error: String,
        code: Option<u32>,
        description: String,
    },
    #[error("Microsoft's sign-in service could not be reached ({0}). Try again in a minute.")]
    Network(String),
    #[error("Microsoft's answer could not be read ({0}). Try again.")]
    Malformed(String),
    #[error("Microsoft's answer was refused: {0} Start again with Sign in with Microsoft.")]
    Rejected(#[from] Rejected),
}

impl SignInError {
    /// Reads `error`/`error_description` as the identity platform sends them (redirect or body).
    pub fn from_provider(error: &str, description: &str) -> Self {
        let code = description
            .split("AADSTS")
            .nth(1)
            .map(|r| {
                r.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|d| d.parse().ok());
        let mut first = description.lines().next().unwrap_or("").trim();
        // "AADSTS501481: The Code_Verifier ..." → the code is shown once, in parentheses.
        if let Some(rest) = first.strip_prefix("AADSTS") {
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            first = rest.strip_prefix(':').unwrap_or(rest).trim();
        }
        SignInError::Provider {
            error: error.to_string(),
            code,
            description: if first.is_empty() {
                error.to_string()
            } else {
                first.to_string()
            },
        }
    }
}

/// Talks to the identity platform for sign-ins. Long-lived: it caches the signing keys.
pub struct SignInClient {
    endpoints: Endpoints,
    app: LatchkeyApp,
    http: reqwest::Client,
    keys: jwks::KeyCache,
}

impl std::fmt::Debug for SignInClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInClient")
            .field("authority", &self.endpoints.login_authority().as_str())
            .field("client_id", &self.app.client_id)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

#[derive(Deserialize, Default)]
struct TokenErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl SignInClient {
    /// `endpoints` gives the login authority (its outbound policy applies to every request).
    pub fn new(endpoints: Endpoints, app: LatchkeyApp) -> Result<Self, SignInError> {
        let http =
            http_client(endpoints.policy()).map_err(|e| SignInError::Network(e.to_string()))?;
        let keys = jwks::KeyCache::new(
            http.clone(),
            Url::parse(&format!(
                "{}/{TENANT_SEGMENT}/discovery/v2.0/keys",
                authority(&endpoints)
            ))
            .map_err(|e| SignInError::Malformed(e.to_string()))?,
        );
        Ok(SignInClient {
            endpoints,
            app,
            http,
            keys,
        })
    }

    /// How often an unknown `kid` may trigger a JWKS fetch (default five minutes).
    pub fn with_refetch_interval(mut self, every: Duration) -> Self {
        self.keys = self.keys.with_refetch_interval(every);
        self
    }

    pub fn keys(&self) -> &jwks::KeyCache {
        &self.keys
    }

    pub fn client_id(&self) -> String {
        self.app.client_id.to_string()
    }

    /// The authority without a trailing slash, e.g. `https://login.microsoftonline.com`.
    pub fn authority(&self) -> String {
        authority(&self.endpoints)
    }

    /// `{authority}/organizations/oauth2/v2.0/authorize?...` with PKCE S256 and `response_mode=query`.
    pub fn authorize_url(&self, r: &AuthorizeRequest<'_>) -> Url {
        let mut url = Url::parse(&format!(
            "{}/{TENANT_SEGMENT}/oauth2/v2.0/authorize",
            self.authority()
        ))
        .expect("the authority is a validated URL");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.client_id())
                .append_pair("response_type", "code")
                .append_pair("response_mode", "query")
                .append_pair("redirect_uri", r.redirect_uri.as_str())
                .append_pair("scope", SCOPES)
                .append_pair("state", r.state)
                .append_pair("nonce", r.nonce)
                .append_pair("code_challenge", r.code_challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("prompt", "select_account");
            if let Some(h) = r.login_hint.filter(|h| !h.trim().is_empty()) {
                q.append_pair("login_hint", h.trim());
            }
        }
        url
    }

    /// Redeems the authorization code (with the PKCE verifier) and returns the raw id_token.
    pub async fn redeem_code(
        &self,
        code: &str,
        redirect_uri: &Url,
        verifier: &str,
    ) -> Result<String, SignInError> {
        use secrecy::ExposeSecret;
        let url = format!("{}/{TENANT_SEGMENT}/oauth2/v2.0/token", self.authority());
        let client_id = self.client_id();
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", client_id.as_str()),
            ("client_secret", self.app.client_secret.expose_secret()),
            ("code", code),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier),
            ("scope", SCOPES),
        ];
        let resp = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| SignInError::Network(crate::graph::describe_reqwest_error(&e)))?;
        let status = resp.status();
        let body = jwks::read_limited(resp, 256 * 1024).await?;
        if status.is_success() {
            let parsed: TokenResponse = serde_json::from_slice(&body)
                .map_err(|_| SignInError::Malformed("the token response is not JSON".into()))?;
            return parsed.id_token.filter(|t| !t.is_empty()).ok_or_else(|| {
                SignInError::Malformed("the token response has no id_token".into())
            });
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(SignInError::Network(format!("HTTP {}", status.as_u16())));
        }
        let err: TokenErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        Err(SignInError::from_provider(
            if err.error.is_empty() {
                "invalid_grant"
            } else {
                &err.error
            },
            &err.error_description,
        ))
    }

    /// Validates an id_token for this app and the `nonce` this browser's sign-in sent.
    pub async fn validate_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<VerifiedIdentity, SignInError> {
        id_token::validate(
            token,
            &self.keys,
            &self.client_id(),
            &self.authority(),
            nonce,
        )
        .await
    }

    /// Redeems the code and validates the id_token it brings.
    pub async fn complete(
        &self,
        code: &str,
        redirect_uri: &Url,
        verifier: &str,
        nonce: &str,
    ) -> Result<VerifiedIdentity, SignInError> {
        let token = self.redeem_code(code, redirect_uri, verifier).await?;
        self.validate_id_token(&token, nonce).await
    }
}

fn authority(endpoints: &Endpoints) -> String {
    endpoints
        .login_authority()
        .as_str()
        .trim_end_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc7636_example() {
        assert_eq!(
            challenge_for("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p = Pkce::generate();
        assert_eq!(p.verifier.len(), 43);
        assert_eq!(p.challenge, challenge_for(&p.verifier));
    }

    #[test]
    fn provider_errors_keep_the_aadsts_code() {
        let e = SignInError::from_provider(
            "invalid_grant",
            "AADSTS501481: The Code_Verifier does not match.\r\nTrace ID: x",
        );
        assert!(matches!(
            e,
            SignInError::Provider {
                code: Some(501481),
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "Microsoft did not sign you in (AADSTS501481): The Code_Verifier does not match."
        );
    }

    #[test]
    fn authorize_url_uses_pkce_and_query_mode() {
        let app = LatchkeyApp {
            client_id: crate::ClientId::parse("11111111-2222-3333-4444-555555555555").unwrap(),
            client_secret: secrecy::SecretString::from("s".to_string()),
        };
        let c = SignInClient::new(Endpoints::global(), app).unwrap();
        let u = c.authorize_url(&AuthorizeRequest {
            redirect_uri: &Url::parse("https://latchkey.example/auth/microsoft/callback").unwrap(),
            state: "st",
            nonce: "nn",
            code_challenge: "cc",
            login_hint: None,
        });
        assert!(u.as_str().starts_with(
            "https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize?client_id=11111111-2222-3333-4444-555555555555&response_type=code&response_mode=query&"
        ));
        assert!(
            u.as_str()
                .contains("code_challenge=cc&code_challenge_method=S256")
        );
        assert!(!u.as_str().contains("login_hint"));
    }
}
