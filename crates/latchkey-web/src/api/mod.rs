//! The JSON REST API under `/api/v1`. Conventions every endpoint follows:
//! errors are `{"error": {"code", "message"}}` with the right status; lists take `limit`
//! and `cursor` and answer `{"items": [...], "next_cursor": ...}`; another organization's
//! objects are 404, never 403.

pub mod access_requests;
pub mod api_clients;
pub mod audit;
pub mod connector_agent;
pub mod connectors;
pub mod jobs;
pub mod me;
pub mod openapi;
pub mod policies;
pub mod provisioning;
pub mod review_campaigns;
pub mod review_templates;
pub mod sync;
pub mod token;
pub mod users;

use crate::error::{ApiError, FieldError};
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header};
use latchkey_store::page::{Cursor, clamp_limit};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A JSON body whose rejections are API errors (400 for malformed JSON, 415 without a JSON
/// content type, 422 for fields, and 422 for a NUL character anywhere in it: Postgres text
/// cannot hold one, so it must never get as far as a query).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(req.headers()) {
            return Err(not_json());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let code = if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "bad_request"
            };
            ApiError::new(
                e.status(),
                code,
                format!("The body could not be read: {}", e.body_text()),
            )
        })?;
        refuse_nul(&bytes)?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(ApiJson(value))
    }
}

/// A JSON text with an escaped NUL (`\u0000`) anywhere: 422. Postgres stores neither text
/// nor jsonb with NUL in it, so such a body must never get as far as a query.
pub(crate) fn refuse_nul(json: &[u8]) -> Result<(), ApiError> {
    if json.windows(6).any(|w| w == b"\\u0000") {
        return Err(ApiError::validation(vec![FieldError {
            field: "body".into(),
            message: "text may not contain NUL characters (\\u0000)".into(),
        }]));
    }
    Ok(())
}

/// An optional JSON body: none at all (or only whitespace) means the defaults; otherwise it is
/// read like [`ApiJson`]'s (422 for a NUL character or for fields).
pub(crate) fn body_or_default<T: DeserializeOwned + Default>(raw: &[u8]) -> Result<T, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    refuse_nul(raw)?;
    serde_json::from_slice(raw).map_err(|e| {
        ApiError::validation(vec![FieldError {
            field: "body".into(),
            message: e.to_string(),
        }])
    })
}

/// `application/json` or `application/<something>+json`, as axum's `Json` accepts.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn not_json() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "Send the body as JSON with Content-Type: application/json.",
    )
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => ApiError::validation(vec![FieldError {
                field: "body".into(),
                message: e.body_text(),
            }]),
            JsonRejection::MissingJsonContentType(_) => not_json(),
            other => {
                ApiError::bad_request(format!("The body is not valid JSON: {}", other.body_text()))
            }
        }
    }
}

/// A query string whose rejections are API errors (400 naming the parameter's problem).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(format!("The query string is not valid: {}", r.body_text()))
    }
}

/// Path parameters whose rejections are API errors (400 naming the parameter's problem).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(format!("The path is not valid: {}", r.body_text()))
    }
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn parse(&self) -> Result<(Option<Cursor>, i64), ApiError> {
        let cursor = self.cursor.as_deref().map(Cursor::parse).transpose()?;
        Ok((cursor, clamp_limit(self.limit)))
    }
}

/// Unknown `/api/...` paths answer in the API's own error shape.
pub async fn not_found() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        "No such endpoint.",
    )
}

/// A known `/api/...` path with a method it does not take: 405 in the API's error shape,
/// with the `Allow` header axum sets.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This endpoint does not take that method; see /api/v1/openapi.json.",
    )
}
