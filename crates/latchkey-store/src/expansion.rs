//! Keeping expanded grants (nested groups, grants to groups) current after an incremental sync
//! by recomputing only what the run's changes reach, instead of the whole connector
//! ([`crate::resources::expand`]).
//!
//! An expanded grant is a path: a top group, the groups below it down to one that directly
//! holds the principal (`source` = `group:<top>>…>group:<last>`), and for grants to groups the
//! direct grant the top group holds. It depends only on the hops along that path (each a direct
//! membership), on its groups and principal existing, and on that direct grant. So after a run:
//!
//! - expanded grants of principals and entitlements deleted since the last successful run go;
//! - expanded grants through a deleted group go;
//! - for every membership hop the run wrote or deleted (in the groups it saw change), the
//!   expanded grants through that hop are deleted and, if the hop exists now, recomputed: every
//!   path from a top group down to the hop's group, times every path from the hop's member down;
//! - for every direct grant to a group of the run (app roles, directory roles), that group's
//!   expanded grants of it are recomputed.
//!
//! "Since the last successful run" (not this run's start) covers what a failed run wrote and the
//! next one only rereads.

use crate::{OrgTx, Result};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// Grant kinds that reach a group's effective members.
const VIA_GROUP_KINDS: &[&str] = &["app_role_assignments", "role_assigned", "role_eligible"];

/// What [`expand_changes`] did.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ExpandChanges {
    /// Membership hops written or deleted by the run.
    pub hops: u64,
    /// Direct grants to groups written or deleted by the run.
    pub group_grants: u64,
    pub deleted: u64,
    pub inserted: u64,
}

/// Resources deleted since `since`: `(id, type, external id)`.
async fn gone_since(
    tx: &mut OrgTx,
    connector: Uuid,
    since: OffsetDateTime,
) -> Result<Vec<(Uuid, String, String)>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT id, type, external_id FROM resources
          WHERE org_id = $1 AND connector_id = $2 AND deleted_at >= $3",
    )
    .bind(org.0)
    .bind(connector)
    .bind(since)
    .fetch_all(tx.conn())
    .await?)
}

/// After an incremental run: marks deleted the entitlements of resources deleted since `since`,
/// and the direct grants that name something that is not a current resource: those of deleted
/// principals and entitlements, and those `run` wrote on the entitlements of what it reread
/// (`resource_keys`, and every resource of `resource_types`) to objects that are not principals
/// here. The incremental counterpart of [`crate::resources::drop_dangling`], by index instead of
/// over every grant.
pub async fn drop_dangling_changes(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    since: OffsetDateTime,
    resource_keys: &[String],
    resource_types: &[&str],
) -> Result<u64> {
    let org = tx.org();
    let gone: Vec<Uuid> = gone_since(tx, connector, since)
        .await?
        .into_iter()
        .map(|g| g.0)
        .collect();
    sqlx::query(
        "UPDATE entitlements SET deleted_at = now()
          WHERE org_id = $1 AND connector_id = $2 AND deleted_at IS NULL AND resource_id = ANY($3)",
    )
    .bind(org.0)
    .bind(connector)
    .bind(&gone)
    .execute(tx.conn())
    .await?;
    let gone_ents: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM entitlements
          WHERE org_id = $1 AND connector_id = $2 AND resource_id = ANY($3)",
    )
    .bind(org.0)
    .bind(connector)
    .bind(&gone)
    .fetch_all(tx.conn())
    .await?;
    let mut n = sqlx::query(
        "UPDATE grants SET deleted_at = now()
          WHERE org_id = $1 AND connector_id = $2 AND deleted_at IS NULL AND NOT expanded
            AND (principal_id = ANY($3) OR entitlement_id = ANY($4))",
    )
    .bind(org.0)
    .bind(connector)
    .bind(&gone)
    .bind(&gone_ents)
    .execute(tx.conn())
    .await?
    .rows_affected();
    n += sqlx::query(
        "UPDATE grants g SET deleted_at = now()
          WHERE g.org_id = $1 AND g.connector_id = $2 AND g.deleted_at IS NULL AND NOT g.expanded
            AND g.last_seen_run = $3
            AND g.entitlement_id IN (SELECT e.id FROM entitlements e
                                      WHERE e.org_id = $1 AND e.connector_id = $2
                                        AND (e.resource_id IN (SELECT sync_resource_id($2, k) FROM unnest($4::text[]) AS k)
                                             OR e.resource_id IN (SELECT r.id FROM resources r
                                                                   WHERE r.org_id = $1 AND r.connector_id = $2 AND r.type = ANY($5))))
            AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.id = g.principal_id AND r.deleted_at IS NULL)",
    )
    .bind(org.0)
    .bind(connector)
    .bind(run)
    .bind(resource_keys)
    .bind(resource_types)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(n)
}

/// One membership hop: group → member, with labels as paths spell them.
#[derive(Debug, sqlx::FromRow)]
struct Hop {
    group_id: Uuid,
    member_id: Uuid,
    group_label: String,
    member_label: String,
    member_is_group: bool,
    current: bool,
}

/// Brings the expanded grants of `connector` up to date with what changed since `since` (the
/// end of its last successful sync), given the groups whose membership the run saw change
/// (`changed_groups`, object ids; deleted ones included). Call after the run's writes and
/// [`drop_dangling_changes`].
pub async fn expand_changes(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    since: OffsetDateTime,
    changed_groups: &[String],
) -> Result<ExpandChanges> {
    let org = tx.org();
    let mut out = ExpandChanges::default();

    // Deleted principals and entitlements, by index.
    let gone = gone_since(tx, connector, since).await?;
    let gone_ids: Vec<Uuid> = gone.iter().map(|g| g.0).collect();
    out.deleted += sqlx::query(
        "DELETE FROM grants
          WHERE org_id = $1 AND connector_id = $2 AND expanded
            AND (principal_id = ANY($3)
                 OR entitlement_id IN (SELECT id FROM entitlements
                                        WHERE org_id = $1 AND connector_id = $2 AND resource_id = ANY($3)))",
    )
    .bind(org.0)
    .bind(connector)
    .bind(&gone_ids)
    .execute(tx.conn())
    .await?
    .rows_affected();

    // Paths through a deleted group, and through a changed hop between two groups: rare, so a
    // scan of the connector's expanded grants is fine.
    let mut patterns: Vec<String> = gone
        .iter()
        .filter(|g| g.1 == "group")
        .map(|g| format!("group:{}", g.2))
        .collect();

    // The run's membership hops in the changed groups: written by it, or deleted since.
    let hops: Vec<Hop> = sqlx::query_as(
        "SELECT e.resource_id AS group_id, g.principal_id AS member_id,
                'group:' || k AS group_label, 'group:' || coalesce(m.external_id, '') AS member_label,
                coalesce(m.type = 'group', false) AS member_is_group,
                g.deleted_at IS NULL AS current
           FROM unnest($3::text[]) AS k
           JOIN entitlements e ON e.org_id = $1 AND e.connector_id = $2
                              AND e.id = sync_entitlement_id(sync_resource_id($2, k), 'members')
           JOIN grants g ON g.org_id = $1 AND g.connector_id = $2 AND g.entitlement_id = e.id
           LEFT JOIN resources m ON m.id = g.principal_id
          WHERE NOT g.expanded AND g.kind = 'group_members'
            AND (g.last_seen_run = $4 OR g.deleted_at >= $5)",
    )
    .bind(org.0)
    .bind(connector)
    .bind(changed_groups)
    .bind(run)
    .bind(since)
    .fetch_all(tx.conn())
    .await?;
    out.hops = hops.len() as u64;
    patterns.extend(
        hops.iter()
            .filter(|h| h.member_is_group)
            .map(|h| format!("{}>{}", h.group_label, h.member_label)),
    );
    if !patterns.is_empty() {
        out.deleted += sqlx::query(
            "DELETE FROM grants g
              WHERE g.org_id = $1 AND g.connector_id = $2 AND g.expanded
                AND EXISTS (SELECT 1 FROM unnest($3::text[]) AS p WHERE strpos(g.source, p) > 0)",
        )
        .bind(org.0)
        .bind(connector)
        .bind(&patterns)
        .execute(tx.conn())
        .await?
        .rows_affected();
    }
    // Paths whose last hop is a changed one: the member's expanded grants ending at the group.
    let members: Vec<Uuid> = hops.iter().map(|h| h.member_id).collect();
    let labels: Vec<&str> = hops.iter().map(|h| h.group_label.as_str()).collect();
    out.deleted += sqlx::query(
        "DELETE FROM grants g USING unnest($3::uuid[], $4::text[]) AS h(member, label)
          WHERE g.org_id = $1 AND g.connector_id = $2 AND g.expanded AND g.principal_id = h.member
            AND (g.source = h.label OR right(g.source, length(h.label) + 1) = '>' || h.label)",
    )
    .bind(org.0)
    .bind(connector)
    .bind(&members)
    .bind(&labels)
    .execute(tx.conn())
    .await?
    .rows_affected();

    // The run's direct grants to groups (app roles, directory roles), written or deleted: their
    // expanded grants are recomputed whole, group by group.
    let via: Vec<(Uuid, Uuid, String, bool)> = sqlx::query_as(
        "SELECT g.entitlement_id, g.principal_id, 'group:' || r.external_id, g.deleted_at IS NULL
           FROM resources r
           JOIN grants g ON g.org_id = r.org_id AND g.connector_id = r.connector_id AND g.principal_id = r.id
          WHERE r.org_id = $1 AND r.connector_id = $2 AND r.type = 'group'
            AND NOT g.expanded AND g.kind = ANY($3)
            AND (g.last_seen_run = $4 OR g.deleted_at >= $5)",
    )
    .bind(org.0)
    .bind(connector)
    .bind(VIA_GROUP_KINDS)
    .bind(run)
    .bind(since)
    .fetch_all(tx.conn())
    .await?;
    out.group_grants = via.len() as u64;
    let via_ents: Vec<Uuid> = via.iter().map(|v| v.0).collect();
    let via_labels: Vec<&str> = via.iter().map(|v| v.2.as_str()).collect();
    out.deleted += sqlx::query(
        "DELETE FROM grants g USING unnest($3::uuid[], $4::text[]) AS v(ent, label)
          WHERE g.org_id = $1 AND g.connector_id = $2 AND g.expanded AND g.entitlement_id = v.ent
            AND (g.source = v.label OR left(g.source, length(v.label) + 1) = v.label || '>')",
    )
    .bind(org.0)
    .bind(connector)
    .bind(&via_ents)
    .bind(&via_labels)
    .execute(tx.conn())
    .await?
    .rows_affected();

    // Recompute through the hops that exist now, and the current grants to groups.
    let (hop_groups, hop_members): (Vec<Uuid>, Vec<Uuid>) = hops
        .iter()
        .filter(|h| h.current)
        .map(|h| (h.group_id, h.member_id))
        .unzip();
    let (via_ents, via_groups): (Vec<Uuid>, Vec<Uuid>) =
        via.iter().filter(|v| v.3).map(|v| (v.0, v.1)).unzip();
    out.inserted = sqlx::query(
        "WITH RECURSIVE
         hop(x, m) AS (SELECT DISTINCT t.x, t.m FROM unnest($4::uuid[], $5::uuid[]) AS t(x, m)),
         -- up(x, top, path, chain): top reaches x through chain (top first, x last).
         up AS (
             SELECT h.x, h.x AS top, 'group:' || r.external_id AS path, ARRAY[h.x] AS chain
               FROM (SELECT DISTINCT x FROM hop) h
               JOIN resources r ON r.id = h.x AND r.deleted_at IS NULL
             UNION ALL
             SELECT u.x, e.resource_id, 'group:' || pr.external_id || '>' || u.path, e.resource_id || u.chain
               FROM up u
               JOIN grants g ON g.org_id = $1 AND g.connector_id = $2 AND g.principal_id = u.top
                            AND g.kind = 'group_members' AND NOT g.expanded AND g.deleted_at IS NULL
               JOIN entitlements e ON e.id = g.entitlement_id AND e.deleted_at IS NULL
               JOIN resources pr ON pr.id = e.resource_id AND pr.type = 'group' AND pr.deleted_at IS NULL
              WHERE NOT e.resource_id = ANY(u.chain)
         ),
         -- down(x, member, suffix, chain): member is reached from x's hop through the groups in
         -- chain (the hop's member first, when it is a group); suffix spells chain.
         down AS (
             SELECT h.x, h.m AS member, '' AS suffix, ARRAY[]::uuid[] AS chain FROM hop h
             UNION ALL
             SELECT d.x, g.principal_id, d.suffix || '>group:' || gr.external_id, d.chain || d.member
               FROM down d
               JOIN resources gr ON gr.id = d.member AND gr.type = 'group' AND gr.deleted_at IS NULL
               JOIN grants g ON g.org_id = $1 AND g.connector_id = $2
                            AND g.entitlement_id = sync_entitlement_id(d.member, 'members')
                            AND g.kind = 'group_members' AND NOT g.expanded AND g.deleted_at IS NULL
              WHERE NOT d.member = ANY(d.chain) AND NOT g.principal_id = ANY(d.chain)
         ),
         paths AS (
             SELECT u.top, d.member, u.path || d.suffix AS source,
                    cardinality(u.chain) + cardinality(d.chain) AS len
               FROM up u JOIN down d ON d.x = u.x
              WHERE NOT (u.chain && d.chain) AND NOT d.member = ANY(u.chain)
         ),
         -- Whole expansions of the groups whose grants changed: eff(top, member, path, chain).
         eff AS (
             SELECT DISTINCT v.top, g.principal_id AS member, 'group:' || r.external_id AS path, ARRAY[v.top] AS chain
               FROM unnest($6::uuid[]) AS v(top)
               JOIN resources r ON r.id = v.top AND r.deleted_at IS NULL
               JOIN grants g ON g.org_id = $1 AND g.connector_id = $2
                            AND g.entitlement_id = sync_entitlement_id(v.top, 'members')
                            AND g.kind = 'group_members' AND NOT g.expanded AND g.deleted_at IS NULL
             UNION ALL
             SELECT e.top, g.principal_id, e.path || '>group:' || gr.external_id, e.chain || e.member
               FROM eff e
               JOIN resources gr ON gr.id = e.member AND gr.type = 'group' AND gr.deleted_at IS NULL
               JOIN grants g ON g.org_id = $1 AND g.connector_id = $2
                            AND g.entitlement_id = sync_entitlement_id(e.member, 'members')
                            AND g.kind = 'group_members' AND NOT g.expanded AND g.deleted_at IS NULL
              WHERE NOT e.member = ANY(e.chain) AND NOT g.principal_id = ANY(e.chain)
         ),
         all_rows AS (
             SELECT DISTINCT ON (entitlement_id, principal_id, source) * FROM (
                 SELECT sync_entitlement_id(top, 'members') AS entitlement_id, member AS principal_id,
                        'group_members' AS kind, source
                   FROM paths WHERE len > 1
                 UNION ALL
                 SELECT g.entitlement_id, p.member, g.kind, p.source
                   FROM paths p
                   JOIN grants g ON g.org_id = $1 AND g.connector_id = $2 AND g.principal_id = p.top
                                AND g.kind = ANY($8) AND NOT g.expanded AND g.deleted_at IS NULL
                 UNION ALL
                 SELECT g.entitlement_id, e.member, g.kind, e.path
                   FROM (SELECT DISTINCT * FROM unnest($6::uuid[], $7::uuid[])) AS v(top, ent)
                   JOIN grants g ON g.org_id = $1 AND g.connector_id = $2 AND g.principal_id = v.top
                                AND g.entitlement_id = v.ent
                                AND g.kind = ANY($8) AND NOT g.expanded AND g.deleted_at IS NULL
                   JOIN eff e ON e.top = v.top
             ) x
         )
         INSERT INTO grants (id, org_id, connector_id, entitlement_id, principal_id, kind, source, expanded, last_seen_run)
         SELECT sync_grant_id(entitlement_id, principal_id, source, ''), $1, $2, entitlement_id, principal_id, kind, source, true, $3
           FROM all_rows
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(org.0)
    .bind(connector)
    .bind(run)
    .bind(&hop_groups)
    .bind(&hop_members)
    .bind(&via_groups)
    .bind(&via_ents)
    .bind(VIA_GROUP_KINDS)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok(out)
}
