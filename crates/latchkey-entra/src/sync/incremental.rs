//! The incremental sync: users and groups from their delta links (member changes included),
//! enterprise applications and directory roles that the audit feed says changed (all of them
//! when the feed is off or unavailable), and licences (one small request). Expired delta links
//! turn the run into a full sync.

use super::fetch::{self, RelPage};
use super::{
    AsyncPageFn, Cursors, Run, SpPages, SyncError, SyncKind, UserPages, map, member_changes,
    now_rfc3339, select,
};
use crate::graph::{ApiVersion, GraphError};
use latchkey_jobs::LogLevel;
use latchkey_store::expansion;
use latchkey_store::resources::{self, GrantRow, ResourceRow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};

/// A delta link Graph no longer knows (`SyncStateNotFound`, 410 Gone, an expired token).
fn delta_expired(e: &SyncError) -> bool {
    match e {
        SyncError::Graph(GraphError::Refused { status, code, .. }) => {
            *status == 410
                || code.eq_ignore_ascii_case("SyncStateNotFound")
                || code.eq_ignore_ascii_case("Directory_ExpiredPageToken")
                || code.to_ascii_lowercase().contains("resyncrequired")
        }
        _ => false,
    }
}

/// Changed users: refresh them and their licences; removed ones are marked deleted.
pub(super) async fn users_page(
    run: &Run<'_>,
    phase: u32,
    res: Vec<ResourceRow>,
    grants: Vec<GrantRow>,
    removed: Vec<String>,
    next: Option<String>,
) -> Result<(), SyncError> {
    let changed: Vec<String> = res.iter().map(|r| r.key.clone()).collect();
    let mut tx = run.tx().await?;
    resources::upsert_resources(&mut tx, run.connector, run.run, &res).await?;
    // A user new to us whose manager the round did not name has none.
    resources::default_profile_fields(
        &mut tx,
        run.connector,
        &changed,
        &json!({"manager_id": null}),
    )
    .await?;
    resources::upsert_grants(&mut tx, run.connector, run.run, &grants).await?;
    resources::sweep_principal_grants(
        &mut tx,
        run.connector,
        run.run,
        &changed,
        &["license_assigned"],
    )
    .await?;
    let deleted = resources::delete_resources(&mut tx, run.connector, run.run, &removed).await?;
    tx.commit().await?;
    run.advance(phase, next, |c| {
        c.add(&res, &[], &grants);
        c.deleted += deleted;
    })
    .await
}

/// Changed groups: their fields, owners (reread) and member changes; removed groups are marked
/// deleted. Members added to or removed from a group that licenses its members have their
/// licences reread.
struct GroupDeltaPages {
    skip: HashSet<String>,
    licensing: HashSet<String>,
    /// Groups whose owners changed per the audit feed; `None`: the feed is off, reread the
    /// owners of every changed group.
    owner_changes: Option<BTreeSet<String>>,
}

impl AsyncPageFn for GroupDeltaPages {
    fn call<'r, 's>(
        &'s mut self,
        run: &'s Run<'r>,
        phase: u32,
        items: Vec<Value>,
        next: Option<String>,
    ) -> futures::future::BoxFuture<'s, Result<(), SyncError>> {
        Box::pin(async move {
            let skip_ad = run.settings.skip_ad_groups;
            let mut res = Vec::new();
            let mut ents = Vec::new();
            let mut grants = Vec::new();
            let mut removed_groups = Vec::new();
            let mut removals: Vec<(String, Vec<String>)> = Vec::new();
            let mut changed = BTreeSet::new();
            let mut members_changed = Vec::new();
            let mut relicense = BTreeSet::new();
            for v in &items {
                let Some(g) = map::id_of(v) else { continue };
                if v.get("@removed").is_some() || (skip_ad && map::group_on_premises(v)) {
                    removed_groups.push(g.to_string());
                    continue;
                }
                if let Some((r, e)) = map::group(v) {
                    res.push(r);
                    ents.extend(e);
                }
                changed.insert(g.to_string());
                let (added, gone) = member_changes(v);
                if !added.is_empty() || !gone.is_empty() {
                    members_changed.push(g.to_string());
                }
                if self.licensing.contains(g) {
                    relicense.extend(added.iter().cloned());
                    relicense.extend(gone.iter().cloned());
                }
                for p in added {
                    if !self.skip.contains(&p) {
                        grants.push(map::link_grant(g, "members", "group_members", &p));
                    }
                }
                if !gone.is_empty() {
                    removals.push((g.to_string(), gone));
                }
            }
            // Owners are not in the delta: reread them for the groups whose owners changed.
            let changed: Vec<String> = changed
                .into_iter()
                .filter(|g| self.owner_changes.as_ref().is_none_or(|o| o.contains(g)))
                .collect();
            let rels = changed
                .iter()
                .map(|id| format!("groups/{id}/owners?$select=id&$top=999"))
                .collect();
            for (i, list) in
                fetch::collections(&run.graph, ApiVersion::Beta, rels, run.options.concurrency)
                    .await?
            {
                for o in &list {
                    if let Some(p) = map::principal_of(o) {
                        grants.push(map::link_grant(&changed[i], "owners", "group_owners", p));
                    }
                }
            }
            let relicense: Vec<String> = relicense.into_iter().collect();
            let rels = relicense
                .iter()
                .map(|id| format!("users/{id}?$select=id,licenseAssignmentStates"))
                .collect();
            let mut licence_users = Vec::new();
            for (i, list) in single_objects(run, ApiVersion::V1, rels).await? {
                for u in &list {
                    grants.extend(map::user_licenses(u));
                }
                licence_users.push(relicense[i].clone());
            }
            let mut tx = run.tx().await?;
            resources::upsert_resources(&mut tx, run.connector, run.run, &res).await?;
            resources::upsert_entitlements(&mut tx, run.connector, run.run, &ents).await?;
            resources::upsert_grants(&mut tx, run.connector, run.run, &grants).await?;
            for (g, gone) in &removals {
                resources::delete_grants(&mut tx, run.connector, run.run, g, "members", gone)
                    .await?;
            }
            for g in &changed {
                resources::sweep_grants_of(&mut tx, run.connector, run.run, g, &["group_owners"])
                    .await?;
            }
            resources::sweep_principal_grants(
                &mut tx,
                run.connector,
                run.run,
                &licence_users,
                &["license_assigned"],
            )
            .await?;
            let deleted =
                resources::delete_resources(&mut tx, run.connector, run.run, &removed_groups)
                    .await?;
            tx.commit().await?;
            run.cp()
                .touched
                .groups(members_changed.into_iter().chain(removed_groups));
            run.advance(phase, next, |c| {
                c.add(&res, &ents, &grants);
                c.deleted += deleted;
            })
            .await
        })
    }
}

/// GETs single objects (not collections) through `$batch`, 20 at a time: `(index, [object])`.
async fn single_objects(
    run: &Run<'_>,
    version: ApiVersion,
    rels: Vec<String>,
) -> Result<Vec<(usize, Vec<Value>)>, SyncError> {
    let mut out = Vec::new();
    for (start, chunk) in rels.chunks(20).enumerate() {
        let reqs = chunk
            .iter()
            .enumerate()
            .map(|(i, rel)| crate::graph::BatchRequest {
                id: (start * 20 + i).to_string(),
                method: http::Method::GET,
                url: rel.clone(),
                headers: Default::default(),
                body: None,
            })
            .collect();
        for (i, r) in run
            .graph
            .batch(version, reqs)
            .await?
            .into_iter()
            .enumerate()
        {
            match r {
                Ok(resp) => out.push((start * 20 + i, resp.value().into_iter().collect())),
                Err(e) if e.is_not_found() => out.push((start * 20 + i, Vec::new())),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(out)
}

/// What the audit feed says changed since the last run.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct AuditChanges {
    /// Service principals touched by application management.
    sps: BTreeSet<String>,
    /// Groups whose owners changed (or that were created).
    group_owners: BTreeSet<String>,
    /// Whether any directory role assignment or eligibility changed.
    roles: bool,
}

/// Reads the audit feed since `since`. `None` when the feed is off or unavailable (then
/// everything of those kinds is reread).
async fn audit_changes(
    run: &Run<'_>,
    since: Option<&str>,
) -> Result<Option<AuditChanges>, SyncError> {
    if run.settings.disable_audit_feed {
        return Ok(None);
    }
    let Some(since) = since else { return Ok(None) };
    let mut rel = Some(format!(
        "auditLogs/directoryAudits?$filter=activityDateTime%20ge%20{since}&$top=999"
    ));
    let mut out = AuditChanges::default();
    while let Some(r) = rel {
        let page: fetch::RelPage = match fetch::page(&run.graph, ApiVersion::V1, &r, None).await {
            Ok(p) => p,
            Err(e @ (GraphError::NotPremium { .. } | GraphError::PermissionMissing { .. })) => {
                run.warn(format!(
                    "The directory audit feed is unavailable ({e}); group owners, enterprise applications and roles were reread in full."
                ))
                .await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let RelPage { items, next, .. } = page;
        for a in &items {
            let targets = a
                .get("targetResources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    Some((
                        t.get("type").and_then(Value::as_str)?,
                        t.get("id").and_then(Value::as_str)?,
                    ))
                });
            let activity = a
                .get("activityDisplayName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_ascii_lowercase();
            match a.get("category").and_then(Value::as_str) {
                Some("ApplicationManagement") => {
                    for (t, id) in targets {
                        if t == "ServicePrincipal" {
                            out.sps.insert(id.to_string());
                        }
                    }
                }
                Some("GroupManagement")
                    if activity.contains("owner") || activity == "add group" =>
                {
                    for (t, id) in targets {
                        if t == "Group" {
                            out.group_owners.insert(id.to_string());
                        }
                    }
                }
                Some("RoleManagement") => out.roles = true,
                _ => {}
            }
        }
        rel = next;
    }
    Ok(Some(out))
}

const PHASES: u32 = 6;

pub(super) async fn run(run: &Run<'_>, c: Cursors) -> Result<Option<Cursors>, SyncError> {
    {
        let mut cp = run.cp();
        if cp.done.is_empty() && cp.cursors.is_empty() {
            cp.audit_since = if run.settings.disable_audit_feed {
                None
            } else {
                Some(now_rfc3339())
            };
            cp.sign_in_since = run.settings.fetch_sign_in_activity.then(now_rfc3339);
        }
    }
    let delta_page = run.options.delta_page;
    for phase in 0..PHASES {
        if run.is_done(phase) {
            continue;
        }
        run.check()?;
        let result = match phase {
            0 => match audit_changes(run, c.audit_since.as_deref()).await {
                Ok(a) => {
                    run.cp().audit = Some(a);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            1 => {
                run.info("Reading changed users").await?;
                run.pages(
                    phase,
                    ApiVersion::V1,
                    c.users_delta.clone(),
                    Some(delta_page),
                    UserPages,
                )
                .await
                .map(|link| run.cp().users_delta = link)
            }
            2 => {
                run.info("Reading changed groups and memberships").await?;
                let skip = super::skipped_members(run).await?;
                let mut tx = run.tx().await?;
                let licensing = resources::licensing_groups(&mut tx, run.connector)
                    .await?
                    .into_iter()
                    .collect();
                tx.commit().await?;
                let owner_changes = audit_of(run).map(|a| a.group_owners);
                run.pages(
                    phase,
                    ApiVersion::Beta,
                    c.groups_delta.clone(),
                    Some(delta_page.min(100)),
                    GroupDeltaPages {
                        skip,
                        licensing,
                        owner_changes,
                    },
                )
                .await
                .map(|link| run.cp().groups_delta = link)
            }
            3 => apps_and_roles(run, phase).await,
            4 => {
                run.info("Reading licences").await?;
                super::licences(run, phase).await
            }
            5 => {
                // Graph records sign-ins with a delay: look back a while before the last run.
                let since = c.sign_in_since.as_deref().and_then(sign_in_window);
                super::sign_in_activity(run, phase, since.as_deref()).await
            }
            _ => unreachable!("bounded by PHASES"),
        };
        match result {
            Ok(()) => run.finish_phase(phase).await?,
            Err(e) if delta_expired(&e) => {
                run.warn(
                    "Microsoft Graph no longer knows this connector's delta links; a full sync was run instead."
                        .to_string(),
                )
                .await?;
                {
                    let mut cp = run.cp();
                    cp.kind = Some(SyncKind::Full);
                    cp.done.clear();
                    cp.cursors.clear();
                }
                let mut tx = run.tx().await?;
                latchkey_store::sync_runs::start(&mut tx, run.run, run.connector, "full").await?;
                tx.commit().await?;
                return super::full(run).await;
            }
            Err(e) => return Err(e),
        }
    }
    finish(run).await?;
    let mut tx = run.tx().await?;
    super::discovered_apps(&mut tx, run.connector).await?;
    tx.commit().await?;
    let cp = run.cp().clone();
    Ok(Some(Cursors {
        users_delta: cp.users_delta.unwrap_or(c.users_delta),
        groups_delta: cp.groups_delta.unwrap_or(c.groups_delta),
        audit_since: cp.audit_since,
        sign_in_since: cp.sign_in_since,
    }))
}

/// Groups with more membership changes than this in one run are re-expanded whole (the list
/// lives in the checkpoint).
const MAX_TOUCHED_GROUPS: usize = 5_000;

/// What an incremental run touched beyond single rows: the finishing step drops grants that
/// became dangling and re-expands grants through groups for these only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Touched {
    /// Groups whose membership changed or that were removed (object ids).
    groups: BTreeSet<String>,
    /// Too many groups changed: re-expand everything.
    all: bool,
    /// Service principals reread one by one (object ids).
    resources: BTreeSet<String>,
    /// Resource types reread whole.
    types: BTreeSet<String>,
}

impl Touched {
    fn groups(&mut self, ids: impl IntoIterator<Item = String>) {
        if self.all {
            return;
        }
        self.groups.extend(ids);
        if self.groups.len() > MAX_TOUCHED_GROUPS {
            self.all = true;
            self.groups.clear();
        }
    }

    fn types(&mut self, types: &[&str]) {
        self.types.extend(types.iter().map(|t| t.to_string()));
    }
}

/// The end of an incremental run: grants that now name nothing are dropped and expanded grants
/// are brought up to date, both only where the run changed something (by index); everything
/// when there is no successful run to count changes from or too much changed.
async fn finish(run: &Run<'_>) -> Result<(), SyncError> {
    let touched = run.cp().touched.clone();
    let mut tx = run.tx().await?;
    resources::allow_long_statements(&mut tx, super::LONG_STATEMENTS).await?;
    let since = latchkey_store::sync_runs::last_success_at(&mut tx, run.connector).await?;
    let (message, fields) = match since.filter(|_| !touched.all) {
        Some(since) => {
            let mut keys: Vec<String> = touched.groups.iter().cloned().collect();
            keys.extend(touched.resources.iter().cloned());
            let types: Vec<&str> = touched.types.iter().map(String::as_str).collect();
            let dangling = expansion::drop_dangling_changes(
                &mut tx,
                run.connector,
                run.run,
                since,
                &keys,
                &types,
            )
            .await?;
            let groups: Vec<String> = touched.groups.into_iter().collect();
            let x =
                expansion::expand_changes(&mut tx, run.connector, run.run, since, &groups).await?;
            (
                format!(
                    "{dangling} grants name objects that are not principals here; expanded grants through {} changed memberships and {} changed grants to groups: {} removed, {} added.",
                    x.hops, x.group_grants, x.deleted, x.inserted
                ),
                json!({"dangling": dangling, "expansion": x}),
            )
        }
        None => {
            let dangling = resources::drop_dangling(&mut tx, run.connector).await?;
            let expanded = resources::expand(&mut tx, run.connector, run.run).await?;
            (
                format!(
                    "{dangling} grants name objects that are not principals here; {expanded} expanded grants through groups."
                ),
                json!({"dangling": dangling, "expanded": expanded}),
            )
        }
    };
    tx.commit().await?;
    run.log(LogLevel::Info, message, fields).await?;
    Ok(())
}

/// How far before the last run's start an incremental run looks for sign-ins (Graph records
/// them with a delay of up to a few hours).
const SIGN_IN_LOOKBACK: time::Duration = time::Duration::hours(6);

/// The start of the sign-in window: `since` (RFC 3339) minus the look-back.
fn sign_in_window(since: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(since, &Rfc3339).ok()? - SIGN_IN_LOOKBACK;
    t.format(&Rfc3339).ok()
}

/// The audit changes read in phase 0 (`None`: feed off or unavailable).
fn audit_of(run: &Run<'_>) -> Option<AuditChanges> {
    run.cp().audit.clone().flatten()
}

async fn apps_and_roles(run: &Run<'_>, phase: u32) -> Result<(), SyncError> {
    match audit_of(run) {
        None => {
            run.info("Reading enterprise applications and directory roles")
                .await?;
            let first = format!(
                "servicePrincipals?$select={}&$expand=owners($select=id)&$top=999",
                select(map::SP_FIELDS)
            );
            run.pages(phase, ApiVersion::Beta, first, None, SpPages)
                .await?;
            let mut tx = run.tx().await?;
            resources::sweep_resource_types(
                &mut tx,
                run.connector,
                run.run,
                &["enterprise_application", "managed_identity"],
            )
            .await?;
            resources::sweep_grant_kinds(
                &mut tx,
                run.connector,
                run.run,
                &["app_role_assignments", "app_owners"],
            )
            .await?;
            tx.commit().await?;
            super::roles(run, phase).await?;
            sweep_roles(run).await?;
            run.cp()
                .touched
                .types(&["enterprise_application", "managed_identity", "role"]);
            Ok(())
        }
        Some(AuditChanges { sps, roles, .. }) => {
            if !sps.is_empty() {
                run.info(format!(
                    "Rereading {} changed enterprise application(s)",
                    sps.len()
                ))
                .await?;
                let ids: Vec<String> = sps.into_iter().collect();
                let rels = ids
                    .iter()
                    .map(|id| {
                        format!(
                            "servicePrincipals/{id}?$select={}&$expand=owners($select=id)",
                            select(map::SP_FIELDS)
                        )
                    })
                    .collect();
                let mut objects = Vec::new();
                for (_, list) in single_objects(run, ApiVersion::Beta, rels).await? {
                    objects.extend(list);
                }
                super::service_principals_page(run, phase, objects, None).await?;
                let mut tx = run.tx().await?;
                for id in &ids {
                    resources::sweep_grants_of(
                        &mut tx,
                        run.connector,
                        run.run,
                        id,
                        &["app_role_assignments", "app_owners"],
                    )
                    .await?;
                }
                tx.commit().await?;
                run.cp().touched.resources.extend(ids);
            }
            if roles {
                run.info("Rereading directory roles").await?;
                super::roles(run, phase).await?;
                sweep_roles(run).await?;
                run.cp().touched.types(&["role"]);
            }
            Ok(())
        }
    }
}

async fn sweep_roles(run: &Run<'_>) -> Result<(), SyncError> {
    let mut kinds = vec!["role_assigned"];
    let eligible_unread = run.cp().unread.iter().any(|k| k == "role_eligible");
    if !eligible_unread {
        kinds.push("role_eligible");
    }
    let mut tx = run.tx().await?;
    resources::sweep_grant_kinds(&mut tx, run.connector, run.run, &kinds).await?;
    tx.commit().await?;
    Ok(())
}
