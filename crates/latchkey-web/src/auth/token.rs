//! API access tokens: short-lived HS256 JWTs issued by `POST /api/v1/auth/token`
//! (OAuth2 client credentials). Signing keys are derived from the master key ring with
//! HKDF, one per master key, and the JWT `kid` names the master key: rotating the ring
//! rotates the signing key, while tokens signed with an older key in the ring still verify
//! until they expire. Every request also checks the client row, so revocation and secret
//! rotation take effect immediately.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use hkdf::Hkdf;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use latchkey_core::{ApiClientId, OrgId, Role};
use latchkey_crypto::KeyRing;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

const ISSUER: &str = "latchkey";
const AUDIENCE: &str = "latchkey-api";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The API client's id (not its public client_id).
    pub sub: Uuid,
    pub org: Uuid,
    pub role: Role,
    /// The client's secret generation when issued; rotation bumps it.
    pub generation: i32,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

#[derive(Clone)]
pub struct TokenKeys {
    active_kid: String,
    keys: Arc<HashMap<String, (EncodingKey, DecodingKey)>>,
}

impl TokenKeys {
    pub fn derive(ring: &KeyRing) -> Self {
        let keys = ring
            .keys()
            .iter()
            .map(|k| {
                let hk = Hkdf::<Sha256>::new(Some(b"latchkey"), k.bytes());
                let mut okm = [0u8; 32];
                hk.expand(b"api-token-signing-v1", &mut okm)
                    .expect("32 bytes is a valid HKDF length");
                (
                    k.id().to_string(),
                    (
                        EncodingKey::from_secret(&okm),
                        DecodingKey::from_secret(&okm),
                    ),
                )
            })
            .collect();
        Self {
            active_kid: ring.active().id().to_string(),
            keys: Arc::new(keys),
        }
    }

    pub fn issue(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.active_kid.clone());
        let (enc, _) = &self.keys[&self.active_kid];
        jsonwebtoken::encode(&header, claims, enc).expect("HS256 signing cannot fail")
    }

    pub fn new_claims(
        org: OrgId,
        client: ApiClientId,
        role: Role,
        generation: i32,
        lifetime_secs: i64,
    ) -> Claims {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: client.0,
            org: org.0,
            role,
            generation,
            iat: now,
            exp: now + lifetime_secs,
            jti: Uuid::new_v4(),
        }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let bad = || {
            ApiError::unauthorized(
                "The access token is not valid. Request a new one at /api/v1/auth/token.",
            )
        };
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad())?;
        if header.alg != Algorithm::HS256 {
            return Err(bad());
        }
        let (_, dec) = header
            .kid
            .as_deref()
            .and_then(|k| self.keys.get(k))
            .ok_or_else(bad)?;
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[AUDIENCE]);
        v.leeway = 5;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        match jsonwebtoken::decode::<Claims>(token, dec, &v) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(ApiError::unauthorized(
                    "The access token has expired. Request a new one at /api/v1/auth/token.",
                ))
            }
            Err(_) => Err(bad()),
        }
    }
}

/// An authenticated API caller.
#[derive(Clone, Debug)]
pub struct ApiPrincipal {
    pub org_id: OrgId,
    pub client_id: ApiClientId,
    pub role: Role,
}

impl ApiPrincipal {
    pub fn require(&self, allowed: bool) -> Result<(), ApiError> {
        if allowed {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "The {} role may not do this.",
                self.role.label()
            )))
        }
    }
}

impl FromRequestParts<AppState> for ApiPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The route's role gate (routes.rs) has already authenticated this request.
        if let Some(known) = parts.extensions.get::<ApiPrincipal>() {
            return Ok(known.clone());
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| {
                ApiError::unauthorized("Send an access token: Authorization: Bearer <token>.")
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("Use the Bearer scheme: Authorization: Bearer <token>.")
            })?;
        let claims = state.tokens.verify(token.trim())?;
        let org = OrgId(claims.org);
        let client = ApiClientId(claims.sub);
        let current = latchkey_store::api_clients::token_state(&state.store, org, client).await?;
        match current {
            Some(s) if !s.revoked && s.generation == claims.generation => {
                let span = tracing::Span::current();
                span.record("org_id", tracing::field::display(org));
                span.record("api_client_id", tracing::field::display(client));
                // The role in the row wins over the token's, so a demotion applies at once.
                Ok(ApiPrincipal {
                    org_id: org,
                    client_id: client,
                    role: s.role,
                })
            }
            _ => Err(ApiError::unauthorized(
                "This API client has been revoked or its secret rotated.",
            )),
        }
    }
}
