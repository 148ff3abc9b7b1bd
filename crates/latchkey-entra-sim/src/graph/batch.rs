//! `POST /$batch`: up to 20 requests, each dispatched through the router and throttled on its own.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderValue, Method, Request, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use super::read::ok;
use super::{GReq, GResult, GraphError, InBatch};
use crate::server::State;

const MAX_REQUESTS: usize = 20;

pub(crate) async fn batch(st: &Arc<State>, r: &GReq) -> GResult {
    if r.method != Method::POST {
        return Err(GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadRequest",
            "Only POST is supported on $batch.",
        ));
    }
    let body = r.json_body()?;
    let Some(requests) = body.get("requests").and_then(Value::as_array) else {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Invalid batch payload format.",
        ));
    };
    if requests.len() > MAX_REQUESTS {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("The number of batch requests exceeds the limit of {MAX_REQUESTS}."),
        ));
    }
    let mut ids = Vec::new();
    for req in requests {
        let id = req.get("id").map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        });
        match id {
            Some(id) if !ids.contains(&id) => ids.push(id),
            Some(id) => {
                return Err(GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("Batch request ids must be unique: '{id}'."),
                ));
            }
            None => {
                return Err(GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Each batch request must have an 'id'.",
                ));
            }
        }
    }
    let Some(router) = st.batch_router.get().cloned() else {
        return Err(GraphError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
            "Batch router not ready.",
        ));
    };
    let mut responses = Answers::default();
    let mut statuses: Vec<(String, u64)> = Vec::new();
    for (req, id) in requests.iter().zip(ids) {
        // Requests run in order; one whose dependency failed is answered 424, as Graph does.
        let failed_dep = req
            .get("dependsOn")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|dep| statuses.iter().any(|(i, s)| i == dep && *s >= 400));
        if let Some(dep) = failed_dep {
            responses.push(json!({"id": id, "status": 424, "body": {"error": {"code": "FailedDependency", "message": format!("Request failed because the request it depends on ('{dep}') failed.")}}}));
            statuses.push((id, 424));
            continue;
        }
        let method = req
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET")
            .to_ascii_uppercase();
        let url = req.get("url").and_then(Value::as_str).unwrap_or("");
        if url.starts_with("http://") || url.starts_with("https://") {
            responses.push(json!({"id": id, "status": 400, "body": {"error": {"code": "BadRequest", "message": "Batch request URLs must be relative to the version root."}}}));
            statuses.push((id, 400));
            continue;
        }
        let uri = format!("/{}/{}", r.ver.as_str(), url.trim_start_matches('/'));
        let mut b = Request::builder().method(method.as_str()).uri(uri);
        for name in [http::header::HOST, http::header::AUTHORIZATION] {
            if let Some(v) = r.headers.get(&name) {
                b = b.header(name, v);
            }
        }
        if let Some(Value::Object(h)) = req.get("headers") {
            for (k, v) in h {
                if let (Some(v), Ok(name)) =
                    (v.as_str(), http::HeaderName::from_bytes(k.as_bytes()))
                    && let Ok(v) = HeaderValue::from_str(v)
                {
                    b = b.header(name, v);
                }
            }
        }
        let body = match req.get("body") {
            Some(v) if !v.is_null() => {
                if req
                    .get("headers")
                    .and_then(|h| h.get("Content-Type").or_else(|| h.get("content-type")))
                    .is_none()
                {
                    b = b.header(http::header::CONTENT_TYPE, "application/json");
                }
                Body::from(v.to_string())
            }
            _ => Body::empty(),
        };
        let inner = match b.extension(InBatch).body(body) {
            Ok(x) => x,
            Err(e) => {
                responses.push(json!({"id": id, "status": 400, "body": {"error": {"code": "BadRequest", "message": format!("Invalid request: {e}")}}}));
                statuses.push((id, 400));
                continue;
            }
        };
        let resp = match router.clone().oneshot(inner).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status().as_u16();
        let mut headers = Map::new();
        for name in ["content-type", "retry-after", "location"] {
            if let Some(v) = resp.headers().get(name).and_then(|v| v.to_str().ok()) {
                let key = match name {
                    "content-type" => "Content-Type",
                    "retry-after" => "Retry-After",
                    _ => "Location",
                };
                headers.insert(key.to_string(), json!(v));
            }
        }
        let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024)
            .await
            .unwrap_or_default();
        statuses.push((id.clone(), status as u64));
        // A JSON body goes into the envelope as it is (as text: a page of 999 groups with
        // their members parsed into values would take hundreds of MB); anything else as a string.
        let body = (!bytes.is_empty()).then(|| {
            String::from_utf8(bytes.to_vec())
                .ok()
                .and_then(|text| RawValue::from_string(text).ok())
                .unwrap_or_else(|| {
                    serde_json::value::to_raw_value(&String::from_utf8_lossy(&bytes))
                        .unwrap_or_default()
                })
        });
        drop(bytes);
        responses.push(Answer {
            id: &id,
            status,
            headers: &headers,
            body,
        });
    }
    ok(serde_json::to_vec(&Envelope {
        responses: &responses.0,
    })
    .unwrap_or_default())
}

/// One answer of the envelope.
#[derive(Serialize)]
struct Answer<'a> {
    id: &'a str,
    status: u16,
    headers: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Box<RawValue>>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    responses: &'a [Box<RawValue>],
}

/// The envelope's answers, each already JSON text.
#[derive(Default)]
struct Answers(Vec<Box<RawValue>>);

impl Answers {
    /// An answer: an [`Answer`], or a `json!` error answer.
    fn push(&mut self, answer: impl Serialize) {
        self.0.extend(serde_json::value::to_raw_value(&answer).ok());
    }
}
