//! Self-hosted connectors ("connector agents"): their credentials (secrets stored as SHA-256;
//! a rotated credential keeps working until its grace period ends), what the running connector
//! last reported, the tasks it claims from the job queue (only its own connector's), and the
//! sync batches it has uploaded (each applied once).

use crate::jobs::{JOB_COLUMNS, Job, JobId, JobRow, Lease};
use crate::{OrgTx, Result, Store, StoreError};
use latchkey_core::{OrgId, UserId};
use serde::Serialize;
use sqlx::FromRow;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// A credential as the settings page shows it (never the secret or its hash).
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Credential {
    pub id: Uuid,
    pub connector_id: Uuid,
    pub client_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// `None`: the current credential; else it works until then.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Adds a credential for the connector; the ones that still work keep working for `grace`
/// (or less, if they were already ending sooner).
pub async fn rotate(
    tx: &mut OrgTx,
    connector: Uuid,
    client_id: &str,
    secret_hash: &str,
    created_by: Option<UserId>,
    grace: Duration,
) -> Result<Credential> {
    let org = tx.org();
    sqlx::query(
        "UPDATE connector_agent_credentials
            SET expires_at = least(coalesce(expires_at, 'infinity'), now() + $3 * interval '1 millisecond')
          WHERE org_id = $1 AND connector_id = $2 AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(org.0)
    .bind(connector)
    .bind(millis(grace))
    .execute(tx.conn())
    .await?;
    let id = Uuid::now_v7();
    Ok(sqlx::query_as(
        "INSERT INTO connector_agent_credentials (id, org_id, connector_id, client_id, secret_hash, created_by)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, connector_id, client_id, created_at, expires_at",
    )
    .bind(id)
    .bind(org.0)
    .bind(connector)
    .bind(client_id)
    .bind(secret_hash)
    .bind(created_by.map(|u| u.0))
    .fetch_one(tx.conn())
    .await?)
}

/// The connector's credentials that still work, newest first.
pub async fn credentials(tx: &mut OrgTx, connector: Uuid) -> Result<Vec<Credential>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT id, connector_id, client_id, created_at, expires_at FROM connector_agent_credentials
          WHERE org_id = $1 AND connector_id = $2 AND (expires_at IS NULL OR expires_at > now())
          ORDER BY created_at DESC, id DESC",
    )
    .bind(org.0)
    .bind(connector)
    .fetch_all(tx.conn())
    .await?)
}

/// What the token endpoint needs, found by the public client id (owner connection: before
/// authentication the organization is not known).
#[derive(Debug, Clone, FromRow)]
pub struct Presented {
    pub id: Uuid,
    pub org_id: Uuid,
    pub connector_id: Uuid,
    pub secret_hash: String,
}

/// The credential with `client_id`, if it still works and its connector is not disabled.
pub async fn find_by_client_id(store: &Store, client_id: &str) -> Result<Option<Presented>> {
    Ok(sqlx::query_as(
        "SELECT k.id, k.org_id, k.connector_id, k.secret_hash
           FROM connector_agent_credentials k JOIN connectors c ON c.id = k.connector_id
          WHERE k.client_id = $1 AND (k.expires_at IS NULL OR k.expires_at > now())
            AND c.kind = 'self_hosted' AND c.disabled_at IS NULL",
    )
    .bind(client_id)
    .fetch_optional(store.system())
    .await?)
}

/// Whether credential `id` of `connector` still works (checked on every request, so rotation
/// and the end of the grace period apply to tokens already issued).
pub async fn credential_works(tx: &mut OrgTx, connector: Uuid, id: Uuid) -> Result<bool> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM connector_agent_credentials k JOIN connectors c ON c.id = k.connector_id
          WHERE k.org_id = $1 AND k.connector_id = $2 AND k.id = $3
            AND (k.expires_at IS NULL OR k.expires_at > now()) AND c.disabled_at IS NULL)",
    )
    .bind(org.0)
    .bind(connector)
    .bind(id)
    .fetch_one(tx.conn())
    .await?)
}

/// What the running connector last reported.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct AgentStatus {
    pub connector_id: Uuid,
    pub version: String,
    pub host: String,
    pub provisioning: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_heartbeat_at: OffsetDateTime,
}

/// Records a heartbeat.
pub async fn heartbeat(
    tx: &mut OrgTx,
    connector: Uuid,
    version: &str,
    host: &str,
    provisioning: bool,
) -> Result<AgentStatus> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "INSERT INTO connector_agents (connector_id, org_id, version, host, provisioning)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (connector_id) DO UPDATE SET version = $3, host = $4, provisioning = $5,
                last_heartbeat_at = now()
         WHERE connector_agents.org_id = $2
         RETURNING connector_id, version, host, provisioning, first_seen_at, last_heartbeat_at",
    )
    .bind(connector)
    .bind(org.0)
    .bind(version)
    .bind(host)
    .bind(provisioning)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn status(tx: &mut OrgTx, connector: Uuid) -> Result<Option<AgentStatus>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT connector_id, version, host, provisioning, first_seen_at, last_heartbeat_at
           FROM connector_agents WHERE org_id = $1 AND connector_id = $2",
    )
    .bind(org.0)
    .bind(connector)
    .fetch_optional(tx.conn())
    .await?)
}

/// Claims the connector's next due job of `kinds` (or just job `only`) for the connector
/// agent: provisioning before syncs. A running one whose lease ran out (the connector stopped mid-task) is
/// claimed again, as a new attempt; one out of attempts is buried as `dead` instead.
pub async fn claim(
    tx: &mut OrgTx,
    connector: Uuid,
    kinds: &[String],
    worker: &str,
    lease: Duration,
    only: Option<JobId>,
) -> Result<Option<Job>> {
    let org = tx.org();
    sqlx::query(
        "UPDATE jobs SET status = 'dead', finished_at = now(), updated_at = now(),
                last_error = 'The self-hosted connector stopped during its last attempt.',
                locked_by = NULL, locked_until = NULL, lease_token = NULL
          WHERE org_id = $1 AND connector_id = $2 AND kind = ANY($3) AND status = 'running'
            AND locked_until < now() AND attempts >= max_attempts",
    )
    .bind(org.0)
    .bind(connector)
    .bind(kinds)
    .execute(tx.conn())
    .await?;
    let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_token = gen_random_uuid(),
                locked_by = $4, locked_until = now() + $5 * interval '1 millisecond',
                started_at = coalesce(started_at, now()), updated_at = now()
          WHERE id = (SELECT id FROM jobs
                       WHERE org_id = $1 AND connector_id = $2 AND kind = ANY($3)
                         AND ($6::uuid IS NULL OR id = $6) AND cancel_requested_at IS NULL
                         AND ((status = 'queued' AND run_at <= now())
                              OR (status = 'running' AND locked_until < now()))
                       ORDER BY lane, priority DESC, run_at, id
                       LIMIT 1 FOR UPDATE SKIP LOCKED)
          RETURNING {JOB_COLUMNS}"
    )))
    .bind(org.0)
    .bind(connector)
    .bind(kinds)
    .bind(worker)
    .bind(millis(lease))
    .bind(only.map(|j| j.0))
    .fetch_optional(tx.conn())
    .await?;
    row.map(Job::try_from).transpose()
}

/// The connector's job `id` of one of `kinds` (another connector's, or another kind: not found).
pub async fn job(tx: &mut OrgTx, connector: Uuid, kinds: &[String], id: JobId) -> Result<Job> {
    let org = tx.org();
    let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE org_id = $1 AND connector_id = $2 AND id = $3 AND kind = ANY($4)"
    )))
    .bind(org.0)
    .bind(connector)
    .bind(id.0)
    .bind(kinds)
    .fetch_optional(tx.conn())
    .await?;
    row.map(Job::try_from)
        .transpose()?
        .ok_or(StoreError::NotFound)
}

/// Locks the job's row while `lease` holds it (a batch commits only under a current lease).
/// False when the lease is lost.
pub async fn hold_lease(tx: &mut OrgTx, lease: &Lease) -> Result<bool> {
    let org = tx.org();
    Ok(sqlx::query_scalar::<_, i32>(
        "SELECT 1 FROM jobs WHERE org_id = $1 AND id = $2 AND lease_token = $3 AND status = 'running' FOR SHARE",
    )
    .bind(org.0)
    .bind(lease.job_id.0)
    .bind(lease.token)
    .fetch_optional(tx.conn())
    .await?
    .is_some())
}

/// Batches applied for the attempt: the next `seq` expected.
pub async fn batches_received(tx: &mut OrgTx, job: JobId, attempt: i32) -> Result<i64> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM connector_agent_batches WHERE org_id = $1 AND job_id = $2 AND attempt = $3",
    )
    .bind(org.0)
    .bind(job.0)
    .bind(attempt)
    .fetch_one(tx.conn())
    .await?)
}

/// Records batch `seq` as applied; false when it already was (a resend). Concurrent resends
/// wait on each other here, so only one applies.
pub async fn record_batch(
    tx: &mut OrgTx,
    job: JobId,
    attempt: i32,
    seq: i64,
    rows: i32,
) -> Result<bool> {
    let org = tx.org();
    Ok(sqlx::query(
        "INSERT INTO connector_agent_batches (org_id, job_id, attempt, seq, row_count) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
    )
    .bind(org.0)
    .bind(job.0)
    .bind(attempt)
    .bind(seq)
    .bind(rows)
    .execute(tx.conn())
    .await?
    .rows_affected()
        == 1)
}

/// Extends the leases the connector holds on its jobs; returns `(job, cancel requested)` for
/// the ones still held (a lease missing from the answer is lost: the task must stop).
pub async fn renew(
    tx: &mut OrgTx,
    connector: Uuid,
    leases: &[Lease],
    lease: Duration,
) -> Result<Vec<(JobId, bool)>> {
    if leases.is_empty() {
        return Ok(vec![]);
    }
    let org = tx.org();
    let ids: Vec<Uuid> = leases.iter().map(|l| l.job_id.0).collect();
    let tokens: Vec<Uuid> = leases.iter().map(|l| l.token).collect();
    let rows: Vec<(Uuid, bool)> = sqlx::query_as(
        "UPDATE jobs j SET locked_until = now() + $5 * interval '1 millisecond'
           FROM unnest($3::uuid[], $4::uuid[]) AS l(id, token)
          WHERE j.org_id = $1 AND j.connector_id = $2 AND j.id = l.id AND j.lease_token = l.token
            AND j.status = 'running'
          RETURNING j.id, j.cancel_requested_at IS NOT NULL",
    )
    .bind(org.0)
    .bind(connector)
    .bind(&ids)
    .bind(&tokens)
    .bind(millis(lease))
    .fetch_all(tx.conn())
    .await?;
    Ok(rows.into_iter().map(|(id, c)| (JobId(id), c)).collect())
}

/// The organization a presented credential belongs to.
pub fn org_of(p: &Presented) -> OrgId {
    OrgId(p.org_id)
}

/// The Entra tenant the connector's synced data was read from (lower-case), if a successful
/// sync named it.
pub async fn synced_tenant(tx: &mut OrgTx, connector: Uuid) -> Result<Option<String>> {
    let org = tx.org();
    sqlx::query_scalar::<_, Option<String>>(
        "SELECT synced_tenant_id FROM connectors WHERE org_id = $1 AND id = $2",
    )
    .bind(org.0)
    .bind(connector)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// Records `tenant` (lower-case) as the tenant the connector syncs, unless it already syncs
/// one: answers the tenant it syncs after the call (another one than `tenant` when it had one).
pub async fn record_synced_tenant(tx: &mut OrgTx, connector: Uuid, tenant: &str) -> Result<String> {
    let org = tx.org();
    sqlx::query_scalar::<_, String>(
        "UPDATE connectors SET synced_tenant_id = coalesce(synced_tenant_id, lower($3))
          WHERE org_id = $1 AND id = $2 RETURNING synced_tenant_id",
    )
    .bind(org.0)
    .bind(connector)
    .bind(tenant)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}
