//! Sync runs: one per sync job (same id), with kind, status, timing, stats, warnings, and the
//! delta cursors the next incremental run starts from.

use crate::page::{Cursor, Page};
use crate::{OrgTx, Result, StoreError};
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct SyncRun {
    pub id: Uuid,
    pub connector_id: Uuid,
    pub kind: String,
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub stats: Value,
    pub warnings: Value,
    pub error: Option<String>,
    #[serde(skip)]
    pub cursors: Option<Value>,
}

const COLUMNS: &str =
    "id, connector_id, kind, status, started_at, finished_at, stats, warnings, error, cursors";

/// Starts the run of job `id`, or returns it when an earlier attempt started it (resume).
pub async fn start(tx: &mut OrgTx, id: Uuid, connector: Uuid, kind: &str) -> Result<SyncRun> {
    let org = tx.org();
    sqlx::query(
        "INSERT INTO sync_runs (id, org_id, connector_id, kind, status) VALUES ($1, $2, $3, $4, 'running')
         ON CONFLICT (id) DO UPDATE SET status = 'running', finished_at = NULL, error = NULL",
    )
    .bind(id)
    .bind(org.0)
    .bind(connector)
    .bind(kind)
    .execute(tx.conn())
    .await?;
    get(tx, id).await
}

/// When the connector's last successful sync ended (what an incremental one changes is what
/// came after it).
pub async fn last_success_at(tx: &mut OrgTx, connector: Uuid) -> Result<Option<OffsetDateTime>> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT max(finished_at) FROM sync_runs
          WHERE org_id = $1 AND connector_id = $2 AND status = 'succeeded'",
    )
    .bind(org.0)
    .bind(connector)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn get(tx: &mut OrgTx, id: Uuid) -> Result<SyncRun> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sync_runs WHERE org_id = $1 AND id = $2"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// Replaces the stats and warnings while the run goes on (the UI shows counts as they grow).
pub async fn set_progress(tx: &mut OrgTx, id: Uuid, stats: &Value, warnings: &Value) -> Result<()> {
    let org = tx.org();
    sqlx::query("UPDATE sync_runs SET stats = $3, warnings = $4 WHERE org_id = $1 AND id = $2")
        .bind(org.0)
        .bind(id)
        .bind(stats)
        .bind(warnings)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Ends the run: `succeeded`, `failed` or `cancelled`; `cursors` only on success.
pub async fn finish(
    tx: &mut OrgTx,
    id: Uuid,
    status: &str,
    stats: &Value,
    warnings: &Value,
    error: Option<&str>,
    cursors: Option<&Value>,
) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "UPDATE sync_runs SET status = $3, stats = $4, warnings = $5, error = $6, cursors = $7, finished_at = now()
          WHERE org_id = $1 AND id = $2",
    )
    .bind(org.0)
    .bind(id)
    .bind(status)
    .bind(stats)
    .bind(warnings)
    .bind(error)
    .bind(cursors)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The newest successful run of the connector that left delta cursors (where an incremental
/// run starts), if any.
pub async fn last_cursors(tx: &mut OrgTx, connector: Uuid) -> Result<Option<SyncRun>> {
    let org = tx.org();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sync_runs
          WHERE org_id = $1 AND connector_id = $2 AND status = 'succeeded' AND cursors IS NOT NULL
          ORDER BY finished_at DESC LIMIT 1"
    )))
    .bind(org.0)
    .bind(connector)
    .fetch_optional(tx.conn())
    .await?)
}

/// The connector's runs, newest first.
pub async fn list(
    tx: &mut OrgTx,
    connector: Uuid,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<SyncRun>> {
    let org = tx.org();
    let rows: Vec<SyncRun> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sync_runs
          WHERE org_id = $1 AND connector_id = $2
            AND ($3::uuid IS NULL OR (started_at, id) < (SELECT started_at, id FROM sync_runs WHERE org_id = $1 AND id = $3))
          ORDER BY started_at DESC, id DESC LIMIT $4"
    )))
    .bind(org.0)
    .bind(connector)
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |r| r.id))
}
