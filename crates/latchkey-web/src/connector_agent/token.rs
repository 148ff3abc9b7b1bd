//! Access tokens of self-hosted connectors: short-lived HS256 JWTs for one connector, signed
//! with a key derived from the master key ring under its own HKDF label and audience, so an
//! API client's token is never a connector's nor the other way round. Every request also
//! checks that the credential still works (rotation's grace period, a disabled connector).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use hkdf::Hkdf;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use latchkey_core::OrgId;
use latchkey_crypto::KeyRing;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

const ISSUER: &str = "latchkey";
const AUDIENCE: &str = "latchkey-connector-agent";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentClaims {
    pub iss: String,
    pub aud: String,
    /// The credential's id.
    pub sub: Uuid,
    pub org: Uuid,
    pub connector: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

fn key_for(ring: &KeyRing, kid: &str) -> Option<[u8; 32]> {
    let k = ring.keys().iter().find(|k| k.id() == kid)?;
    let hk = Hkdf::<Sha256>::new(Some(b"latchkey"), k.bytes());
    let mut okm = [0u8; 32];
    hk.expand(b"connector-agent-token-signing-v1", &mut okm)
        .expect("32 bytes is a valid HKDF length");
    Some(okm)
}

/// Issues a token for credential `credential` of `connector`, valid `lifetime_secs`.
pub fn issue(
    ring: &KeyRing,
    org: OrgId,
    connector: Uuid,
    credential: Uuid,
    lifetime_secs: i64,
) -> String {
    let kid = ring.active().id().to_string();
    let key = key_for(ring, &kid).expect("the active key is in the ring");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = AgentClaims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: credential,
        org: org.0,
        connector,
        iat: now,
        exp: now + lifetime_secs,
        jti: Uuid::new_v4(),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid);
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&key))
        .expect("HS256 signing cannot fail")
}

fn verify(ring: &KeyRing, token: &str) -> Result<AgentClaims, ApiError> {
    let bad = || {
        ApiError::unauthorized(
            "The connector's access token is not valid. Request a new one at /api/v1/connector-agent/token.",
        )
    };
    let header = jsonwebtoken::decode_header(token).map_err(|_| bad())?;
    if header.alg != Algorithm::HS256 {
        return Err(bad());
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|k| key_for(ring, k))
        .ok_or_else(bad)?;
    let mut v = Validation::new(Algorithm::HS256);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.leeway = 5;
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    match jsonwebtoken::decode::<AgentClaims>(token, &DecodingKey::from_secret(&key), &v) {
        Ok(data) => Ok(data.claims),
        Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
            Err(ApiError::unauthorized(
                "The connector's access token has expired. Request a new one at /api/v1/connector-agent/token.",
            ))
        }
        Err(_) => Err(bad()),
    }
}

/// An authenticated self-hosted connector: it may reach its own connector's tasks only.
#[derive(Clone, Copy, Debug)]
pub struct AgentPrincipal {
    pub org: OrgId,
    pub connector: Uuid,
    pub credential: Uuid,
}

impl FromRequestParts<AppState> for AgentPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
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
        let claims = verify(&state.keys, token.trim())?;
        let org = OrgId(claims.org);
        let mut tx = state.store.org_tx(org).await?;
        let works = latchkey_store::connector_agents::credential_works(
            &mut tx,
            claims.connector,
            claims.sub,
        )
        .await?;
        tx.commit().await?;
        if !works {
            return Err(ApiError::unauthorized(
                "This connector credential was replaced and its grace period is over, or the connector was disabled. Put the current client ID and secret in the connector's environment.",
            ));
        }
        let span = tracing::Span::current();
        span.record("org_id", tracing::field::display(org));
        Ok(AgentPrincipal {
            org,
            connector: claims.connector,
            credential: claims.sub,
        })
    }
}
