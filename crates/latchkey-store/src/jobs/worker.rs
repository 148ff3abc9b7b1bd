//! The worker's side of the queue: claim, heartbeat, fenced writes, outcomes, reaping.
//! All of it uses the owner connection, because one worker serves every organization.
//!
//! Durability: claims, heartbeats, log lines, progress, checkpoints and successful
//! completions commit with `synchronous_commit = off`. If the database crashes before it
//! flushes them, the queue redoes work it must be able to redo anyway (handlers are
//! idempotent because workers crash too): a lost claim or completion runs the job again, a
//! lost checkpoint resumes from an earlier one. It saves a WAL flush per statement, which on
//! this kind of disk is most of a job's cost. Enqueues, failures, dead jobs, cancellations
//! and releases wait for the flush as usual.

use super::{
    JOB_COLUMNS, Job, JobId, JobRow, JobStatus, Lease, LogLevel, jobs_from_rows, notify_due,
};
use crate::{Result, Store, StoreError};
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// What a worker asks for when it claims.
#[derive(Clone, Debug)]
pub struct ClaimRequest<'a> {
    /// Recorded as `locked_by`, for people reading the jobs table.
    pub worker: &'a str,
    /// Only jobs of these kinds (the handlers this worker has).
    pub kinds: &'a [String],
    /// At most this many jobs (the worker's free slots).
    pub limit: u32,
    /// At most this many of them may be syncs.
    pub sync_limit: u32,
    /// An organization never has more than this many jobs running, across all workers.
    pub org_cap: u32,
    pub lease: Duration,
}

/// A transaction whose commit does not wait for the WAL flush (see the module docs).
async fn relaxed(store: &Store) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = store.system_tx().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Claims due jobs in one short transaction and returns them running, each with its lease
/// ([`Job::lease`]). Jobs run outside any transaction afterwards.
///
/// Order: provisioning, then other jobs, then syncs; within a class by priority (higher
/// first), then `run_at`. Rows other workers are claiming are skipped, not waited for.
pub async fn claim(store: &Store, req: &ClaimRequest<'_>) -> Result<Vec<Job>> {
    if req.limit == 0 || req.kinds.is_empty() {
        return Ok(vec![]);
    }
    let rows: std::result::Result<Vec<JobRow>, sqlx::Error> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM latchkey_claim_jobs($1, $2, $3, $4, $5, $6 * interval '1 millisecond')"
    )))
    .bind(req.worker)
    .bind(req.kinds)
    .bind(req.limit as i32)
    .bind(req.sync_limit as i32)
    .bind(req.org_cap.min(i32::MAX as u32) as i32)
    .bind(millis(req.lease))
    .fetch_all(store.system())
    .await;
    match rows {
        Ok(rows) => jobs_from_rows(rows),
        // The one-running-sync-per-connector index refused a claim another worker won at the
        // same moment: nothing is claimed this round, and the next round will not pick it.
        Err(sqlx::Error::Database(db))
            if db.is_unique_violation()
                && db.constraint() == Some("jobs_one_running_sync_per_connector") =>
        {
            tracing::debug!("claim lost a race for a connector's sync; claiming again later");
            Ok(vec![])
        }
        Err(e) => Err(StoreError::Db(e)),
    }
}

/// A lease the heartbeat renewed, and whether someone asked to cancel its job.
#[derive(Clone, Copy, Debug)]
pub struct Renewed {
    pub job_id: JobId,
    pub cancel_requested: bool,
}

/// Extends the given leases to now + `lease`. Leases missing from the answer are lost: the
/// job was reaped, released or finished elsewhere, and its handler must stop.
pub async fn heartbeat(store: &Store, leases: &[Lease], lease: Duration) -> Result<Vec<Renewed>> {
    if leases.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<Uuid> = leases.iter().map(|l| l.job_id.0).collect();
    let tokens: Vec<Uuid> = leases.iter().map(|l| l.token).collect();
    let mut tx = relaxed(store).await?;
    let rows: Vec<(Uuid, bool)> = sqlx::query_as(
        "UPDATE jobs j SET locked_until = now() + $3 * interval '1 millisecond'
         FROM unnest($1::uuid[], $2::uuid[]) AS l(id, token)
         WHERE j.id = l.id AND j.lease_token = l.token
         RETURNING j.id, j.cancel_requested_at IS NOT NULL",
    )
    .bind(&ids)
    .bind(&tokens)
    .bind(millis(lease))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|(id, c)| Renewed {
            job_id: JobId(id),
            cancel_requested: c,
        })
        .collect())
}

/// Appends a log line for the attempt holding `lease`. False when the lease is lost (nothing
/// was written). The row lock keeps a reaper from taking the job between check and insert.
pub async fn append_log(
    store: &Store,
    lease: &Lease,
    level: LogLevel,
    message: &str,
    fields: &Value,
) -> Result<bool> {
    let mut tx = relaxed(store).await?;
    let n = sqlx::query(
        "INSERT INTO job_logs (org_id, job_id, attempt, level, message, fields)
         SELECT j.org_id, j.id, j.attempts, $3, $4, $5 FROM jobs j
         WHERE j.id = $1 AND j.lease_token = $2
         FOR SHARE",
    )
    .bind(lease.job_id.0)
    .bind(lease.token)
    .bind(level.as_str())
    .bind(message)
    .bind(fields)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(n == 1)
}

/// Appends a log line to job `job`'s last attempt whatever its state: for a step that another
/// job runs after it ended (a self-hosted connector's sync is finished by the worker).
pub async fn append_log_ended(
    store: &Store,
    job: Uuid,
    level: LogLevel,
    message: &str,
    fields: &Value,
) -> Result<()> {
    let mut tx = relaxed(store).await?;
    sqlx::query(
        "INSERT INTO job_logs (org_id, job_id, attempt, level, message, fields)
         SELECT j.org_id, j.id, j.attempts, $2, $3, $4 FROM jobs j WHERE j.id = $1",
    )
    .bind(job)
    .bind(level.as_str())
    .bind(message)
    .bind(fields)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Replaces the job's progress (e.g. `{"users": 5000}`). False when the lease is lost.
pub async fn set_progress(store: &Store, lease: &Lease, progress: &Value) -> Result<bool> {
    let mut tx = relaxed(store).await?;
    let n = sqlx::query(
        "UPDATE jobs SET progress = $3, updated_at = now() WHERE id = $1 AND lease_token = $2",
    )
    .bind(lease.job_id.0)
    .bind(lease.token)
    .bind(progress)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(n == 1)
}

/// Saves what the handler needs to resume after a crash or a hand-over (`Some(state)`), or
/// only looks (`None`). Returns `None` when the lease is lost, else whether cancellation was
/// requested.
pub async fn checkpoint(
    store: &Store,
    lease: &Lease,
    state: Option<&Value>,
) -> Result<Option<bool>> {
    let mut tx = relaxed(store).await?;
    let row: Option<(bool,)> = sqlx::query_as(
        "UPDATE jobs SET checkpoint = coalesce($3, checkpoint), updated_at = now()
         WHERE id = $1 AND lease_token = $2
         RETURNING cancel_requested_at IS NOT NULL",
    )
    .bind(lease.job_id.0)
    .bind(lease.token)
    .bind(state)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row.map(|r| r.0))
}

/// Marks jobs succeeded, in one statement. Returns the ids that were still ours.
pub async fn complete(store: &Store, leases: &[Lease]) -> Result<Vec<JobId>> {
    if leases.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<Uuid> = leases.iter().map(|l| l.job_id.0).collect();
    let tokens: Vec<Uuid> = leases.iter().map(|l| l.token).collect();
    let mut tx = relaxed(store).await?;
    let done: Vec<(Uuid,)> = sqlx::query_as(
        "UPDATE jobs j SET status = 'succeeded', finished_at = now(), updated_at = now(),
                locked_by = NULL, locked_until = NULL, lease_token = NULL
         FROM unnest($1::uuid[], $2::uuid[]) AS l(id, token)
         WHERE j.id = l.id AND j.lease_token = l.token
         RETURNING j.id",
    )
    .bind(&ids)
    .bind(&tokens)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.into_iter().map(|r| JobId(r.0)).collect())
}

/// After a transient error: queue the job again at now + `delay`, or bury it as `dead` when
/// it has used all its attempts (or `cancelled` when cancellation was requested). Returns the
/// new status, `None` when the lease is lost.
pub async fn retry_later(
    store: &Store,
    lease: &Lease,
    delay: Duration,
    error: &str,
) -> Result<Option<JobStatus>> {
    let row: Option<(String,)> = sqlx::query_as(
        "UPDATE jobs SET
             status = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled'
                           WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
             run_at = CASE WHEN cancel_requested_at IS NULL AND attempts < max_attempts
                           THEN now() + $3 * interval '1 millisecond' ELSE run_at END,
             finished_at = CASE WHEN cancel_requested_at IS NOT NULL OR attempts >= max_attempts THEN now() END,
             last_error = $4, locked_by = NULL, locked_until = NULL, lease_token = NULL, updated_at = now()
         WHERE id = $1 AND lease_token = $2
         RETURNING status",
    )
    .bind(lease.job_id.0)
    .bind(lease.token)
    .bind(millis(delay))
    .bind(error)
    .fetch_optional(store.system())
    .await?;
    row.map(|(s,)| s.parse()).transpose()
}

/// Sets a final status (`failed` with the reason, or `cancelled`). False when the lease is lost.
pub async fn finish(
    store: &Store,
    lease: &Lease,
    status: JobStatus,
    error: Option<&str>,
) -> Result<bool> {
    debug_assert!(status.is_final());
    let n = sqlx::query(
        "UPDATE jobs SET status = $3, last_error = coalesce($4, last_error), finished_at = now(), updated_at = now(),
                locked_by = NULL, locked_until = NULL, lease_token = NULL
         WHERE id = $1 AND lease_token = $2",
    )
    .bind(lease.job_id.0)
    .bind(lease.token)
    .bind(status.as_str())
    .bind(error)
    .execute(store.system())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Gives jobs back to the queue, due now, without counting the attempt (shutdown): another
/// worker picks them up at once. Jobs whose cancellation was requested become `cancelled`.
/// Returns how many were still ours.
pub async fn release(store: &Store, leases: &[Lease]) -> Result<u64> {
    if leases.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = leases.iter().map(|l| l.job_id.0).collect();
    let tokens: Vec<Uuid> = leases.iter().map(|l| l.token).collect();
    let mut tx = store.system_tx().await?;
    let n = sqlx::query(
        "UPDATE jobs j SET
             status = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'queued' END,
             finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL THEN now() END,
             attempts = greatest(j.attempts - 1, 0), run_at = now(), updated_at = now(),
             locked_by = NULL, locked_until = NULL, lease_token = NULL
         FROM unnest($1::uuid[], $2::uuid[]) AS l(id, token)
         WHERE j.id = l.id AND j.lease_token = l.token",
    )
    .bind(&ids)
    .bind(&tokens)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n > 0 {
        notify_due(&mut *tx, "released").await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// A job whose lease expired, and what the reaper made of it.
#[derive(Clone, Debug)]
pub struct Reaped {
    pub job_id: JobId,
    pub kind: String,
    pub status: JobStatus,
}

/// Requeues running jobs whose lease expired (their worker crashed, was killed or lost the
/// database). The lost attempt counts: a job that kills its worker every time ends `dead`.
/// Safe to run from every worker at once.
pub async fn reap_expired(store: &Store, limit: i64) -> Result<Vec<Reaped>> {
    let mut tx = store.system_tx().await?;
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "WITH expired AS (
             SELECT id FROM jobs WHERE status = 'running' AND locked_until < now()
             ORDER BY locked_until LIMIT $1 FOR UPDATE SKIP LOCKED
         )
         UPDATE jobs j SET
             status = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                           WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
             finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL OR j.attempts >= j.max_attempts THEN now() END,
             run_at = now(), updated_at = now(),
             last_error = format('Worker %s stopped renewing its lease during attempt %s (it crashed, was stopped '
                                 'or lost the database); the job was handed back to the queue.', j.locked_by, j.attempts),
             locked_by = NULL, locked_until = NULL, lease_token = NULL
         FROM expired WHERE j.id = expired.id
         RETURNING j.id, j.kind, j.status",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    if rows.iter().any(|r| r.2 == "queued") {
        notify_due(&mut *tx, "reaped").await?;
    }
    tx.commit().await?;
    rows.into_iter()
        .map(|(id, kind, status)| {
            Ok(Reaped {
                job_id: JobId(id),
                kind,
                status: status.parse()?,
            })
        })
        .collect()
}

/// Deletes finished jobs (and, by cascade, their logs) that finished more than `older_than`
/// ago, at most `limit` per call. Returns how many were deleted.
pub async fn prune_finished(store: &Store, older_than: Duration, limit: i64) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM jobs WHERE id IN (
             SELECT id FROM jobs
             WHERE finished_at < now() - $1 * interval '1 millisecond'
             ORDER BY finished_at LIMIT $2)",
    )
    .bind(millis(older_than))
    .bind(limit)
    .execute(store.system())
    .await?
    .rows_affected())
}
