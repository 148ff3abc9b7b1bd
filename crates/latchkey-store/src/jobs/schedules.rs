//! Periodic jobs: one row per schedule, turned into jobs exactly once per period by whichever
//! worker's scheduler locks the row first.

use super::{JobClass, JobId, notify_due};
use crate::{OrgTx, Result, Store, StoreError};
use latchkey_core::OrgId;
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// A schedule to create or update, keyed by `name` within its organization
/// (e.g. `sync:<connector id>` for a connector's periodic sync).
#[derive(Clone, Debug)]
pub struct NewSchedule {
    pub name: String,
    pub kind: String,
    pub payload: Value,
    pub connector_id: Option<Uuid>,
    pub class: JobClass,
    pub priority: i16,
    pub max_attempts: i32,
    pub every: Duration,
    /// The first period; `None` means one period from now.
    pub first_run_at: Option<OffsetDateTime>,
    pub enabled: bool,
}

impl NewSchedule {
    pub fn new(name: impl Into<String>, kind: impl Into<String>, every: Duration) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            payload: Value::Object(Default::default()),
            connector_id: None,
            class: JobClass::Other,
            priority: 0,
            max_attempts: 5,
            every,
            first_run_at: None,
            enabled: true,
        }
    }
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }
    pub fn connector(mut self, connector_id: Uuid) -> Self {
        self.connector_id = Some(connector_id);
        self
    }
    pub fn class(mut self, class: JobClass) -> Self {
        self.class = class;
        self
    }
    pub fn first_run_at(mut self, at: OffsetDateTime) -> Self {
        self.first_run_at = Some(at);
        self
    }
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }
}

#[derive(Clone, Debug, Serialize, FromRow)]
pub struct Schedule {
    pub id: Uuid,
    pub org_id: Option<Uuid>,
    pub name: String,
    pub connector_id: Option<Uuid>,
    pub kind: String,
    pub class: String,
    pub payload: Value,
    pub priority: i16,
    pub max_attempts: i32,
    pub every_seconds: f64,
    #[serde(with = "time::serde::rfc3339")]
    pub next_run_at: OffsetDateTime,
    pub enabled: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_enqueued_at: Option<OffsetDateTime>,
}

const SCHEDULE_COLUMNS: &str = "id, org_id, name, connector_id, kind, class, payload, priority, max_attempts, \
     extract(epoch FROM every)::float8 AS every_seconds, next_run_at, enabled, last_enqueued_at";

async fn upsert_for(
    conn: &mut sqlx::PgConnection,
    org: Option<OrgId>,
    s: &NewSchedule,
) -> Result<Schedule> {
    if s.every < Duration::from_secs(1) {
        return Err(StoreError::Corrupt(
            "a schedule's period must be at least one second".into(),
        ));
    }
    if s.class == JobClass::Sync && s.connector_id.is_none() {
        return Err(StoreError::Corrupt(
            "a sync schedule needs a connector".into(),
        ));
    }
    let every_ms = i64::try_from(s.every.as_millis()).unwrap_or(i64::MAX);
    // A changed period takes effect from now; an unchanged one keeps its phase.
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO job_schedules (id, org_id, name, connector_id, kind, class, payload, priority, max_attempts,
                                    every, next_run_at, enabled)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10 * interval '1 millisecond',
                 coalesce($11, now() + $10 * interval '1 millisecond'), $12)
         ON CONFLICT ON CONSTRAINT job_schedules_name_key DO UPDATE SET
             connector_id = excluded.connector_id, kind = excluded.kind, class = excluded.class,
             payload = excluded.payload, priority = excluded.priority, max_attempts = excluded.max_attempts,
             next_run_at = CASE WHEN job_schedules.every <> excluded.every
                                THEN least(job_schedules.next_run_at, excluded.next_run_at)
                                ELSE job_schedules.next_run_at END,
             every = excluded.every, enabled = excluded.enabled, updated_at = now()
         RETURNING {SCHEDULE_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(org.map(|o| o.0))
    .bind(&s.name)
    .bind(s.connector_id)
    .bind(&s.kind)
    .bind(s.class.as_str())
    .bind(&s.payload)
    .bind(s.priority)
    .bind(s.max_attempts)
    .bind(every_ms)
    .bind(s.first_run_at)
    .bind(s.enabled)
    .fetch_one(&mut *conn)
    .await?)
}

/// Creates or updates one of the organization's schedules.
pub async fn upsert(tx: &mut OrgTx, s: &NewSchedule) -> Result<Schedule> {
    let org = tx.org();
    upsert_for(tx.conn(), Some(org), s).await
}

/// Creates or updates a system schedule (no organization), e.g. housekeeping. Owner connection.
pub async fn upsert_system(store: &Store, s: &NewSchedule) -> Result<Schedule> {
    let mut conn = store.system().acquire().await?;
    upsert_for(&mut conn, None, s).await
}

/// Deletes one of the organization's schedules; jobs it already enqueued stay.
pub async fn delete(tx: &mut OrgTx, name: &str) -> Result<bool> {
    let org = tx.org();
    let n = sqlx::query("DELETE FROM job_schedules WHERE org_id = $1 AND name = $2")
        .bind(org.0)
        .bind(name)
        .execute(tx.conn())
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// One of the organization's schedules by name, if it exists.
pub async fn get(tx: &mut OrgTx, name: &str) -> Result<Option<Schedule>> {
    let org = tx.org();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SCHEDULE_COLUMNS} FROM job_schedules WHERE org_id = $1 AND name = $2"
    )))
    .bind(org.0)
    .bind(name)
    .fetch_optional(tx.conn())
    .await?)
}

pub async fn list(tx: &mut OrgTx) -> Result<Vec<Schedule>> {
    let org = tx.org();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SCHEDULE_COLUMNS} FROM job_schedules WHERE org_id = $1 ORDER BY name"
    )))
    .bind(org.0)
    .fetch_all(tx.conn())
    .await?)
}

#[derive(FromRow)]
struct DueRow {
    id: Uuid,
    org_id: Option<Uuid>,
    connector_id: Option<Uuid>,
    kind: String,
    class: String,
    payload: Value,
    priority: i16,
    max_attempts: i32,
    next_run_at: OffsetDateTime,
}

/// Enqueues one job for every due schedule and moves each schedule to its next period, in
/// one transaction. The schedule row stays locked until commit and other schedulers skip it,
/// so a period is enqueued once however many workers run this; a unique index on
/// `(schedule_id, scheduled_for)` backs that up. Periods missed while no worker ran are
/// skipped, not replayed; a period whose previous job is still queued or running is skipped
/// too (its dedupe key is the schedule's), so slow syncs do not pile up.
///
/// Returns the jobs created. Owner connection.
pub async fn enqueue_due(store: &Store, limit: i64) -> Result<Vec<JobId>> {
    let mut tx = store.system_tx().await?;
    let due: Vec<DueRow> = sqlx::query_as(
        "SELECT id, org_id, connector_id, kind, class, payload, priority, max_attempts, next_run_at
         FROM job_schedules WHERE enabled AND next_run_at <= now()
         ORDER BY next_run_at LIMIT $1
         FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut created = Vec::new();
    for s in &due {
        let id: Option<(Uuid,)> = sqlx::query_as(
            "INSERT INTO jobs (id, org_id, connector_id, kind, class, payload, priority, max_attempts,
                               dedupe_key, schedule_id, scheduled_for)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'schedule:' || $9::text, $9, $10)
             ON CONFLICT DO NOTHING
             RETURNING id",
        )
        .bind(JobId::new().0)
        .bind(s.org_id)
        .bind(s.connector_id)
        .bind(&s.kind)
        .bind(&s.class)
        .bind(&s.payload)
        .bind(s.priority)
        .bind(s.max_attempts)
        .bind(s.id)
        .bind(s.next_run_at)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((id,)) = id {
            created.push(JobId(id));
        }
        sqlx::query(
            "UPDATE job_schedules SET
                 next_run_at = next_run_at
                     + every * (floor(extract(epoch FROM now() - next_run_at) / extract(epoch FROM every)) + 1),
                 last_enqueued_at = now()
             WHERE id = $1",
        )
        .bind(s.id)
        .execute(&mut *tx)
        .await?;
    }
    if !created.is_empty() {
        notify_due(&mut *tx, "scheduled").await?;
    }
    tx.commit().await?;
    Ok(created)
}
