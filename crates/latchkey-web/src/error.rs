//! Errors of the web layer, mapped to HTTP in exactly one place each: [`WebError`] for
//! pages (a styled error page or a redirect), [`ApiError`] for the JSON API
//! (`{"error": {"code", "message"}}`). Internal causes are logged, never shown.

use crate::views::ErrorPage;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_store::StoreError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("sign-in required")]
    SignInRequired { next: String },
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("CSRF check failed")]
    Csrf,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("too many requests")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => WebError::NotFound,
            StoreError::InvalidCursor => {
                WebError::BadRequest("That page link is not valid any more.".into())
            }
            other => WebError::Internal(other.into()),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            WebError::SignInRequired { next } => {
                let target = format!("/login?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
                return Redirect::to(&target).into_response();
            }
            WebError::Forbidden(why) => (StatusCode::FORBIDDEN, "Not allowed", why.to_string()),
            WebError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or it belongs to another organization.".to_string(),
            ),
            WebError::Csrf => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form has expired or did not come from Latchkey. Go back, reload the page and try again.".to_string(),
            ),
            WebError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Something is not right", m.clone()),
            WebError::TooManyRequests { message, .. } => (StatusCode::TOO_MANY_REQUESTS, "Slow down", message.clone()),
            WebError::Internal(cause) => {
                tracing::error!(error = ?cause, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Latchkey could not finish this request. Try again; if it keeps happening, tell your administrator the time it happened.".to_string(),
                )
            }
        };
        let mut resp = (status, ErrorPage { title, message }).into_response();
        if let WebError::TooManyRequests {
            retry_after_secs, ..
        } = self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        resp
    }
}

/// One field's problem in a rejected request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: vec![],
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// Also what another organization's objects look like: never 403, so ids leak nothing.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "No such object.")
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn validation(fields: Vec<FieldError>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: "The request has invalid fields; nothing was saved.".into(),
            fields,
        }
    }
    pub fn internal(cause: impl std::fmt::Debug) -> Self {
        tracing::error!(error = ?cause, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Latchkey could not finish this request.",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::InvalidCursor => ApiError::bad_request("The cursor is not valid."),
            StoreError::Conflict { field } => ApiError::validation(vec![FieldError {
                field: field.to_string(),
                message: format!("this {field} is already taken"),
            }]),
            other => ApiError::internal(other),
        }
    }
}

impl From<latchkey_access::AccessError> for ApiError {
    fn from(e: latchkey_access::AccessError) -> Self {
        use latchkey_access::AccessError as A;
        match e {
            A::NotFound => ApiError::not_found(),
            A::Forbidden(m) => ApiError::forbidden(m),
            A::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            A::Invalid(problems) => ApiError::validation(
                problems
                    .into_iter()
                    .map(|p| FieldError {
                        field: p.field,
                        message: p.message,
                    })
                    .collect(),
            ),
            A::Store(e) => e.into(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    fields: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                fields: &self.fields,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
