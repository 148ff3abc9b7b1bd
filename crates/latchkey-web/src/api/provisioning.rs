//! Provisioning through the API: ask for a grant or a revoke (each a task run by a job) and
//! follow the task until it is verified in the tenant or failed with a reason.

use super::ApiJson;
use crate::auth::ApiPrincipal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_entra::provision::{Ask, request};
use latchkey_store::connectors;
use latchkey_store::provisioning::{self, Task};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    entitlement_id: Uuid,
    principal_id: Uuid,
}

#[derive(Serialize)]
pub struct TaskStarted {
    pub task_id: Uuid,
}

async fn start(
    state: &AppState,
    who: &ApiPrincipal,
    connector: &str,
    ask: impl FnOnce() -> Result<Ask, ApiError>,
) -> Result<(StatusCode, Json<TaskStarted>), ApiError> {
    let connector = parse_id(connector)?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    // Another organization's connector is 404 before any role check.
    connectors::get(&mut tx, connector).await?;
    who.require(who.role.can_manage_connectors())?;
    let task_id = request(
        &mut tx,
        connector,
        ask()?,
        &format!("api_client:{}", who.client_id),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(TaskStarted { task_id })))
}

/// `POST /connectors/{id}/grants` `{"entitlement_id", "principal_id"}` → 202 `{"task_id"}`.
pub async fn grant(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<(StatusCode, Json<TaskStarted>), ApiError> {
    start(&state, &who, &id, || {
        Ok(Ask::Grant {
            entitlement: body.entitlement_id,
            principal: body.principal_id,
        })
    })
    .await
}

/// `DELETE /connectors/{id}/grants/{grant_id}` → 202 `{"task_id"}`.
pub async fn revoke(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path((id, grant)): Path<(String, String)>,
) -> Result<(StatusCode, Json<TaskStarted>), ApiError> {
    start(&state, &who, &id, || {
        Ok(Ask::Revoke {
            grant: parse_id(&grant)?,
        })
    })
    .await
}

/// A task as the API shows it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: Uuid,
    pub connector_id: Uuid,
    /// `queued`, `running`, `succeeded`, `failed`.
    pub status: String,
    /// `grant` or `revoke`.
    pub operation: String,
    pub entitlement_id: Uuid,
    pub principal_id: Uuid,
    pub grant_id: Option<Uuid>,
    pub error: Option<String>,
    /// Set when Graph accepted the change but reading it back did not show it in time.
    pub verification_failed: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub provisioned_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub verified_at: Option<OffsetDateTime>,
    /// What went less than perfectly on a task that still succeeded (e.g. no SCIM job).
    pub warnings: Vec<String>,
    pub job_id: Option<Uuid>,
}

pub fn view(t: Task) -> TaskView {
    // A job that ended without the handler finishing the task (its worker died on the last
    // attempt, or it was cancelled) leaves the task failed with the job's reason.
    let job_over = matches!(
        t.job_status.as_deref(),
        Some("failed" | "dead" | "cancelled")
    );
    let (status, error) = if !t.is_final() && job_over {
        (
            "failed".to_string(),
            t.error.clone().or(t.job_error.clone()).or(Some(
                "The provisioning job stopped before finishing.".into(),
            )),
        )
    } else {
        (t.status.clone(), t.error.clone())
    };
    TaskView {
        id: t.id,
        connector_id: t.connector_id,
        status,
        operation: t.operation,
        entitlement_id: t.entitlement_id,
        principal_id: t.principal_id,
        grant_id: t.grant_id,
        error,
        verification_failed: t.verification_failed,
        requested_at: t.requested_at,
        provisioned_at: t.provisioned_at,
        verified_at: t.verified_at,
        warnings: t
            .details
            .get("warnings")
            .and_then(|w| w.as_array())
            .map(|w| {
                w.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        job_id: t.job_id,
    }
}

/// `GET /tasks/{task_id}`.
pub async fn get(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<TaskView>, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let task = provisioning::get_task(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(view(task)))
}
