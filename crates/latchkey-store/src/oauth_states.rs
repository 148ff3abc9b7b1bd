//! Single-use OAuth `state` values for admin consent, bound to a session and a connector.

use crate::{OrgTx, Result, Store, StoreError};
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

pub struct NewState<'a> {
    pub connector_id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub state_hash: &'a str,
    pub tenant_id: &'a str,
    pub pkce_verifier: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub expires_at: OffsetDateTime,
}

pub async fn create(tx: &mut OrgTx, new: NewState<'_>) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "INSERT INTO oauth_states (id, org_id, connector_id, user_id, session_id, state_hash, tenant_id, pkce_verifier, nonce, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(Uuid::now_v7())
    .bind(org.0)
    .bind(new.connector_id)
    .bind(new.user_id)
    .bind(new.session_id)
    .bind(new.state_hash)
    .bind(new.tenant_id)
    .bind(new.pkce_verifier)
    .bind(new.nonce)
    .bind(new.expires_at)
    .execute(tx.conn())
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct ConsumedState {
    pub org_id: Uuid,
    pub connector_id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub tenant_id: String,
    pub pkce_verifier: Option<String>,
    pub nonce: Option<String>,
    pub expired: bool,
    pub already_used: bool,
}

/// Marks the state used and returns what it was bound to (owner connection: the callback
/// learns the organization from the state). A replay returns `already_used = true`; an
/// unknown state is `NotFound`.
pub async fn consume(store: &Store, state_hash: &str) -> Result<ConsumedState> {
    let mut tx = store.system_tx().await?;
    let row: Option<ConsumedState> = sqlx::query_as(
        "SELECT org_id, connector_id, user_id, session_id, tenant_id, pkce_verifier, nonce,
                expires_at <= now() AS expired, used_at IS NOT NULL AS already_used
           FROM oauth_states WHERE state_hash = $1 FOR UPDATE",
    )
    .bind(state_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or(StoreError::NotFound)?;
    if !row.already_used {
        sqlx::query("UPDATE oauth_states SET used_at = now() WHERE state_hash = $1")
            .bind(state_hash)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(row)
}

/// Housekeeping: states older than a day are useless (owner connection).
pub async fn purge_old(store: &Store) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM oauth_states WHERE expires_at < now() - interval '1 day'")
            .execute(store.system())
            .await?
            .rows_affected(),
    )
}
