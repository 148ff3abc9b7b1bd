//! Connectors: the link from an app to a system, with owners, settings (never secrets),
//! a status a person can act on, and what the last connection test found.

use crate::page::{Cursor, Page};
use crate::{OrgTx, Result, StoreError};
use latchkey_core::UserId;
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Connector {
    pub id: Uuid,
    pub org_id: Uuid,
    pub app_id: Uuid,
    pub app_name: String,
    pub kind: String,
    pub display_name: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub settings: Option<Value>,
    pub capabilities: Option<Value>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub secret_set_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub secret_expires_at: Option<OffsetDateTime>,
    pub last_test_job_id: Option<Uuid>,
    pub last_sync_job_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sync_at: Option<OffsetDateTime>,
    pub created_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub disabled_at: Option<OffsetDateTime>,
}

const SELECT: &str = "SELECT c.id, c.org_id, c.app_id, a.name AS app_name, c.kind, c.display_name, c.status, c.status_reason,
        c.settings, c.capabilities, c.secret_set_at, c.secret_expires_at, c.last_test_job_id, c.last_sync_job_id,
        c.last_sync_at, c.created_by, c.created_at, c.updated_at, c.disabled_at
   FROM connectors c JOIN apps a ON a.id = c.app_id";

#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct Owner {
    pub user_id: Uuid,
    pub display_name: String,
    pub email: String,
}

pub struct NewConnector<'a> {
    pub app_id: Uuid,
    pub kind: &'a str,
    pub display_name: &'a str,
    pub created_by: Option<UserId>,
}

pub async fn create(tx: &mut OrgTx, new: NewConnector<'_>) -> Result<Connector> {
    let org = tx.org();
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO connectors (id, org_id, app_id, kind, display_name, created_by, status_reason)
         VALUES ($1, $2, $3, $4, $5, $6, 'Open Settings and choose Client secret or OAuth to connect.')",
    )
    .bind(id)
    .bind(org.0)
    .bind(new.app_id)
    .bind(new.kind)
    .bind(new.display_name)
    .bind(new.created_by.map(|u| u.0))
    .execute(tx.conn())
    .await?;
    get(tx, id).await
}

pub async fn get(tx: &mut OrgTx, id: Uuid) -> Result<Connector> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE c.org_id = $1 AND c.id = $2"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn list(tx: &mut OrgTx, after: Option<Cursor>, limit: i64) -> Result<Page<Connector>> {
    let org = tx.org();
    let rows: Vec<Connector> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE c.org_id = $1 AND ($2::uuid IS NULL OR c.id > $2) ORDER BY c.id LIMIT $3"
    )))
    .bind(org.0)
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |c| c.id))
}

/// Replaces the owners. Every id must be a person of this organization, else
/// `Conflict { field: "owners" }` and nothing changes.
pub async fn set_owners(tx: &mut OrgTx, id: Uuid, owners: &[UserId]) -> Result<()> {
    let org = tx.org();
    let ids: Vec<Uuid> = owners.iter().map(|u| u.0).collect();
    let known: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE org_id = $1 AND id = ANY($2)")
            .bind(org.0)
            .bind(&ids)
            .fetch_one(tx.conn())
            .await?;
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    if known as usize != distinct.len() {
        return Err(StoreError::Conflict { field: "owners" });
    }
    sqlx::query("DELETE FROM connector_owners WHERE org_id = $1 AND connector_id = $2 AND NOT (user_id = ANY($3))")
        .bind(org.0)
        .bind(id)
        .bind(&distinct)
        .execute(tx.conn())
        .await?;
    sqlx::query(
        "INSERT INTO connector_owners (org_id, connector_id, user_id) SELECT $1, $2, unnest($3::uuid[]) ON CONFLICT DO NOTHING",
    )
    .bind(org.0)
    .bind(id)
    .bind(&distinct)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn owners(tx: &mut OrgTx, id: Uuid) -> Result<Vec<Owner>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT u.id AS user_id, u.display_name, u.email FROM connector_owners o JOIN users u ON u.id = o.user_id
          WHERE o.org_id = $1 AND o.connector_id = $2 ORDER BY lower(u.display_name), u.id",
    )
    .bind(org.0)
    .bind(id)
    .fetch_all(tx.conn())
    .await?)
}

/// The owners (as [`owners`]) and whether a secret is stored at `secret`, in one statement:
/// every connector view needs both.
pub async fn owners_and_secret(
    tx: &mut OrgTx,
    id: Uuid,
    secret: crate::secrets::SecretRef<'_>,
) -> Result<(Vec<Owner>, bool)> {
    let org = tx.org();
    // One row per owner, or one row of NULLs when there is none; the flag on every row.
    type Row = (bool, Option<Uuid>, Option<String>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.secret_set, u.id, u.display_name, u.email
           FROM (SELECT EXISTS (SELECT 1 FROM encrypted_secrets
                                 WHERE org_id = $1 AND owner_table = $3 AND owner_id = $4 AND field = $5)
                   AS secret_set) s
           LEFT JOIN (connector_owners o JOIN users u ON u.id = o.user_id)
             ON o.org_id = $1 AND o.connector_id = $2
          ORDER BY lower(u.display_name), u.id",
    )
    .bind(org.0)
    .bind(id)
    .bind(secret.owner_table)
    .bind(secret.owner_id)
    .bind(secret.field)
    .fetch_all(tx.conn())
    .await?;
    let secret_set = rows.first().is_some_and(|r| r.0);
    let owners = rows
        .into_iter()
        .filter_map(|(_, user_id, display_name, email)| {
            Some(Owner {
                user_id: user_id?,
                display_name: display_name?,
                email: email?,
            })
        })
        .collect();
    Ok((owners, secret_set))
}

pub async fn is_owner(tx: &mut OrgTx, id: Uuid, user: UserId) -> Result<bool> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM connector_owners WHERE org_id = $1 AND connector_id = $2 AND user_id = $3)",
    )
    .bind(org.0)
    .bind(id)
    .bind(user.0)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn set_display_name(tx: &mut OrgTx, id: Uuid, name: &str) -> Result<()> {
    update(tx, id, "display_name = $3", |q| q.bind(name.to_string())).await
}

pub async fn set_settings(tx: &mut OrgTx, id: Uuid, settings: &Value) -> Result<()> {
    update(tx, id, "settings = $3", |q| q.bind(settings.clone())).await
}

pub async fn set_status(
    tx: &mut OrgTx,
    id: Uuid,
    status: &str,
    reason: Option<&str>,
) -> Result<()> {
    let reason = reason.map(str::to_string);
    update(tx, id, "status = $3, status_reason = $4", |q| {
        q.bind(status.to_string()).bind(reason)
    })
    .await
}

pub async fn set_capabilities(tx: &mut OrgTx, id: Uuid, capabilities: &Value) -> Result<()> {
    update(tx, id, "capabilities = $3", |q| {
        q.bind(capabilities.clone())
    })
    .await
}

pub async fn set_secret_meta(
    tx: &mut OrgTx,
    id: Uuid,
    set_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
) -> Result<()> {
    update(tx, id, "secret_set_at = $3, secret_expires_at = $4", |q| {
        q.bind(set_at).bind(expires_at)
    })
    .await
}

pub async fn set_secret_expiry(
    tx: &mut OrgTx,
    id: Uuid,
    expires_at: Option<OffsetDateTime>,
) -> Result<()> {
    update(tx, id, "secret_expires_at = $3", |q| q.bind(expires_at)).await
}

pub async fn set_last_test_job(tx: &mut OrgTx, id: Uuid, job: Uuid) -> Result<()> {
    update(tx, id, "last_test_job_id = $3", |q| q.bind(job)).await
}

/// Locks the connector row if `job` is still its latest connection test and the connector is
/// not disabled: a test whose settings were replaced (a newer test was queued) or whose
/// connector was disabled while it ran must not report over them. The lock holds until the
/// transaction ends, so a settings change cannot slip in between this check and the verdict.
pub async fn lock_if_current_test(tx: &mut OrgTx, id: Uuid, job: Uuid) -> Result<bool> {
    let org = tx.org();
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM connectors
         WHERE org_id = $1 AND id = $2 AND last_test_job_id = $3 AND status <> 'disabled'
         FOR UPDATE",
    )
    .bind(org.0)
    .bind(id)
    .bind(job)
    .fetch_optional(tx.conn())
    .await?;
    Ok(found.is_some())
}

pub async fn set_last_sync_job(tx: &mut OrgTx, id: Uuid, job: Uuid) -> Result<()> {
    update(tx, id, "last_sync_job_id = $3", |q| q.bind(job)).await
}

pub async fn record_sync_finished(tx: &mut OrgTx, id: Uuid) -> Result<()> {
    update(tx, id, "last_sync_at = now()", |q| q).await
}

/// Disables the connector; its credentials are removed by the caller in the same transaction.
pub async fn disable(tx: &mut OrgTx, id: Uuid) -> Result<()> {
    update(
        tx,
        id,
        "status = 'disabled', status_reason = 'Disabled; its credentials were removed.', disabled_at = coalesce(disabled_at, now()), secret_set_at = NULL, secret_expires_at = NULL",
        |q| q,
    )
    .await
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

async fn update<'q>(
    tx: &mut OrgTx,
    id: Uuid,
    set: &str,
    bind: impl FnOnce(PgQuery<'q>) -> PgQuery<'q>,
) -> Result<()> {
    let org = tx.org();
    let sql =
        format!("UPDATE connectors SET {set}, updated_at = now() WHERE org_id = $1 AND id = $2");
    let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(org.0).bind(id);
    let n = bind(q).execute(tx.conn()).await?.rows_affected();
    if n == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}
