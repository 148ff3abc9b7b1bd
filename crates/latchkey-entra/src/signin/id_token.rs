//! Validation of an id_token from the identity platform, and the identity it proves.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use uuid::Uuid;

use super::SignInError;
use super::jwks::KeyCache;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;

/// Why an id_token was not accepted. Messages name the check, not the token's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the id_token is not a well-formed signed token.")]
    Malformed,
    #[error("the id_token uses the {0} algorithm; only RS256 is accepted.")]
    Algorithm(String),
    #[error("the id_token is signed with a key Microsoft does not publish.")]
    UnknownKey,
    #[error("the id_token's signature is not valid.")]
    Signature,
    #[error("the id_token has expired.")]
    Expired,
    #[error("the id_token is not valid yet.")]
    NotYetValid,
    #[error("the id_token was issued for another application.")]
    Audience,
    #[error("the id_token was not issued by Microsoft for its own tenant.")]
    Issuer,
    #[error("the id_token does not answer this browser's sign-in (nonce).")]
    Nonce,
    #[error("the id_token lacks the {0} claim.")]
    MissingClaim(String),
}

/// A person Microsoft vouched for: their tenant and object id (GUIDs, lower case), and what
/// they are called. `username` (preferred_username) and `email` are display data: mutable by
/// the tenant, never used to decide who someone is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub tenant_id: String,
    pub object_id: String,
    pub username: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    tid: Option<String>,
    oid: Option<String>,
    nonce: Option<String>,
    preferred_username: Option<String>,
    email: Option<String>,
    name: Option<String>,
}

fn guid(v: Option<String>, claim: &str) -> Result<String, Rejected> {
    let v = v.ok_or_else(|| Rejected::MissingClaim(claim.into()))?;
    Uuid::parse_str(&v)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| Rejected::MissingClaim(claim.into()))
}

pub(crate) async fn validate(
    token: &str,
    keys: &KeyCache,
    client_id: &str,
    authority: &str,
    nonce: &str,
) -> Result<VerifiedIdentity, SignInError> {
    // The algorithm is decided here, never by the token: `none` and HS256 (e.g. keyed with our
    // public key) stop before any key is looked at.
    let claimed = alg_name(token);
    if claimed != "RS256" {
        return Err(Rejected::Algorithm(claimed).into());
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Rejected::Malformed)?;
    if header.alg != Algorithm::RS256 {
        return Err(Rejected::Algorithm(format!("{:?}", header.alg)).into());
    }
    let kid = header.kid.ok_or(Rejected::UnknownKey)?;
    let key = keys.key(&kid).await?;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[client_id]);
    v.leeway = LEEWAY_SECS;
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "aud", "iss"]);
    let claims = jsonwebtoken::decode::<Claims>(token, &key, &v)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => Rejected::Signature,
            ErrorKind::ExpiredSignature => Rejected::Expired,
            ErrorKind::ImmatureSignature => Rejected::NotYetValid,
            ErrorKind::InvalidAudience => Rejected::Audience,
            ErrorKind::InvalidAlgorithm => Rejected::Algorithm("RS256 with a non-RSA key".into()),
            ErrorKind::MissingRequiredClaim(c) => Rejected::MissingClaim(c.clone()),
            _ => Rejected::Malformed,
        })?
        .claims;
    let tid = guid(claims.tid, "tid")?;
    // Multi-tenant: the issuer is fixed per tenant, so it is checked against the token's own tid.
    if claims.iss != format!("{authority}/{tid}/v2.0") {
        return Err(Rejected::Issuer.into());
    }
    let got = claims.nonce.ok_or(Rejected::Nonce)?;
    if nonce.is_empty() || !latchkey_crypto::constant_time_eq(got.as_bytes(), nonce.as_bytes()) {
        return Err(Rejected::Nonce.into());
    }
    let oid = guid(claims.oid, "oid")?;
    Ok(VerifiedIdentity {
        tenant_id: tid,
        object_id: oid,
        username: claims.preferred_username,
        email: claims.email,
        name: claims.name,
    })
}

/// The `alg` a token claims, for the message (decode_header refuses names it does not know).
fn alg_name(token: &str) -> String {
    use base64::Engine;
    token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("alg").and_then(|a| a.as_str()).map(str::to_string))
        .map(|a| {
            a.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(16)
                .collect()
        })
        .unwrap_or_else(|| "unknown".into())
}
