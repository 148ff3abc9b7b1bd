//! `/api/v1/connector-agent/...`: what a self-hosted connector calls, with its own credentials.
//! Outbound from the connector only: it fetches a token, heartbeats, claims tasks (syncs and
//! provisioning tasks of its own connector), uploads a sync's batches (gzip JSON, each applied
//! exactly once, in order) and reports results. Another connector's tasks are 404.
//!
//! A task is a job of the queue that only the connector claims (`connector_agent.*` kinds), so
//! its attempts, lease, logs and sync run look like a hosted one's. Every write about a task
//! carries the attempt's lease (`Latchkey-Lease` header); a lost lease is 409.

use super::token::{self, AgentPrincipal};
use crate::api::{ApiJson, ApiPath};
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_crypto::{constant_time_eq, sha256_hex};
use latchkey_entra::provision::ProvisionPayload;
use latchkey_entra::provision::agent::{
    self as prov, AGENT_PROVISION_JOB, AgentTask, Outcome, Prepared, Recorded,
};
use latchkey_entra::provision::agent_account::{self as prov_account, AccountOutcome, AccountTask};
use latchkey_entra::sync::detached::{self, AGENT_SYNC_JOB, Batch};
use latchkey_entra::sync::{self, SyncKind, agent_finish};
use latchkey_store::connector_agents as agents;
use latchkey_store::jobs as queue;
use latchkey_store::jobs::{Job, JobId, JobStatus, Lease, LogLevel, worker};
use latchkey_store::{OrgTx, StoreError, connectors, sync_runs};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io::Read;
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

/// The header carrying the attempt's lease.
pub const LEASE_HEADER: &str = "latchkey-lease";

/// The optional header of a sync batch naming the Entra tenant its data was read from.
pub const TENANT_HEADER: &str = "latchkey-tenant";

/// Longest tenant ID (a GUID, or a verified domain) accepted.
const MAX_TENANT_CHARS: usize = 256;

/// A sync read from another Entra tenant than the one the connector's data comes from: its
/// data would replace the connector's picture and its sweep delete the rest, so it is refused
/// before anything of it is written.
#[derive(Debug, thiserror::Error)]
#[error(
    "This sync was read from Entra tenant {read}; this connector syncs tenant {synced}. Nothing of it was saved. \
Send a sync of tenant {synced} (ENTRA_TENANT_ID={synced}), or add another self-hosted connector for tenant {read}."
)]
pub struct TenantMismatch {
    /// The tenant the refused data was read from.
    pub read: String,
    /// The tenant the connector's earlier syncs were read from.
    pub synced: String,
}

impl From<TenantMismatch> for ApiError {
    fn from(e: TenantMismatch) -> Self {
        ApiError::new(StatusCode::CONFLICT, "tenant_mismatch", e.to_string())
    }
}

/// A tenant ID as sent (body field or header), checked and lower-cased.
fn tenant_id(field: &str, raw: &str) -> Result<String, ApiError> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > MAX_TENANT_CHARS || t.chars().any(char::is_control) {
        return Err(ApiError::validation(vec![FieldError {
            field: field.into(),
            message: format!(
                "an Entra tenant ID (a GUID or a verified domain, at most {MAX_TENANT_CHARS} characters)"
            ),
        }]));
    }
    Ok(t.to_lowercase())
}

/// Refuses data read from `read` when the connector already syncs another tenant.
async fn check_tenant(tx: &mut OrgTx, connector: Uuid, read: &str) -> Result<(), ApiError> {
    match agents::synced_tenant(tx, connector).await? {
        Some(synced) if synced != read => Err(TenantMismatch {
            read: read.to_string(),
            synced,
        }
        .into()),
        _ => Ok(()),
    }
}

/// A batch may not inflate beyond this (compressed bodies are capped by the body limit).
const MAX_BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// Log lines accepted in one call.
const MAX_LOG_LINES: usize = 200;

fn kinds() -> Vec<String> {
    vec![AGENT_SYNC_JOB.to_string(), AGENT_PROVISION_JOB.to_string()]
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    no_store(
        (
            status,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response(),
    )
}

#[derive(Deserialize, Default)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /connector-agent/token`: client credentials (form or JSON) for a short-lived token.
pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let parsed: Result<TokenRequest, String> = if json_body {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes(&body).map_err(|e| e.to_string())
    };
    let req = match parsed {
        Ok(r) => r,
        Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &why),
    };
    if req.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        );
    }
    let (Some(client_id), Some(secret)) = (req.client_id, req.client_secret) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id and client_secret are required",
        );
    };
    // Postgres text cannot hold NUL: such an id names no client, and must not reach a query.
    if client_id.contains('\0') {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id may not contain NUL characters",
        );
    }
    let found = match agents::find_by_client_id(&state.store, &client_id).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "connector token endpoint could not read credentials");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "try again later",
            );
        }
    };
    let presented = sha256_hex(secret.as_bytes());
    let Some(c) =
        found.filter(|c| constant_time_eq(c.secret_hash.as_bytes(), presented.as_bytes()))
    else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client, wrong secret, or credentials replaced more than the grace period ago",
        );
    };
    let lifetime = state.config.api_token_lifetime.as_secs();
    let access_token = token::issue(
        &state.keys,
        agents::org_of(&c),
        c.connector_id,
        c.id,
        lifetime as i64,
    );
    tracing::info!(org_id = %c.org_id, connector_id = %c.connector_id, "connector agent token issued");
    no_store(
        Json(json!({"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime}))
            .into_response(),
    )
}

/// A task a connector holds: the job and its lease.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
pub struct HeldTask {
    pub id: Uuid,
    pub lease: Uuid,
}

#[derive(Deserialize)]
pub struct HeartbeatBody {
    version: String,
    host: String,
    provisioning: bool,
    #[serde(default)]
    tasks: Vec<HeldTask>,
}

#[derive(Serialize)]
struct TaskState {
    id: Uuid,
    /// False: the lease is lost (the task was taken back); stop working on it.
    held: bool,
    cancel_requested: bool,
}

/// `POST /connector-agent/heartbeat`: the connector is alive (version, host, whether it
/// provisions); renews the leases of the tasks it holds.
pub async fn heartbeat(
    State(state): State<AppState>,
    who: AgentPrincipal,
    ApiJson(body): ApiJson<HeartbeatBody>,
) -> Result<Json<Value>, ApiError> {
    let version: String = body.version.chars().take(100).collect();
    let host: String = body.host.chars().take(255).collect();
    let mut tx = state.store.org_tx(who.org).await?;
    let first = agents::status(&mut tx, who.connector).await?.is_none();
    agents::heartbeat(&mut tx, who.connector, &version, &host, body.provisioning).await?;
    let leases: Vec<Lease> = body
        .tasks
        .iter()
        .map(|t| Lease {
            job_id: JobId(t.id),
            token: t.lease,
            attempt: 0,
        })
        .collect();
    let renewed = agents::renew(&mut tx, who.connector, &leases, state.config.agent_lease).await?;
    let row = connectors::get(&mut tx, who.connector).await?;
    if first || row.status == "setup_required" {
        // Online for the first time: read the tenant.
        let (job, _) = sync::request_sync(
            &mut tx,
            who.connector,
            SyncKind::Full,
            "the self-hosted connector came online",
        )
        .await?;
        connectors::set_status(
            &mut tx,
            who.connector,
            "syncing",
            Some(&format!(
                "The self-hosted connector on {host} is online; its first sync is queued."
            )),
        )
        .await?;
        tracing::info!(connector_id = %who.connector, job_id = %job, "self-hosted connector online");
    }
    tx.commit().await?;
    let tasks: Vec<TaskState> = body
        .tasks
        .iter()
        .map(|t| {
            let r = renewed.iter().find(|(id, _)| id.0 == t.id);
            TaskState {
                id: t.id,
                held: r.is_some(),
                cancel_requested: r.is_some_and(|(_, c)| *c),
            }
        })
        .collect();
    Ok(Json(json!({
        "connector_id": who.connector,
        "lease_seconds": state.config.agent_lease.as_secs(),
        "tasks": tasks,
    })))
}

/// A claimed task as the connector receives it.
#[derive(Serialize)]
struct TaskOut {
    id: Uuid,
    lease: Uuid,
    attempt: i32,
    #[serde(rename = "type")]
    ttype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sync: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provision: Option<AgentTask>,
    /// An account task; a new account's password is in it, and nowhere else.
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<AccountTask>,
}

fn lease_of(job: &Job) -> Result<Lease, ApiError> {
    job.lease()
        .ok_or_else(|| ApiError::internal("a claimed job without a lease"))
}

async fn start_sync(
    state: &AppState,
    who: &AgentPrincipal,
    job: &Job,
) -> Result<TaskOut, ApiError> {
    let lease = lease_of(job)?;
    let run = job.id.as_uuid();
    let mut tx = state.store.org_tx(who.org).await?;
    sync_runs::start(&mut tx, run, who.connector, SyncKind::Full.as_str()).await?;
    connectors::set_status(
        &mut tx,
        who.connector,
        "syncing",
        Some("A full sync is running on the self-hosted connector."),
    )
    .await?;
    connectors::set_last_sync_job(&mut tx, who.connector, run).await?;
    tx.commit().await?;
    let message = if job.attempts > 1 {
        format!(
            "The self-hosted connector starts the full sync again (attempt {})",
            job.attempts
        )
    } else {
        "The self-hosted connector starts a full sync".to_string()
    };
    worker::append_log(&state.store, &lease, LogLevel::Info, &message, &json!({})).await?;
    Ok(TaskOut {
        id: run,
        lease: lease.token,
        attempt: job.attempts,
        ttype: "sync",
        sync: Some(json!({"kind": "full"})),
        provision: None,
        account: None,
    })
}

/// Plans a provisioning task; `None` when it was settled without the connector (refused by the
/// plan, or finished by an earlier attempt).
async fn start_provision(
    state: &AppState,
    who: &AgentPrincipal,
    job: &Job,
) -> Result<Option<TaskOut>, ApiError> {
    let lease = lease_of(job)?;
    let payload: ProvisionPayload = serde_json::from_value(job.payload.clone())
        .map_err(|e| ApiError::internal(format!("provisioning payload: {e}")))?;
    let mut tx = state.store.org_tx(who.org).await?;
    let prepared = match prov::prepare(&mut tx, &state.keys, who.connector, payload.task_id).await {
        Err(StoreError::NotFound) => {
            Prepared::Refused("the provisioning task no longer exists".into())
        }
        r => r?,
    };
    tx.commit().await?;
    match prepared {
        Prepared::Done => {
            worker::complete(&state.store, &[lease]).await?;
            Ok(None)
        }
        Prepared::Refused(why) => {
            worker::append_log(
                &state.store,
                &lease,
                LogLevel::Error,
                &why,
                &json!({"task_id": payload.task_id}),
            )
            .await?;
            worker::finish(&state.store, &lease, JobStatus::Failed, Some(&why)).await?;
            Ok(None)
        }
        Prepared::Task(task) => {
            // The plan the outcome is recorded against, kept with the attempt.
            worker::checkpoint(&state.store, &lease, Some(&json!(task))).await?;
            worker::append_log(
                &state.store,
                &lease,
                LogLevel::Info,
                &format!("{} (on the self-hosted connector)", task.summary),
                &json!({"task_id": task.task_id, "step": task.step}),
            )
            .await?;
            Ok(Some(TaskOut {
                id: job.id.as_uuid(),
                lease: lease.token,
                attempt: job.attempts,
                ttype: "provision",
                sync: None,
                provision: Some(*task),
                account: None,
            }))
        }
        Prepared::Account(task) => {
            // The plan the outcome is recorded against, kept with the attempt without the
            // password (the job's checkpoint is shown and stored in the clear).
            worker::checkpoint(
                &state.store,
                &lease,
                Some(&json!({"account": task.without_password()})),
            )
            .await?;
            worker::append_log(
                &state.store,
                &lease,
                LogLevel::Info,
                &format!("{} (on the self-hosted connector)", task.summary),
                &json!({"task_id": task.task_id}),
            )
            .await?;
            Ok(Some(TaskOut {
                id: job.id.as_uuid(),
                lease: lease.token,
                attempt: job.attempts,
                ttype: "account",
                sync: None,
                provision: None,
                account: Some(*task),
            }))
        }
    }
}

fn worker_name(who: &AgentPrincipal) -> String {
    format!("self-hosted connector {}", who.connector)
}

/// Claims tasks until one is for the connector (planning may settle provisioning tasks).
async fn claim_next(
    state: &AppState,
    who: &AgentPrincipal,
    only: Option<JobId>,
) -> Result<Option<TaskOut>, ApiError> {
    for _ in 0..20 {
        let mut tx = state.store.org_tx(who.org).await?;
        let job = agents::claim(
            &mut tx,
            who.connector,
            &kinds(),
            &worker_name(who),
            state.config.agent_lease,
            only,
        )
        .await?;
        tx.commit().await?;
        let Some(job) = job else { return Ok(None) };
        let span = tracing::info_span!("connector_agent.task", org_id = %who.org, connector_id = %who.connector, job_id = %job.id);
        if job.kind == AGENT_SYNC_JOB {
            return Ok(Some(start_sync(state, who, &job).instrument(span).await?));
        }
        if let Some(t) = start_provision(state, who, &job).instrument(span).await? {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// `POST /connector-agent/tasks/next`: the next task (200), or none now (204).
pub async fn next_task(
    State(state): State<AppState>,
    who: AgentPrincipal,
) -> Result<Response, ApiError> {
    Ok(match claim_next(&state, &who, None).await? {
        Some(t) => Json(t).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

#[derive(Deserialize, Default)]
pub struct SyncRequest {
    #[serde(default)]
    reason: Option<String>,
    /// The Entra tenant the sync reads (ENTRA_TENANT_ID, or an uploaded file's header).
    #[serde(default)]
    tenant_id: Option<String>,
}

/// `POST /connector-agent/syncs`: the connector starts a full sync now (its own interval, or
/// an upload of a sync file): the queued sync (or a new one) is claimed and returned (201).
/// 409 when a sync of the connector is already running under a live lease, and
/// `tenant_mismatch` (nothing created) when `tenant_id` is not the tenant the connector syncs.
pub async fn start_sync_now(
    State(state): State<AppState>,
    who: AgentPrincipal,
    body: Bytes,
) -> Result<Response, ApiError> {
    // The body is optional: none, or JSON.
    let body: SyncRequest = crate::api::body_or_default(&body)?;
    let tenant = body
        .tenant_id
        .as_deref()
        .map(|t| tenant_id("tenant_id", t))
        .transpose()?;
    let reason = body
        .reason
        .unwrap_or_else(|| "started by the self-hosted connector".into());
    let reason: String = reason.chars().take(200).collect();
    let mut tx = state.store.org_tx(who.org).await?;
    if let Some(t) = &tenant {
        check_tenant(&mut tx, who.connector, t).await?;
    }
    let (job, _) = sync::request_sync(&mut tx, who.connector, SyncKind::Full, &reason).await?;
    tx.commit().await?;
    match claim_next(&state, &who, Some(JobId(job))).await? {
        Some(t) => Ok((StatusCode::CREATED, Json(t)).into_response()),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "sync_running",
            "A sync of this connector is already running; wait for it to finish.",
        )),
    }
}

fn lease_header(headers: &HeaderMap, id: Uuid, job: &Job) -> Result<Lease, ApiError> {
    let token = headers
        .get(LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
        .ok_or_else(|| {
            ApiError::bad_request("Send the task's lease in the Latchkey-Lease header.")
        })?;
    Ok(Lease {
        job_id: JobId(id),
        token,
        attempt: job.attempts,
    })
}

fn lease_lost() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "lease_lost",
        "This attempt no longer holds the task (it was taken back after missed heartbeats, or cancelled); drop it and ask for the next task.",
    )
}

/// The connector's task `id` and the lease presented for it.
async fn held(
    state: &AppState,
    who: &AgentPrincipal,
    id: &str,
    headers: &HeaderMap,
) -> Result<(Job, Lease), ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found())?;
    let mut tx = state.store.org_tx(who.org).await?;
    let job = agents::job(&mut tx, who.connector, &kinds(), JobId(id)).await?;
    tx.commit().await?;
    let lease = lease_header(headers, id, &job)?;
    if job.lease_token != Some(lease.token) || job.status != JobStatus::Running {
        return Err(lease_lost());
    }
    Ok((job, lease))
}

fn decompress(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_BATCH_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request(format!("The body is not valid gzip: {e}")))?;
    if out.len() as u64 > MAX_BATCH_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            "A batch may hold at most 32 MiB of JSON; send smaller batches.",
        ));
    }
    Ok(out)
}

async fn next_seq(tx: &mut OrgTx, lease: &Lease) -> Result<i64, ApiError> {
    Ok(agents::batches_received(tx, lease.job_id, lease.attempt).await?)
}

/// `GET /connector-agent/tasks/{id}/batches`: where the upload of this attempt goes on.
pub async fn batches(
    State(state): State<AppState>,
    who: AgentPrincipal,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (_, lease) = held(&state, &who, &id, &headers).await?;
    let mut tx = state.store.org_tx(who.org).await?;
    let next = next_seq(&mut tx, &lease).await?;
    tx.commit().await?;
    Ok(Json(json!({"next_seq": next})))
}

/// `PUT /connector-agent/tasks/{id}/batches/{seq}`: one batch of a sync (JSON, gzip with
/// `Content-Encoding: gzip`). Applied exactly once and in order: a batch sent again is
/// acknowledged without applying it, one ahead of its turn is 409 with the `next_seq` wanted.
pub async fn put_batch(
    State(state): State<AppState>,
    who: AgentPrincipal,
    ApiPath((id, seq)): ApiPath<(String, i64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let (job, lease) = held(&state, &who, &id, &headers).await?;
    if job.kind != AGENT_SYNC_JOB {
        return Err(ApiError::not_found());
    }
    let raw = decompress(&headers, &body)?;
    crate::api::refuse_nul(&raw)?;
    let batch: Batch = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::validation(vec![FieldError {
            field: "body".into(),
            message: format!("not a sync batch: {e}"),
        }])
    })?;
    if batch.seq as i64 != seq {
        return Err(ApiError::bad_request(
            "The batch's seq differs from the one in the path.",
        ));
    }
    let tenant = match headers.get(TENANT_HEADER) {
        Some(v) => Some(tenant_id(
            "Latchkey-Tenant",
            v.to_str()
                .map_err(|_| ApiError::bad_request("The Latchkey-Tenant header is not text."))?,
        )?),
        None => None,
    };
    let mut tx = state.store.org_tx(who.org).await?;
    if !agents::hold_lease(&mut tx, &lease).await? {
        return Err(lease_lost());
    }
    if let Some(t) = &tenant {
        check_tenant(&mut tx, who.connector, t).await?;
    }
    let expected = next_seq(&mut tx, &lease).await?;
    if seq < expected {
        return Ok(Json(json!({"status": "duplicate", "next_seq": expected})));
    }
    if seq > expected {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "out_of_order",
            message: format!("Batch {expected} comes next; send the batches in order."),
            fields: vec![FieldError {
                field: "next_seq".into(),
                message: expected.to_string(),
            }],
        });
    }
    if !agents::record_batch(
        &mut tx,
        lease.job_id,
        lease.attempt,
        seq,
        batch.rows() as i32,
    )
    .await?
    {
        // The same batch sent twice at once: the other request applied it.
        return Ok(Json(json!({"status": "duplicate", "next_seq": seq + 1})));
    }
    let counts = match detached::ingest(&mut tx, who.connector, job.id.as_uuid(), &batch).await {
        Ok(c) => c,
        Err(detached::IngestError::Store(e)) => return Err(e.into()),
        Err(e) => {
            return Err(ApiError::validation(vec![FieldError {
                field: "body".into(),
                message: e.to_string(),
            }]));
        }
    };
    tx.commit().await?;
    worker::set_progress(
        &state.store,
        &lease,
        &json!({"batches": seq + 1, "last_batch": counts}),
    )
    .await?;
    Ok(Json(json!({"status": "applied", "next_seq": seq + 1})))
}

#[derive(Deserialize)]
pub struct LogBody {
    lines: Vec<detached::LogLine>,
}

/// `POST /connector-agent/tasks/{id}/logs`: log lines of the task, shown like a hosted job's.
pub async fn logs(
    State(state): State<AppState>,
    who: AgentPrincipal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let (_, lease) = held(&state, &who, &id, &headers).await?;
    crate::api::refuse_nul(&body)?;
    let body: LogBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::validation(vec![FieldError {
            field: "body".into(),
            message: format!("not log lines: {e}"),
        }])
    })?;
    if body.lines.len() > MAX_LOG_LINES {
        return Err(ApiError::bad_request(format!(
            "Send at most {MAX_LOG_LINES} lines at once."
        )));
    }
    for l in &body.lines {
        let message: String = l.message.chars().take(4000).collect();
        if !worker::append_log(&state.store, &lease, l.level, &message, &l.fields).await? {
            return Err(lease_lost());
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SyncResult {
    Succeeded {
        batches: u64,
        stats: Value,
        #[serde(default)]
        warnings: Vec<String>,
        #[serde(default)]
        unread: Vec<String>,
        /// The Entra tenant the sync was read from: recorded as the connector's tenant by
        /// its first successful sync, refused when it is another.
        #[serde(default)]
        tenant_id: Option<String>,
    },
    Failed {
        error: String,
        #[serde(default)]
        transient: bool,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultBody {
    Sync(SyncResult),
    Provision(Outcome),
    Account(AccountOutcome),
}

/// Delay before a task that failed transiently on the connector is offered again.
const RETRY_DELAY: Duration = Duration::from_secs(30);

/// `POST /connector-agent/tasks/{id}/result`: how the task ended. A successful sync, once
/// every batch arrived, is finished by the worker as a hosted one (sweep, expansion, stats,
/// status); the same successful result sent again after the task completed gets the same
/// answer (its acknowledgement was lost).
pub async fn result(
    State(state): State<AppState>,
    who: AgentPrincipal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    // The task first: another connector's task is not found, whatever the body says.
    let (job, lease) = match held(&state, &who, &id, &headers).await {
        Ok(v) => v,
        Err(e) => {
            let repeated = match serde_json::from_slice::<ResultBody>(&body) {
                Ok(b) => repeated_sync_result(&state, &who, &id, &b).await?,
                Err(_) => None,
            };
            return repeated.map(Json).ok_or(e);
        }
    };
    crate::api::refuse_nul(&body)?;
    let body: ResultBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::validation(vec![FieldError {
            field: "body".into(),
            message: format!("not a task result: {e}"),
        }])
    })?;
    let span = tracing::info_span!("connector_agent.result", org_id = %who.org, connector_id = %who.connector, job_id = %job.id);
    match (body, job.kind.as_str()) {
        (ResultBody::Sync(r), AGENT_SYNC_JOB) => {
            sync_result(&state, &who, &job, &lease, r)
                .instrument(span)
                .await
        }
        (ResultBody::Provision(o), AGENT_PROVISION_JOB) => {
            provision_result(&state, &who, &job, &lease, o)
                .instrument(span)
                .await
        }
        (ResultBody::Account(o), AGENT_PROVISION_JOB) => {
            account_result(&state, &who, &job, &lease, o)
                .instrument(span)
                .await
        }
        _ => Err(ApiError::bad_request(
            "This result does not match the task's type.",
        )),
    }
}

/// A successful sync result sent again after the task was completed (its acknowledgement was
/// lost on the way back): the same answer, changing nothing, when every batch it names arrived
/// in the task's last attempt. `None` for anything else.
async fn repeated_sync_result(
    state: &AppState,
    who: &AgentPrincipal,
    id: &str,
    body: &ResultBody,
) -> Result<Option<Value>, ApiError> {
    let ResultBody::Sync(SyncResult::Succeeded { batches, .. }) = body else {
        return Ok(None);
    };
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(None);
    };
    let mut tx = state.store.org_tx(who.org).await?;
    let job = agents::job(&mut tx, who.connector, &kinds(), JobId(id)).await?;
    if job.kind != AGENT_SYNC_JOB || job.status != JobStatus::Succeeded {
        return Ok(None);
    }
    let received = agents::batches_received(&mut tx, job.id, job.attempts).await?;
    tx.commit().await?;
    Ok((received as u64 == *batches).then(|| json!({"status": "succeeded", "repeated": true})))
}

async fn sync_result(
    state: &AppState,
    who: &AgentPrincipal,
    job: &Job,
    lease: &Lease,
    r: SyncResult,
) -> Result<Json<Value>, ApiError> {
    let run = job.id.as_uuid();
    match r {
        SyncResult::Succeeded {
            batches,
            stats,
            warnings,
            unread,
            tenant_id: tenant,
        } => {
            let tenant = tenant
                .as_deref()
                .map(|t| tenant_id("sync.tenant_id", t))
                .transpose()?;
            let mut tx = state.store.org_tx(who.org).await?;
            let received = next_seq(&mut tx, lease).await?;
            tx.commit().await?;
            if received as u64 != batches {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "batches_missing",
                    format!(
                        "The sync has {batches} batches but {received} arrived; upload the rest first."
                    ),
                ));
            }
            // The sweep and expansion of a large tenant take longer than a request may: the
            // worker finishes the run (`entra.agent_sync_finish`), enqueued with the check
            // that this attempt still holds the task.
            let mut tx = state.store.org_tx(who.org).await?;
            if !agents::hold_lease(&mut tx, lease).await? {
                return Err(lease_lost());
            }
            if let Some(read) = tenant {
                let synced = agents::record_synced_tenant(&mut tx, who.connector, &read).await?;
                if synced != read {
                    return Err(TenantMismatch { read, synced }.into());
                }
            }
            queue::enqueue(
                &mut tx,
                &agent_finish::finish_job(
                    who.connector,
                    &agent_finish::FinishPayload {
                        run,
                        stats,
                        warnings,
                        unread,
                    },
                ),
            )
            .await?;
            tx.commit().await?;
            worker::append_log(
                &state.store,
                lease,
                LogLevel::Info,
                "Every batch arrived; Latchkey finishes the sync in the background",
                &json!({"batches": batches}),
            )
            .await?;
            worker::complete(&state.store, &[*lease]).await?;
            Ok(Json(json!({"status": "succeeded"})))
        }
        SyncResult::Failed { error, transient } => {
            let error: String = error.chars().take(2000).collect();
            worker::append_log(&state.store, lease, LogLevel::Error, &error, &json!({})).await?;
            let retry = transient && job.attempts < job.max_attempts;
            let mut tx = state.store.org_tx(who.org).await?;
            if retry {
                connectors::set_status(
                    &mut tx,
                    who.connector,
                    "syncing",
                    Some(&format!(
                        "The sync hit a temporary problem on the self-hosted connector and will run again: {error}"
                    )),
                )
                .await?;
            } else {
                let current = sync_runs::get(&mut tx, run).await?;
                sync_runs::finish(
                    &mut tx,
                    run,
                    "failed",
                    &current.stats,
                    &current.warnings,
                    Some(&error),
                    None,
                )
                .await?;
                connectors::set_status(
                    &mut tx,
                    who.connector,
                    "error",
                    Some(&format!(
                        "The sync failed on the self-hosted connector: {error}"
                    )),
                )
                .await?;
            }
            tx.commit().await?;
            if retry {
                worker::retry_later(&state.store, lease, RETRY_DELAY, &error).await?;
                Ok(Json(json!({"status": "retrying"})))
            } else {
                worker::finish(&state.store, lease, JobStatus::Failed, Some(&error)).await?;
                Ok(Json(json!({"status": "failed"})))
            }
        }
    }
}

async fn provision_result(
    state: &AppState,
    who: &AgentPrincipal,
    job: &Job,
    lease: &Lease,
    outcome: Outcome,
) -> Result<Json<Value>, ApiError> {
    if job
        .checkpoint
        .as_ref()
        .is_some_and(|c| c.get("account").is_some())
    {
        return Err(ApiError::bad_request(
            "This result does not match the task's type.",
        ));
    }
    let planned: AgentTask = job
        .checkpoint
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| ApiError::internal("a claimed provisioning task without its plan"))?;
    let mut tx = state.store.org_tx(who.org).await?;
    if !agents::hold_lease(&mut tx, lease).await? {
        return Err(lease_lost());
    }
    let recorded = prov::record(
        &mut tx,
        who.connector,
        &planned,
        &outcome,
        job.attempts < job.max_attempts,
    )
    .await?;
    tx.commit().await?;
    let (level, line) = match &outcome {
        Outcome::Verified { .. } => (LogLevel::Info, "Verified in Microsoft Graph".to_string()),
        Outcome::Refused { why } | Outcome::Failed { why, .. } => (LogLevel::Error, why.clone()),
        Outcome::Unverified { why, .. } => (
            LogLevel::Error,
            format!("The change could not be verified: {why}."),
        ),
    };
    settle_task(state, lease, planned.task_id, recorded, level, &line).await
}

async fn account_result(
    state: &AppState,
    who: &AgentPrincipal,
    job: &Job,
    lease: &Lease,
    outcome: AccountOutcome,
) -> Result<Json<Value>, ApiError> {
    let planned: AccountTask = job
        .checkpoint
        .as_ref()
        .and_then(|v| v.get("account"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or_else(|| ApiError::bad_request("This result does not match the task's type."))?;
    let mut tx = state.store.org_tx(who.org).await?;
    if !agents::hold_lease(&mut tx, lease).await? {
        return Err(lease_lost());
    }
    let recorded = prov_account::record(
        &mut tx,
        &state.keys,
        who.connector,
        &planned,
        &outcome,
        job.attempts < job.max_attempts,
    )
    .await?;
    tx.commit().await?;
    let (level, line) = match &outcome {
        AccountOutcome::Verified { .. } if recorded == Recorded::Succeeded => {
            (LogLevel::Info, "Verified in Microsoft Graph".to_string())
        }
        AccountOutcome::Verified { .. } => (
            LogLevel::Error,
            "The self-hosted connector reported the account without reading it back".to_string(),
        ),
        AccountOutcome::Refused { why } | AccountOutcome::Failed { why, .. } => {
            (LogLevel::Error, why.clone())
        }
        AccountOutcome::Unverified { why, .. } => (
            LogLevel::Error,
            format!("The change could not be verified: {why}."),
        ),
    };
    settle_task(state, lease, planned.task_id, recorded, level, &line).await
}

/// Logs what became of a provisioning or account task on its job and ends the job accordingly
/// (done, failed, or retried later); answers the connector with that status.
async fn settle_task(
    state: &AppState,
    lease: &Lease,
    task_id: Uuid,
    recorded: Recorded,
    level: LogLevel,
    line: &str,
) -> Result<Json<Value>, ApiError> {
    worker::append_log(
        &state.store,
        lease,
        level,
        line,
        &json!({"task_id": task_id}),
    )
    .await?;
    let status = match recorded {
        Recorded::Succeeded => {
            worker::complete(&state.store, &[*lease]).await?;
            "succeeded"
        }
        Recorded::Failed => {
            worker::finish(&state.store, lease, JobStatus::Failed, Some(line)).await?;
            "failed"
        }
        Recorded::Retry => {
            worker::retry_later(&state.store, lease, RETRY_DELAY, line).await?;
            "retrying"
        }
    };
    Ok(Json(json!({"status": status})))
}
