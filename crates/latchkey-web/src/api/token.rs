//! `POST /api/v1/auth/token`: OAuth2 client credentials (RFC 6749 §4.4). Accepts the
//! credentials in a form or JSON body, or in HTTP Basic auth; errors use OAuth2's own
//! body shape (`{"error", "error_description"}`), as clients of this endpoint expect.

use crate::auth::token::TokenKeys;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use latchkey_core::{ApiClientId, OrgId};
use latchkey_crypto::{constant_time_eq, sha256_hex};
use latchkey_store::api_clients;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Deserialize, Default)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"latchkey\""),
        );
    }
    resp
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

pub async fn issue(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parsed: Result<TokenRequest, String> = if content_type.starts_with("application/json") {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else if content_type.starts_with("application/x-www-form-urlencoded") || body.is_empty() {
        serde_urlencoded::from_bytes(&body).map_err(|e| e.to_string())
    } else {
        Err("send the request as application/x-www-form-urlencoded or application/json".into())
    };
    let mut req = match parsed {
        Ok(r) => r,
        Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &why),
    };
    if let Some((id, secret)) = basic_credentials(&headers) {
        req.client_id.get_or_insert(id);
        req.client_secret.get_or_insert(secret);
    }
    match req.grant_type.as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
    }
    let (Some(client_id), Some(secret)) = (req.client_id, req.client_secret) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id and client_secret are required",
        );
    };
    // Postgres text cannot hold NUL: such an id names no client, and must not reach a query.
    if client_id.contains('\0') {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id may not contain NUL characters",
        );
    }
    let creds = match api_clients::find_credentials(&state.store, &client_id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "token endpoint could not read client");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "try again later",
            );
        }
    };
    let presented = sha256_hex(secret.as_bytes());
    let valid = creds.as_ref().is_some_and(|c| {
        !c.revoked && constant_time_eq(c.secret_hash.as_bytes(), presented.as_bytes())
    });
    let Some(c) = creds.filter(|_| valid) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client, wrong secret, or revoked client",
        );
    };
    let lifetime = state.config.api_token_lifetime.as_secs();
    let claims = TokenKeys::new_claims(
        OrgId(c.org_id),
        ApiClientId(c.id),
        c.role,
        c.generation,
        lifetime as i64,
    );
    tracing::info!(org_id = %c.org_id, api_client_id = %c.id, "API token issued");
    let mut resp = Json(TokenResponse {
        access_token: state.tokens.issue(&claims),
        token_type: "Bearer",
        expires_in: lifetime,
    })
    .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
