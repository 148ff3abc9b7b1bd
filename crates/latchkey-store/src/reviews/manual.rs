//! Manual tasks: revokes a person carries out by hand because provisioning cannot (a
//! distribution list's members, access inherited through a group, provisioning turned off).

use crate::{OrgTx, Result, StoreError};
use serde::Serialize;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct ManualTask {
    pub id: Uuid,
    pub campaign_id: Uuid,
    pub item_id: Uuid,
    pub connector_id: Uuid,
    pub reason: String,
    /// `open` or `done`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    pub completed_by: Option<String>,
    pub note: Option<String>,
    /// What the item is about, for the list: principal, entitlement, resource.
    pub principal_name: String,
    pub entitlement_name: String,
    pub resource_name: String,
}

const SELECT: &str = "SELECT m.id, m.campaign_id, m.item_id, m.connector_id, m.reason, m.status, m.created_at,
        m.completed_at, m.completed_by, m.note, i.principal_name, i.entitlement_name, i.resource_name
   FROM review_manual_tasks m JOIN review_items i ON i.id = m.item_id";

/// Opens a manual task for an item's revoke and links the item to it. Returns its id.
pub async fn create_manual_task(tx: &mut OrgTx, item: Uuid, reason: &str) -> Result<Uuid> {
    let org = tx.org();
    let id = Uuid::now_v7();
    let n = sqlx::query(
        "INSERT INTO review_manual_tasks (id, org_id, campaign_id, item_id, connector_id, reason)
         SELECT $1, $2, i.campaign_id, i.id, i.connector_id, $4 FROM review_items i
          WHERE i.org_id = $2 AND i.id = $3",
    )
    .bind(id)
    .bind(org.0)
    .bind(item)
    .bind(reason)
    .execute(tx.conn())
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    sqlx::query("UPDATE review_items SET manual_task_id = $3 WHERE org_id = $1 AND id = $2")
        .bind(org.0)
        .bind(item)
        .bind(id)
        .execute(tx.conn())
        .await?;
    Ok(id)
}

pub async fn manual_tasks(tx: &mut OrgTx, campaign: Uuid) -> Result<Vec<ManualTask>> {
    let org = tx.org();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE m.org_id = $1 AND m.campaign_id = $2 ORDER BY m.id"
    )))
    .bind(org.0)
    .bind(campaign)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn get_manual_task(tx: &mut OrgTx, id: Uuid) -> Result<ManualTask> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE m.org_id = $1 AND m.id = $2"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// Marks an open manual task done; false when it was done already.
pub async fn complete_manual_task(
    tx: &mut OrgTx,
    id: Uuid,
    by: &str,
    note: Option<&str>,
) -> Result<bool> {
    let org = tx.org();
    Ok(sqlx::query(
        "UPDATE review_manual_tasks SET status = 'done', completed_at = now(), completed_by = $3, note = $4
          WHERE org_id = $1 AND id = $2 AND status = 'open'",
    )
    .bind(org.0)
    .bind(id)
    .bind(by)
    .bind(note)
    .execute(tx.conn())
    .await?
    .rows_affected()
        == 1)
}
