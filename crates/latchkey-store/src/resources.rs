//! The connector-neutral access model a sync writes: resources, their entitlements and the
//! grants of those entitlements to principals (which are resources too).
//!
//! Writers pass natural keys (a resource's *key* is its directory object id, or `role:<id>` /
//! `license:<skuId>` for the types that are not directory objects); ids are derived from them in
//! SQL (`sync_resource_id`, `sync_entitlement_id`, `sync_grant_id`), so batches are written as
//! pages stream in, in any order, with no lookups. Reads return ids and current rows only.

use crate::page::{Cursor, Page};
use crate::{OrgTx, Result};
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use std::collections::BTreeMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// A resource as a sync saw it.
#[derive(Debug, Clone)]
pub struct ResourceRow {
    pub rtype: &'static str,
    /// The key the id derives from: the object id for directory objects, `role:<id>`, `license:<skuId>`.
    pub key: String,
    pub external_id: String,
    pub display_name: String,
    pub profile: Value,
}

/// An entitlement a resource offers.
#[derive(Debug, Clone)]
pub struct EntitlementRow {
    pub resource_key: String,
    pub slug: String,
    pub display_name: String,
}

/// A grant of `resource_key`'s `slug` entitlement to the principal `principal_key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantRow {
    pub resource_key: String,
    pub slug: String,
    pub principal_key: String,
    pub kind: &'static str,
    pub source: String,
    pub external_id: String,
    pub details: Option<Value>,
}

/// Grant kinds, as the summary counts them.
pub const GRANT_KINDS: &[&str] = &[
    "group_members",
    "group_owners",
    "app_role_assignments",
    "app_owners",
    "role_assigned",
    "role_eligible",
    "license_assigned",
];

/// Resource types, as the summary counts them.
pub const RESOURCE_TYPES: &[&str] = &[
    "user",
    "group",
    "enterprise_application",
    "role",
    "license",
    "managed_identity",
];

fn dedup_by<'a, T, K: Ord>(rows: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    // A page may hold the same object twice (a big group split over several delta
    // appearances); one statement may not update a row twice.
    let mut seen: BTreeMap<K, usize> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        seen.insert(key(r), i);
    }
    let mut idx: Vec<usize> = seen.into_values().collect();
    idx.sort_unstable();
    idx.into_iter().map(|i| &rows[i]).collect()
}

/// Inserts or refreshes resources, stamping them with `run` and reviving deleted ones (except
/// rows provisioning wrote after `run` started, see the module's documentation).
pub async fn upsert_resources(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    rows: &[ResourceRow],
) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let rows = dedup_by(rows, |r| r.key.as_str());
    let types: Vec<&str> = rows.iter().map(|r| r.rtype).collect();
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let exts: Vec<&str> = rows.iter().map(|r| r.external_id.as_str()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.display_name.as_str()).collect();
    let profiles: Vec<&Value> = rows.iter().map(|r| &r.profile).collect();
    let org = tx.org();
    Ok(sqlx::query(
        "INSERT INTO resources (id, org_id, connector_id, type, external_id, display_name, profile, last_seen_run)
         SELECT sync_resource_id($2, t.key), $1, $2, t.type, t.ext, t.name, t.profile, $3
           FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[]) AS t(type, key, ext, name, profile)
         ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name,
             -- Sign-in activity is read by a separate pass (delta queries cannot return it), and an
             -- incremental delta round leaves out a manager that did not change: keep them.
             profile = excluded.profile
                 || CASE WHEN resources.profile ? 'last_sign_in' AND NOT excluded.profile ? 'last_sign_in'
                         THEN jsonb_build_object('last_sign_in', resources.profile->'last_sign_in')
                         ELSE '{}'::jsonb END
                 || CASE WHEN resources.profile ? 'manager_id' AND NOT excluded.profile ? 'manager_id'
                         THEN jsonb_build_object('manager_id', resources.profile->'manager_id')
                         ELSE '{}'::jsonb END,
             last_seen_at = now(), last_seen_run = excluded.last_seen_run, deleted_at = NULL
         WHERE resources.provisioned_at IS NULL
            OR resources.provisioned_at < (SELECT s.started_at FROM sync_runs s WHERE s.id = $3)",
    )
    .bind(org.0)
    .bind(connector)
    .bind(run)
    .bind(&types)
    .bind(&keys)
    .bind(&exts)
    .bind(&names)
    .bind(&profiles)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Inserts or refreshes entitlements.
pub async fn upsert_entitlements(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    rows: &[EntitlementRow],
) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let rows = dedup_by(rows, |r| (r.resource_key.as_str(), r.slug.as_str()));
    let keys: Vec<&str> = rows.iter().map(|r| r.resource_key.as_str()).collect();
    let slugs: Vec<&str> = rows.iter().map(|r| r.slug.as_str()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r.display_name.as_str()).collect();
    let org = tx.org();
    Ok(sqlx::query(
        "INSERT INTO entitlements (id, org_id, connector_id, resource_id, slug, display_name, last_seen_run)
         SELECT sync_entitlement_id(sync_resource_id($2, t.key), t.slug), $1, $2, sync_resource_id($2, t.key), t.slug, t.name, $3
           FROM unnest($4::text[], $5::text[], $6::text[]) AS t(key, slug, name)
         ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name,
             last_seen_at = now(), last_seen_run = excluded.last_seen_run, deleted_at = NULL",
    )
    .bind(org.0)
    .bind(connector)
    .bind(run)
    .bind(&keys)
    .bind(&slugs)
    .bind(&names)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Grants written by one statement: a page of 999 groups' members (up to a million rows)
/// goes in slices, so the statement's arrays stay small.
const GRANTS_PER_STATEMENT: usize = 10_000;

/// Inserts or refreshes direct grants (except rows provisioning wrote after `run` started).
/// The same grant twice: the last one counts.
pub async fn upsert_grants(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    rows: &[GrantRow],
) -> Result<u64> {
    let mut written = 0;
    for slice in rows.chunks(GRANTS_PER_STATEMENT) {
        written += upsert_grant_slice(tx, connector, run, slice).await?;
    }
    Ok(written)
}

async fn upsert_grant_slice(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    rows: &[GrantRow],
) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let rows = dedup_by(rows, |r| {
        (
            r.resource_key.as_str(),
            r.slug.as_str(),
            r.principal_key.as_str(),
            r.source.as_str(),
            r.external_id.as_str(),
        )
    });
    let keys: Vec<&str> = rows.iter().map(|r| r.resource_key.as_str()).collect();
    let slugs: Vec<&str> = rows.iter().map(|r| r.slug.as_str()).collect();
    let principals: Vec<&str> = rows.iter().map(|r| r.principal_key.as_str()).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
    let sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    let exts: Vec<&str> = rows.iter().map(|r| r.external_id.as_str()).collect();
    let details: Vec<Option<&Value>> = rows.iter().map(|r| r.details.as_ref()).collect();
    let org = tx.org();
    Ok(sqlx::query(
        "INSERT INTO grants (id, org_id, connector_id, entitlement_id, principal_id, kind, source, external_id, details, last_seen_run)
         SELECT sync_grant_id(e.id, p.id, t.source, t.ext), $1, $2, e.id, p.id, t.kind, t.source, t.ext, t.details, $3
           FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::jsonb[])
                AS t(key, slug, principal, kind, source, ext, details),
                LATERAL (SELECT sync_entitlement_id(sync_resource_id($2, t.key), t.slug) AS id) e,
                LATERAL (SELECT sync_resource_id($2, t.principal) AS id) p
         ON CONFLICT (id) DO UPDATE SET details = excluded.details,
             last_seen_at = now(), last_seen_run = excluded.last_seen_run, deleted_at = NULL
         WHERE grants.provisioned_at IS NULL
            OR grants.provisioned_at < (SELECT s.started_at FROM sync_runs s WHERE s.id = $3)",
    )
    .bind(org.0)
    .bind(connector)
    .bind(run)
    .bind(&keys)
    .bind(&slugs)
    .bind(&principals)
    .bind(&kinds)
    .bind(&sources)
    .bind(&exts)
    .bind(&details)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Merges fields into resources' profiles (e.g. `{"last_sign_in": …}`), by key.
pub async fn merge_profiles(
    tx: &mut OrgTx,
    connector: Uuid,
    patches: &[(String, Value)],
) -> Result<u64> {
    if patches.is_empty() {
        return Ok(0);
    }
    let keys: Vec<&str> = patches.iter().map(|p| p.0.as_str()).collect();
    let values: Vec<&Value> = patches.iter().map(|p| &p.1).collect();
    Ok(sqlx::query(
        "UPDATE resources r SET profile = r.profile || t.patch
           FROM unnest($2::text[], $3::jsonb[]) AS t(key, patch)
          WHERE r.org_id = app_current_org() AND r.connector_id = $1 AND r.id = sync_resource_id($1, t.key)",
    )
    .bind(connector)
    .bind(&keys)
    .bind(&values)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Gives resources' profiles the fields of `defaults` they lack, keeping those they have (a
/// user an incremental round created without naming a manager gets `manager_id: null`).
pub async fn default_profile_fields(
    tx: &mut OrgTx,
    connector: Uuid,
    keys: &[String],
    defaults: &Value,
) -> Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query(
        "UPDATE resources r SET profile = $3 || r.profile
          WHERE r.org_id = app_current_org() AND r.connector_id = $1
            AND r.id IN (SELECT sync_resource_id($1, k) FROM unnest($2::text[]) AS k)
            AND NOT r.profile ?& ARRAY(SELECT jsonb_object_keys($3))",
    )
    .bind(connector)
    .bind(keys)
    .bind(defaults)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// External ids of current resources of `rtype` whose profile flag `field` is true (e.g. the
/// on-premises-synced users, when on-premises members are skipped).
pub async fn keys_with_flag(
    tx: &mut OrgTx,
    connector: Uuid,
    rtype: &str,
    field: &str,
) -> Result<Vec<String>> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT external_id FROM resources
          WHERE org_id = $1 AND connector_id = $2 AND type = $3 AND deleted_at IS NULL
            AND coalesce((profile->>$4)::bool, false)",
    )
    .bind(org.0)
    .bind(connector)
    .bind(rtype)
    .bind(field)
    .fetch_all(tx.conn())
    .await?)
}

/// Enterprise applications that Microsoft does not publish with single sign-on configured or
/// a provisioning job: `(object id, display name, has single sign-on)`, to offer as
/// discovered apps.
pub async fn discoverable_apps(
    tx: &mut OrgTx,
    connector: Uuid,
) -> Result<Vec<(String, String, bool)>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT external_id, display_name, profile->>'sso_mode' IS NOT NULL FROM resources
          WHERE org_id = $1 AND connector_id = $2 AND type = 'enterprise_application' AND deleted_at IS NULL
            AND NOT coalesce((profile->>'first_party')::bool, false)
            AND (profile->>'sso_mode' IS NOT NULL
                 OR jsonb_array_length(coalesce(profile->'provisioning_jobs', '[]'::jsonb)) > 0)
          ORDER BY external_id",
    )
    .bind(org.0)
    .bind(connector)
    .fetch_all(tx.conn())
    .await?)
}

/// Marks resources deleted by key (an incremental sync saw them removed), with their
/// entitlements and every direct grant they hold or offer (by index: a page of removals does
/// not look at every grant).
pub async fn delete_resources(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    keys: &[String],
) -> Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    let org = tx.org();
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE resources SET deleted_at = now()
          WHERE org_id = $1 AND connector_id = $2 AND deleted_at IS NULL
            AND id IN (SELECT sync_resource_id($2, k) FROM unnest($3::text[]) AS k)
            AND (provisioned_at IS NULL
                 OR provisioned_at < (SELECT s.started_at FROM sync_runs s WHERE s.id = $4))
          RETURNING id",
    )
    .bind(org.0)
    .bind(connector)
    .bind(keys)
    .bind(run)
    .fetch_all(tx.conn())
    .await?;
    let ents: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE entitlements SET deleted_at = now()
          WHERE org_id = $1 AND connector_id = $2 AND deleted_at IS NULL AND resource_id = ANY($3)
          RETURNING id",
    )
    .bind(org.0)
    .bind(connector)
    .bind(&ids)
    .fetch_all(tx.conn())
    .await?;
    sqlx::query(
        "UPDATE grants SET deleted_at = now()
          WHERE org_id = $1 AND connector_id = $2 AND deleted_at IS NULL AND NOT expanded
            AND (principal_id = ANY($3) OR entitlement_id = ANY($4))
            AND (provisioned_at IS NULL
                 OR provisioned_at < (SELECT s.started_at FROM sync_runs s WHERE s.id = $5))",
    )
    .bind(org.0)
    .bind(connector)
    .bind(&ids)
    .bind(&ents)
    .bind(run)
    .execute(tx.conn())
    .await?;
    Ok(ids.len() as u64)
}

/// Marks grants deleted: those of `resource_key`'s `slug` entitlement to the given principals
/// (any source except expanded ones).
pub async fn delete_grants(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    resource_key: &str,
    slug: &str,
    principal_keys: &[String],
) -> Result<u64> {
    if principal_keys.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query(
        "UPDATE grants SET deleted_at = now()
          WHERE org_id = app_current_org() AND connector_id = $1 AND deleted_at IS NULL AND NOT expanded
            AND entitlement_id = sync_entitlement_id(sync_resource_id($1, $2), $3)
            AND principal_id IN (SELECT sync_resource_id($1, k) FROM unnest($4::text[]) AS k)
            AND (provisioned_at IS NULL
                 OR provisioned_at < (SELECT s.started_at FROM sync_runs s WHERE s.id = $5))",
    )
    .bind(connector)
    .bind(resource_key)
    .bind(slug)
    .bind(principal_keys)
    .bind(run)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Marks deleted every direct grant of the given kinds on `resource_key` not seen by `run`
/// (an incremental sync refetched that resource's grants in full).
pub async fn sweep_grants_of(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    resource_key: &str,
    kinds: &[&str],
) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE grants g SET deleted_at = now()
          WHERE g.org_id = app_current_org() AND g.connector_id = $1 AND g.deleted_at IS NULL AND NOT g.expanded
            AND g.entitlement_id IN (SELECT e.id FROM entitlements e
                                      WHERE e.org_id = app_current_org() AND e.connector_id = $1
                                        AND e.resource_id = sync_resource_id($1, $3))
            AND g.kind = ANY($4) AND g.last_seen_run <> $2
            AND (g.provisioned_at IS NULL
                 OR g.provisioned_at < (SELECT s.started_at FROM sync_runs s WHERE s.id = $2))",
    )
    .bind(connector)
    .bind(run)
    .bind(resource_key)
    .bind(kinds)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Marks deleted the direct grants of `kinds` held by the given principals that `run` did not
/// see (an incremental sync reread those principals, e.g. a changed user's licences).
pub async fn sweep_principal_grants(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    principal_keys: &[String],
    kinds: &[&str],
) -> Result<u64> {
    if principal_keys.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query(
        "UPDATE grants SET deleted_at = now()
          WHERE org_id = app_current_org() AND connector_id = $1 AND deleted_at IS NULL AND NOT expanded
            AND kind = ANY($4) AND last_seen_run <> $2
            AND (provisioned_at IS NULL
                 OR provisioned_at < (SELECT s.started_at FROM sync_runs s WHERE s.id = $2))
            AND principal_id = ANY(ARRAY(SELECT sync_resource_id($1, k) FROM unnest($3::text[]) AS k))",
    )
    // The ids are computed once, before the scan (an ARRAY subquery is an init plan), so the
    // principal index finds the grants: as `principal_id IN (SELECT sync_resource_id(..))` the
    // planner read every grant of the connector (0.35-0.46 s per call at 100,000 users).
    .bind(connector)
    .bind(run)
    .bind(principal_keys)
    .bind(kinds)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Groups that license their members (`group:<id>` sources of licence grants): object ids.
pub async fn licensing_groups(tx: &mut OrgTx, connector: Uuid) -> Result<Vec<String>> {
    let org = tx.org();
    // Through the licences' entitlements (by index), not over every grant of the connector.
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT substr(g.source, 7) FROM grants g
          WHERE g.org_id = $1 AND g.connector_id = $2 AND g.kind = 'license_assigned'
            AND g.deleted_at IS NULL AND g.source LIKE 'group:%'
            AND g.entitlement_id IN (SELECT e.id FROM entitlements e JOIN resources r ON r.id = e.resource_id
                                      WHERE e.org_id = $1 AND e.connector_id = $2
                                        AND r.org_id = $1 AND r.connector_id = $2 AND r.type = 'license')",
    )
    .bind(org.0)
    .bind(connector)
    .fetch_all(tx.conn())
    .await?)
}

/// The resource type whose entitlements grants of `kind` are on.
fn resource_type_of(kind: &str) -> &'static str {
    match kind {
        "group_members" | "group_owners" => "group",
        "app_role_assignments" | "app_owners" => "enterprise_application",
        "role_assigned" | "role_eligible" => "role",
        _ => "license",
    }
}

/// Marks deleted every direct grant of `kinds` not seen by `run` (an incremental sync
/// refetched that whole collection, e.g. role assignments).
pub async fn sweep_grant_kinds(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    kinds: &[&str],
) -> Result<u64> {
    // Through the entitlements of the resource types those kinds are on (by index), not over
    // every grant of the connector.
    let types: Vec<&str> = kinds.iter().map(|k| resource_type_of(k)).collect();
    Ok(sqlx::query(
        "UPDATE grants SET deleted_at = now()
          WHERE org_id = app_current_org() AND connector_id = $1 AND deleted_at IS NULL AND NOT expanded
            AND kind = ANY($3) AND last_seen_run <> $2
            AND (provisioned_at IS NULL
                 OR provisioned_at < (SELECT s.started_at FROM sync_runs s WHERE s.id = $2))
            AND entitlement_id IN (SELECT e.id FROM entitlements e JOIN resources r ON r.id = e.resource_id
                                    WHERE e.org_id = app_current_org() AND e.connector_id = $1
                                      AND r.org_id = app_current_org() AND r.connector_id = $1 AND r.type = ANY($4))",
    )
    .bind(connector)
    .bind(run)
    .bind(kinds)
    .bind(&types)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Marks deleted every resource of `types` (with its entitlements) not seen by `run`.
pub async fn sweep_resource_types(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    types: &[&str],
) -> Result<u64> {
    let n = sqlx::query(
        "UPDATE resources SET deleted_at = now()
          WHERE org_id = app_current_org() AND connector_id = $1 AND deleted_at IS NULL AND type = ANY($3) AND last_seen_run <> $2
            AND (provisioned_at IS NULL
                 OR provisioned_at < (SELECT s.started_at FROM sync_runs s WHERE s.id = $2))",
    )
    .bind(connector)
    .bind(run)
    .bind(types)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(n)
}

/// Refreshes the planner's statistics of the synced tables after a bulk load (a full sync
/// writes millions of rows in minutes; autovacuum's analyze may come much later). Without them
/// the planner takes a new connector's memberships for a handful of rows, or a handful for
/// millions, and the index-driven statements that follow (incremental expansion, summaries)
/// hash whole tables instead: tens of seconds instead of milliseconds at 100,000 users.
/// Runs as the database owner (row-level security does not apply to statistics); a role that
/// does not own the tables gets a warning from PostgreSQL and nothing changes.
pub async fn refresh_statistics(store: &crate::Store) -> Result<()> {
    sqlx::query("ANALYZE resources, entitlements, grants")
        .execute(store.system())
        .await?;
    Ok(())
}

/// Lifts the statement timeout for the rest of the transaction to `limit`: the sweep and the
/// expansion of a large tenant touch millions of rows in one statement (a background job, not
/// a web request).
pub async fn allow_long_statements(tx: &mut OrgTx, limit: std::time::Duration) -> Result<()> {
    sqlx::query("SELECT set_config('statement_timeout', $1, true)")
        .bind(format!("{}ms", limit.as_millis()))
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// What a sweep marked deleted.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Swept {
    pub resources: u64,
    pub entitlements: u64,
    pub grants: u64,
}

/// After a successful full sync: marks deleted whatever `run` did not see. Grants of the kinds
/// in `unread_kinds` (a feature the tenant lacks, so nothing was read) are left alone, and so is
/// what a sync that started after `run` saw: a self-hosted connector's run is finished by a
/// worker job, and the connector may upload its next sync before that job runs (its sweep then
/// removed everything the newer run had already stamped).
pub async fn sweep(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    unread_kinds: &[&str],
) -> Result<Swept> {
    let resources = sqlx::query(
        "UPDATE resources t SET deleted_at = now()
          WHERE org_id = app_current_org() AND connector_id = $1 AND deleted_at IS NULL AND last_seen_run <> $2
            AND (provisioned_at IS NULL
                 OR provisioned_at < (SELECT s.started_at FROM sync_runs s WHERE s.id = $2))
            AND NOT EXISTS (SELECT 1 FROM sync_runs later
                             WHERE later.id = t.last_seen_run
                               AND later.started_at > (SELECT s.started_at FROM sync_runs s WHERE s.id = $2))",
    )
    .bind(connector)
    .bind(run)
    .execute(tx.conn())
    .await?
    .rows_affected();
    let entitlements = sqlx::query(
        "UPDATE entitlements t SET deleted_at = now()
          WHERE org_id = app_current_org() AND connector_id = $1 AND deleted_at IS NULL AND last_seen_run <> $2
            AND NOT EXISTS (SELECT 1 FROM sync_runs later
                             WHERE later.id = t.last_seen_run
                               AND later.started_at > (SELECT s.started_at FROM sync_runs s WHERE s.id = $2))",
    )
    .bind(connector)
    .bind(run)
    .execute(tx.conn())
    .await?
    .rows_affected();
    let grants = sqlx::query(
        "UPDATE grants t SET deleted_at = now()
          WHERE org_id = app_current_org() AND connector_id = $1 AND deleted_at IS NULL AND NOT expanded AND last_seen_run <> $2
            AND NOT (kind = ANY($3))
            AND (provisioned_at IS NULL
                 OR provisioned_at < (SELECT s.started_at FROM sync_runs s WHERE s.id = $2))
            AND NOT EXISTS (SELECT 1 FROM sync_runs later
                             WHERE later.id = t.last_seen_run
                               AND later.started_at > (SELECT s.started_at FROM sync_runs s WHERE s.id = $2))",
    )
    .bind(connector)
    .bind(run)
    .bind(unread_kinds)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(Swept {
        resources,
        entitlements,
        grants,
    })
}

/// Marks deleted the entitlements of deleted resources and the grants whose entitlement or
/// principal is not a current resource (a member that is a device, a skipped on-premises group,
/// an object deleted since). Returns the grants affected.
pub async fn drop_dangling(tx: &mut OrgTx, connector: Uuid) -> Result<u64> {
    sqlx::query(
        "UPDATE entitlements e SET deleted_at = now()
          WHERE e.org_id = app_current_org() AND e.connector_id = $1 AND e.deleted_at IS NULL
            AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.id = e.resource_id AND r.deleted_at IS NULL)",
    )
    .bind(connector)
    .execute(tx.conn())
    .await?;
    Ok(sqlx::query(
        "UPDATE grants g SET deleted_at = now()
          WHERE g.org_id = app_current_org() AND g.connector_id = $1 AND g.deleted_at IS NULL AND NOT g.expanded
            AND (NOT EXISTS (SELECT 1 FROM resources r WHERE r.id = g.principal_id AND r.deleted_at IS NULL)
              OR NOT EXISTS (SELECT 1 FROM entitlements e WHERE e.id = g.entitlement_id AND e.deleted_at IS NULL))",
    )
    .bind(connector)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Recomputes the expanded grants: members of nested groups become members of the groups
/// above them, and grants held by a group (app role assignments, directory roles) reach its
/// effective members; `source` records the path of groups (`group:<id>>group:<id>`).
/// Returns how many expanded grants are current.
pub async fn expand(tx: &mut OrgTx, connector: Uuid, run: Uuid) -> Result<u64> {
    // Right after a big sync the planner's statistics still describe empty tables; with them
    // it picks nested loops over a million memberships (minutes instead of seconds).
    sqlx::query("SELECT set_config('enable_nestloop', 'off', true)")
        .execute(tx.conn())
        .await?;
    sqlx::query("DELETE FROM grants WHERE connector_id = $1 AND expanded")
        .bind(connector)
        .execute(tx.conn())
        .await?;
    let org = tx.org();
    Ok(sqlx::query(
        "WITH RECURSIVE direct AS (
             SELECT e.resource_id AS group_id, g.principal_id AS member_id
               FROM grants g JOIN entitlements e ON e.id = g.entitlement_id
              WHERE g.connector_id = $2 AND g.kind = 'group_members' AND g.deleted_at IS NULL AND NOT g.expanded
         ),
         groups AS (
             SELECT id, 'group:' || external_id AS label FROM resources
              WHERE connector_id = $2 AND type = 'group' AND deleted_at IS NULL
         ),
         -- eff(top, member, path, chain): member reaches top through the groups in chain.
         eff AS (
             SELECT d.group_id AS top, d.member_id, gl.label AS path, ARRAY[d.group_id] AS chain
               FROM direct d JOIN groups gl ON gl.id = d.group_id
             UNION ALL
             SELECT e.top, d.member_id, e.path || '>' || gl.label, e.chain || d.group_id
               FROM eff e JOIN direct d ON d.group_id = e.member_id
               JOIN groups gl ON gl.id = d.group_id
              WHERE NOT d.group_id = ANY(e.chain) AND NOT d.member_id = ANY(e.chain)
         ),
         nested AS (
             SELECT sync_entitlement_id(top, 'members') AS entitlement_id, member_id AS principal_id,
                    'group_members' AS kind, path AS source
               FROM eff WHERE cardinality(chain) > 1
         ),
         via_group AS (
             SELECT g.entitlement_id, e.member_id AS principal_id, g.kind, e.path AS source
               FROM grants g JOIN eff e ON e.top = g.principal_id
              WHERE g.connector_id = $2 AND g.deleted_at IS NULL AND NOT g.expanded
                AND g.kind IN ('app_role_assignments', 'role_assigned', 'role_eligible')
         ),
         all_rows AS (
             SELECT DISTINCT ON (entitlement_id, principal_id, source) * FROM (
                 SELECT * FROM nested UNION ALL SELECT * FROM via_group) x
         )
         INSERT INTO grants (id, org_id, connector_id, entitlement_id, principal_id, kind, source, expanded, last_seen_run)
         SELECT sync_grant_id(entitlement_id, principal_id, source, ''), $1, $2, entitlement_id, principal_id, kind, source, true, $3
           FROM all_rows
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(org.0)
    .bind(connector)
    .bind(run)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// Counts of current resources per type and direct grants per kind (license grants count
/// (user, SKU) pairs, direct or inherited).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Summary {
    pub resources: BTreeMap<String, i64>,
    pub grants: BTreeMap<String, i64>,
}

pub async fn summary(tx: &mut OrgTx, connector: Uuid) -> Result<Summary> {
    let org = tx.org();
    let mut s = Summary {
        resources: resource_counts(tx, connector).await?,
        ..Summary::default()
    };
    for k in GRANT_KINDS {
        s.grants.insert(k.to_string(), 0);
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, CASE WHEN kind = 'license_assigned'
                           THEN count(DISTINCT (entitlement_id, principal_id)) ELSE count(*) END
           FROM grants
          WHERE org_id = $1 AND connector_id = $2 AND deleted_at IS NULL AND NOT expanded
          GROUP BY kind",
    )
    .bind(org.0)
    .bind(connector)
    .fetch_all(tx.conn())
    .await?;
    s.grants.extend(rows);
    Ok(s)
}

/// Current resources of `connector` by type (every type, zero included): the resource half of
/// [`summary`], without its count of a million grants.
pub async fn resource_counts(tx: &mut OrgTx, connector: Uuid) -> Result<BTreeMap<String, i64>> {
    let org = tx.org();
    let mut counts: BTreeMap<String, i64> =
        RESOURCE_TYPES.iter().map(|t| (t.to_string(), 0)).collect();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT type, count(*) FROM resources
          WHERE org_id = $1 AND connector_id = $2 AND deleted_at IS NULL GROUP BY type",
    )
    .bind(org.0)
    .bind(connector)
    .fetch_all(tx.conn())
    .await?;
    counts.extend(rows);
    Ok(counts)
}

#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct Resource {
    pub id: Uuid,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub rtype: String,
    pub external_id: String,
    pub display_name: String,
    pub profile: Value,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
}

/// Filters of the resource list.
#[derive(Debug, Clone, Default)]
pub struct ResourceFilter {
    /// One type, or several (`user` and `managed_identity` for an Accounts tab).
    pub types: Vec<String>,
    /// Case-insensitive substring of the display name or the UPN/mail.
    pub q: Option<String>,
    pub enabled: Option<bool>,
    pub guest: Option<bool>,
    /// Users whose last sign-in is older than this many days (or who never signed in).
    pub inactive_days: Option<i64>,
}

/// A search term as an `ILIKE` "contains" pattern, with the pattern's own wildcards escaped;
/// `None` for no (or a blank) term.
pub(crate) fn contains_pattern(q: Option<&str>) -> Option<String> {
    q.map(str::trim).filter(|q| !q.is_empty()).map(|q| {
        format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    })
}

pub async fn list_resources(
    tx: &mut OrgTx,
    connector: Uuid,
    filter: &ResourceFilter,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<Resource>> {
    let org = tx.org();
    let q = contains_pattern(filter.q.as_deref());
    let rows: Vec<Resource> = sqlx::query_as(
        "SELECT id, type, external_id, display_name, profile, first_seen_at, last_seen_at FROM resources
          WHERE org_id = $1 AND connector_id = $2 AND deleted_at IS NULL
            AND (cardinality($3::text[]) = 0 OR type = ANY($3))
            AND ($4::text IS NULL OR display_name ILIKE $4 OR profile->>'user_principal_name' ILIKE $4
                 OR profile->>'mail' ILIKE $4)
            AND ($5::bool IS NULL OR (profile->>'account_enabled')::bool = $5)
            AND ($6::bool IS NULL OR (coalesce(profile->>'user_type', '') = 'Guest') = $6)
            AND ($7::int8 IS NULL OR coalesce((profile->>'last_sign_in')::timestamptz, '-infinity') < now() - make_interval(days => $7::int))
            AND ($8::uuid IS NULL OR id > $8)
          ORDER BY id LIMIT $9",
    )
    .bind(org.0)
    .bind(connector)
    .bind(&filter.types)
    .bind(q)
    .bind(filter.enabled)
    .bind(filter.guest)
    .bind(filter.inactive_days)
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |r| r.id))
}

pub async fn get_resource(tx: &mut OrgTx, connector: Uuid, id: Uuid) -> Result<Resource> {
    let org = tx.org();
    sqlx::query_as(
        "SELECT id, type, external_id, display_name, profile, first_seen_at, last_seen_at FROM resources
          WHERE org_id = $1 AND connector_id = $2 AND id = $3 AND deleted_at IS NULL",
    )
    .bind(org.0)
    .bind(connector)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(crate::StoreError::NotFound)
}

#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct Entitlement {
    pub id: Uuid,
    pub resource_id: Uuid,
    pub slug: String,
    pub display_name: String,
    /// Current direct grants.
    pub grants: i64,
}

pub async fn list_entitlements(
    tx: &mut OrgTx,
    connector: Uuid,
    resource: Option<Uuid>,
    q: Option<&str>,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<Entitlement>> {
    let org = tx.org();
    let q = contains_pattern(q);
    let rows: Vec<Entitlement> = sqlx::query_as(
        "SELECT e.id, e.resource_id, e.slug, e.display_name,
                (SELECT count(*) FROM grants g WHERE g.org_id = $1 AND g.connector_id = $2
                    AND g.entitlement_id = e.id AND g.deleted_at IS NULL AND NOT g.expanded) AS grants
           FROM entitlements e
          WHERE e.org_id = $1 AND e.connector_id = $2 AND e.deleted_at IS NULL
            AND ($3::uuid IS NULL OR e.resource_id = $3)
            AND ($4::uuid IS NULL OR e.id > $4)
            AND ($6::text IS NULL OR e.display_name ILIKE $6)
          ORDER BY e.id LIMIT $5",
    )
    .bind(org.0)
    .bind(connector)
    .bind(resource)
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .bind(q)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |r| r.id))
}

pub async fn get_entitlement(tx: &mut OrgTx, connector: Uuid, id: Uuid) -> Result<Entitlement> {
    let org = tx.org();
    sqlx::query_as(
        "SELECT e.id, e.resource_id, e.slug, e.display_name,
                (SELECT count(*) FROM grants g WHERE g.org_id = $1 AND g.connector_id = $2
                    AND g.entitlement_id = e.id AND g.deleted_at IS NULL AND NOT g.expanded) AS grants
           FROM entitlements e
          WHERE e.org_id = $1 AND e.connector_id = $2 AND e.id = $3 AND e.deleted_at IS NULL",
    )
    .bind(org.0)
    .bind(connector)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(crate::StoreError::NotFound)
}

#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct Grant {
    pub id: Uuid,
    pub entitlement_id: Uuid,
    pub principal_id: Uuid,
    pub kind: String,
    pub source: String,
    pub expanded: bool,
    pub external_id: String,
    pub details: Option<Value>,
    pub principal_type: String,
    pub principal_display_name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen_at: OffsetDateTime,
}

#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub entitlement: Option<Uuid>,
    pub principal: Option<Uuid>,
    pub include_expanded: bool,
    /// Substring of the principal's display name.
    pub q: Option<String>,
}

pub async fn list_grants(
    tx: &mut OrgTx,
    connector: Uuid,
    filter: &GrantFilter,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<Grant>> {
    let org = tx.org();
    let q = contains_pattern(filter.q.as_deref());
    let rows: Vec<Grant> = sqlx::query_as(
        "SELECT g.id, g.entitlement_id, g.principal_id, g.kind, g.source, g.expanded, g.external_id, g.details,
                r.type AS principal_type, r.display_name AS principal_display_name, g.first_seen_at
           FROM grants g JOIN resources r ON r.id = g.principal_id
          WHERE g.org_id = $1 AND g.connector_id = $2 AND g.deleted_at IS NULL
            AND ($3::uuid IS NULL OR g.entitlement_id = $3)
            AND ($4::uuid IS NULL OR g.principal_id = $4)
            AND ($5 OR NOT g.expanded)
            AND ($6::text IS NULL OR r.display_name ILIKE $6)
            AND ($7::uuid IS NULL OR g.id > $7)
          ORDER BY g.id LIMIT $8",
    )
    .bind(org.0)
    .bind(connector)
    .bind(filter.entitlement)
    .bind(filter.principal)
    .bind(filter.include_expanded)
    .bind(q)
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |r| r.id))
}

/// One current grant in natural keys: `(kind, resource type, resource external id, slug,
/// principal external id, source)`.
pub type GrantKey = (String, String, String, String, String, String);

/// The whole current state of a connector in natural keys, sorted: resources as
/// `(type, external id, display name, profile)` and grants (expanded included). Two
/// connectors synced from the same tenant compare equal (consistency checks, tests).
pub async fn snapshot(
    tx: &mut OrgTx,
    connector: Uuid,
) -> Result<(Vec<(String, String, String, Value)>, Vec<GrantKey>)> {
    let org = tx.org();
    let resources: Vec<(String, String, String, Value)> = sqlx::query_as(
        "SELECT type, external_id, display_name, profile FROM resources
          WHERE org_id = $1 AND connector_id = $2 AND deleted_at IS NULL
          ORDER BY type, external_id",
    )
    .bind(org.0)
    .bind(connector)
    .fetch_all(tx.conn())
    .await?;
    let grants: Vec<GrantKey> = sqlx::query_as(
        "SELECT g.kind, r.type, r.external_id, e.slug, p.external_id, g.source
           FROM grants g
           JOIN entitlements e ON e.id = g.entitlement_id
           JOIN resources r ON r.id = e.resource_id
           JOIN resources p ON p.id = g.principal_id
          WHERE g.org_id = $1 AND g.connector_id = $2 AND g.deleted_at IS NULL
          ORDER BY 1, 2, 3, 4, 5, 6",
    )
    .bind(org.0)
    .bind(connector)
    .fetch_all(tx.conn())
    .await?;
    Ok((resources, grants))
}

#[cfg(test)]
mod pattern_tests {
    use super::contains_pattern;

    #[test]
    fn search_terms_become_escaped_contains_patterns() {
        assert_eq!(contains_pattern(None), None);
        assert_eq!(contains_pattern(Some("   ")), None);
        assert_eq!(contains_pattern(Some(" ada ")).as_deref(), Some("%ada%"));
        assert_eq!(
            contains_pattern(Some(r"50%_a\b")).as_deref(),
            Some(r"%50\%\_a\\b%")
        );
    }
}
