//! "Sign in with Microsoft" before anyone is signed in: single-use authorization states bound
//! to a browser, the organization choice for a tenant several organizations connected, and
//! which organizations connected a tenant. All on the owner connection (pre-authentication);
//! what happens inside the chosen organization goes through [`crate::OrgTx`] as usual.

use crate::{OrgTx, Result, Store, StoreError};
use latchkey_core::{OrgId, UserId};
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

pub struct NewState<'a> {
    pub state_hash: &'a str,
    pub browser_hash: &'a str,
    pub pkce_verifier: &'a str,
    pub nonce: &'a str,
    pub next_path: &'a str,
    pub expires_at: OffsetDateTime,
    /// A signed-in person linking their Microsoft account (organization, user); `None` for
    /// a sign-in.
    pub link: Option<(OrgId, UserId)>,
}

pub async fn create_state(store: &Store, new: NewState<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO signin_states (id, state_hash, browser_hash, pkce_verifier, nonce, next_path,
                                    expires_at, link_org_id, link_user_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(new.state_hash)
    .bind(new.browser_hash)
    .bind(new.pkce_verifier)
    .bind(new.nonce)
    .bind(new.next_path)
    .bind(new.expires_at)
    .bind(new.link.map(|(o, _)| o.0))
    .bind(new.link.map(|(_, u)| u.0))
    .execute(store.system())
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct ConsumedState {
    pub browser_hash: String,
    /// `None` once used (it is wiped).
    pub pkce_verifier: Option<String>,
    pub nonce: String,
    pub next_path: String,
    pub expired: bool,
    pub already_used: bool,
    pub link_org_id: Option<Uuid>,
    pub link_user_id: Option<Uuid>,
}

/// Marks the state used (wiping its PKCE verifier) and returns what it held. A replay returns
/// `already_used = true`; an unknown state is `NotFound`.
pub async fn consume_state(store: &Store, state_hash: &str) -> Result<ConsumedState> {
    let mut tx = store.system_tx().await?;
    let row: Option<ConsumedState> = sqlx::query_as(
        "SELECT browser_hash, pkce_verifier, nonce, next_path,
                expires_at <= now() AS expired, used_at IS NOT NULL AS already_used,
                link_org_id, link_user_id
           FROM signin_states WHERE state_hash = $1 FOR UPDATE",
    )
    .bind(state_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or(StoreError::NotFound)?;
    if !row.already_used {
        sqlx::query(
            "UPDATE signin_states SET used_at = now(), pkce_verifier = NULL WHERE state_hash = $1",
        )
        .bind(state_hash)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(row)
}

pub struct NewChoice<'a> {
    pub token_hash: &'a str,
    pub browser_hash: &'a str,
    pub tenant_id: &'a str,
    pub object_id: &'a str,
    pub email: Option<&'a str>,
    pub display_name: Option<&'a str>,
    pub org_ids: &'a [Uuid],
    pub next_path: &'a str,
    pub expires_at: OffsetDateTime,
}

pub async fn create_choice(store: &Store, new: NewChoice<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO signin_choices (id, token_hash, browser_hash, tenant_id, object_id, email, display_name, org_ids, next_path, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(Uuid::now_v7())
    .bind(new.token_hash)
    .bind(new.browser_hash)
    .bind(new.tenant_id)
    .bind(new.object_id)
    .bind(new.email)
    .bind(new.display_name)
    .bind(new.org_ids)
    .bind(new.next_path)
    .bind(new.expires_at)
    .execute(store.system())
    .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct ConsumedChoice {
    pub browser_hash: String,
    pub tenant_id: String,
    pub object_id: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub org_ids: Vec<Uuid>,
    pub next_path: String,
    pub expired: bool,
    pub already_used: bool,
}

/// Marks the choice used and returns it; unknown is `NotFound`.
pub async fn consume_choice(store: &Store, token_hash: &str) -> Result<ConsumedChoice> {
    let mut tx = store.system_tx().await?;
    let row: Option<ConsumedChoice> = sqlx::query_as(
        "SELECT browser_hash, tenant_id, object_id, email, display_name, org_ids, next_path,
                expires_at <= now() AS expired, used_at IS NOT NULL AS already_used
           FROM signin_choices WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(token_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let row = row.ok_or(StoreError::NotFound)?;
    if !row.already_used {
        sqlx::query("UPDATE signin_choices SET used_at = now() WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(row)
}

#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct TenantOrg {
    pub org_id: Uuid,
    pub org_name: String,
}

/// Organizations that connected the Entra tenant `tenant_id` (a GUID), by name (owner
/// connection: the person is not signed in yet). A connector counts once a connection test
/// proved the tenant (its capabilities name it), or while it syncs a tenant entered by GUID;
/// disabled connectors do not count. Entering someone else's tenant ID without ever
/// connecting to it does not offer the organization to that tenant's people.
pub async fn orgs_for_tenant(store: &Store, tenant_id: &str) -> Result<Vec<TenantOrg>> {
    Ok(sqlx::query_as(
        "SELECT DISTINCT o.id AS org_id, o.name AS org_name
           FROM connectors c JOIN orgs o ON o.id = c.org_id
          WHERE c.kind = 'entra' AND c.disabled_at IS NULL AND c.status <> 'disabled'
            AND (lower(c.capabilities->'tenant'->>'id') = $1
                 OR (c.status IN ('syncing', 'connected')
                     AND lower(c.settings->'auth'->>'tenant_id') = $1))
          ORDER BY o.name, o.id",
    )
    .bind(tenant_id.to_lowercase())
    .fetch_all(store.system())
    .await?)
}

/// Whether a sync of one of the organization's connectors to `tenant_id` has seen the user
/// `object_id` (and it is not deleted).
pub async fn account_synced(tx: &mut OrgTx, tenant_id: &str, object_id: &str) -> Result<bool> {
    let org: OrgId = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (
           SELECT 1 FROM resources r JOIN connectors c ON c.id = r.connector_id AND c.org_id = r.org_id
            WHERE r.org_id = $1 AND r.type = 'user' AND lower(r.external_id) = $3
              AND r.deleted_at IS NULL
              AND (lower(c.capabilities->'tenant'->>'id') = $2
                   OR lower(c.settings->'auth'->>'tenant_id') = $2))",
    )
    .bind(org.0)
    .bind(tenant_id.to_lowercase())
    .bind(object_id.to_lowercase())
    .fetch_one(tx.conn())
    .await?)
}

/// Housekeeping (owner connection): PKCE verifiers of states that expired unused are wiped at
/// once, states and choices go a day past their expiry.
pub async fn purge_old(store: &Store) -> Result<u64> {
    sqlx::query(
        "UPDATE signin_states SET pkce_verifier = NULL WHERE expires_at < now() AND pkce_verifier IS NOT NULL",
    )
    .execute(store.system())
    .await?;
    let a = sqlx::query("DELETE FROM signin_states WHERE expires_at < now() - interval '1 day'")
        .execute(store.system())
        .await?
        .rows_affected();
    let b = sqlx::query("DELETE FROM signin_choices WHERE expires_at < now() - interval '1 day'")
        .execute(store.system())
        .await?
        .rows_affected();
    Ok(a + b)
}
