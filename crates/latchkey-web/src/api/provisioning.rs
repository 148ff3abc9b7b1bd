//! Provisioning through the API: ask for a grant (optionally time-bound), a revoke, an account
//! or a deprovisioning (each a task run by a job), follow the task until it is verified in the
//! tenant or failed with a reason, and reveal a created account's password once.

use super::ApiQuery;
use super::{ApiJson, PageQuery};
use crate::auth::ApiPrincipal;
use crate::error::ApiError;
use crate::provisioning::{self as service, AccountInput, Asker, RevealRefused};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_crypto::ExposeSecret;
use latchkey_store::Page;
use latchkey_store::provisioning::{self, Task};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found())
}

fn asker(who: &ApiPrincipal) -> Asker {
    Asker::api_client(who.org_id, who.client_id.0, who.role)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    pub(crate) entitlement_id: Uuid,
    pub(crate) principal_id: Uuid,
    /// RFC 3339; the grant ends then (PIM ends directory roles itself; others get a revoke task).
    #[serde(default)]
    pub(crate) expires_at: Option<String>,
}

#[derive(Serialize)]
pub struct TaskStarted {
    pub task_id: Uuid,
}

fn started(task_id: Uuid) -> (StatusCode, Json<TaskStarted>) {
    (StatusCode::ACCEPTED, Json(TaskStarted { task_id }))
}

/// `POST /connectors/{id}/grants` `{"entitlement_id", "principal_id", "expires_at"?}` → 202 `{"task_id"}`.
pub async fn grant(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<(StatusCode, Json<TaskStarted>), ApiError> {
    let task = service::grant(
        &state,
        &asker(&who),
        parse_id(&id)?,
        body.entitlement_id,
        body.principal_id,
        body.expires_at.as_deref(),
    )
    .await?;
    Ok(started(task))
}

/// `DELETE /connectors/{id}/grants/{grant_id}` → 202 `{"task_id"}`.
pub async fn revoke(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path((id, grant)): Path<(String, String)>,
) -> Result<(StatusCode, Json<TaskStarted>), ApiError> {
    let connector = parse_id(&id)?;
    let task = service::revoke(&state, &asker(&who), connector, parse_id(&grant)?).await?;
    Ok(started(task))
}

/// `POST /connectors/{id}/accounts` → 202 `{"task_id"}`; the task's `vault_item_id` then
/// holds the password, for `POST /vault/{item_id}/reveal`.
pub async fn create_account(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AccountInput>,
) -> Result<(StatusCode, Json<TaskStarted>), ApiError> {
    let task = service::create_account(&state, &asker(&who), parse_id(&id)?, &body).await?;
    Ok(started(task))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeprovisionBody {
    #[serde(default)]
    delete: bool,
}

/// `POST /connectors/{id}/accounts/{resource_id}/deprovision` `{"delete"?}` → 202 `{"task_id"}`.
pub async fn deprovision(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path((id, account)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<TaskStarted>), ApiError> {
    // The body is optional: none means `{"delete": false}`.
    let delete = super::body_or_default::<DeprovisionBody>(&body)?.delete;
    let task = service::deprovision(
        &state,
        &asker(&who),
        parse_id(&id)?,
        parse_id(&account)?,
        delete,
    )
    .await?;
    Ok(started(task))
}

/// `GET /connectors/{id}/tasks`: the connector's provisioning tasks, newest first.
pub async fn list(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<TaskView>>, ApiError> {
    let connector = parse_id(&id)?;
    let (cursor, limit) = q.parse()?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    latchkey_store::connectors::get(&mut tx, connector).await?;
    let page = provisioning::list_tasks(&mut tx, connector, cursor, limit).await?;
    tx.commit().await?;
    Ok(Json(Page {
        items: page.items.into_iter().map(view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The one-time answer of a reveal.
#[derive(Serialize)]
pub struct Revealed {
    pub vault_item_id: Uuid,
    pub account_id: String,
    pub user_principal_name: String,
    pub password: String,
    #[serde(with = "time::serde::rfc3339")]
    pub revealed_at: OffsetDateTime,
}

/// `POST /vault/{item_id}/reveal` → 200 with the password, once; then 410.
pub async fn reveal(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    match service::reveal(&state, &asker(&who), id).await {
        Ok((item, secret)) => {
            let body = Revealed {
                vault_item_id: item.id,
                account_id: item.account_external_id,
                user_principal_name: item.account_label,
                password: secret.expose_secret().to_string(),
                revealed_at: item.revealed_at.unwrap_or_else(OffsetDateTime::now_utc),
            };
            let mut resp = Json(body).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}

impl From<RevealRefused> for ApiError {
    fn from(e: RevealRefused) -> Self {
        match e {
            RevealRefused::NotFound => ApiError::not_found(),
            RevealRefused::Forbidden(why) => ApiError::forbidden(why),
            RevealRefused::Gone(item) => ApiError::new(
                StatusCode::GONE,
                "gone",
                format!(
                    "This password was already revealed{}{}; it cannot be shown again. Reset the account's password in Entra if it was lost.",
                    item.revealed_by_label
                        .as_deref()
                        .map(|b| format!(" to {b}"))
                        .unwrap_or_default(),
                    item.revealed_at
                        .map(|t| format!(" at {}", crate::views::when(t)))
                        .unwrap_or_default(),
                ),
            ),
            RevealRefused::Store(e) => e.into(),
        }
    }
}

/// A task as the API shows it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: Uuid,
    pub connector_id: Uuid,
    /// `queued`, `running`, `succeeded`, `failed`.
    pub status: String,
    /// `grant`, `revoke`, `create_account` or `deprovision_account`.
    pub operation: String,
    pub entitlement_id: Option<Uuid>,
    /// The grantee, the account deprovisioned, or the account created (once stored).
    pub principal_id: Option<Uuid>,
    pub grant_id: Option<Uuid>,
    /// A created account's password, to reveal once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault_item_id: Option<Uuid>,
    /// Who asked: `user:<id>`, `api_client:<id>`, or `expiry` for the end of a time-bound grant.
    pub requested_by: String,
    /// When a time-bound grant ends.
    pub expires_at: Option<String>,
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
        vault_item_id: t.vault_item_id,
        requested_by: t.requested_by.clone(),
        expires_at: t
            .details
            .get("until")
            .and_then(|v| v.as_str())
            .map(str::to_string),
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
