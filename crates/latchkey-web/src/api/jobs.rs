//! `/api/v1/jobs/{id}` and its logs: any job of the organization (connection tests, syncs,
//! provisioning), for status polling and live tails.

use super::ApiQuery;
use crate::auth::ApiPrincipal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use latchkey_store::jobs::{self as queue, Job, JobId, JobLog};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

fn parse_id(raw: &str) -> Result<JobId, ApiError> {
    Uuid::parse_str(raw)
        .map(JobId)
        .map_err(|_| ApiError::not_found())
}

pub async fn get(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let job = queue::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(job))
}

#[derive(Deserialize)]
pub struct LogQuery {
    after: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
pub struct LogPage {
    pub items: Vec<JobLog>,
    /// Pass as `after` to get only newer lines (the same value when there were none).
    pub next_cursor: String,
}

pub async fn logs(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Json<LogPage>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(
        read_logs(&state, who.org_id, id, q.after.as_deref(), q.limit).await?,
    ))
}

/// Shared with the pages' live log.
pub async fn read_logs(
    state: &AppState,
    org: latchkey_core::OrgId,
    id: JobId,
    after: Option<&str>,
    limit: Option<i64>,
) -> Result<LogPage, ApiError> {
    let after = match after.filter(|a| !a.is_empty()) {
        Some(a) => Some(a.parse::<i64>().map_err(|_| {
            ApiError::bad_request("`after` must be a cursor from an earlier answer")
        })?),
        None => None,
    };
    let mut tx = state.store.org_tx(org).await?;
    queue::get(&mut tx, id).await?; // 404 for another organization's job
    let items = queue::logs(&mut tx, id, after, limit).await?;
    tx.commit().await?;
    let next_cursor = items
        .last()
        .map(|l| l.id)
        .or(after)
        .unwrap_or(0)
        .to_string();
    Ok(LogPage { items, next_cursor })
}
