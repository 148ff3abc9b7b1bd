//! Which Entra account each Latchkey user is, per connected tenant (tenant ID + object ID).
//! Written at "Sign in with Microsoft"; read to find the principal that a user's requested
//! access is granted to. Ids are stored lower-case.

use crate::{OrgTx, Result, StoreError};
use latchkey_core::UserId;
use sqlx::FromRow;
use time::OffsetDateTime;

#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct EntraIdentity {
    pub tenant_id: String,
    pub object_id: String,
    pub linked_at: OffsetDateTime,
}

/// Links `user` to an Entra account. Re-linking the same user in the same tenant replaces the
/// old account; an account already linked to another user of the organization is a
/// [`StoreError::Conflict`] on `entra_account`.
pub async fn link(tx: &mut OrgTx, user: UserId, tenant_id: &str, object_id: &str) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "INSERT INTO user_entra_identities (org_id, user_id, tenant_id, object_id)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, tenant_id) DO UPDATE SET object_id = EXCLUDED.object_id, linked_at = now()",
    )
    .bind(org.0)
    .bind(user.0)
    .bind(tenant_id.to_lowercase())
    .bind(object_id.to_lowercase())
    .execute(tx.conn())
    .await
    .map_err(|e| StoreError::on_unique(e, "user_entra_identities_account_key", "entra_account"))?;
    Ok(())
}

/// The user's Entra accounts, one per tenant.
pub async fn for_user(tx: &mut OrgTx, user: UserId) -> Result<Vec<EntraIdentity>> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, object_id, linked_at FROM user_entra_identities
          WHERE org_id = $1 AND user_id = $2 ORDER BY tenant_id",
    )
    .bind(tx.org().0)
    .bind(user.0)
    .fetch_all(tx.conn())
    .await?)
}

/// The user linked to an Entra account, if any.
pub async fn find_user(tx: &mut OrgTx, tenant_id: &str, object_id: &str) -> Result<Option<UserId>> {
    let found: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM user_entra_identities WHERE org_id = $1 AND tenant_id = $2 AND object_id = $3",
    )
    .bind(tx.org().0)
    .bind(tenant_id.to_lowercase())
    .bind(object_id.to_lowercase())
    .fetch_optional(tx.conn())
    .await?;
    Ok(found.map(UserId))
}
