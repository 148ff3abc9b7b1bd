//! Operations endpoints: liveness, readiness, metrics.

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

/// The process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// The database answers and every migration this binary knows is applied.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.migrations_current().await {
        Ok(true) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "not_ready", "reason": "database migrations are not current; run `latchkey migrate`"}),
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not_ready", "reason": "database unreachable"})),
            )
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = state.metrics.encode();
    // The registry ends with "# EOF"; drop it so more families can follow, then re-add it.
    if let Some(stripped) = out.strip_suffix("# EOF\n") {
        out = stripped.to_string();
    }
    let (size, idle) = state.store.pool_stats();
    out.push_str("# HELP latchkey_db_pool_connections Database pool connections by state.\n");
    out.push_str("# TYPE latchkey_db_pool_connections gauge\n");
    out.push_str(&format!(
        "latchkey_db_pool_connections{{state=\"idle\"}} {idle}\n"
    ));
    out.push_str(&format!(
        "latchkey_db_pool_connections{{state=\"in_use\"}} {}\n",
        size as usize - idle.min(size as usize)
    ));
    for source in &state.extra_metrics {
        out.push_str(&source(state.store.clone()).await);
    }
    out.push_str("# EOF\n");
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
}
