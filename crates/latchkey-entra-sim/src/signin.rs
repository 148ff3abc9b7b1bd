//! Who signs in at `authorize` (the sign-in page, `login_hint`), and the test-only ways to
//! make id_tokens lie: `/_sim/sign` signs arbitrary claims, `/_sim/id-token-tamper` alters the
//! next id_token the token endpoint issues (claims, algorithm, signature).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State as AxState;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::SimError;
use crate::server::State;

type St = AxState<Arc<State>>;

/// How a test-made token is signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignAlg {
    /// The tenant's real RS256 key (a valid signature).
    #[default]
    Rs256,
    /// `alg: none` with an empty signature.
    None,
    /// HS256 keyed with the tenant's *public* key (PEM), the classic algorithm-confusion attack.
    Hs256PublicKey,
    /// RS256 header and kid, but the signature's bytes are altered.
    BadSignature,
    /// A valid RS256 signature, but the header names a key the JWKS does not publish.
    UnknownKid,
}

/// What to do to the next id_token the token endpoint issues.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdTokenTamper {
    /// Claims to set (a `null` value removes the claim).
    #[serde(default)]
    pub claims: Map<String, Value>,
    #[serde(default)]
    pub alg: SignAlg,
}

/// Signs `claims` as `alg` says, with this process's tenant key.
pub(crate) fn sign_as(st: &State, claims: &Value, alg: SignAlg) -> Result<String, SimError> {
    match alg {
        SignAlg::Rs256 => st.signer.sign(claims),
        SignAlg::BadSignature => {
            let t = st.signer.sign(claims)?;
            let (msg, sig) = t.rsplit_once('.').unwrap_or((&t, ""));
            let mut raw = B64.decode(sig).unwrap_or_default();
            if let Some(b) = raw.first_mut() {
                *b ^= 0xff;
            }
            Ok(format!("{msg}.{}", B64.encode(raw)))
        }
        SignAlg::UnknownKid => {
            let t = st.signer.sign(claims)?;
            let mut parts = t.splitn(2, '.');
            let (_, rest) = (parts.next(), parts.next().unwrap_or_default());
            let header = json!({"typ": "JWT", "alg": "RS256", "kid": "not-a-published-key"});
            // The signature covers the original header; a relying party that looked the key up
            // would fail on the signature too, but it must not get that far.
            Ok(format!("{}.{rest}", B64.encode(header.to_string())))
        }
        SignAlg::None => {
            let header = json!({"typ": "JWT", "alg": "none"});
            Ok(format!(
                "{}.{}.",
                B64.encode(header.to_string()),
                B64.encode(claims.to_string())
            ))
        }
        SignAlg::Hs256PublicKey => {
            let header = json!({"typ": "JWT", "alg": "HS256", "kid": st.signer.kid});
            let msg = format!(
                "{}.{}",
                B64.encode(header.to_string()),
                B64.encode(claims.to_string())
            );
            let key = aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                st.signer.public_pem().as_bytes(),
            );
            let tag = aws_lc_rs::hmac::sign(&key, msg.as_bytes());
            Ok(format!("{msg}.{}", B64.encode(tag.as_ref())))
        }
    }
}

/// Applies and clears the pending tamper, if any; returns how to sign.
pub(crate) fn take_tamper(st: &State, claims: &mut Value) -> SignAlg {
    let Some(t) = st.tamper().take() else {
        return SignAlg::Rs256;
    };
    if let Some(obj) = claims.as_object_mut() {
        for (k, v) in t.claims {
            if v.is_null() {
                obj.remove(&k);
            } else {
                obj.insert(k, v);
            }
        }
    }
    t.alg
}

/// The user `authorize` signs in: `login_hint` names one; `prompt=select_account`/`login`
/// without a hint shows the sign-in page; otherwise the tenant's admin (as before).
/// `Err` is the page to show instead of redirecting.
pub(crate) fn pick_user(
    st: &State,
    path: &str,
    q: &HashMap<String, String>,
) -> Result<u32, Box<Response>> {
    let hint = q
        .get("login_hint")
        .map(|h| h.trim())
        .filter(|h| !h.is_empty());
    let Some(hint) = hint else {
        let prompt = q.get("prompt").map(String::as_str).unwrap_or("");
        if matches!(prompt, "select_account" | "login") {
            return Err(Box::new(page(path, q, None)));
        }
        return Ok(st.admin_user);
    };
    let d = st.read();
    match d.find_user(hint) {
        Some(i) if !d.user(i).account_enabled => Err(Box::new(page(
            path,
            q,
            Some("AADSTS50057: The user account is disabled."),
        ))),
        Some(i) => Ok(i as u32),
        None => Err(Box::new(page(
            path,
            q,
            Some("AADSTS50034: This username may be incorrect. Make sure you typed it correctly."),
        ))),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Microsoft's "Sign in" page, reduced to what a test needs: a username field (`i0116`) and
/// Next (`idSIButton9`); the form goes back to `authorize` with `login_hint`.
fn page(path: &str, q: &HashMap<String, String>, error: Option<&str>) -> Response {
    let mut hidden = String::new();
    let mut keys: Vec<&String> = q.keys().filter(|k| *k != "login_hint").collect();
    keys.sort();
    for k in keys {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(&q[k])
        ));
    }
    let err = error
        .map(|e| format!("<p id=\"usernameError\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in to your account</title></head><body><main><h1>Sign in</h1>{err}<form method=\"get\" action=\"{}\">{hidden}<label for=\"i0116\">Email, phone, or Skype</label> <input type=\"email\" name=\"login_hint\" id=\"i0116\" autocomplete=\"username\" required> <input type=\"submit\" id=\"idSIButton9\" value=\"Next\"></form></main></body></html>",
        esc(path)
    );
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (
        status,
        [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

pub(crate) fn routes() -> Router<Arc<State>> {
    Router::new().route("/_sim/sign", post(sign)).route(
        "/_sim/id-token-tamper",
        put(put_tamper).delete(clear_tamper),
    )
}

#[derive(Deserialize)]
struct SignRequest {
    claims: Value,
    #[serde(default)]
    alg: SignAlg,
}

async fn sign(st: St, Json(r): Json<SignRequest>) -> Response {
    match sign_as(&st, &r.claims, r.alg) {
        Ok(t) => Json(json!({"token": t})).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn put_tamper(st: St, Json(t): Json<IdTokenTamper>) -> StatusCode {
    *st.tamper() = Some(t);
    StatusCode::NO_CONTENT
}

async fn clear_tamper(st: St) -> StatusCode {
    *st.tamper() = None;
    StatusCode::NO_CONTENT
}
