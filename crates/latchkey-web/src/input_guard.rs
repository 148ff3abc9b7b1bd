//! Request-wide guards. Input Postgres cannot store (a NUL character, `%00`, in the path or
//! the query string) is refused before any handler sees it: a clear 400, not a failed query.
//! API errors made outside the handlers (the body size limit, the timeout, a caught panic)
//! keep the API's JSON error shape.

use crate::error::{ApiError, WebError};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

pub async fn reject_nul(req: Request, next: Next) -> Response {
    let uri = req.uri();
    // `%00` is the only way to write NUL in a URI (a raw one is not a valid URI at all).
    let nul = uri.path().contains("%00") || uri.query().is_some_and(|q| q.contains("%00"));
    if nul {
        let message = "The address contains a NUL character (%00), which Latchkey does not accept.";
        return if is_api(uri.path()) {
            ApiError::bad_request(message).into_response()
        } else {
            WebError::BadRequest(message.into()).into_response()
        };
    }
    next.run(req).await
}

pub async fn api_error_shape(req: Request, next: Next) -> Response {
    let api = is_api(req.uri().path());
    let resp = next.run(req).await;
    let status = resp.status();
    if !api || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "The body is too large (at most 1 MiB).".to_string(),
        ),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => (
            "unavailable",
            "Latchkey could not answer in time; try again.".to_string(),
        ),
        s if s.is_server_error() => (
            "internal",
            "Latchkey could not finish this request.".to_string(),
        ),
        s => (
            "bad_request",
            format!(
                "The request was refused: {}.",
                s.canonical_reason().unwrap_or("bad request")
            ),
        ),
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = resp.headers().get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}
