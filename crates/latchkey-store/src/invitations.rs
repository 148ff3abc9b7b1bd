//! Invitations: a one-time link with which an invited person chooses a password.

use crate::{OrgTx, Result, Store, StoreError};
use latchkey_core::UserId;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

pub async fn create(
    tx: &mut OrgTx,
    user: UserId,
    token_hash: &str,
    invited_by: UserId,
    expires_at: OffsetDateTime,
) -> Result<()> {
    let org = tx.org();
    // A new invitation replaces any earlier, unused one for the same person.
    sqlx::query(
        "DELETE FROM invitations WHERE org_id = $1 AND user_id = $2 AND accepted_at IS NULL",
    )
    .bind(org.0)
    .bind(user.0)
    .execute(tx.conn())
    .await?;
    sqlx::query(
        "INSERT INTO invitations (id, org_id, user_id, token_hash, invited_by, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(org.0)
    .bind(user.0)
    .bind(token_hash)
    .bind(invited_by.0)
    .bind(expires_at)
    .execute(tx.conn())
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct PendingInvitation {
    pub id: Uuid,
    pub org_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub org_name: String,
}

/// Pre-authentication lookup of an unused, unexpired invitation (owner connection).
pub async fn lookup(store: &Store, token_hash: &str) -> Result<Option<PendingInvitation>> {
    Ok(sqlx::query_as(
        "SELECT i.id, i.org_id, i.user_id, u.email, u.display_name, o.name AS org_name
           FROM invitations i JOIN users u ON u.id = i.user_id JOIN orgs o ON o.id = i.org_id
          WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.expires_at > now() AND u.disabled_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(store.system())
    .await?)
}

/// Marks the invitation used; fails if it was used meanwhile (single use under races).
pub async fn accept(tx: &mut OrgTx, id: Uuid) -> Result<()> {
    let org = tx.org();
    let n = sqlx::query("UPDATE invitations SET accepted_at = now() WHERE org_id = $1 AND id = $2 AND accepted_at IS NULL")
        .bind(org.0)
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected();
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}
