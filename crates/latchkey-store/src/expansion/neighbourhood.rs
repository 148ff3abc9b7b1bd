//! Reads the part of a connector's membership graph that an incremental expansion needs, level
//! by level, each level one statement driven by the ids it starts from (index lookups). One
//! recursive statement over the whole graph let the planner hash a million memberships per
//! recursion step (tens of seconds at 100,000 users, worse with stale statistics); a handful of
//! short statements cannot.

use super::paths::Neighbourhood;
use crate::{OrgTx, Result};
use std::collections::HashSet;
use uuid::Uuid;

impl Neighbourhood {
    /// Labels the current groups among `ids` (others stay unlabelled: deleted, or not groups).
    pub(super) async fn read_groups(
        &mut self,
        tx: &mut OrgTx,
        connector: Uuid,
        ids: &[Uuid],
    ) -> Result<()> {
        let org = tx.org();
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, 'group:' || external_id FROM resources
              WHERE org_id = $1 AND connector_id = $2 AND id = ANY($3)
                AND type = 'group' AND deleted_at IS NULL",
        )
        .bind(org.0)
        .bind(connector)
        .bind(ids)
        .fetch_all(tx.conn())
        .await?;
        self.labels.extend(rows);
        Ok(())
    }

    /// Reads upward from `groups`: the current groups holding each as a current member, and
    /// theirs, to the top.
    pub(super) async fn read_up(
        &mut self,
        tx: &mut OrgTx,
        connector: Uuid,
        groups: &[Uuid],
    ) -> Result<()> {
        let org = tx.org();
        let mut seen: HashSet<Uuid> = groups.iter().copied().collect();
        let mut frontier: Vec<Uuid> = seen.iter().copied().collect();
        while !frontier.is_empty() {
            let rows: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
                "SELECT g.principal_id, e.resource_id, 'group:' || p.external_id
                   FROM unnest($3::uuid[]) AS f(id)
                   JOIN grants g ON g.org_id = $1 AND g.connector_id = $2 AND g.principal_id = f.id
                                AND g.kind = 'group_members' AND NOT g.expanded AND g.deleted_at IS NULL
                   JOIN entitlements e ON e.id = g.entitlement_id AND e.deleted_at IS NULL
                   JOIN resources p ON p.id = e.resource_id AND p.type = 'group' AND p.deleted_at IS NULL",
            )
            .bind(org.0)
            .bind(connector)
            .bind(&frontier)
            .fetch_all(tx.conn())
            .await?;
            frontier.clear();
            for (child, parent, label) in rows {
                self.parents.entry(child).or_default().push(parent);
                self.labels.insert(parent, label);
                if seen.insert(parent) {
                    frontier.push(parent);
                }
            }
        }
        Ok(())
    }

    /// Reads downward from `groups`: the current members of each, and of every current group
    /// among them, to the bottom.
    pub(super) async fn read_down(
        &mut self,
        tx: &mut OrgTx,
        connector: Uuid,
        groups: &[Uuid],
    ) -> Result<()> {
        let org = tx.org();
        let mut seen: HashSet<Uuid> = self.members.keys().copied().collect();
        let mut frontier: Vec<Uuid> = groups.iter().copied().filter(|g| seen.insert(*g)).collect();
        while !frontier.is_empty() {
            // The members entitlement's id is computed before the join (OFFSET 0 keeps it
            // there): row-level security refuses an index lookup on a value computed by
            // functions it cannot prove leakproof.
            let rows: Vec<(Uuid, Uuid, Option<String>)> = sqlx::query_as(
                "SELECT f.id, g.principal_id,
                        CASE WHEN m.type = 'group' AND m.deleted_at IS NULL THEN 'group:' || m.external_id END
                   FROM (SELECT id, sync_entitlement_id(id, 'members') AS members_id
                           FROM unnest($3::uuid[]) AS id OFFSET 0) AS f
                   JOIN grants g ON g.org_id = $1 AND g.connector_id = $2 AND g.entitlement_id = f.members_id
                                AND g.kind = 'group_members' AND NOT g.expanded AND g.deleted_at IS NULL
                   LEFT JOIN resources m ON m.id = g.principal_id",
            )
            .bind(org.0)
            .bind(connector)
            .bind(&frontier)
            .fetch_all(tx.conn())
            .await?;
            for group in &frontier {
                self.members.entry(*group).or_default();
            }
            frontier.clear();
            for (group, member, label) in rows {
                self.members.entry(group).or_default().push(member);
                if let Some(label) = label {
                    self.labels.insert(member, label);
                    if seen.insert(member) {
                        frontier.push(member);
                    }
                }
            }
        }
        Ok(())
    }
}
