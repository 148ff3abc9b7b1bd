//! Taking a campaign's snapshot: the grants in its scope become items (with the evidence of
//! the moment), then each item gets its reviewer and a recommendation.

use crate::{OrgTx, Result};
use uuid::Uuid;

/// Which grants a campaign reviews. Empty lists mean "all".
#[derive(Debug, Clone, Default)]
pub struct SnapshotScope {
    pub connector_ids: Vec<Uuid>,
    pub entitlement_ids: Vec<Uuid>,
    /// Types of the resource offering the entitlement (`role`, `group`, `enterprise_application`, ...).
    pub resource_types: Vec<String>,
    /// Types of the principal holding the grant (`user`, `group`, ...).
    pub principal_types: Vec<String>,
    pub guests_only: bool,
    /// Only users whose last sign-in is older than this (or who never signed in), as the tenant
    /// reports it. Sign-in activity counts only while the connector fetches it (a date kept from
    /// before it was turned off is stale): users without it are left out, and their items say
    /// that sign-ins are not known.
    pub inactive_days: Option<i64>,
    /// Also access inherited through groups, each with its path: memberships and roles
    /// expanded through nested groups, and group-based licences (which the tenant reports with
    /// their group, not expanded).
    pub include_inherited: bool,
}

/// Copies the current grants in `scope` into `campaign`'s items. Returns how many.
pub async fn snapshot_items(tx: &mut OrgTx, campaign: Uuid, scope: &SnapshotScope) -> Result<u64> {
    let org = tx.org();
    Ok(sqlx::query(
        "INSERT INTO review_items (id, org_id, campaign_id, connector_id, grant_id, entitlement_id, principal_id, resource_id,
             principal_type, principal_name, principal_external_id, principal_upn, principal_guest, principal_enabled,
             subject_user_id, resource_type, resource_name, entitlement_slug, entitlement_name, grant_kind, source,
             granted_since, sign_in_known, last_sign_in, granted_by_task_id, granted_by,
             access_request_id, access_request_expires_at)
         SELECT md5($2::text || ':' || g.id::text)::uuid, $1, $2, g.connector_id, g.id, g.entitlement_id, g.principal_id, r.id,
                p.type, p.display_name, p.external_id,
                coalesce(p.profile->>'user_principal_name', p.profile->>'mail'),
                coalesce(p.profile->>'user_type', '') = 'Guest',
                (p.profile->>'account_enabled')::bool,
                (SELECT ui.user_id FROM user_entra_identities ui
                  WHERE ui.org_id = $1 AND ui.tenant_id = lower(c.settings->'auth'->>'tenant_id')
                    AND ui.object_id = lower(p.external_id)),
                r.type, r.display_name, e.slug, e.display_name, g.kind, g.source, g.first_seen_at,
                p.profile ? 'last_sign_in' AND coalesce((c.settings->>'fetch_sign_in_activity')::bool, false),
                CASE WHEN coalesce((c.settings->>'fetch_sign_in_activity')::bool, false)
                     THEN (p.profile->>'last_sign_in')::timestamptz END,
                t.id, t.requested_by, jr.id, jr.expires_at
           FROM grants g
           JOIN connectors c ON c.id = g.connector_id AND c.org_id = $1
           JOIN entitlements e ON e.id = g.entitlement_id AND e.org_id = $1 AND e.deleted_at IS NULL
           JOIN resources r ON r.id = e.resource_id AND r.org_id = $1 AND r.deleted_at IS NULL
           JOIN resources p ON p.id = g.principal_id AND p.org_id = $1 AND p.deleted_at IS NULL
           LEFT JOIN LATERAL (
                SELECT pt.id, pt.requested_by FROM provisioning_tasks pt
                 WHERE pt.org_id = $1 AND pt.connector_id = g.connector_id AND pt.entitlement_id = g.entitlement_id
                   AND pt.principal_id = g.principal_id AND pt.operation = 'grant' AND pt.status = 'succeeded'
                   AND NOT g.expanded AND g.source = 'direct'
                 ORDER BY pt.verified_at DESC NULLS LAST LIMIT 1) t ON true
           LEFT JOIN LATERAL (
                SELECT ar.id, ar.expires_at FROM access_requests ar
                 WHERE ar.org_id = $1 AND ar.connector_id = g.connector_id AND ar.entitlement_id = g.entitlement_id
                   AND ar.principal_id = g.principal_id AND ar.state IN ('provisioning', 'active')
                   AND NOT g.expanded AND g.source = 'direct'
                 ORDER BY ar.created_at DESC LIMIT 1) jr ON true
          WHERE g.org_id = $1 AND g.connector_id = ANY($3) AND g.deleted_at IS NULL
            AND (cardinality($4::uuid[]) = 0 OR g.entitlement_id = ANY($4))
            AND (cardinality($5::text[]) = 0 OR r.type = ANY($5))
            AND (cardinality($6::text[]) = 0 OR p.type = ANY($6))
            AND (NOT $7 OR coalesce(p.profile->>'user_type', '') = 'Guest')
            AND ($8::int8 IS NULL OR (p.type = 'user'
                 AND p.profile ? 'last_sign_in' AND coalesce((c.settings->>'fetch_sign_in_activity')::bool, false)
                 AND coalesce((p.profile->>'last_sign_in')::timestamptz, '-infinity') < now() - make_interval(days => $8::int)))
            AND ($9 OR (NOT g.expanded AND g.source = 'direct'))
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(org.0)
    .bind(campaign)
    .bind(&scope.connector_ids)
    .bind(&scope.entitlement_ids)
    .bind(&scope.resource_types)
    .bind(&scope.principal_types)
    .bind(scope.guests_only)
    .bind(scope.inactive_days)
    .bind(scope.include_inherited)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// How a campaign's items find their reviewer.
#[derive(Debug, Clone)]
pub enum ReviewerRule {
    /// The owners of the item's connector (the app's owners), earliest added first.
    AppOwner,
    /// The user's manager in Entra (`profile.manager_id`), when linked to a Latchkey user.
    Manager,
    /// These people, the first one listed who may review the item.
    Specific(Vec<Uuid>),
}

/// Gives every item of `campaign` a reviewer: by `rule`, else `fallback`; never the person
/// whose access it is, never a disabled account. Items nobody may review keep no reviewer
/// (an administrator reassigns them). Returns how many items have none.
pub async fn assign_reviewers(
    tx: &mut OrgTx,
    campaign: Uuid,
    rule: &ReviewerRule,
    fallback: Option<Uuid>,
) -> Result<u64> {
    let org = tx.org();
    match rule {
        ReviewerRule::AppOwner => {
            sqlx::query(
                "UPDATE review_items i SET reviewer_id = x.user_id, reviewer_source = 'app_owner'
                   FROM (SELECT i2.id,
                                (SELECT o.user_id FROM connector_owners o
                                   JOIN users u ON u.id = o.user_id AND u.disabled_at IS NULL
                                  WHERE o.org_id = $1 AND o.connector_id = i2.connector_id
                                    AND o.user_id IS DISTINCT FROM i2.subject_user_id
                                  ORDER BY o.added_at, o.user_id LIMIT 1) AS user_id
                           FROM review_items i2 WHERE i2.org_id = $1 AND i2.campaign_id = $2) x
                  WHERE i.id = x.id AND x.user_id IS NOT NULL",
            )
            .bind(org.0)
            .bind(campaign)
            .execute(tx.conn())
            .await?;
        }
        ReviewerRule::Manager => {
            sqlx::query(
                "UPDATE review_items i SET reviewer_id = x.user_id, reviewer_source = 'manager'
                   FROM (SELECT i2.id, ui.user_id
                           FROM review_items i2
                           JOIN resources p ON p.id = i2.principal_id AND p.org_id = $1
                           JOIN connectors c ON c.id = i2.connector_id AND c.org_id = $1
                           JOIN user_entra_identities ui
                             ON ui.org_id = $1 AND ui.tenant_id = lower(c.settings->'auth'->>'tenant_id')
                            AND ui.object_id = lower(p.profile->>'manager_id')
                           JOIN users u ON u.id = ui.user_id AND u.disabled_at IS NULL
                          WHERE i2.org_id = $1 AND i2.campaign_id = $2
                            AND ui.user_id IS DISTINCT FROM i2.subject_user_id) x
                  WHERE i.id = x.id",
            )
            .bind(org.0)
            .bind(campaign)
            .execute(tx.conn())
            .await?;
        }
        ReviewerRule::Specific(people) => {
            sqlx::query(
                "UPDATE review_items i SET reviewer_id = x.user_id, reviewer_source = 'specific'
                   FROM (SELECT i2.id,
                                (SELECT s.u FROM unnest($3::uuid[]) WITH ORDINALITY AS s(u, n)
                                   JOIN users u ON u.id = s.u AND u.org_id = $1 AND u.disabled_at IS NULL
                                  WHERE s.u IS DISTINCT FROM i2.subject_user_id
                                  ORDER BY s.n LIMIT 1) AS user_id
                           FROM review_items i2 WHERE i2.org_id = $1 AND i2.campaign_id = $2) x
                  WHERE i.id = x.id AND x.user_id IS NOT NULL",
            )
            .bind(org.0)
            .bind(campaign)
            .bind(people)
            .execute(tx.conn())
            .await?;
        }
    }
    if let Some(fallback) = fallback {
        sqlx::query(
            "UPDATE review_items i SET reviewer_id = $3, reviewer_source = 'fallback'
              WHERE i.org_id = $1 AND i.campaign_id = $2 AND i.reviewer_id IS NULL
                AND i.subject_user_id IS DISTINCT FROM $3
                AND EXISTS (SELECT 1 FROM users u WHERE u.id = $3 AND u.org_id = $1 AND u.disabled_at IS NULL)",
        )
        .bind(org.0)
        .bind(campaign)
        .bind(fallback)
        .execute(tx.conn())
        .await?;
    }
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM review_items WHERE org_id = $1 AND campaign_id = $2 AND reviewer_id IS NULL",
    )
    .bind(org.0)
    .bind(campaign)
    .fetch_one(tx.conn())
    .await? as u64)
}

/// Sets each item's recommendation from its evidence: revoke when the account is disabled;
/// keep when the access came from a just-in-time request (it ends by itself); revoke when it
/// never signed in or has not signed in for `inactive_after_days`; keep when it signed in
/// since; no advice when the tenant does not report sign-ins.
pub async fn recommend(tx: &mut OrgTx, campaign: Uuid, inactive_after_days: i64) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "UPDATE review_items SET
             recommendation = CASE
                 WHEN principal_enabled IS FALSE THEN 'revoke'
                 WHEN access_request_id IS NOT NULL THEN 'keep'
                 WHEN principal_type <> 'user' OR NOT sign_in_known THEN NULL
                 WHEN last_sign_in IS NULL THEN 'revoke'
                 WHEN last_sign_in < now() - make_interval(days => $3::int) THEN 'revoke'
                 ELSE 'keep' END,
             recommendation_reason = CASE
                 WHEN principal_enabled IS FALSE THEN 'The account is disabled'
                 WHEN access_request_id IS NOT NULL
                     THEN 'Just-in-time access from an approved request; it ends by itself'
                          || coalesce(' on ' || to_char(access_request_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), '')
                 WHEN principal_type <> 'user' OR NOT sign_in_known THEN NULL
                 WHEN last_sign_in IS NULL THEN 'Never signed in'
                 WHEN last_sign_in < now() - make_interval(days => $3::int)
                     THEN 'No sign-in for ' || floor(extract(epoch FROM now() - last_sign_in) / 86400)::int8 || ' days'
                 ELSE 'Signed in ' || floor(extract(epoch FROM now() - last_sign_in) / 86400)::int8 || ' days ago' END
          WHERE org_id = $1 AND campaign_id = $2",
    )
    .bind(org.0)
    .bind(campaign)
    .bind(inactive_after_days)
    .execute(tx.conn())
    .await?;
    Ok(())
}
