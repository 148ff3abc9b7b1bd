//! Syncs and the synced access model of a connector: start a sync, read runs, the summary, and
//! the resources, entitlements and grants a sync stored.

use super::ApiQuery;
use super::{ApiJson, PageQuery};
use crate::auth::ApiPrincipal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_core::OrgId;
use latchkey_entra::sync::{SyncKind, request_sync};
use latchkey_store::jobs::{self as queue, Job, JobId, JobStatus};
use latchkey_store::resources::{self, GrantFilter, ResourceFilter, Summary};
use latchkey_store::sync_runs::{self, SyncRun};
use latchkey_store::{OrgTx, Page, StoreError, connectors};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found())
}

fn parse_filter_id(field: &str, raw: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    raw.filter(|s| !s.is_empty())
        .map(|s| {
            Uuid::parse_str(s).map_err(|_| {
                ApiError::bad_request(format!("`{field}` must be an id from this API."))
            })
        })
        .transpose()
}

/// One sync as the API shows it (the id is the sync job's id).
#[derive(Debug, Serialize)]
pub struct SyncView {
    pub id: Uuid,
    pub connector_id: Option<Uuid>,
    pub kind: String,
    pub status: &'static str,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub stats: Value,
    pub warnings: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn status_of(job: Option<&Job>, run: Option<&SyncRun>) -> &'static str {
    match (job.map(|j| j.status), run.map(|r| r.status.as_str())) {
        (Some(JobStatus::Queued), _) => "queued",
        (Some(JobStatus::Running), _) => "running",
        (_, Some("succeeded")) => "succeeded",
        (_, Some("cancelled")) => "cancelled",
        (_, Some("failed")) => "failed",
        // A self-hosted connector's upload is complete; the worker is finishing the run.
        (Some(JobStatus::Succeeded), Some("running")) => "running",
        (Some(JobStatus::Succeeded), _) => "succeeded",
        (Some(JobStatus::Cancelled), _) => "cancelled",
        (Some(JobStatus::Failed | JobStatus::Dead), _) => "failed",
        (None, Some(_)) => "running",
        (None, None) => "queued",
    }
}

pub fn view(job: Option<&Job>, run: Option<&SyncRun>) -> Option<SyncView> {
    let id = run.map(|r| r.id).or(job.map(|j| j.id.as_uuid()))?;
    let kind = run.map(|r| r.kind.clone()).unwrap_or_else(|| {
        job.and_then(|j| j.payload.get("kind").and_then(Value::as_str))
            .unwrap_or("full")
            .to_string()
    });
    Some(SyncView {
        id,
        connector_id: run
            .map(|r| r.connector_id)
            .or(job.and_then(|j| j.connector_id)),
        kind,
        status: status_of(job, run),
        started_at: run.map(|r| r.started_at),
        finished_at: run
            .and_then(|r| r.finished_at)
            .or(job.and_then(|j| j.finished_at)),
        stats: run.map(|r| r.stats.clone()).unwrap_or_else(|| json!({})),
        warnings: run.map(|r| r.warnings.clone()).unwrap_or_else(|| json!([])),
        error: run
            .and_then(|r| r.error.clone())
            .or(job.and_then(|j| j.last_error.clone())),
    })
}

async fn optional<T>(r: Result<T, StoreError>) -> Result<Option<T>, ApiError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The sync (job and run) with this id, or `None`.
pub async fn load(tx: &mut OrgTx, id: Uuid) -> Result<Option<SyncView>, ApiError> {
    let job = optional(queue::get(tx, JobId(id)).await)
        .await?
        .filter(|j| j.kind == latchkey_entra::onboarding::SYNC_JOB);
    let run = optional(sync_runs::get(tx, id).await).await?;
    Ok(view(job.as_ref(), run.as_ref()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartSync {
    pub(crate) kind: SyncKind,
}

#[derive(Serialize)]
pub struct Started {
    pub id: Uuid,
}

/// `POST /connectors/{id}/syncs`: 202 with the job id; a sync already queued or running is
/// returned instead of a second one.
pub async fn start(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StartSync>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let c = connectors::get(&mut tx, id).await?;
    who.require(who.role.can_manage_connectors())?;
    if matches!(
        c.status.as_str(),
        "disabled" | "setup_required" | "pending_consent"
    ) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "connector_not_ready",
            format!(
                "This connector is {}: finish its setup (and a successful connection test) before syncing.",
                c.status.replace('_', " ")
            ),
        ));
    }
    let (job, _) = request_sync(&mut tx, id, body.kind, "requested through the API").await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(Started { id: job })))
}

#[derive(Serialize)]
pub struct SyncPage {
    pub items: Vec<SyncView>,
    pub next_cursor: Option<String>,
}

/// The connector's syncs, newest first (a queued one that has not started yet comes first).
pub async fn list_for(
    state: &AppState,
    org: OrgId,
    id: Uuid,
    q: &PageQuery,
) -> Result<SyncPage, ApiError> {
    let (cursor, limit) = q.parse()?;
    let mut tx = state.store.org_tx(org).await?;
    let c = connectors::get(&mut tx, id).await?;
    let page = sync_runs::list(&mut tx, id, cursor, limit).await?;
    let mut items = Vec::new();
    if cursor.is_none()
        && let Some(last) = c.last_sync_job_id
        && !page.items.iter().any(|r| r.id == last)
        && let Some(job) = optional(queue::get(&mut tx, JobId(last)).await).await?
        && !job.status.is_final()
        && let Some(v) = view(Some(&job), None)
    {
        items.push(v);
    }
    for r in &page.items {
        let job = optional(queue::get(&mut tx, JobId(r.id)).await).await?;
        if let Some(v) = view(job.as_ref(), Some(r)) {
            items.push(v);
        }
    }
    tx.commit().await?;
    Ok(SyncPage {
        items,
        next_cursor: page.next_cursor,
    })
}

pub async fn list(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<SyncPage>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(list_for(&state, who.org_id, id, &q).await?))
}

/// `GET /syncs/{id}`.
pub async fn get(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<SyncView>, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let v = load(&mut tx, id).await?.ok_or_else(ApiError::not_found)?;
    tx.commit().await?;
    Ok(Json(v))
}

#[derive(Serialize)]
pub struct SummaryView {
    pub resources: std::collections::BTreeMap<String, i64>,
    pub grants: std::collections::BTreeMap<String, i64>,
}

pub async fn summary(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<SummaryView>, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    connectors::get(&mut tx, id).await?;
    let Summary { resources, grants } = resources::summary(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(SummaryView { resources, grants }))
}

#[derive(Deserialize)]
pub struct ResourceQuery {
    #[serde(rename = "type")]
    rtype: Option<String>,
    q: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct ResourceItem {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub rtype: String,
    pub external_id: String,
    pub display_name: String,
    pub profile: Value,
}

pub async fn resources(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ResourceQuery>,
) -> Result<Json<Page<ResourceItem>>, ApiError> {
    let id = parse_id(&id)?;
    let (cursor, limit) = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .parse()?;
    if let Some(t) = q.rtype.as_deref().filter(|t| !t.is_empty())
        && !resources::RESOURCE_TYPES.contains(&t)
    {
        return Err(ApiError::bad_request(format!(
            "`type` must be one of {}.",
            resources::RESOURCE_TYPES.join(", ")
        )));
    }
    let filter = ResourceFilter {
        types: q
            .rtype
            .clone()
            .filter(|t| !t.is_empty())
            .into_iter()
            .collect(),
        q: q.q.clone(),
        ..Default::default()
    };
    let mut tx = state.store.org_tx(who.org_id).await?;
    connectors::get(&mut tx, id).await?;
    let page = resources::list_resources(&mut tx, id, &filter, cursor, limit).await?;
    tx.commit().await?;
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .map(|r| ResourceItem {
                id: r.id,
                rtype: r.rtype,
                external_id: r.external_id,
                display_name: r.display_name,
                profile: r.profile,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

#[derive(Deserialize)]
pub struct EntitlementQuery {
    resource_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct EntitlementItem {
    pub id: Uuid,
    pub resource_id: Uuid,
    pub slug: String,
    pub display_name: String,
}

pub async fn entitlements(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EntitlementQuery>,
) -> Result<Json<Page<EntitlementItem>>, ApiError> {
    let id = parse_id(&id)?;
    let resource = parse_filter_id("resource_id", q.resource_id.as_deref())?;
    let (cursor, limit) = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .parse()?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    connectors::get(&mut tx, id).await?;
    let page = resources::list_entitlements(&mut tx, id, resource, None, cursor, limit).await?;
    tx.commit().await?;
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .map(|e| EntitlementItem {
                id: e.id,
                resource_id: e.resource_id,
                slug: e.slug,
                display_name: e.display_name,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

#[derive(Deserialize)]
pub struct GrantQuery {
    entitlement_id: Option<String>,
    principal_id: Option<String>,
    include: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct GrantItem {
    pub id: Uuid,
    pub entitlement_id: Uuid,
    pub principal_id: Uuid,
    pub source: String,
}

pub async fn grants(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<GrantQuery>,
) -> Result<Json<Page<GrantItem>>, ApiError> {
    let id = parse_id(&id)?;
    let filter = GrantFilter {
        entitlement: parse_filter_id("entitlement_id", q.entitlement_id.as_deref())?,
        principal: parse_filter_id("principal_id", q.principal_id.as_deref())?,
        include_expanded: match q.include.as_deref() {
            None | Some("") => false,
            Some("expanded") => true,
            Some(_) => return Err(ApiError::bad_request("`include` takes `expanded`.")),
        },
        q: None,
    };
    let (cursor, limit) = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .parse()?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    connectors::get(&mut tx, id).await?;
    let page = resources::list_grants(&mut tx, id, &filter, cursor, limit).await?;
    tx.commit().await?;
    Ok(Json(Page {
        items: page
            .items
            .into_iter()
            .map(|g| GrantItem {
                id: g.id,
                entitlement_id: g.entitlement_id,
                principal_id: g.principal_id,
                source: g.source,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}
