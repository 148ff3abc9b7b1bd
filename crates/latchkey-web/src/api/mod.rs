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
pub mod sync;
pub mod token;
pub mod users;

use crate::error::{ApiError, FieldError};
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use latchkey_store::page::{Cursor, clamp_limit};
use serde::Deserialize;

/// A JSON body whose rejections are API errors (400 for malformed JSON, 422 for fields).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => ApiError::validation(vec![FieldError {
                field: "body".into(),
                message: e.body_text(),
            }]),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON with Content-Type: application/json.",
            ),
            other => {
                ApiError::bad_request(format!("The body is not valid JSON: {}", other.body_text()))
            }
        }
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
