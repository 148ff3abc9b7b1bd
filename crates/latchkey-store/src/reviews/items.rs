//! A campaign's items: reading them with their reviewer and the state of their revocation,
//! recording decisions, reassignments and evidence views.

use crate::page::{Cursor, Page};
use crate::{OrgTx, Result, StoreError};
use serde::Serialize;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct Item {
    pub id: Uuid,
    pub campaign_id: Uuid,
    pub campaign_name: String,
    pub connector_id: Uuid,
    pub grant_id: Uuid,
    pub entitlement_id: Uuid,
    pub principal_id: Uuid,
    pub resource_id: Uuid,
    pub principal_type: String,
    pub principal_name: String,
    pub principal_external_id: String,
    pub principal_upn: Option<String>,
    pub principal_guest: bool,
    pub principal_enabled: Option<bool>,
    pub subject_user_id: Option<Uuid>,
    pub resource_type: String,
    pub resource_name: String,
    pub entitlement_slug: String,
    pub entitlement_name: String,
    pub grant_kind: String,
    pub source: String,
    pub granted_since: OffsetDateTime,
    pub sign_in_known: bool,
    pub last_sign_in: Option<OffsetDateTime>,
    pub granted_by_task_id: Option<Uuid>,
    pub granted_by: Option<String>,
    pub access_request_id: Option<Uuid>,
    pub access_request_expires_at: Option<OffsetDateTime>,
    pub recommendation: Option<String>,
    pub recommendation_reason: Option<String>,
    pub reviewer_id: Option<Uuid>,
    pub reviewer_name: Option<String>,
    pub reviewer_email: Option<String>,
    pub reviewer_source: Option<String>,
    pub assigned_at: OffsetDateTime,
    pub evidence_viewed_at: Option<OffsetDateTime>,
    pub decision: Option<String>,
    pub decision_comment: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by: Option<String>,
    pub decided_by_user_id: Option<Uuid>,
    pub bulk: bool,
    pub revocation_task_id: Option<Uuid>,
    pub task_status: Option<String>,
    pub task_error: Option<String>,
    pub task_verified_at: Option<OffsetDateTime>,
    pub task_job_status: Option<String>,
    pub manual_task_id: Option<Uuid>,
    pub manual_status: Option<String>,
    pub manual_reason: Option<String>,
    pub manual_completed_at: Option<OffsetDateTime>,
    pub revocation_note: Option<String>,
}

const SELECT: &str = "SELECT i.id, i.campaign_id, c.name AS campaign_name, i.connector_id, i.grant_id, i.entitlement_id,
        i.principal_id, i.resource_id, i.principal_type, i.principal_name, i.principal_external_id, i.principal_upn,
        i.principal_guest, i.principal_enabled, i.subject_user_id, i.resource_type, i.resource_name, i.entitlement_slug,
        i.entitlement_name, i.grant_kind, i.source, i.granted_since, i.sign_in_known, i.last_sign_in,
        i.granted_by_task_id, i.granted_by, i.access_request_id, i.access_request_expires_at, i.recommendation, i.recommendation_reason, i.reviewer_id,
        u.display_name AS reviewer_name, u.email AS reviewer_email, i.reviewer_source, i.assigned_at,
        i.evidence_viewed_at, i.decision, i.decision_comment, i.decided_at, i.decided_by, i.decided_by_user_id, i.bulk,
        i.revocation_task_id, pt.status AS task_status, coalesce(pt.error, CASE WHEN j.status IN ('failed', 'dead', 'cancelled') THEN j.last_error END) AS task_error,
        pt.verified_at AS task_verified_at, j.status AS task_job_status,
        i.manual_task_id, mt.status AS manual_status, mt.reason AS manual_reason, mt.completed_at AS manual_completed_at,
        i.revocation_note
   FROM review_items i
   JOIN review_campaigns c ON c.id = i.campaign_id
   LEFT JOIN users u ON u.id = i.reviewer_id
   LEFT JOIN provisioning_tasks pt ON pt.id = i.revocation_task_id AND pt.org_id = i.org_id
   LEFT JOIN jobs j ON j.id = pt.job_id AND j.org_id = i.org_id
   LEFT JOIN review_manual_tasks mt ON mt.id = i.manual_task_id AND mt.org_id = i.org_id";

/// Which items to list.
#[derive(Debug, Clone, Default)]
pub struct ItemFilter {
    pub reviewer: Option<Uuid>,
    /// `undecided`, `keep` or `revoke`.
    pub decision: Option<String>,
}

pub async fn list_items(
    tx: &mut OrgTx,
    campaign: Uuid,
    filter: &ItemFilter,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<Item>> {
    let org = tx.org();
    let rows: Vec<Item> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT}
          WHERE i.org_id = $1 AND i.campaign_id = $2
            AND ($3::uuid IS NULL OR i.reviewer_id = $3)
            AND ($4::text IS NULL OR ($4 = 'undecided' AND i.decision IS NULL) OR i.decision = $4)
            AND ($5::uuid IS NULL OR i.id > $5)
          ORDER BY i.id LIMIT $6"
    )))
    .bind(org.0)
    .bind(campaign)
    .bind(filter.reviewer)
    .bind(filter.decision.as_deref())
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |i| i.id))
}

/// Every item of a campaign, in the order a report lists them (what, then who).
pub async fn all_items(tx: &mut OrgTx, campaign: Uuid) -> Result<Vec<Item>> {
    let org = tx.org();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE i.org_id = $1 AND i.campaign_id = $2
          ORDER BY i.resource_name, i.entitlement_name, i.principal_name, i.source, i.id"
    )))
    .bind(org.0)
    .bind(campaign)
    .fetch_all(tx.conn())
    .await?)
}

pub async fn get_item(tx: &mut OrgTx, id: Uuid) -> Result<Item> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE i.org_id = $1 AND i.id = $2"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// A reviewer's undecided items in active campaigns, campaign by campaign.
pub async fn inbox(tx: &mut OrgTx, reviewer: Uuid, limit: i64) -> Result<Vec<Item>> {
    let org = tx.org();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE i.org_id = $1 AND i.reviewer_id = $2 AND i.decision IS NULL AND c.status = 'active'
          ORDER BY c.deadline, i.campaign_id, i.resource_name, i.entitlement_name, i.principal_name, i.id
          LIMIT $3"
    )))
    .bind(org.0)
    .bind(reviewer)
    .bind(limit)
    .fetch_all(tx.conn())
    .await?)
}

/// Who decided, as stored.
pub struct DecisionBy<'a> {
    /// `user:<id>`, `api_client:<id>` or `end_rule`.
    pub actor: &'a str,
    pub user: Option<Uuid>,
    pub bulk: bool,
}

/// Records a decision on an undecided item; false when it was already decided.
pub async fn record_decision(
    tx: &mut OrgTx,
    item: Uuid,
    decision: &str,
    comment: Option<&str>,
    by: &DecisionBy<'_>,
) -> Result<bool> {
    let org = tx.org();
    Ok(sqlx::query(
        "UPDATE review_items SET decision = $3, decision_comment = $4, decided_at = clock_timestamp(),
                decided_by = $5, decided_by_user_id = $6, bulk = $7
          WHERE org_id = $1 AND id = $2 AND decision IS NULL",
    )
    .bind(org.0)
    .bind(item)
    .bind(decision)
    .bind(comment)
    .bind(by.actor)
    .bind(by.user)
    .bind(by.bulk)
    .execute(tx.conn())
    .await?
    .rows_affected()
        == 1)
}

/// The revoke became this provisioning task.
pub async fn set_revocation_task(tx: &mut OrgTx, item: Uuid, task: Uuid) -> Result<()> {
    let org = tx.org();
    sqlx::query("UPDATE review_items SET revocation_task_id = $3 WHERE org_id = $1 AND id = $2")
        .bind(org.0)
        .bind(item)
        .bind(task)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Why the revoke needed no change (e.g. the grant was already gone).
pub async fn set_revocation_note(tx: &mut OrgTx, item: Uuid, note: &str) -> Result<()> {
    let org = tx.org();
    sqlx::query("UPDATE review_items SET revocation_note = $3 WHERE org_id = $1 AND id = $2")
        .bind(org.0)
        .bind(item)
        .bind(note)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Gives an undecided item to another reviewer; false when it is decided already.
pub async fn reassign(tx: &mut OrgTx, item: Uuid, reviewer: Uuid) -> Result<bool> {
    let org = tx.org();
    Ok(sqlx::query(
        "UPDATE review_items SET reviewer_id = $3, reviewer_source = 'reassigned', assigned_at = now(),
                evidence_viewed_at = NULL
          WHERE org_id = $1 AND id = $2 AND decision IS NULL",
    )
    .bind(org.0)
    .bind(item)
    .bind(reviewer)
    .execute(tx.conn())
    .await?
    .rows_affected()
        == 1)
}

/// The reviewer opened the item's evidence (the first time counts).
pub async fn mark_evidence_viewed(tx: &mut OrgTx, item: Uuid) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "UPDATE review_items SET evidence_viewed_at = coalesce(evidence_viewed_at, clock_timestamp())
          WHERE org_id = $1 AND id = $2 AND decision IS NULL",
    )
    .bind(org.0)
    .bind(item)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Ids of the campaign's undecided items.
pub async fn undecided(tx: &mut OrgTx, campaign: Uuid) -> Result<Vec<Uuid>> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT id FROM review_items WHERE org_id = $1 AND campaign_id = $2 AND decision IS NULL ORDER BY id",
    )
    .bind(org.0)
    .bind(campaign)
    .fetch_all(tx.conn())
    .await?)
}

/// Progress of a campaign.
#[derive(Debug, Clone, Serialize, FromRow, PartialEq, Eq, Default)]
pub struct Counts {
    pub items: i64,
    pub decided: i64,
    pub undecided: i64,
    pub kept: i64,
    pub revoked: i64,
    /// Items nobody may review until an administrator reassigns them.
    pub unassigned: i64,
    pub revocations_verified: i64,
    pub revocations_pending: i64,
    pub revocations_failed: i64,
    pub manual_open: i64,
    pub manual_done: i64,
}

pub async fn counts(tx: &mut OrgTx, campaign: Uuid) -> Result<Counts> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT count(*) AS items,
                count(*) FILTER (WHERE i.decision IS NOT NULL) AS decided,
                count(*) FILTER (WHERE i.decision IS NULL) AS undecided,
                count(*) FILTER (WHERE i.decision = 'keep') AS kept,
                count(*) FILTER (WHERE i.decision = 'revoke') AS revoked,
                count(*) FILTER (WHERE i.decision IS NULL AND i.reviewer_id IS NULL) AS unassigned,
                count(*) FILTER (WHERE pt.status = 'succeeded') AS revocations_verified,
                count(*) FILTER (WHERE pt.status IN ('queued', 'running') AND coalesce(j.status, '') NOT IN ('failed', 'dead', 'cancelled')) AS revocations_pending,
                count(*) FILTER (WHERE pt.status = 'failed' OR (pt.status IN ('queued', 'running') AND j.status IN ('failed', 'dead', 'cancelled'))) AS revocations_failed,
                count(*) FILTER (WHERE mt.status = 'open') AS manual_open,
                count(*) FILTER (WHERE mt.status = 'done') AS manual_done
           FROM review_items i
           LEFT JOIN provisioning_tasks pt ON pt.id = i.revocation_task_id AND pt.org_id = i.org_id
           LEFT JOIN jobs j ON j.id = pt.job_id AND j.org_id = i.org_id
           LEFT JOIN review_manual_tasks mt ON mt.id = i.manual_task_id AND mt.org_id = i.org_id
          WHERE i.org_id = $1 AND i.campaign_id = $2",
    )
    .bind(org.0)
    .bind(campaign)
    .fetch_one(tx.conn())
    .await?)
}

/// Reviewers with undecided items in the campaign: `(user id, email, name, items)`.
pub async fn open_by_reviewer(
    tx: &mut OrgTx,
    campaign: Uuid,
) -> Result<Vec<(Uuid, String, String, i64)>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT u.id, u.email, u.display_name, count(*)
           FROM review_items i JOIN users u ON u.id = i.reviewer_id AND u.disabled_at IS NULL
          WHERE i.org_id = $1 AND i.campaign_id = $2 AND i.decision IS NULL
          GROUP BY u.id, u.email, u.display_name ORDER BY u.email",
    )
    .bind(org.0)
    .bind(campaign)
    .fetch_all(tx.conn())
    .await?)
}

/// Display names of a connector's groups by object id, to show an inherited grant's path
/// (`group:<id>>group:<id>`) in words. Missing groups are left out.
pub async fn group_names(
    tx: &mut OrgTx,
    connector: Uuid,
    object_ids: &[String],
) -> Result<Vec<(String, String)>> {
    if object_ids.is_empty() {
        return Ok(vec![]);
    }
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT external_id, display_name FROM resources
          WHERE org_id = $1 AND connector_id = $2 AND type = 'group' AND external_id = ANY($3)",
    )
    .bind(org.0)
    .bind(connector)
    .bind(object_ids)
    .fetch_all(tx.conn())
    .await?)
}
