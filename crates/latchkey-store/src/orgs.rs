//! Organizations: the customers of this SaaS.

use crate::{OrgTx, Result, Store, StoreError};
use latchkey_core::{DisplayName, Email, OrgId, UserId};
use serde::Serialize;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct Org {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Creates an organization and its first user, a Super Administrator (what sign-up does).
/// Uses the owner connection: the organization does not exist yet, so no org scope can.
pub async fn create_with_admin(
    store: &Store,
    name: &DisplayName,
    email: &Email,
    admin_name: &DisplayName,
    password_hash: &str,
) -> Result<(OrgId, UserId)> {
    let org = OrgId::new();
    let user = UserId::new();
    let mut tx = store.system_tx().await?;
    sqlx::query("INSERT INTO orgs (id, name) VALUES ($1, $2)")
        .bind(org.0)
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO users (id, org_id, email, display_name, password_hash, role) VALUES ($1, $2, $3, $4, $5, 'super_admin')",
    )
    .bind(user.0)
    .bind(org.0)
    .bind(email.as_str())
    .bind(admin_name.as_str())
    .bind(password_hash)
    .execute(&mut *tx)
    .await
    .map_err(|e| StoreError::on_unique(e, "users_email_key", "email"))?;
    tx.commit().await?;
    Ok((org, user))
}

pub async fn get(tx: &mut OrgTx) -> Result<Org> {
    let org = tx.org();
    sqlx::query_as("SELECT id, name, created_at FROM orgs WHERE id = $1")
        .bind(org.0)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)
}

/// Whether an organization exists (owner connection: used before any org scope exists, e.g. by the CLI).
pub async fn exists(store: &Store, org: OrgId) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM orgs WHERE id = $1)")
            .bind(org.0)
            .fetch_one(store.system())
            .await?,
    )
}
