//! Access requests: the rows, their append-only transition trail, the approvers each stage
//! resolved to and the decisions made; plus the access-model lookups the lifecycle needs
//! (the requester's account, group membership, owners, current grants) and the
//! cross-organization scan of requests with something due.

use crate::audit::Actor;
use crate::page::{Cursor, Page};
use crate::{OrgTx, Result, Store, StoreError};
use latchkey_core::{OrgId, UserId};
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

/// A request as stored. The lifecycle (latchkey-access) reads it locked, changes fields and
/// writes it back with [`save`].
#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct Request {
    pub id: Uuid,
    pub requester_id: Uuid,
    pub connector_id: Uuid,
    pub entitlement_id: Uuid,
    pub principal_id: Uuid,
    pub state: String,
    pub emergency: bool,
    pub needs_review: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub reviewed_at: Option<OffsetDateTime>,
    pub reviewed_by: Option<Uuid>,
    pub justification: String,
    pub duration_seconds: i32,
    pub policy: Value,
    pub policy_version: i32,
    pub round: i32,
    pub stage: i32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub decide_by: Option<OffsetDateTime>,
    pub extension_seconds: Option<i32>,
    pub extension_justification: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub extension_requested_at: Option<OffsetDateTime>,
    pub provision_task_id: Option<Uuid>,
    pub revoke_task_id: Option<Uuid>,
    pub revoke_attempts: i32,
    pub end_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub granted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub reminded_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str =
    "id, requester_id, connector_id, entitlement_id, principal_id, state, emergency,
    needs_review, reviewed_at, reviewed_by, justification, duration_seconds, policy, policy_version,
    round, stage, decide_by, extension_seconds, extension_justification, extension_requested_at,
    provision_task_id, revoke_task_id, revoke_attempts, end_reason, granted_at, expires_at,
    reminded_at, ended_at, created_by, created_at, updated_at";

/// Inserts a new request. A second open request of the same person for the same
/// entitlement is a [`StoreError::Conflict`] on `entitlement_id`.
pub async fn insert(tx: &mut OrgTx, r: &Request) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "INSERT INTO access_requests (id, org_id, requester_id, connector_id, entitlement_id, principal_id,
             state, emergency, needs_review, justification, duration_seconds, policy, policy_version,
             round, stage, decide_by, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(r.id)
    .bind(org.0)
    .bind(r.requester_id)
    .bind(r.connector_id)
    .bind(r.entitlement_id)
    .bind(r.principal_id)
    .bind(&r.state)
    .bind(r.emergency)
    .bind(r.needs_review)
    .bind(&r.justification)
    .bind(r.duration_seconds)
    .bind(&r.policy)
    .bind(r.policy_version)
    .bind(r.round)
    .bind(r.stage)
    .bind(r.decide_by)
    .bind(&r.created_by)
    .execute(tx.conn())
    .await
    .map_err(|e| StoreError::on_unique(e, "access_requests_open_key", "entitlement_id"))?;
    Ok(())
}

/// Writes back every field the lifecycle changes.
pub async fn save(tx: &mut OrgTx, r: &Request) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "UPDATE access_requests SET state = $3, needs_review = $4, reviewed_at = $5, reviewed_by = $6,
             duration_seconds = $7, policy = $8, policy_version = $9, round = $10, stage = $11,
             decide_by = $12, extension_seconds = $13, extension_justification = $14,
             extension_requested_at = $15, provision_task_id = $16, revoke_task_id = $17,
             revoke_attempts = $18, end_reason = $19, granted_at = $20, expires_at = $21,
             reminded_at = $22, ended_at = $23, updated_at = now()
          WHERE org_id = $1 AND id = $2",
    )
    .bind(org.0)
    .bind(r.id)
    .bind(&r.state)
    .bind(r.needs_review)
    .bind(r.reviewed_at)
    .bind(r.reviewed_by)
    .bind(r.duration_seconds)
    .bind(&r.policy)
    .bind(r.policy_version)
    .bind(r.round)
    .bind(r.stage)
    .bind(r.decide_by)
    .bind(r.extension_seconds)
    .bind(&r.extension_justification)
    .bind(r.extension_requested_at)
    .bind(r.provision_task_id)
    .bind(r.revoke_task_id)
    .bind(r.revoke_attempts)
    .bind(&r.end_reason)
    .bind(r.granted_at)
    .bind(r.expires_at)
    .bind(r.reminded_at)
    .bind(r.ended_at)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn get(tx: &mut OrgTx, id: Uuid) -> Result<Request> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM access_requests WHERE org_id = $1 AND id = $2"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// The request, locked until the transaction ends: every change to a request goes through
/// this, so two deciders (or a decision and an expiry) are serialised.
pub async fn lock(tx: &mut OrgTx, id: Uuid) -> Result<Request> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM access_requests WHERE org_id = $1 AND id = $2 FOR UPDATE"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// The person's open request (pending, approved, provisioning or active) for the
/// entitlement, locked.
pub async fn lock_open(
    tx: &mut OrgTx,
    requester: UserId,
    entitlement: Uuid,
) -> Result<Option<Request>> {
    let org = tx.org();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM access_requests
          WHERE org_id = $1 AND requester_id = $2 AND entitlement_id = $3
            AND state IN ('pending', 'approved', 'provisioning', 'active')
          FOR UPDATE"
    )))
    .bind(org.0)
    .bind(requester.0)
    .bind(entitlement)
    .fetch_optional(tx.conn())
    .await?)
}

/// A request with the names a list shows.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct Listed {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub request: Request,
    pub requester_email: String,
    pub requester_name: String,
    pub entitlement_name: String,
    pub slug: String,
    pub resource_name: String,
    pub resource_type: String,
    pub connector_name: String,
    pub risk: String,
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub states: Vec<String>,
    pub requester: Option<UserId>,
    pub entitlement: Option<Uuid>,
    pub connector: Option<Uuid>,
    /// Only requests whose current decision (request or extension) this person may make
    /// and has not made yet.
    pub awaiting: Option<UserId>,
    pub emergency: Option<bool>,
    /// Substring of the requester's name or email, or of the entitlement's or resource's name.
    pub q: Option<String>,
}

const LISTED: &str = "SELECT r.id, r.requester_id, r.connector_id, r.entitlement_id, r.principal_id, r.state,
        r.emergency, r.needs_review, r.reviewed_at, r.reviewed_by, r.justification, r.duration_seconds,
        r.policy, r.policy_version, r.round, r.stage, r.decide_by, r.extension_seconds,
        r.extension_justification, r.extension_requested_at, r.provision_task_id, r.revoke_task_id,
        r.revoke_attempts, r.end_reason, r.granted_at, r.expires_at, r.reminded_at, r.ended_at,
        r.created_by, r.created_at, r.updated_at,
        u.email AS requester_email, u.display_name AS requester_name,
        coalesce(e.display_name, '') AS entitlement_name, coalesce(e.slug, '') AS slug,
        coalesce(res.display_name, '') AS resource_name, coalesce(res.type, '') AS resource_type,
        c.display_name AS connector_name, coalesce(p.risk, 'medium') AS risk
   FROM access_requests r
   JOIN users u ON u.org_id = r.org_id AND u.id = r.requester_id
   JOIN connectors c ON c.org_id = r.org_id AND c.id = r.connector_id
   LEFT JOIN entitlements e ON e.org_id = r.org_id AND e.id = r.entitlement_id
   LEFT JOIN resources res ON res.org_id = r.org_id AND res.id = e.resource_id
   LEFT JOIN access_policies p ON p.org_id = r.org_id AND p.entitlement_id = r.entitlement_id";

/// Newest first.
pub async fn list(
    tx: &mut OrgTx,
    f: &Filter,
    before: Option<Cursor>,
    limit: i64,
) -> Result<Page<Listed>> {
    let org = tx.org();
    let q = crate::resources::contains_pattern(f.q.as_deref());
    let rows: Vec<Listed> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{LISTED}
          WHERE r.org_id = $1
            AND (cardinality($2::text[]) = 0 OR r.state = ANY($2))
            AND ($3::uuid IS NULL OR r.requester_id = $3)
            AND ($4::uuid IS NULL OR r.entitlement_id = $4)
            AND ($5::uuid IS NULL OR r.connector_id = $5)
            AND ($6::uuid IS NULL OR (
                  (r.state = 'pending' OR (r.state = 'active' AND r.extension_requested_at IS NOT NULL
                                           AND r.end_reason IS NULL))
                  AND EXISTS (SELECT 1 FROM access_request_approvers a
                               WHERE a.org_id = r.org_id AND a.request_id = r.id AND a.round = r.round
                                 AND a.stage = r.stage AND a.user_id = $6)
                  AND NOT EXISTS (SELECT 1 FROM access_request_decisions d
                               WHERE d.org_id = r.org_id AND d.request_id = r.id AND d.round = r.round
                                 AND d.stage = r.stage AND d.approver_id = $6)))
            AND ($7::bool IS NULL OR r.emergency = $7)
            AND ($8::text IS NULL OR u.display_name ILIKE $8 OR u.email ILIKE $8
                 OR e.display_name ILIKE $8 OR res.display_name ILIKE $8)
            AND ($9::uuid IS NULL OR r.id < $9)
          ORDER BY r.id DESC LIMIT $10"
    )))
    .bind(org.0)
    .bind(&f.states)
    .bind(f.requester.map(|u| u.0))
    .bind(f.entitlement)
    .bind(f.connector)
    .bind(f.awaiting.map(|u| u.0))
    .bind(f.emergency)
    .bind(q)
    .bind(before.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |r| r.request.id))
}

pub async fn get_listed(tx: &mut OrgTx, id: Uuid) -> Result<Listed> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{LISTED} WHERE r.org_id = $1 AND r.id = $2"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// One step of a request's life.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct Transition {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub from_state: Option<String>,
    pub to_state: String,
    pub event: String,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub actor_label: String,
    pub reason: Option<String>,
}

pub async fn add_transition(
    tx: &mut OrgTx,
    request: Uuid,
    from: Option<&str>,
    to: &str,
    event: &str,
    actor: &Actor,
    reason: Option<&str>,
) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "INSERT INTO access_request_transitions (org_id, request_id, from_state, to_state, event,
             actor_kind, actor_id, actor_label, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(org.0)
    .bind(request)
    .bind(from)
    .bind(to)
    .bind(event)
    .bind(actor.kind.as_str())
    .bind(actor.id)
    .bind(&actor.label)
    .bind(reason)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn transitions(tx: &mut OrgTx, request: Uuid) -> Result<Vec<Transition>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT id, at, from_state, to_state, event, actor_kind, actor_id, actor_label, reason
           FROM access_request_transitions WHERE org_id = $1 AND request_id = $2 ORDER BY id",
    )
    .bind(org.0)
    .bind(request)
    .fetch_all(tx.conn())
    .await?)
}

/// A person who may decide a stage, and why.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct Approver {
    pub round: i32,
    pub stage: i32,
    pub user_id: Uuid,
    pub why: String,
    pub email: String,
    pub display_name: String,
}

pub async fn set_approvers(
    tx: &mut OrgTx,
    request: Uuid,
    round: i32,
    stage: i32,
    approvers: &[(UserId, String)],
) -> Result<()> {
    let org = tx.org();
    for (user, why) in approvers {
        sqlx::query(
            "INSERT INTO access_request_approvers (org_id, request_id, round, stage, user_id, why)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(org.0)
        .bind(request)
        .bind(round)
        .bind(stage)
        .bind(user.0)
        .bind(why)
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

/// Every approver of every stage and round, in order.
pub async fn approvers(tx: &mut OrgTx, request: Uuid) -> Result<Vec<Approver>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT a.round, a.stage, a.user_id, a.why, u.email, u.display_name
           FROM access_request_approvers a JOIN users u ON u.org_id = a.org_id AND u.id = a.user_id
          WHERE a.org_id = $1 AND a.request_id = $2 ORDER BY a.round, a.stage, u.email",
    )
    .bind(org.0)
    .bind(request)
    .fetch_all(tx.conn())
    .await?)
}

#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct Decision {
    pub round: i32,
    pub stage: i32,
    pub approver_id: Uuid,
    pub approver_email: String,
    pub decision: String,
    pub comment: String,
    pub via: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Records a decision; the same person deciding the same stage twice is a
/// [`StoreError::Conflict`] on `decision`.
pub async fn add_decision(
    tx: &mut OrgTx,
    request: &Request,
    approver: UserId,
    decision: &str,
    comment: &str,
    via: &str,
) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "INSERT INTO access_request_decisions (org_id, request_id, round, stage, approver_id, decision, comment, via)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(org.0)
    .bind(request.id)
    .bind(request.round)
    .bind(request.stage)
    .bind(approver.0)
    .bind(decision)
    .bind(comment)
    .bind(via)
    .execute(tx.conn())
    .await
    .map_err(|e| StoreError::on_unique(e, "access_request_decisions_pkey", "decision"))?;
    Ok(())
}

pub async fn decisions(tx: &mut OrgTx, request: Uuid) -> Result<Vec<Decision>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT d.round, d.stage, d.approver_id, u.email AS approver_email, d.decision, d.comment, d.via, d.at
           FROM access_request_decisions d JOIN users u ON u.org_id = d.org_id AND u.id = d.approver_id
          WHERE d.org_id = $1 AND d.request_id = $2 ORDER BY d.at",
    )
    .bind(org.0)
    .bind(request)
    .fetch_all(tx.conn())
    .await?)
}

/// Approvals counted for the request's current round and stage.
pub async fn approvals_in_stage(tx: &mut OrgTx, request: &Request) -> Result<i64> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM access_request_decisions
          WHERE org_id = $1 AND request_id = $2 AND round = $3 AND stage = $4 AND decision = 'approved'",
    )
    .bind(org.0)
    .bind(request.id)
    .bind(request.round)
    .bind(request.stage)
    .fetch_one(tx.conn())
    .await?)
}

// ---- the access model, as the lifecycle needs it ----

/// The connector's synced (not deleted) `user` resource with this Entra object id.
pub async fn user_resource(
    tx: &mut OrgTx,
    connector: Uuid,
    object_id: &str,
) -> Result<Option<Uuid>> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT id FROM resources
          WHERE org_id = $1 AND connector_id = $2 AND type = 'user' AND lower(external_id) = lower($3)
            AND deleted_at IS NULL",
    )
    .bind(org.0)
    .bind(connector)
    .bind(object_id)
    .fetch_optional(tx.conn())
    .await?)
}

/// A resource's profile (e.g. a user's `manager_id`), if it still exists.
pub async fn resource_profile(tx: &mut OrgTx, resource: Uuid) -> Result<Option<(String, Value)>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT external_id, profile FROM resources WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL",
    )
    .bind(org.0)
    .bind(resource)
    .fetch_optional(tx.conn())
    .await?)
}

/// The principal's current direct grant of the entitlement (what a revoke removes).
pub async fn direct_grant(
    tx: &mut OrgTx,
    connector: Uuid,
    entitlement: Uuid,
    principal: Uuid,
) -> Result<Option<Uuid>> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT id FROM grants
          WHERE org_id = $1 AND connector_id = $2 AND entitlement_id = $3 AND principal_id = $4
            AND deleted_at IS NULL AND NOT expanded AND source = 'direct'
          ORDER BY first_seen_at LIMIT 1",
    )
    .bind(org.0)
    .bind(connector)
    .bind(entitlement)
    .bind(principal)
    .fetch_optional(tx.conn())
    .await?)
}

/// Whether the principal is a member (directly or through nested groups) of any of the
/// groups (group `resources` ids), according to the last sync.
pub async fn member_of_any(tx: &mut OrgTx, principal: Uuid, groups: &[Uuid]) -> Result<bool> {
    if groups.is_empty() {
        return Ok(false);
    }
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM grants g JOIN entitlements e ON e.org_id = g.org_id AND e.id = g.entitlement_id
          WHERE g.org_id = $1 AND g.principal_id = $2 AND g.deleted_at IS NULL
            AND e.resource_id = ANY($3) AND e.slug = 'members' AND e.deleted_at IS NULL)",
    )
    .bind(org.0)
    .bind(principal)
    .bind(groups)
    .fetch_one(tx.conn())
    .await?)
}

/// Entra object ids of the users who are members (directly or nested) of a group resource.
pub async fn group_member_object_ids(tx: &mut OrgTx, group: Uuid) -> Result<Vec<(String, String)>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT DISTINCT p.external_id, c.settings->'auth'->>'tenant_id'
           FROM grants g
           JOIN entitlements e ON e.org_id = g.org_id AND e.id = g.entitlement_id
           JOIN resources p ON p.org_id = g.org_id AND p.id = g.principal_id AND p.type = 'user'
           JOIN connectors c ON c.org_id = g.org_id AND c.id = g.connector_id
          WHERE g.org_id = $1 AND e.resource_id = $2 AND e.slug = 'members' AND g.deleted_at IS NULL
            AND c.settings->'auth'->>'tenant_id' IS NOT NULL
          LIMIT 500",
    )
    .bind(org.0)
    .bind(group)
    .fetch_all(tx.conn())
    .await?)
}

/// Entra object ids of the users who own a resource in Entra (group owners, application owners).
pub async fn resource_owner_object_ids(tx: &mut OrgTx, resource: Uuid) -> Result<Vec<String>> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT p.external_id
           FROM grants g
           JOIN entitlements e ON e.org_id = g.org_id AND e.id = g.entitlement_id
           JOIN resources p ON p.org_id = g.org_id AND p.id = g.principal_id AND p.type = 'user'
          WHERE g.org_id = $1 AND e.resource_id = $2 AND e.slug = 'owners' AND g.deleted_at IS NULL",
    )
    .bind(org.0)
    .bind(resource)
    .fetch_all(tx.conn())
    .await?)
}

/// Latchkey users linked to any of these Entra accounts of one tenant.
pub async fn users_for_object_ids(
    tx: &mut OrgTx,
    tenant_id: &str,
    object_ids: &[String],
) -> Result<Vec<Uuid>> {
    let org = tx.org();
    let lowered: Vec<String> = object_ids.iter().map(|o| o.to_lowercase()).collect();
    Ok(sqlx::query_scalar(
        "SELECT i.user_id FROM user_entra_identities i JOIN users u ON u.org_id = i.org_id AND u.id = i.user_id
          WHERE i.org_id = $1 AND i.tenant_id = lower($2) AND i.object_id = ANY($3) AND u.disabled_at IS NULL",
    )
    .bind(org.0)
    .bind(tenant_id)
    .bind(&lowered)
    .fetch_all(tx.conn())
    .await?)
}

/// The organization's enabled Super Administrators (the approvers of last resort).
pub async fn super_admins(tx: &mut OrgTx) -> Result<Vec<Uuid>> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT id FROM users WHERE org_id = $1 AND role = 'super_admin' AND disabled_at IS NULL ORDER BY email",
    )
    .bind(org.0)
    .fetch_all(tx.conn())
    .await?)
}

/// Whether the user exists in the organization and is enabled.
pub async fn user_enabled(tx: &mut OrgTx, user: Uuid) -> Result<bool> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM users WHERE org_id = $1 AND id = $2 AND disabled_at IS NULL)",
    )
    .bind(org.0)
    .bind(user)
    .fetch_one(tx.conn())
    .await?)
}

/// Email addresses of users, in the order given (unknown ids skipped).
pub async fn emails(tx: &mut OrgTx, users: &[Uuid]) -> Result<Vec<String>> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT email FROM users WHERE org_id = $1 AND id = ANY($2) AND disabled_at IS NULL ORDER BY email",
    )
    .bind(org.0)
    .bind(users)
    .fetch_all(tx.conn())
    .await?)
}

/// One current grant of a principal, in words (an approver looks at the requester's access).
#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct HeldAccess {
    pub entitlement_id: Uuid,
    pub entitlement_name: String,
    pub resource_name: String,
    pub resource_type: String,
    pub kind: String,
    pub source: String,
}

pub async fn held_access(tx: &mut OrgTx, principal: Uuid, limit: i64) -> Result<Vec<HeldAccess>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT g.entitlement_id, e.display_name AS entitlement_name, r.display_name AS resource_name,
                r.type AS resource_type, g.kind, g.source
           FROM grants g
           JOIN entitlements e ON e.org_id = g.org_id AND e.id = g.entitlement_id
           JOIN resources r ON r.org_id = e.org_id AND r.id = e.resource_id
          WHERE g.org_id = $1 AND g.principal_id = $2 AND g.deleted_at IS NULL
          ORDER BY r.display_name, e.display_name LIMIT $3",
    )
    .bind(org.0)
    .bind(principal)
    .bind(limit)
    .fetch_all(tx.conn())
    .await?)
}

/// Requests with something due (a decision that timed out, a task to follow, an expiry, a
/// reminder), across organizations: the lifecycle sweep's catch-up. Owner connection (system
/// work); returns only ids.
pub async fn due(store: &Store, limit: i64) -> Result<Vec<(OrgId, Uuid)>> {
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT org_id, id FROM access_requests
          WHERE state IN ('pending', 'approved', 'provisioning', 'active')
            AND (state IN ('approved', 'provisioning')
                 OR (state = 'pending' AND decide_by <= now())
                 OR (state = 'active' AND (end_reason IS NOT NULL OR expires_at <= now()
                     OR (extension_requested_at IS NOT NULL AND decide_by <= now())
                     OR (reminded_at IS NULL AND expires_at - make_interval(
                           secs => coalesce((policy->>'reminder_before_seconds')::int, 0)) <= now()
                         AND coalesce((policy->>'reminder_before_seconds')::int, 0) > 0))))
          ORDER BY updated_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(store.system())
    .await?;
    Ok(rows.into_iter().map(|(o, id)| (OrgId(o), id)).collect())
}

/// A resource's type (`group`, `user`, ...), if it exists and was not deleted.
pub async fn resource_type(tx: &mut OrgTx, id: Uuid) -> Result<Option<String>> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT type FROM resources WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL",
    )
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?)
}

/// The person who created an API client (an API client acts for them on requests), and the
/// client's name.
pub async fn api_client_creator(tx: &mut OrgTx, client: Uuid) -> Result<(Option<Uuid>, String)> {
    let org = tx.org();
    sqlx::query_as(
        "SELECT u.id, c.name FROM api_clients c
           LEFT JOIN users u ON u.org_id = c.org_id AND u.id = c.created_by AND u.disabled_at IS NULL
          WHERE c.org_id = $1 AND c.id = $2",
    )
    .bind(org.0)
    .bind(client)
    .fetch_optional(tx.conn())
    .await?
    .map(|(by, name): (Option<Uuid>, String)| (by, name))
    .ok_or(StoreError::NotFound)
}

/// Whether the user may decide (or did decide) any stage of the request.
pub async fn is_approver(tx: &mut OrgTx, request: Uuid, user: Uuid) -> Result<bool> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM access_request_approvers WHERE org_id = $1 AND request_id = $2 AND user_id = $3)",
    )
    .bind(org.0)
    .bind(request)
    .bind(user)
    .fetch_one(tx.conn())
    .await?)
}
