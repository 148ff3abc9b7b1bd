//! Sign-in sessions. The cookie carries a random token; only its SHA-256 is stored.

use crate::{OrgTx, Result, Store};
use latchkey_core::{Role, SessionId, UserId};
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

pub struct NewSession<'a> {
    pub user_id: UserId,
    pub token_hash: &'a str,
    pub csrf_token: &'a str,
    pub idle_expires_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
}

pub async fn create(tx: &mut OrgTx, new: NewSession<'_>) -> Result<SessionId> {
    let id = SessionId::new();
    let org = tx.org();
    sqlx::query(
        "INSERT INTO sessions (id, org_id, user_id, token_hash, csrf_token, idle_expires_at, absolute_expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.0)
    .bind(org.0)
    .bind(new.user_id.0)
    .bind(new.token_hash)
    .bind(new.csrf_token)
    .bind(new.idle_expires_at)
    .bind(new.absolute_expires_at)
    .execute(tx.conn())
    .await?;
    Ok(id)
}

/// A live session with the person it belongs to.
#[derive(Debug, Clone, FromRow)]
pub struct SessionUser {
    pub session_id: Uuid,
    pub org_id: Uuid,
    pub user_id: Uuid,
    pub csrf_token: String,
    pub idle_expires_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub email: String,
    pub display_name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub org_name: String,
}

/// Pre-authentication lookup by token hash (owner connection). Expired sessions, and
/// sessions of disabled people, are not returned.
pub async fn lookup(store: &Store, token_hash: &str) -> Result<Option<SessionUser>> {
    Ok(sqlx::query_as(
        "SELECT s.id AS session_id, s.org_id, s.user_id, s.csrf_token, s.idle_expires_at, s.last_seen_at,
                u.email, u.display_name, u.role, o.name AS org_name
           FROM sessions s
           JOIN users u ON u.id = s.user_id AND u.org_id = s.org_id
           JOIN orgs o ON o.id = s.org_id
          WHERE s.token_hash = $1
            AND s.idle_expires_at > now() AND s.absolute_expires_at > now()
            AND u.disabled_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(store.system())
    .await?)
}

/// Slides the idle expiry forward (never past the absolute expiry).
pub async fn touch(tx: &mut OrgTx, id: SessionId, idle_expires_at: OffsetDateTime) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "UPDATE sessions SET last_seen_at = now(), idle_expires_at = least($3, absolute_expires_at)
          WHERE org_id = $1 AND id = $2",
    )
    .bind(org.0)
    .bind(id.0)
    .bind(idle_expires_at)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn delete(tx: &mut OrgTx, id: SessionId) -> Result<()> {
    let org = tx.org();
    sqlx::query("DELETE FROM sessions WHERE org_id = $1 AND id = $2")
        .bind(org.0)
        .bind(id.0)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub async fn delete_for_user(tx: &mut OrgTx, user: UserId) -> Result<u64> {
    let org = tx.org();
    Ok(
        sqlx::query("DELETE FROM sessions WHERE org_id = $1 AND user_id = $2")
            .bind(org.0)
            .bind(user.0)
            .execute(tx.conn())
            .await?
            .rows_affected(),
    )
}

/// Removes expired sessions of every organization (owner connection; housekeeping).
pub async fn purge_expired(store: &Store) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM sessions WHERE idle_expires_at <= now() OR absolute_expires_at <= now()",
    )
    .execute(store.system())
    .await?
    .rows_affected())
}
