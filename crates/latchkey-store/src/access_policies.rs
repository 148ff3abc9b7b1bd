//! Access request policies: one per entitlement (a validated JSON document, versioned), and
//! the catalog of requestable entitlements built from them.

use crate::page::{Cursor, Page};
use crate::{OrgTx, Result};
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct StoredPolicy {
    pub entitlement_id: Uuid,
    pub connector_id: Uuid,
    pub requestable: bool,
    pub risk: String,
    pub document: Value,
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub updated_by: String,
}

const COLUMNS: &str =
    "entitlement_id, connector_id, requestable, risk, document, version, updated_at, updated_by";

pub async fn get(tx: &mut OrgTx, entitlement: Uuid) -> Result<Option<StoredPolicy>> {
    let org = tx.org();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM access_policies WHERE org_id = $1 AND entitlement_id = $2"
    )))
    .bind(org.0)
    .bind(entitlement)
    .fetch_optional(tx.conn())
    .await?)
}

/// What to store: the document was validated by the caller.
pub struct PutPolicy<'a> {
    pub connector_id: Uuid,
    pub entitlement_id: Uuid,
    pub requestable: bool,
    pub risk: &'a str,
    pub document: &'a Value,
    pub updated_by: &'a str,
}

/// Creates or replaces the entitlement's policy; the version goes up by one each time.
pub async fn put(tx: &mut OrgTx, p: &PutPolicy<'_>) -> Result<StoredPolicy> {
    let org = tx.org();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO access_policies (org_id, entitlement_id, connector_id, requestable, risk, document, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (org_id, entitlement_id) DO UPDATE SET
             connector_id = excluded.connector_id, requestable = excluded.requestable, risk = excluded.risk,
             document = excluded.document, updated_by = excluded.updated_by,
             version = access_policies.version + 1, updated_at = now()
         RETURNING {COLUMNS}"
    )))
    .bind(org.0)
    .bind(p.entitlement_id)
    .bind(p.connector_id)
    .bind(p.requestable)
    .bind(p.risk)
    .bind(p.document)
    .bind(p.updated_by)
    .fetch_one(tx.conn())
    .await?)
}

/// A requestable entitlement as the catalog shows it.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct CatalogItem {
    pub entitlement_id: Uuid,
    pub connector_id: Uuid,
    pub connector_name: String,
    pub resource_id: Uuid,
    pub resource_type: String,
    pub resource_name: String,
    pub slug: String,
    pub entitlement_name: String,
    pub risk: String,
    pub document: Value,
}

/// Requestable entitlements (whose resource and connector still exist), optionally matching
/// `q` in the entitlement's, resource's or connector's name.
pub async fn catalog(
    tx: &mut OrgTx,
    q: Option<&str>,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<CatalogItem>> {
    let org = tx.org();
    let q = crate::resources::contains_pattern(q);
    let rows: Vec<CatalogItem> = sqlx::query_as(
        "SELECT e.id AS entitlement_id, e.connector_id, c.display_name AS connector_name,
                r.id AS resource_id, r.type AS resource_type, r.display_name AS resource_name,
                e.slug, e.display_name AS entitlement_name, p.risk, p.document
           FROM access_policies p
           JOIN entitlements e ON e.org_id = p.org_id AND e.id = p.entitlement_id AND e.deleted_at IS NULL
           JOIN resources r ON r.org_id = e.org_id AND r.id = e.resource_id AND r.deleted_at IS NULL
           JOIN connectors c ON c.org_id = e.org_id AND c.id = e.connector_id
          WHERE p.org_id = $1 AND p.requestable
            AND ($2::text IS NULL OR e.display_name ILIKE $2 OR r.display_name ILIKE $2 OR c.display_name ILIKE $2)
            AND ($3::uuid IS NULL OR e.id > $3)
          ORDER BY e.id LIMIT $4",
    )
    .bind(org.0)
    .bind(q)
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |r| r.entitlement_id))
}

/// An entitlement with its resource and connector, found by id alone (an access request
/// names only the entitlement).
#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct EntitlementInfo {
    pub entitlement_id: Uuid,
    pub connector_id: Uuid,
    pub connector_name: String,
    pub connector_settings: Option<Value>,
    pub resource_id: Uuid,
    pub resource_type: String,
    pub resource_external_id: String,
    pub resource_name: String,
    pub slug: String,
    pub entitlement_name: String,
}

pub async fn entitlement_info(tx: &mut OrgTx, entitlement: Uuid) -> Result<EntitlementInfo> {
    let org = tx.org();
    sqlx::query_as(
        "SELECT e.id AS entitlement_id, e.connector_id, c.display_name AS connector_name,
                c.settings AS connector_settings, r.id AS resource_id, r.type AS resource_type,
                r.external_id AS resource_external_id, r.display_name AS resource_name,
                e.slug, e.display_name AS entitlement_name
           FROM entitlements e
           JOIN resources r ON r.org_id = e.org_id AND r.id = e.resource_id AND r.deleted_at IS NULL
           JOIN connectors c ON c.org_id = e.org_id AND c.id = e.connector_id
          WHERE e.org_id = $1 AND e.id = $2 AND e.deleted_at IS NULL",
    )
    .bind(org.0)
    .bind(entitlement)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(crate::StoreError::NotFound)
}

/// An entitlement and its policy status, for the policies list.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct PolicyRow {
    pub entitlement_id: Uuid,
    pub entitlement_name: String,
    pub resource_name: String,
    pub resource_type: String,
    pub connector_name: String,
    pub requestable: bool,
    pub risk: String,
    pub version: i32,
}

/// Entitlements (of every connector) matching `q`, requestable ones first.
pub async fn entitlements(tx: &mut OrgTx, q: Option<&str>, limit: i64) -> Result<Vec<PolicyRow>> {
    let org = tx.org();
    let q = crate::resources::contains_pattern(q);
    Ok(sqlx::query_as(
        "SELECT e.id AS entitlement_id, e.display_name AS entitlement_name, r.display_name AS resource_name,
                r.type AS resource_type, c.display_name AS connector_name,
                coalesce(p.requestable, false) AS requestable, coalesce(p.risk, 'medium') AS risk,
                coalesce(p.version, 0) AS version
           FROM entitlements e
           JOIN resources r ON r.org_id = e.org_id AND r.id = e.resource_id AND r.deleted_at IS NULL
           JOIN connectors c ON c.org_id = e.org_id AND c.id = e.connector_id
           LEFT JOIN access_policies p ON p.org_id = e.org_id AND p.entitlement_id = e.id
          WHERE e.org_id = $1 AND e.deleted_at IS NULL
            AND ($2::text IS NULL OR e.display_name ILIKE $2 OR r.display_name ILIKE $2)
          ORDER BY coalesce(p.requestable, false) DESC, r.display_name, e.display_name
          LIMIT $3",
    )
    .bind(org.0)
    .bind(q)
    .bind(limit)
    .fetch_all(tx.conn())
    .await?)
}
