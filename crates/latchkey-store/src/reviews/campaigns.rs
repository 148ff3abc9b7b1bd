//! Campaigns (one review of a scope, with a deadline and an end rule) and the templates
//! recurring campaigns are started from.

use crate::page::{Cursor, Page};
use crate::{OrgTx, Result, StoreError};
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct Campaign {
    pub id: Uuid,
    pub name: String,
    /// `active` or `closed`.
    pub status: String,
    pub spec: Value,
    pub end_rule: String,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    pub template_id: Option<Uuid>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
    pub closed_reason: Option<String>,
    pub closed_by: Option<String>,
}

impl Campaign {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

const COLUMNS: &str = "id, name, status, spec, end_rule, deadline, template_id, created_by, created_at, closed_at, closed_reason, closed_by";

pub struct NewCampaign<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub spec: &'a Value,
    pub end_rule: &'a str,
    pub deadline: OffsetDateTime,
    pub template_id: Option<Uuid>,
    pub created_by: &'a str,
}

pub async fn create_campaign(tx: &mut OrgTx, new: &NewCampaign<'_>) -> Result<Campaign> {
    let org = tx.org();
    sqlx::query(
        "INSERT INTO review_campaigns (id, org_id, name, spec, end_rule, deadline, template_id, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new.id)
    .bind(org.0)
    .bind(new.name)
    .bind(new.spec)
    .bind(new.end_rule)
    .bind(new.deadline)
    .bind(new.template_id)
    .bind(new.created_by)
    .execute(tx.conn())
    .await?;
    get_campaign(tx, new.id).await
}

pub async fn get_campaign(tx: &mut OrgTx, id: Uuid) -> Result<Campaign> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM review_campaigns WHERE org_id = $1 AND id = $2"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// Locks the campaign row for the rest of the transaction (decisions and closing serialise on
/// it, so no decision lands on a campaign being closed).
pub async fn lock_campaign(tx: &mut OrgTx, id: Uuid) -> Result<Campaign> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM review_campaigns WHERE org_id = $1 AND id = $2 FOR UPDATE"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// Newest first.
pub async fn list_campaigns(
    tx: &mut OrgTx,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<Campaign>> {
    let org = tx.org();
    let rows: Vec<Campaign> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM review_campaigns
          WHERE org_id = $1 AND ($2::uuid IS NULL OR id < $2)
          ORDER BY id DESC LIMIT $3"
    )))
    .bind(org.0)
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |c| c.id))
}

/// Marks the campaign closed; false when it already was.
pub async fn close_campaign(tx: &mut OrgTx, id: Uuid, reason: &str, by: &str) -> Result<bool> {
    let org = tx.org();
    Ok(sqlx::query(
        "UPDATE review_campaigns SET status = 'closed', closed_at = now(), closed_reason = $3, closed_by = $4
          WHERE org_id = $1 AND id = $2 AND status = 'active'",
    )
    .bind(org.0)
    .bind(id)
    .bind(reason)
    .bind(by)
    .execute(tx.conn())
    .await?
    .rows_affected()
        == 1)
}

#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct Template {
    pub id: Uuid,
    pub name: String,
    pub spec: Value,
    pub every_days: i32,
    pub duration_secs: i64,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was stopped: it starts no further campaigns.
    #[serde(with = "time::serde::rfc3339::option")]
    pub stopped_at: Option<OffsetDateTime>,
    pub stopped_by: Option<String>,
}

impl Template {
    pub fn is_active(&self) -> bool {
        self.stopped_at.is_none()
    }
}

const TEMPLATE_COLUMNS: &str =
    "id, name, spec, every_days, duration_secs, created_by, created_at, stopped_at, stopped_by";

pub struct NewTemplate<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub spec: &'a Value,
    pub every_days: i32,
    pub duration_secs: i64,
    pub created_by: &'a str,
}

pub async fn create_template(tx: &mut OrgTx, new: &NewTemplate<'_>) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "INSERT INTO review_templates (id, org_id, name, spec, every_days, duration_secs, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new.id)
    .bind(org.0)
    .bind(new.name)
    .bind(new.spec)
    .bind(new.every_days)
    .bind(new.duration_secs)
    .bind(new.created_by)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn get_template(tx: &mut OrgTx, id: Uuid) -> Result<Template> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TEMPLATE_COLUMNS} FROM review_templates WHERE org_id = $1 AND id = $2"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// Locks the template row for the rest of the transaction: starting a campaign from it and
/// stopping it serialise on it, so no campaign starts from a template once it is stopped.
pub async fn lock_template(tx: &mut OrgTx, id: Uuid) -> Result<Template> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TEMPLATE_COLUMNS} FROM review_templates WHERE org_id = $1 AND id = $2 FOR UPDATE"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// Templates, newest first (stopped ones too).
pub async fn list_templates(
    tx: &mut OrgTx,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<Template>> {
    let org = tx.org();
    let rows: Vec<Template> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TEMPLATE_COLUMNS} FROM review_templates
          WHERE org_id = $1 AND ($2::uuid IS NULL OR id < $2)
          ORDER BY id DESC LIMIT $3"
    )))
    .bind(org.0)
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |t| t.id))
}

/// Marks the template stopped; false when it already was.
pub async fn stop_template(tx: &mut OrgTx, id: Uuid, by: &str) -> Result<bool> {
    let org = tx.org();
    Ok(sqlx::query(
        "UPDATE review_templates SET stopped_at = now(), stopped_by = $3
          WHERE org_id = $1 AND id = $2 AND stopped_at IS NULL",
    )
    .bind(org.0)
    .bind(id)
    .bind(by)
    .execute(tx.conn())
    .await?
    .rows_affected()
        == 1)
}

/// The campaigns a template has started, oldest first.
pub async fn campaigns_of_template(tx: &mut OrgTx, template: Uuid) -> Result<Vec<Campaign>> {
    let org = tx.org();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM review_campaigns WHERE org_id = $1 AND template_id = $2 ORDER BY id"
    )))
    .bind(org.0)
    .bind(template)
    .fetch_all(tx.conn())
    .await?)
}
