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

mod neighbourhood;
mod paths;

use crate::{OrgTx, Result};
use paths::{Neighbourhood, Path};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
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
    // The entitlements the run reread, then their grants by index (a filter on the run alone
    // would scan every grant of every connector).
    let reread: Vec<Uuid> = sqlx::query_scalar(
        "SELECT e.id FROM entitlements e
          WHERE e.org_id = $1 AND e.connector_id = $2
            AND (e.resource_id IN (SELECT sync_resource_id($2, k) FROM unnest($3::text[]) AS k)
                 OR e.resource_id IN (SELECT r.id FROM resources r
                                       WHERE r.org_id = $1 AND r.connector_id = $2 AND r.type = ANY($4)))",
    )
    .bind(org.0)
    .bind(connector)
    .bind(resource_keys)
    .bind(resource_types)
    .fetch_all(tx.conn())
    .await?;
    // A few dozen entitlements per statement: with thousands in one array the planner expects
    // a large share of the table and scans all of it (seconds once it is out of cache).
    for chunk in reread.chunks(64) {
        n += sqlx::query(
            "UPDATE grants g SET deleted_at = now()
              WHERE g.org_id = $1 AND g.connector_id = $2 AND g.entitlement_id = ANY($4)
                AND g.deleted_at IS NULL AND NOT g.expanded AND g.last_seen_run = $3
                AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.id = g.principal_id AND r.deleted_at IS NULL)",
        )
        .bind(org.0)
        .bind(connector)
        .bind(run)
        .bind(chunk)
        .execute(tx.conn())
        .await?
        .rows_affected();
    }
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
    // Two statements, each by its index (as one, the OR made PostgreSQL read every expanded
    // grant of the connector: 0.3 s at 100,000 users, even with nothing gone).
    let gone_ids: Vec<Uuid> = gone.iter().map(|g| g.0).collect();
    if !gone_ids.is_empty() {
        for statement in [
            "DELETE FROM grants
              WHERE org_id = $1 AND connector_id = $2 AND expanded AND principal_id = ANY($3)",
            "DELETE FROM grants
              WHERE org_id = $1 AND connector_id = $2 AND expanded
                AND entitlement_id = ANY(ARRAY(SELECT id FROM entitlements
                                                WHERE org_id = $1 AND connector_id = $2
                                                  AND resource_id = ANY($3)))",
        ] {
            out.deleted += sqlx::query(statement)
                .bind(org.0)
                .bind(connector)
                .bind(&gone_ids)
                .execute(tx.conn())
                .await?
                .rows_affected();
        }
    }

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
                'group:' || changed.k AS group_label, 'group:' || coalesce(m.external_id, '') AS member_label,
                coalesce(m.type = 'group', false) AS member_is_group,
                g.deleted_at IS NULL AS current
           FROM (SELECT k, sync_entitlement_id(sync_resource_id($2, k), 'members') AS members_id
                   FROM unnest($3::text[]) AS k OFFSET 0) AS changed
           JOIN entitlements e ON e.org_id = $1 AND e.connector_id = $2 AND e.id = changed.members_id
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
    let via: Vec<(Uuid, Uuid, String, bool, String)> = sqlx::query_as(
        "SELECT g.entitlement_id, g.principal_id, 'group:' || r.external_id, g.deleted_at IS NULL, g.kind
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
    let hops: Vec<&Hop> = hops.iter().filter(|h| h.current).collect();
    let via: Vec<&(Uuid, Uuid, String, bool, String)> = via.iter().filter(|v| v.3).collect();
    let hop_pairs: Vec<(Uuid, Uuid)> = hops.iter().map(|h| (h.group_id, h.member_id)).collect();
    let hop_groups: Vec<Uuid> = distinct(hops.iter().map(|h| h.group_id));
    let via_groups: Vec<Uuid> = distinct(via.iter().map(|v| v.1));
    let below_hops: Vec<Uuid> = distinct(
        hops.iter()
            .filter(|h| h.member_is_group)
            .map(|h| h.member_id),
    );

    let mut graph = Neighbourhood::default();
    let starts: Vec<Uuid> = distinct(
        hop_groups
            .iter()
            .chain(&via_groups)
            .chain(&below_hops)
            .copied(),
    );
    graph.read_groups(tx, connector, &starts).await?;
    graph.read_up(tx, connector, &hop_groups).await?;
    let down_from: Vec<Uuid> = distinct(below_hops.iter().chain(&via_groups).copied());
    graph.read_down(tx, connector, &down_from).await?;

    let through = graph.through_hops(&hop_pairs);
    let held = grants_to_groups(tx, connector, &distinct(through.iter().map(|p| p.top))).await?;
    let mut rows = Rows::default();
    for p in &through {
        if p.len > 1 {
            rows.add(None, p, "group_members");
        }
        for (ent, kind) in held.get(&p.top).map_or(&[][..], Vec::as_slice) {
            rows.add(Some(*ent), p, kind);
        }
    }
    let mut seen_via = HashSet::new();
    for (ent, top, _, _, kind) in via {
        if seen_via.insert((*ent, *top)) {
            for p in graph.below(*top) {
                rows.add(Some(*ent), &p, kind);
            }
        }
    }
    out.inserted = rows.insert(tx, connector, run).await?;
    Ok(out)
}

fn distinct(ids: impl IntoIterator<Item = Uuid>) -> Vec<Uuid> {
    let mut seen = HashSet::new();
    ids.into_iter().filter(|id| seen.insert(*id)).collect()
}

/// The current direct grants that reach a group's members (app roles, directory roles) held by
/// each of `groups`: `(entitlement, kind)` by group.
async fn grants_to_groups(
    tx: &mut OrgTx,
    connector: Uuid,
    groups: &[Uuid],
) -> Result<HashMap<Uuid, Vec<(Uuid, String)>>> {
    let org = tx.org();
    let rows: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "SELECT principal_id, entitlement_id, kind FROM grants
          WHERE org_id = $1 AND connector_id = $2 AND principal_id = ANY($3)
            AND kind = ANY($4) AND NOT expanded AND deleted_at IS NULL",
    )
    .bind(org.0)
    .bind(connector)
    .bind(groups)
    .bind(VIA_GROUP_KINDS)
    .fetch_all(tx.conn())
    .await?;
    let mut out: HashMap<Uuid, Vec<(Uuid, String)>> = HashMap::new();
    for (group, ent, kind) in rows {
        out.entry(group).or_default().push((ent, kind));
    }
    Ok(out)
}

/// Expanded grants to write, once each: an entitlement (`None`: the top group's `members`), a
/// principal and a path.
#[derive(Default)]
struct Rows {
    seen: HashSet<(Uuid, bool, Uuid, String)>,
    ents: Vec<Option<Uuid>>,
    tops: Vec<Uuid>,
    members: Vec<Uuid>,
    kinds: Vec<String>,
    sources: Vec<String>,
}

impl Rows {
    /// Statement size: the arrays of one insert.
    const CHUNK: usize = 10_000;

    fn add(&mut self, ent: Option<Uuid>, path: &Path, kind: &str) {
        let key = (
            ent.unwrap_or(path.top),
            ent.is_some(),
            path.member,
            path.source.clone(),
        );
        if !self.seen.insert(key) {
            return;
        }
        self.ents.push(ent);
        self.tops.push(path.top);
        self.members.push(path.member);
        self.kinds.push(kind.to_string());
        self.sources.push(path.source.clone());
    }

    /// Inserts the rows not stored yet; returns how many it inserted.
    async fn insert(self, tx: &mut OrgTx, connector: Uuid, run: Uuid) -> Result<u64> {
        let org = tx.org();
        let mut inserted = 0;
        for start in (0..self.members.len()).step_by(Self::CHUNK) {
            let end = (start + Self::CHUNK).min(self.members.len());
            inserted += sqlx::query(
                "INSERT INTO grants (id, org_id, connector_id, entitlement_id, principal_id, kind, source, expanded, last_seen_run)
                 SELECT sync_grant_id(t.ent, t.member, t.source, ''), $1, $2, t.ent, t.member, t.kind, t.source, true, $3
                   FROM (SELECT coalesce(u.ent, sync_entitlement_id(u.top, 'members')) AS ent,
                                u.member, u.kind, u.source
                           FROM unnest($4::uuid[], $5::uuid[], $6::uuid[], $7::text[], $8::text[])
                                AS u(ent, top, member, kind, source)) AS t
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(org.0)
            .bind(connector)
            .bind(run)
            .bind(&self.ents[start..end])
            .bind(&self.tops[start..end])
            .bind(&self.members[start..end])
            .bind(&self.kinds[start..end])
            .bind(&self.sources[start..end])
            .execute(tx.conn())
            .await?
            .rows_affected();
        }
        Ok(inserted)
    }
}
