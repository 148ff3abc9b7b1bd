//! The email outbox: messages are written with the change that causes them and delivered
//! by a job, so none is lost or sent twice by a crash.

use crate::{OrgTx, Result, Store};
use serde::Serialize;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Email {
    pub id: Uuid,
    pub org_id: Uuid,
    pub to_address: String,
    pub subject: String,
    pub body_text: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

const COLUMNS: &str =
    "id, org_id, to_address, subject, body_text, created_at, sent_at, attempts, last_error";

pub async fn enqueue(tx: &mut OrgTx, to: &str, subject: &str, body: &str) -> Result<Uuid> {
    let org = tx.org();
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO email_outbox (id, org_id, to_address, subject, body_text) VALUES ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(org.0)
        .bind(to)
        .bind(subject)
        .bind(body)
        .execute(tx.conn())
        .await?;
    Ok(id)
}

/// The organization's messages, newest first (the demo's outbox page).
pub async fn recent(tx: &mut OrgTx, limit: i64) -> Result<Vec<Email>> {
    let org = tx.org();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM email_outbox WHERE org_id = $1 ORDER BY id DESC LIMIT $2"
    )))
    .bind(org.0)
    .bind(limit)
    .fetch_all(tx.conn())
    .await?)
}

/// Unsent messages of every organization, locked for one delivery attempt (owner
/// connection; the delivery job is system work). Returns the open transaction so the
/// caller marks each result before committing.
/// `after` continues a pass through the outbox: a message that failed in this pass is not
/// tried again in it (the next delivery job retries it).
pub async fn claim_unsent(
    store: &Store,
    after: Option<Uuid>,
    limit: i64,
) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Vec<Email>)> {
    let mut tx = store.system_tx().await?;
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM email_outbox WHERE sent_at IS NULL AND attempts < 10 AND ($1::uuid IS NULL OR id > $1)
          ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    Ok((tx, rows))
}

pub async fn mark_sent(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE email_outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}

pub async fn mark_failed(tx: &mut sqlx::PgConnection, id: Uuid, error: &str) -> Result<()> {
    sqlx::query("UPDATE email_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1")
        .bind(id)
        .bind(error)
        .execute(tx)
        .await?;
    Ok(())
}
