//! The vault: secrets meant to be read exactly once by a person (a new account's first
//! password). The ciphertext sits in `encrypted_secrets`, bound to the organization, the item
//! and the account it belongs to; revealing it decrypts it, deletes the ciphertext and marks
//! the item revealed, all in one transaction, so two concurrent reveals cannot both succeed.
//!
//! A new account's password is stored *before* Graph creates the account ([`put_pending`]):
//! the item is pending, bound to its task, and nobody can see it. Once the account's id is
//! recorded, [`activate`] binds the secret to the account and the item becomes revealable; a
//! retried task reuses the pending password ([`pending_for_task`]); a task that fails for good
//! drops it ([`discard_pending`]).

use crate::secrets::{self, SecretRef};
use crate::{OrgTx, Result, StoreError};
use latchkey_crypto::{KeyRing, SecretString};
use serde::Serialize;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

const OWNER_TABLE: &str = "vault_items";

#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct VaultItem {
    pub id: Uuid,
    pub connector_id: Uuid,
    pub task_id: Option<Uuid>,
    pub kind: String,
    pub account_external_id: String,
    pub account_label: String,
    pub requested_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revealed_at: Option<OffsetDateTime>,
    pub revealed_by: Option<String>,
    pub revealed_by_label: Option<String>,
}

/// What to keep.
pub struct NewItem<'a> {
    pub connector_id: Uuid,
    pub task_id: Option<Uuid>,
    pub account_external_id: &'a str,
    pub account_label: &'a str,
    pub requested_by: &'a str,
}

fn field(account_external_id: &str) -> String {
    format!("password:{account_external_id}")
}

/// The field of a pending item's secret (bound to the item, whose row names the task).
const PENDING_FIELD: &str = "password:pending";

/// A password kept for a task before its account exists.
pub struct Pending {
    pub id: Uuid,
    pub created_at: OffsetDateTime,
    pub secret: SecretString,
}

/// Stores `secret` as a pending item of `new.task_id` (no account yet: `account_external_id`
/// is ignored) and returns its id. Not visible to [`get`] or [`reveal`] until [`activate`].
pub async fn put_pending(
    tx: &mut OrgTx,
    ring: &KeyRing,
    new: &NewItem<'_>,
    secret: &SecretString,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    let org = tx.org();
    sqlx::query(
        "INSERT INTO vault_items (id, org_id, connector_id, task_id, kind, account_external_id, account_label, requested_by, pending)
         VALUES ($1, $2, $3, $4, 'initial_password', '', $5, $6, true)",
    )
    .bind(id)
    .bind(org.0)
    .bind(new.connector_id)
    .bind(new.task_id)
    .bind(new.account_label)
    .bind(new.requested_by)
    .execute(tx.conn())
    .await?;
    secrets::put(
        tx,
        ring,
        SecretRef {
            owner_table: OWNER_TABLE,
            owner_id: id,
            field: PENDING_FIELD,
        },
        secret,
    )
    .await?;
    Ok(id)
}

/// The pending password of `task`, if an earlier attempt kept one.
pub async fn pending_for_task(
    tx: &mut OrgTx,
    ring: &KeyRing,
    task: Uuid,
) -> Result<Option<Pending>> {
    let org = tx.org();
    let row: Option<(Uuid, OffsetDateTime)> = sqlx::query_as(
        "SELECT id, created_at FROM vault_items WHERE org_id = $1 AND task_id = $2 AND pending
          ORDER BY created_at DESC LIMIT 1",
    )
    .bind(org.0)
    .bind(task)
    .fetch_optional(tx.conn())
    .await?;
    let Some((id, created_at)) = row else {
        return Ok(None);
    };
    let secret = secrets::get(
        tx,
        ring,
        SecretRef {
            owner_table: OWNER_TABLE,
            owner_id: id,
            field: PENDING_FIELD,
        },
    )
    .await?;
    Ok(Some(Pending {
        id,
        created_at,
        secret,
    }))
}

/// Binds pending item `id` to the account Graph created (`account_external_id`, `label`): its
/// secret moves to the account's field and the item becomes revealable.
pub async fn activate(
    tx: &mut OrgTx,
    ring: &KeyRing,
    id: Uuid,
    account_external_id: &str,
    label: &str,
) -> Result<()> {
    let org = tx.org();
    let pending = SecretRef {
        owner_table: OWNER_TABLE,
        owner_id: id,
        field: PENDING_FIELD,
    };
    let secret = secrets::get(tx, ring, pending).await?;
    let n = sqlx::query(
        "UPDATE vault_items SET pending = false, account_external_id = $3, account_label = $4
          WHERE org_id = $1 AND id = $2 AND pending",
    )
    .bind(org.0)
    .bind(id)
    .bind(account_external_id)
    .bind(label)
    .execute(tx.conn())
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    let field = field(account_external_id);
    secrets::put(
        tx,
        ring,
        SecretRef {
            owner_table: OWNER_TABLE,
            owner_id: id,
            field: &field,
        },
        &secret,
    )
    .await?;
    secrets::delete(tx, pending).await?;
    Ok(())
}

/// Drops `task`'s pending password (the task failed for good: no account holds it).
pub async fn discard_pending(tx: &mut OrgTx, task: Uuid) -> Result<()> {
    let org = tx.org();
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "DELETE FROM vault_items WHERE org_id = $1 AND task_id = $2 AND pending RETURNING id",
    )
    .bind(org.0)
    .bind(task)
    .fetch_all(tx.conn())
    .await?;
    for id in ids {
        secrets::delete(
            tx,
            SecretRef {
                owner_table: OWNER_TABLE,
                owner_id: id,
                field: PENDING_FIELD,
            },
        )
        .await?;
    }
    Ok(())
}

/// Stores `secret` as a new item and returns its id.
pub async fn put(
    tx: &mut OrgTx,
    ring: &KeyRing,
    new: &NewItem<'_>,
    secret: &SecretString,
) -> Result<Uuid> {
    let id = Uuid::now_v7();
    let org = tx.org();
    sqlx::query(
        "INSERT INTO vault_items (id, org_id, connector_id, task_id, kind, account_external_id, account_label, requested_by)
         VALUES ($1, $2, $3, $4, 'initial_password', $5, $6, $7)",
    )
    .bind(id)
    .bind(org.0)
    .bind(new.connector_id)
    .bind(new.task_id)
    .bind(new.account_external_id)
    .bind(new.account_label)
    .bind(new.requested_by)
    .execute(tx.conn())
    .await?;
    let field = field(new.account_external_id);
    secrets::put(
        tx,
        ring,
        SecretRef {
            owner_table: OWNER_TABLE,
            owner_id: id,
            field: &field,
        },
        secret,
    )
    .await?;
    Ok(id)
}

const COLUMNS: &str =
    "id, connector_id, task_id, kind, account_external_id, account_label, requested_by,
    created_at, revealed_at, revealed_by, revealed_by_label";

pub async fn get(tx: &mut OrgTx, id: Uuid) -> Result<VaultItem> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM vault_items WHERE org_id = $1 AND id = $2 AND NOT pending"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// Why a reveal did not happen.
#[derive(Debug)]
pub enum RevealError {
    /// Someone already read it (the item says who and when).
    AlreadyRevealed(Box<VaultItem>),
    Store(StoreError),
}

impl From<StoreError> for RevealError {
    fn from(e: StoreError) -> Self {
        RevealError::Store(e)
    }
}

impl From<sqlx::Error> for RevealError {
    fn from(e: sqlx::Error) -> Self {
        RevealError::Store(e.into())
    }
}

/// Marks the item revealed by `who` (`user:<id>` / `api_client:<id>`, with a label a person
/// reads), decrypts the secret and deletes its ciphertext. The caller checks who may do this
/// and commits (or the reveal never happened).
pub async fn reveal(
    tx: &mut OrgTx,
    ring: &KeyRing,
    id: Uuid,
    who: &str,
    who_label: &str,
) -> Result<(VaultItem, SecretString), RevealError> {
    let org = tx.org();
    let item: Option<VaultItem> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE vault_items SET revealed_at = now(), revealed_by = $3, revealed_by_label = $4
          WHERE org_id = $1 AND id = $2 AND revealed_at IS NULL AND NOT pending
          RETURNING {COLUMNS}"
    )))
    .bind(org.0)
    .bind(id)
    .bind(who)
    .bind(who_label)
    .fetch_optional(tx.conn())
    .await?;
    let Some(item) = item else {
        // Gone, or someone was first.
        return Err(RevealError::AlreadyRevealed(Box::new(get(tx, id).await?)));
    };
    let field = field(&item.account_external_id);
    let at = SecretRef {
        owner_table: OWNER_TABLE,
        owner_id: item.id,
        field: &field,
    };
    let secret = secrets::get(tx, ring, at).await?;
    secrets::delete(tx, at).await?;
    Ok((item, secret))
}
