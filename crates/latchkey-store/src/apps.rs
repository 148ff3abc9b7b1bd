//! Apps an organization governs access to: managed (with a connector) and discovered (found
//! in the organization's identity provider, not managed yet).

use crate::{OrgTx, Result, StoreError};
use serde::Serialize;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct App {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub source_connector_id: Option<Uuid>,
    pub external_id: Option<String>,
    pub description: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "id, name, kind, source_connector_id, external_id, description, created_at";

pub async fn create_managed(tx: &mut OrgTx, name: &str) -> Result<App> {
    let org = tx.org();
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO apps (id, org_id, name, kind) VALUES ($1, $2, $3, 'managed')")
        .bind(id)
        .bind(org.0)
        .bind(name)
        .execute(tx.conn())
        .await?;
    get(tx, id).await
}

/// Records an app found in the identity provider (idempotent per source and external id).
pub async fn upsert_discovered(
    tx: &mut OrgTx,
    source_connector: Uuid,
    external_id: &str,
    name: &str,
    description: Option<&str>,
) -> Result<Uuid> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "INSERT INTO apps (id, org_id, name, kind, source_connector_id, external_id, description)
         VALUES ($1, $2, $3, 'discovered', $4, $5, $6)
         ON CONFLICT (org_id, source_connector_id, external_id) WHERE kind = 'discovered'
         DO UPDATE SET name = excluded.name, description = excluded.description, updated_at = now()
         RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(org.0)
    .bind(name)
    .bind(source_connector)
    .bind(external_id)
    .bind(description)
    .fetch_one(tx.conn())
    .await?)
}

pub async fn get(tx: &mut OrgTx, id: Uuid) -> Result<App> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM apps WHERE org_id = $1 AND id = $2"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// Apps of one kind, by name.
pub async fn list(tx: &mut OrgTx, kind: &str) -> Result<Vec<App>> {
    let org = tx.org();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM apps WHERE org_id = $1 AND kind = $2 ORDER BY lower(name), id LIMIT 1000"
    )))
    .bind(org.0)
    .bind(kind)
    .fetch_all(tx.conn())
    .await?)
}

/// Turns a discovered app into a managed one (when a connector is attached to it).
pub async fn adopt(tx: &mut OrgTx, id: Uuid) -> Result<App> {
    let org = tx.org();
    let n = sqlx::query("UPDATE apps SET kind = 'managed', updated_at = now() WHERE org_id = $1 AND id = $2 AND kind = 'discovered'")
        .bind(org.0)
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    get(tx, id).await
}
