//! People who sign in to Latchkey.

use crate::page::{Cursor, Page};
use crate::{OrgTx, Result, Store, StoreError};
use latchkey_core::{DisplayName, Email, Role, UserId};
use serde::Serialize;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct User {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub display_name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    #[serde(with = "time::serde::rfc3339::option")]
    pub disabled_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_login_at: Option<OffsetDateTime>,
    /// False for invited people who have not chosen a password yet.
    pub has_password: bool,
}

const COLUMNS: &str = "id, org_id, email, display_name, role, disabled_at, created_at, last_login_at, password_hash IS NOT NULL AS has_password";

/// What sign-in needs to know about an email, before any organization is known.
#[derive(Debug, Clone, FromRow)]
pub struct LoginCandidate {
    pub id: Uuid,
    pub org_id: Uuid,
    pub password_hash: Option<String>,
    pub disabled: bool,
}

/// Pre-authentication lookup by email (owner connection).
pub async fn find_for_login(store: &Store, email: &Email) -> Result<Option<LoginCandidate>> {
    Ok(sqlx::query_as(
        "SELECT id, org_id, password_hash, disabled_at IS NOT NULL AS disabled FROM users WHERE email = $1",
    )
    .bind(email.as_str())
    .fetch_optional(store.system())
    .await?)
}

pub async fn get(tx: &mut OrgTx, id: UserId) -> Result<User> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE org_id = $1 AND id = $2"
    )))
    .bind(org.0)
    .bind(id.0)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn list(tx: &mut OrgTx, after: Option<Cursor>, limit: i64) -> Result<Page<User>> {
    let org = tx.org();
    let rows: Vec<User> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE org_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    )))
    .bind(org.0)
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |u| u.id))
}

/// Adds a person to the organization (an invitation: no password yet).
pub async fn create(tx: &mut OrgTx, email: &Email, name: &DisplayName, role: Role) -> Result<User> {
    let org = tx.org();
    let id = UserId::new();
    sqlx::query(
        "INSERT INTO users (id, org_id, email, display_name, role) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.0)
    .bind(org.0)
    .bind(email.as_str())
    .bind(name.as_str())
    .bind(role.as_str())
    .execute(tx.conn())
    .await
    .map_err(|e| StoreError::on_unique(e, "users_email_key", "email"))?;
    get(tx, id).await
}

/// Changes a role, refusing to leave the organization without an active Super Administrator.
pub async fn set_role(tx: &mut OrgTx, id: UserId, role: Role) -> Result<User> {
    let user = get(tx, id).await?;
    if user.role == Role::SuperAdmin
        && role != Role::SuperAdmin
        && active_super_admins(tx).await? <= 1
    {
        return Err(StoreError::Conflict { field: "role" });
    }
    let org = tx.org();
    sqlx::query("UPDATE users SET role = $3 WHERE org_id = $1 AND id = $2")
        .bind(org.0)
        .bind(id.0)
        .bind(role.as_str())
        .execute(tx.conn())
        .await?;
    get(tx, id).await
}

/// Disables or re-enables sign-in. Disabling also ends the person's sessions.
pub async fn set_disabled(tx: &mut OrgTx, id: UserId, disabled: bool) -> Result<User> {
    let user = get(tx, id).await?;
    if disabled
        && user.disabled_at.is_none()
        && user.role == Role::SuperAdmin
        && active_super_admins(tx).await? <= 1
    {
        return Err(StoreError::Conflict { field: "disabled" });
    }
    let org = tx.org();
    sqlx::query(
        "UPDATE users SET disabled_at = CASE WHEN $3 THEN coalesce(disabled_at, now()) ELSE NULL END WHERE org_id = $1 AND id = $2",
    )
    .bind(org.0)
    .bind(id.0)
    .bind(disabled)
    .execute(tx.conn())
    .await?;
    if disabled {
        crate::sessions::delete_for_user(tx, id).await?;
    }
    get(tx, id).await
}

async fn active_super_admins(tx: &mut OrgTx) -> Result<i64> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM users WHERE org_id = $1 AND role = 'super_admin' AND disabled_at IS NULL",
    )
    .bind(org.0)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn set_password_hash(tx: &mut OrgTx, id: UserId, hash: &str) -> Result<()> {
    let org = tx.org();
    let n = sqlx::query("UPDATE users SET password_hash = $3 WHERE org_id = $1 AND id = $2")
        .bind(org.0)
        .bind(id.0)
        .bind(hash)
        .execute(tx.conn())
        .await?
        .rows_affected();
    if n == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

pub async fn record_login(tx: &mut OrgTx, id: UserId) -> Result<()> {
    let org = tx.org();
    sqlx::query("UPDATE users SET last_login_at = now() WHERE org_id = $1 AND id = $2")
        .bind(org.0)
        .bind(id.0)
        .execute(tx.conn())
        .await?;
    Ok(())
}
