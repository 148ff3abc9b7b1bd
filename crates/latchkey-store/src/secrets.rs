//! Encrypted secrets of any owner (connector credentials, vault items, OAuth tokens).
//! Plaintext never reaches the database; each ciphertext is bound to its organization,
//! owner row and field through AES-GCM associated data.

use crate::{OrgTx, Result, Store, StoreError};
use latchkey_crypto::{KeyRing, Sealed, SecretContext, SecretString};
use sqlx::FromRow;
use uuid::Uuid;

/// Which secret: the owning table, the owning row and the field.
#[derive(Clone, Copy, Debug)]
pub struct SecretRef<'a> {
    pub owner_table: &'a str,
    pub owner_id: Uuid,
    pub field: &'a str,
}

impl<'a> SecretRef<'a> {
    fn context(&self, org_id: Uuid) -> SecretContext<'a> {
        SecretContext {
            org_id,
            owner: self.owner_table,
            owner_id: self.owner_id,
            field: self.field,
        }
    }
}

/// Stores (or replaces) a secret.
pub async fn put(
    tx: &mut OrgTx,
    ring: &KeyRing,
    at: SecretRef<'_>,
    value: &SecretString,
) -> Result<()> {
    let org = tx.org().0;
    let sealed = ring.seal_str(value, &at.context(org));
    sqlx::query(
        "INSERT INTO encrypted_secrets (id, org_id, owner_table, owner_id, field, key_id, nonce, ciphertext)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (owner_table, owner_id, field)
         DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = now()
         WHERE encrypted_secrets.org_id = excluded.org_id",
    )
    .bind(Uuid::now_v7())
    .bind(org)
    .bind(at.owner_table)
    .bind(at.owner_id)
    .bind(at.field)
    .bind(&sealed.key_id)
    .bind(&sealed.nonce)
    .bind(&sealed.ciphertext)
    .execute(tx.conn())
    .await?;
    Ok(())
}

#[derive(FromRow)]
struct SealedRow {
    id: Uuid,
    org_id: Uuid,
    owner_table: String,
    owner_id: Uuid,
    field: String,
    key_id: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

impl SealedRow {
    fn sealed(&self) -> Sealed {
        Sealed {
            key_id: self.key_id.clone(),
            nonce: self.nonce.clone(),
            ciphertext: self.ciphertext.clone(),
        }
    }
    fn reference(&self) -> SecretRef<'_> {
        SecretRef {
            owner_table: &self.owner_table,
            owner_id: self.owner_id,
            field: &self.field,
        }
    }
}

const SEALED_COLUMNS: &str = "id, org_id, owner_table, owner_id, field, key_id, nonce, ciphertext";

pub async fn get(tx: &mut OrgTx, ring: &KeyRing, at: SecretRef<'_>) -> Result<SecretString> {
    let org = tx.org().0;
    let row: SealedRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SEALED_COLUMNS} FROM encrypted_secrets WHERE org_id = $1 AND owner_table = $2 AND owner_id = $3 AND field = $4"
    )))
    .bind(org)
    .bind(at.owner_table)
    .bind(at.owner_id)
    .bind(at.field)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)?;
    Ok(ring.open_str(&row.sealed(), &at.context(org))?)
}

pub async fn exists(tx: &mut OrgTx, at: SecretRef<'_>) -> Result<bool> {
    let org = tx.org().0;
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM encrypted_secrets WHERE org_id = $1 AND owner_table = $2 AND owner_id = $3 AND field = $4)",
    )
    .bind(org)
    .bind(at.owner_table)
    .bind(at.owner_id)
    .bind(at.field)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn delete(tx: &mut OrgTx, at: SecretRef<'_>) -> Result<bool> {
    let org = tx.org().0;
    Ok(sqlx::query("DELETE FROM encrypted_secrets WHERE org_id = $1 AND owner_table = $2 AND owner_id = $3 AND field = $4")
        .bind(org)
        .bind(at.owner_table)
        .bind(at.owner_id)
        .bind(at.field)
        .execute(tx.conn())
        .await?
        .rows_affected()
        == 1)
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RotationReport {
    /// Re-encrypted under the active key in this run.
    pub rotated: u64,
    /// Already under the active key before this run.
    pub already_current: u64,
    /// Could not be opened (unknown key or corrupt); left untouched.
    pub failed: u64,
}

/// Re-encrypts every secret of every organization under the active key, in small
/// committed batches: if interrupted, running it again continues where it stopped.
/// Owner connection: this is system work across organizations.
pub async fn rotate_all(store: &Store, ring: &KeyRing, batch: i64) -> Result<RotationReport> {
    let active = ring.active().id().to_string();
    let mut report = RotationReport {
        already_current: sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM encrypted_secrets WHERE key_id = $1",
        )
        .bind(&active)
        .fetch_one(store.system())
        .await? as u64,
        ..Default::default()
    };
    let mut after = Uuid::nil();
    loop {
        let mut tx = store.system_tx().await?;
        let rows: Vec<SealedRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SEALED_COLUMNS} FROM encrypted_secrets WHERE key_id <> $1 AND id > $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED"
        )))
        .bind(&active)
        .bind(after)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in &rows {
            let ctx = row.reference().context(row.org_id);
            match ring.reseal(&row.sealed(), &ctx) {
                Ok(Some(new)) => {
                    sqlx::query("UPDATE encrypted_secrets SET key_id = $2, nonce = $3, ciphertext = $4, updated_at = now() WHERE id = $1")
                        .bind(row.id)
                        .bind(&new.key_id)
                        .bind(&new.nonce)
                        .bind(&new.ciphertext)
                        .execute(&mut *tx)
                        .await?;
                    report.rotated += 1;
                }
                Ok(None) => report.already_current += 1,
                Err(e) => {
                    tracing::warn!(secret_id = %row.id, error = %e, "secret could not be re-encrypted");
                    report.failed += 1;
                }
            }
        }
        tx.commit().await?;
    }
    Ok(report)
}

/// How many secrets each key id protects (owner connection), for `keys status`.
pub async fn count_by_key(store: &Store) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT key_id, count(*) FROM encrypted_secrets GROUP BY key_id ORDER BY key_id",
    )
    .fetch_all(store.system())
    .await?)
}
