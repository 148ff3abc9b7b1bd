//! Job queue storage: the SQL behind `latchkey-jobs` (claiming, leases, fencing, logs, schedules).
//!
//! Two kinds of callers:
//! - the product (web handlers, other jobs) enqueues, lists, cancels and reads logs inside an
//!   organization's transaction ([`OrgTx`]), so an enqueue can commit atomically with the
//!   domain change that caused it;
//! - the worker pool claims, heartbeats, fences its writes, reaps and schedules through the
//!   owner connection ([`Store::system`]), because that work spans organizations. Those
//!   functions live in [`worker`] and [`schedules`].
//!
//! Every write a running job makes carries its [`Lease`]: `WHERE id = $1 AND lease_token = $2`.
//! When the lease has moved on (expired and reclaimed, released, cancelled) the write changes
//! nothing and the function says so, and the job must stop.

pub mod schedules;
pub mod stats;
pub mod worker;

use crate::page::{Cursor, Page, clamp_limit};
use crate::{OrgTx, Result, Store, StoreError};
use latchkey_core::OrgId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::FromRow;
use std::fmt;
use std::str::FromStr;
use time::OffsetDateTime;
use uuid::Uuid;

/// The channel that wakes idle workers when a job becomes due (payload: the job's kind).
pub const NOTIFY_CHANNEL: &str = "latchkey_jobs";
/// The channel that tells the worker running a job that it was cancelled (payload: job id).
pub const CANCEL_CHANNEL: &str = "latchkey_job_cancel";

/// A job of the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl JobId {
    /// A fresh, time-ordered id (UUIDv7: list order is creation order).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl From<Uuid> for JobId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::Corrupt(format!(concat!("unknown ", stringify!($name), " {:?}"), other))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Where a job is in its life. `succeeded`, `failed`, `cancelled` and `dead` are final.
    JobStatus {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        /// Refused for good (a permanent error); `last_error` says why.
        Failed = "failed",
        Cancelled = "cancelled",
        /// Ran out of attempts on transient errors; `last_error` holds the last one.
        Dead = "dead",
    }
);

impl JobStatus {
    pub fn is_final(&self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

text_enum!(
    /// How the queue treats a job when choosing what to run.
    JobClass {
        /// Grants, revokes and expiries: claimed before every other class.
        Provision = "provision",
        /// Everything else (notifications, checks, housekeeping).
        Other = "other",
        /// Connector syncs: at most one running per connector, claimed last, and never in a
        /// worker's last free slot so provisioning always finds room.
        Sync = "sync",
    }
);

text_enum!(
    /// Severity of a job log line.
    LogLevel {
        Debug = "debug",
        Info = "info",
        Warn = "warn",
        Error = "error",
    }
);

/// What to enqueue. Build with [`NewJob::new`] and the chained setters.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub kind: String,
    pub payload: Value,
    pub connector_id: Option<Uuid>,
    pub class: JobClass,
    /// Higher runs first within a class.
    pub priority: i16,
    /// Not before this time; `None` means now.
    pub run_at: Option<OffsetDateTime>,
    pub max_attempts: i32,
    /// While a job with the same key (in the same organization) is queued or running,
    /// enqueueing returns that job instead of a new one.
    pub dedupe_key: Option<String>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        Self {
            kind: kind.into(),
            payload,
            connector_id: None,
            class: JobClass::Other,
            priority: 0,
            run_at: None,
            max_attempts: 5,
            dedupe_key: None,
        }
    }
    pub fn connector(mut self, connector_id: Uuid) -> Self {
        self.connector_id = Some(connector_id);
        self
    }
    pub fn class(mut self, class: JobClass) -> Self {
        self.class = class;
        self
    }
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }
    pub fn run_at(mut self, at: OffsetDateTime) -> Self {
        self.run_at = Some(at);
        self
    }
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = n;
        self
    }
    pub fn dedupe_key(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    fn check(&self) -> Result<()> {
        if self.class == JobClass::Sync && self.connector_id.is_none() {
            return Err(StoreError::Corrupt("a sync job needs a connector".into()));
        }
        if !(1..=100).contains(&self.max_attempts) {
            return Err(StoreError::Corrupt(
                "max_attempts must be between 1 and 100".into(),
            ));
        }
        Ok(())
    }
}

/// A job as stored: the queue entry and the run record at once.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub id: JobId,
    /// `None` for system jobs, which belong to no organization.
    pub org_id: Option<OrgId>,
    pub connector_id: Option<Uuid>,
    pub kind: String,
    pub class: JobClass,
    pub payload: Value,
    pub priority: i16,
    pub status: JobStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub run_at: OffsetDateTime,
    pub attempts: i32,
    pub max_attempts: i32,
    pub dedupe_key: Option<String>,
    pub schedule_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub scheduled_for: Option<OffsetDateTime>,
    pub locked_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub locked_until: Option<OffsetDateTime>,
    /// The lease of the current attempt: a capability, so it is never serialised.
    #[serde(skip)]
    pub lease_token: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cancel_requested_at: Option<OffsetDateTime>,
    pub progress: Option<Value>,
    pub checkpoint: Option<Value>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

impl Job {
    /// The lease of a job this worker just claimed.
    pub fn lease(&self) -> Option<Lease> {
        self.lease_token.map(|token| Lease {
            job_id: self.id,
            token,
            attempt: self.attempts,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct JobRow {
    id: Uuid,
    org_id: Option<Uuid>,
    connector_id: Option<Uuid>,
    kind: String,
    class: String,
    payload: Value,
    priority: i16,
    status: String,
    run_at: OffsetDateTime,
    attempts: i32,
    max_attempts: i32,
    dedupe_key: Option<String>,
    schedule_id: Option<Uuid>,
    scheduled_for: Option<OffsetDateTime>,
    locked_by: Option<String>,
    locked_until: Option<OffsetDateTime>,
    lease_token: Option<Uuid>,
    cancel_requested_at: Option<OffsetDateTime>,
    progress: Option<Value>,
    checkpoint: Option<Value>,
    last_error: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    started_at: Option<OffsetDateTime>,
    finished_at: Option<OffsetDateTime>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;
    fn try_from(r: JobRow) -> Result<Self> {
        Ok(Job {
            id: JobId(r.id),
            org_id: r.org_id.map(OrgId),
            connector_id: r.connector_id,
            kind: r.kind,
            class: r.class.parse()?,
            payload: r.payload,
            priority: r.priority,
            status: r.status.parse()?,
            run_at: r.run_at,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            dedupe_key: r.dedupe_key,
            schedule_id: r.schedule_id,
            scheduled_for: r.scheduled_for,
            locked_by: r.locked_by,
            locked_until: r.locked_until,
            lease_token: r.lease_token,
            cancel_requested_at: r.cancel_requested_at,
            progress: r.progress,
            checkpoint: r.checkpoint,
            last_error: r.last_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

pub(crate) const JOB_COLUMNS: &str = "id, org_id, connector_id, kind, class, payload, priority, status, run_at, \
     attempts, max_attempts, dedupe_key, schedule_id, scheduled_for, locked_by, locked_until, lease_token, \
     cancel_requested_at, progress, checkpoint, last_error, created_at, updated_at, started_at, finished_at";

pub(crate) fn jobs_from_rows(rows: Vec<JobRow>) -> Result<Vec<Job>> {
    rows.into_iter().map(Job::try_from).collect()
}

/// The right to write for one attempt of one job. Every fenced write carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub job_id: JobId,
    pub token: Uuid,
    pub attempt: i32,
}

/// The result of an enqueue: the job, and whether it is new or a duplicate's original.
#[derive(Clone, Debug)]
pub struct Enqueued {
    pub job: Job,
    pub created: bool,
}

/// One structured log line of a job.
#[derive(Clone, Debug, Serialize)]
pub struct JobLog {
    /// The cursor: pass the last one seen as `after` to read only newer lines.
    pub id: i64,
    pub job_id: JobId,
    pub attempt: i32,
    pub level: LogLevel,
    pub message: String,
    pub fields: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(FromRow)]
struct JobLogRow {
    id: i64,
    job_id: Uuid,
    attempt: i32,
    level: String,
    message: String,
    fields: Value,
    at: OffsetDateTime,
}

impl TryFrom<JobLogRow> for JobLog {
    type Error = StoreError;
    fn try_from(r: JobLogRow) -> Result<Self> {
        Ok(JobLog {
            id: r.id,
            job_id: JobId(r.job_id),
            attempt: r.attempt,
            level: r.level.parse()?,
            message: r.message,
            fields: r.fields,
            at: r.at,
        })
    }
}

/// Which of an organization's jobs to list; every field narrows.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub connector_id: Option<Uuid>,
    pub status: Option<JobStatus>,
    pub kind: Option<String>,
}

async fn insert(
    conn: &mut sqlx::PgConnection,
    org: Option<OrgId>,
    new: &NewJob,
) -> Result<Enqueued> {
    new.check()?;
    // Two rounds at most: a duplicate can finish between our insert and our read.
    for _ in 0..3 {
        let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO jobs (id, org_id, connector_id, kind, class, payload, priority, run_at, max_attempts, dedupe_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now()), $9, $10)
             ON CONFLICT DO NOTHING
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(JobId::new().0)
        .bind(org.map(|o| o.0))
        .bind(new.connector_id)
        .bind(&new.kind)
        .bind(new.class.as_str())
        .bind(&new.payload)
        .bind(new.priority)
        .bind(new.run_at)
        .bind(new.max_attempts)
        .bind(&new.dedupe_key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            let job = Job::try_from(row)?;
            if new.run_at.is_none_or(|at| at <= OffsetDateTime::now_utc()) {
                notify_due(&mut *conn, &job.kind).await?;
            }
            return Ok(Enqueued { job, created: true });
        }
        let Some(key) = &new.dedupe_key else {
            return Err(StoreError::Corrupt(
                "job insert conflicted without a dedupe key".into(),
            ));
        };
        let existing: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE org_id IS NOT DISTINCT FROM $1 AND dedupe_key = $2 AND status IN ('queued', 'running')"
        )))
        .bind(org.map(|o| o.0))
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = existing {
            return Ok(Enqueued {
                job: Job::try_from(row)?,
                created: false,
            });
        }
    }
    Err(StoreError::Conflict {
        field: "dedupe_key",
    })
}

pub(crate) async fn notify_due<'c, E: sqlx::PgExecutor<'c>>(conn: E, kind: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(kind)
        .execute(conn)
        .await?;
    Ok(())
}

/// Enqueues a job for the transaction's organization. The job (and the wake-up of idle
/// workers) becomes visible when the transaction commits, together with whatever else it did.
/// A duplicate of a queued or running job with the same `dedupe_key` returns that job.
pub async fn enqueue(tx: &mut OrgTx, new: &NewJob) -> Result<Enqueued> {
    let org = tx.org();
    insert(tx.conn(), Some(org), new).await
}

/// Enqueues many jobs in one statement (fan-out, benchmarks). Duplicates of active jobs are
/// skipped; returns how many were inserted.
pub async fn enqueue_batch(tx: &mut OrgTx, jobs: &[NewJob]) -> Result<u64> {
    let org = tx.org();
    insert_batch(tx.conn(), Some(org), jobs).await
}

async fn insert_batch(
    conn: &mut sqlx::PgConnection,
    org: Option<OrgId>,
    jobs: &[NewJob],
) -> Result<u64> {
    for j in jobs {
        j.check()?;
    }
    let ids: Vec<Uuid> = jobs.iter().map(|_| JobId::new().0).collect();
    let connectors: Vec<Option<Uuid>> = jobs.iter().map(|j| j.connector_id).collect();
    let kinds: Vec<&str> = jobs.iter().map(|j| j.kind.as_str()).collect();
    let classes: Vec<&str> = jobs.iter().map(|j| j.class.as_str()).collect();
    let payloads: Vec<&Value> = jobs.iter().map(|j| &j.payload).collect();
    let priorities: Vec<i16> = jobs.iter().map(|j| j.priority).collect();
    let run_ats: Vec<Option<OffsetDateTime>> = jobs.iter().map(|j| j.run_at).collect();
    let max_attempts: Vec<i32> = jobs.iter().map(|j| j.max_attempts).collect();
    let keys: Vec<Option<&str>> = jobs.iter().map(|j| j.dedupe_key.as_deref()).collect();
    let n = sqlx::query(
        "INSERT INTO jobs (id, org_id, connector_id, kind, class, payload, priority, run_at, max_attempts, dedupe_key)
         SELECT t.id, $2, t.connector_id, t.kind, t.class, t.payload, t.priority, coalesce(t.run_at, now()), t.max_attempts, t.dedupe_key
         FROM unnest($1::uuid[], $3::uuid[], $4::text[], $5::text[], $6::jsonb[], $7::int2[], $8::timestamptz[], $9::int4[], $10::text[])
              AS t(id, connector_id, kind, class, payload, priority, run_at, max_attempts, dedupe_key)
         ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .bind(org.map(|o| o.0))
    .bind(&connectors)
    .bind(&kinds)
    .bind(&classes)
    .bind(&payloads)
    .bind(&priorities)
    .bind(&run_ats)
    .bind(&max_attempts)
    .bind(&keys)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n > 0 {
        notify_due(&mut *conn, "batch").await?;
    }
    Ok(n)
}

/// Enqueues a system job (no organization), e.g. housekeeping. Owner connection.
pub async fn enqueue_system(store: &Store, new: &NewJob) -> Result<Enqueued> {
    let mut conn = store.system().acquire().await?;
    insert(&mut conn, None, new).await
}

/// Enqueues many system jobs in one statement. Owner connection.
pub async fn enqueue_system_batch(store: &Store, jobs: &[NewJob]) -> Result<u64> {
    let mut conn = store.system().acquire().await?;
    insert_batch(&mut conn, None, jobs).await
}

/// One of the organization's jobs.
pub async fn get(tx: &mut OrgTx, id: JobId) -> Result<Job> {
    let org = tx.org();
    let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE org_id = $1 AND id = $2"
    )))
    .bind(org.0)
    .bind(id.0)
    .fetch_optional(tx.conn())
    .await?;
    row.ok_or(StoreError::NotFound)?.try_into()
}

/// Several of the organization's jobs in one statement (those that exist; any order). A
/// connector's view names two (its last sync and last connection test).
pub async fn get_many(tx: &mut OrgTx, ids: &[JobId]) -> Result<Vec<Job>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let org = tx.org();
    let ids: Vec<Uuid> = ids.iter().map(|j| j.0).collect();
    let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE org_id = $1 AND id = ANY($2)"
    )))
    .bind(org.0)
    .bind(ids)
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(Job::try_from).collect()
}

/// Any job, whatever its organization. Owner connection: for the worker and operators.
pub async fn get_any(store: &Store, id: JobId) -> Result<Job> {
    let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
    )))
    .bind(id.0)
    .fetch_optional(store.system())
    .await?;
    row.ok_or(StoreError::NotFound)?.try_into()
}

/// The organization's jobs, newest first, `limit` per page (default 50, at most 200).
pub async fn list(
    tx: &mut OrgTx,
    filter: &JobFilter,
    after: Option<Cursor>,
    limit: Option<i64>,
) -> Result<Page<Job>> {
    let org = tx.org();
    let limit = clamp_limit(limit);
    let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs
         WHERE org_id = $1
           AND ($2::uuid IS NULL OR connector_id = $2)
           AND ($3::text IS NULL OR status = $3)
           AND ($4::text IS NULL OR kind = $4)
           AND ($5::uuid IS NULL OR id < $5)
         ORDER BY id DESC
         LIMIT $6"
    )))
    .bind(org.0)
    .bind(filter.connector_id)
    .bind(filter.status.map(|s| s.as_str()))
    .bind(filter.kind.as_deref())
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(jobs_from_rows(rows)?, limit, |j| j.id.0))
}

/// Cancels a job. A queued job is cancelled at once; a running one is asked to stop and
/// becomes `cancelled` when its handler reaches its next checkpoint (the worker running it is
/// told through `NOTIFY`). A finished job is returned unchanged.
pub async fn cancel(tx: &mut OrgTx, id: JobId) -> Result<Job> {
    let org = tx.org();
    let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET
             cancel_requested_at = coalesce(cancel_requested_at, now()),
             status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
             finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
             updated_at = now()
         WHERE org_id = $1 AND id = $2 AND status IN ('queued', 'running')
         RETURNING {JOB_COLUMNS}"
    )))
    .bind(org.0)
    .bind(id.0)
    .fetch_optional(tx.conn())
    .await?;
    match row {
        Some(row) => {
            let job = Job::try_from(row)?;
            if job.status == JobStatus::Running {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CANCEL_CHANNEL)
                    .bind(job.id.to_string())
                    .execute(tx.conn())
                    .await?;
            }
            Ok(job)
        }
        None => get(tx, id).await,
    }
}

/// Log lines of one of the organization's jobs, oldest first, after the cursor `after`
/// (a [`JobLog::id`]); at most `limit` (default 200, at most 1000). Tail a running job by
/// passing the last id seen.
pub async fn logs(
    tx: &mut OrgTx,
    id: JobId,
    after: Option<i64>,
    limit: Option<i64>,
) -> Result<Vec<JobLog>> {
    let org = tx.org();
    let limit = limit.unwrap_or(200).clamp(1, 1000);
    let rows: Vec<JobLogRow> = sqlx::query_as(
        "SELECT id, job_id, attempt, level, message, fields, at FROM job_logs
         WHERE org_id = $1 AND job_id = $2 AND id > $3
         ORDER BY id LIMIT $4",
    )
    .bind(org.0)
    .bind(id.0)
    .bind(after.unwrap_or(0))
    .bind(limit)
    .fetch_all(tx.conn())
    .await?;
    if rows.is_empty() {
        // Distinguish "no new lines" from "no such job".
        get(tx, id).await?;
    }
    rows.into_iter().map(JobLog::try_from).collect()
}

/// Log lines of any job (system jobs included). Owner connection.
pub async fn logs_any(
    store: &Store,
    id: JobId,
    after: Option<i64>,
    limit: Option<i64>,
) -> Result<Vec<JobLog>> {
    let limit = limit.unwrap_or(200).clamp(1, 1000);
    let rows: Vec<JobLogRow> = sqlx::query_as(
        "SELECT id, job_id, attempt, level, message, fields, at FROM job_logs
         WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(id.0)
    .bind(after.unwrap_or(0))
    .bind(limit)
    .fetch_all(store.system())
    .await?;
    rows.into_iter().map(JobLog::try_from).collect()
}
