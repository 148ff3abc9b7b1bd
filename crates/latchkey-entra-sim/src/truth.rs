//! Ground truth of the directory for tests, and out-of-band changes (what an admin does in the portal).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::SimError;
use crate::json::{fmt_ts, now};
use crate::model::{
    AppRoleAssignment, Directory, Eligibility, Group, GroupKind, ObjKind, ObjRef, RoleAssignment,
    SignIn, SpType, User, app_role_assignment_id, role_assignment_id,
};
use crate::server::State;

/// Counts of everything in the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroundTruth {
    pub tenant_id: Uuid,
    pub users: usize,
    pub guests: usize,
    pub disabled_users: usize,
    pub groups: usize,
    pub groups_by_kind: BTreeMap<String, usize>,
    /// All group memberships (users, nested groups, service principals).
    pub memberships: usize,
    pub user_memberships: usize,
    pub group_memberships: usize,
    pub service_principal_memberships: usize,
    pub group_owners: usize,
    pub service_principals: usize,
    /// Service principals of type `Application` that are not Microsoft first-party.
    pub enterprise_apps: usize,
    pub managed_identities: usize,
    pub app_role_assignments: usize,
    pub role_definitions: usize,
    pub active_role_assignments: usize,
    pub eligible_role_assignments: usize,
    pub skus: usize,
    pub direct_license_assignments: usize,
    pub group_license_assignments: usize,
    pub audit_records: usize,
    pub provision_on_demand_calls: usize,
    /// Increases with every change; handy to wait for a change to land.
    pub change_seq: u64,
}

pub(crate) fn ground_truth(st: &State) -> GroundTruth {
    summarize(&st.read())
}

pub(crate) fn summarize(d: &Directory) -> GroundTruth {
    let t = now();
    let live_groups: Vec<&Group> = d.groups.iter().filter(|g| g.deleted.is_none()).collect();
    let mut by_kind = BTreeMap::new();
    let mut um = 0;
    let mut gm = 0;
    let mut sm = 0;
    for g in &live_groups {
        *by_kind.entry(kind_name(g.kind)).or_insert(0) += 1;
        for m in &g.members {
            if d.is_deleted(*m) {
                continue;
            }
            match m.kind() {
                ObjKind::User => um += 1,
                ObjKind::Group => gm += 1,
                ObjKind::ServicePrincipal => sm += 1,
            }
        }
    }
    let live_users: Vec<usize> = (0..d.users.len())
        .filter(|&i| d.users[i].deleted.is_none())
        .collect();
    GroundTruth {
        tenant_id: d.tenant_id,
        users: live_users.len(),
        guests: live_users.iter().filter(|&&i| d.users[i].guest).count(),
        disabled_users: live_users
            .iter()
            .filter(|&&i| !d.users[i].account_enabled)
            .count(),
        groups: live_groups.len(),
        groups_by_kind: by_kind,
        memberships: um + gm + sm,
        user_memberships: um,
        group_memberships: gm,
        service_principal_memberships: sm,
        group_owners: live_groups.iter().map(|g| g.owners.len()).sum(),
        service_principals: d.sps.iter().filter(|s| s.deleted.is_none()).count(),
        enterprise_apps: d
            .sps
            .iter()
            .filter(|s| s.deleted.is_none() && s.sp_type == SpType::Application && !s.first_party)
            .count(),
        managed_identities: d
            .sps
            .iter()
            .filter(|s| s.sp_type == SpType::ManagedIdentity)
            .count(),
        app_role_assignments: d
            .sps
            .iter()
            .map(|s| {
                s.assigned_to
                    .iter()
                    .filter(|a| !d.is_deleted(a.principal))
                    .count()
            })
            .sum(),
        role_definitions: d.roles.len(),
        active_role_assignments: d.active_assignments(t).count(),
        eligible_role_assignments: d.active_eligibilities(t).count(),
        skus: d.skus.len(),
        direct_license_assignments: live_users.iter().map(|&i| d.users[i].licenses.len()).sum(),
        group_license_assignments: live_users
            .iter()
            .map(|&i| {
                d.license_states(i)
                    .iter()
                    .filter(|(_, g)| g.is_some())
                    .count()
            })
            .sum(),
        audit_records: d.audit.len(),
        provision_on_demand_calls: d.provision_calls.len(),
        change_seq: d.seq,
    }
}

pub(crate) fn kind_name(k: GroupKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub(crate) fn group_members(st: &State, group_id: Uuid) -> Option<Vec<Uuid>> {
    let d = st.read();
    let gi = d.find_group(&group_id.to_string())?;
    Some(
        d.groups[gi]
            .members
            .iter()
            .filter(|m| !d.is_deleted(**m))
            .map(|m| d.obj_id(*m))
            .collect(),
    )
}

/// A user as the ground-truth listing shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TruthUser {
    pub id: Uuid,
    pub user_principal_name: String,
    pub display_name: String,
    pub account_enabled: bool,
    pub user_type: String,
    pub on_premises_sync_enabled: bool,
    pub usage_location: Option<String>,
    /// SKU ids, direct and inherited.
    pub licenses: Vec<Uuid>,
    /// The manager's object id (a live user), if any.
    #[serde(default)]
    pub manager_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TruthGroup {
    pub id: Uuid,
    pub display_name: String,
    pub kind: GroupKind,
    pub members: usize,
    pub owners: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TruthRef {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
}

pub(crate) fn users(d: &Directory, offset: usize, limit: usize) -> Vec<TruthUser> {
    (0..d.users.len())
        .filter(|&i| d.users[i].deleted.is_none())
        .skip(offset)
        .take(limit)
        .map(|i| {
            let u = &d.users[i];
            TruthUser {
                id: u.id,
                user_principal_name: u.upn.to_string(),
                display_name: u.display_name.to_string(),
                account_enabled: u.account_enabled,
                user_type: if u.guest { "Guest" } else { "Member" }.to_string(),
                on_premises_sync_enabled: u.on_prem.is_some(),
                usage_location: u.usage_location.map(str::to_string),
                licenses: d
                    .assigned_skus(i)
                    .iter()
                    .map(|s| d.skus[*s as usize].sku_id)
                    .collect(),
                manager_id: d.live_manager(i).map(|m| d.users[m as usize].id),
            }
        })
        .collect()
}

pub(crate) fn groups(d: &Directory, offset: usize, limit: usize) -> Vec<TruthGroup> {
    d.groups
        .iter()
        .filter(|g| g.deleted.is_none())
        .skip(offset)
        .take(limit)
        .map(|g| TruthGroup {
            id: g.id,
            display_name: g.display_name.to_string(),
            kind: g.kind,
            members: g.members.iter().filter(|m| !d.is_deleted(**m)).count(),
            owners: g.owners.len(),
        })
        .collect()
}

pub(crate) fn refs(d: &Directory, list: &[ObjRef]) -> Vec<TruthRef> {
    list.iter()
        .filter(|m| !d.is_deleted(**m))
        .map(|m| TruthRef {
            id: d.obj_id(*m),
            kind: m.kind().name().to_string(),
        })
        .collect()
}

/// An out-of-band change to the directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    CreateUser {
        display_name: String,
        #[serde(default)]
        user_principal_name: Option<String>,
        #[serde(default)]
        account_enabled: Option<bool>,
        #[serde(default)]
        usage_location: Option<String>,
    },
    UpdateUser {
        id: Uuid,
        #[serde(default)]
        display_name: Option<String>,
        #[serde(default)]
        job_title: Option<String>,
        #[serde(default)]
        account_enabled: Option<bool>,
    },
    DeleteUser {
        id: Uuid,
    },
    /// Records a sign-in now (updates `signInActivity`).
    RecordSignIn {
        id: Uuid,
    },
    CreateGroup {
        display_name: String,
        kind: GroupKind,
    },
    DeleteGroup {
        id: Uuid,
    },
    AddMember {
        group_id: Uuid,
        member_id: Uuid,
    },
    RemoveMember {
        group_id: Uuid,
        member_id: Uuid,
    },
    AddOwner {
        group_id: Uuid,
        owner_id: Uuid,
    },
    RemoveOwner {
        group_id: Uuid,
        owner_id: Uuid,
    },
    AssignAppRole {
        service_principal_id: Uuid,
        principal_id: Uuid,
        #[serde(default)]
        app_role_id: Option<Uuid>,
    },
    RemoveAppRoleAssignment {
        service_principal_id: Uuid,
        assignment_id: String,
    },
    AssignDirectoryRole {
        role_definition_id: Uuid,
        principal_id: Uuid,
    },
    RemoveDirectoryRole {
        role_definition_id: Uuid,
        principal_id: Uuid,
    },
    AddEligibility {
        role_definition_id: Uuid,
        principal_id: Uuid,
    },
    RemoveEligibility {
        role_definition_id: Uuid,
        principal_id: Uuid,
    },
    SetLicenses {
        user_id: Uuid,
        #[serde(default)]
        add: Vec<Uuid>,
        #[serde(default)]
        remove: Vec<Uuid>,
    },
    /// Sets a user's manager (`None` removes it).
    SetManager {
        user_id: Uuid,
        #[serde(default)]
        manager_id: Option<Uuid>,
    },
}

/// What an applied change produced (the id of a created object or assignment).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ChangeOutcome {
    pub id: Option<String>,
}

fn nf(what: &str, id: impl std::fmt::Display) -> SimError {
    SimError::NotFound(format!("{what} {id}"))
}

pub(crate) fn delete_user_inner(d: &mut Directory, ui: usize) {
    let reports: Vec<usize> = (0..d.users.len())
        .filter(|&j| d.users[j].deleted.is_none() && d.live_manager(j) == Some(ui as u32))
        .collect();
    d.users[ui].deleted = Some(now());
    d.touch_user(ui);
    // Their manager is gone: delta shows it removed.
    for j in reports {
        d.log_manager_change(j, Some(ui as u32));
    }
    let me = ObjRef::user(ui);
    for g in 0..d.groups.len() {
        if d.groups[g].members.binary_search(&me).is_ok() {
            d.remove_member(g, me);
        }
        if let Ok(p) = d.groups[g].owners.binary_search(&me) {
            d.groups[g].owners.remove(p);
        }
    }
    let key = d.users[ui].upn.to_ascii_lowercase();
    d.upns.remove(&key);
}

fn user_ix(d: &Directory, id: Uuid) -> Result<usize, SimError> {
    d.find_user(&id.to_string()).ok_or_else(|| nf("user", id))
}

fn group_ix(d: &Directory, id: Uuid) -> Result<usize, SimError> {
    d.find_group(&id.to_string()).ok_or_else(|| nf("group", id))
}

fn obj(d: &Directory, id: Uuid) -> Result<ObjRef, SimError> {
    d.lookup(&id).ok_or_else(|| nf("object", id))
}

fn role_ix(d: &Directory, id: Uuid) -> Result<usize, SimError> {
    d.roles
        .iter()
        .position(|r| r.id == id)
        .ok_or_else(|| nf("role definition", id))
}

pub(crate) fn apply_change(st: &State, change: Change) -> Result<ChangeOutcome, SimError> {
    let mut d = st.write();
    let d = &mut *d;
    let t = now();
    let mut out = ChangeOutcome::default();
    match change {
        Change::CreateUser {
            display_name,
            user_principal_name,
            account_enabled,
            usage_location,
        } => {
            let nick: String = display_name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            let upn = user_principal_name
                .unwrap_or_else(|| format!("{nick}{}@{}", d.users.len(), d.domain));
            if d.upns.contains_key(&upn.to_ascii_lowercase()) {
                return Err(SimError::InvalidChange(format!(
                    "userPrincipalName {upn} already exists"
                )));
            }
            let id = d.new_id();
            let i = d.users.len();
            let seq = d.next_seq();
            let loc = usage_location.and_then(|l| {
                ["US", "GB", "IE", "SG", "DE", "FR", "NL"]
                    .into_iter()
                    .find(|c| c.eq_ignore_ascii_case(&l))
            });
            d.users.push(User {
                id,
                display_name: display_name.clone().into_boxed_str(),
                given_name: display_name.split_whitespace().next().map(Into::into),
                surname: display_name.split_whitespace().nth(1).map(Into::into),
                upn: upn.clone().into_boxed_str(),
                mail: Some(upn.clone().into_boxed_str()),
                mail_nickname: nick.into_boxed_str(),
                job_title: None,
                department: None,
                office_location: None,
                mobile_phone: None,
                business_phone: None,
                preferred_language: None,
                company_name: None,
                employee_id: None,
                usage_location: loc,
                account_enabled: account_enabled.unwrap_or(true),
                guest: false,
                created: t,
                on_prem: None,
                sign_in: None,
                sessions_valid_from: t,
                manager: None,
                licenses: vec![],
                deleted: None,
                seq,
            });
            d.ids.insert(id, ObjRef::user(i));
            d.upns.insert(upn.to_ascii_lowercase(), i as u32);
            let target = d.target(ObjRef::user(i));
            d.audit("UserManagement", "Add user", "Add", None, vec![target]);
            out.id = Some(id.to_string());
        }
        Change::UpdateUser {
            id,
            display_name,
            job_title,
            account_enabled,
        } => {
            let ui = user_ix(d, id)?;
            let u = &mut d.users[ui];
            if let Some(n) = display_name {
                u.display_name = n.into_boxed_str();
            }
            if let Some(j) = job_title {
                u.job_title = Some(j.into_boxed_str());
            }
            if let Some(e) = account_enabled {
                u.account_enabled = e;
            }
            d.touch_user(ui);
            let target = d.target(ObjRef::user(ui));
            d.audit(
                "UserManagement",
                "Update user",
                "Update",
                None,
                vec![target],
            );
        }
        Change::DeleteUser { id } => {
            let ui = user_ix(d, id)?;
            let target = d.target(ObjRef::user(ui));
            delete_user_inner(d, ui);
            d.audit(
                "UserManagement",
                "Delete user",
                "Delete",
                None,
                vec![target],
            );
        }
        Change::RecordSignIn { id } => {
            let ui = user_ix(d, id)?;
            d.users[ui].sign_in = Some(SignIn {
                last: t,
                last_non_interactive: t,
                last_successful: t,
            });
        }
        Change::CreateGroup { display_name, kind } => {
            let id = d.new_id();
            let i = d.groups.len();
            let seq = d.next_seq();
            let nick: String = display_name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            let sid = format!(
                "S-1-12-1-{}-{}",
                d.rng.below(4_000_000_000),
                d.rng.below(4_000_000_000)
            );
            d.groups.push(Group {
                id,
                kind,
                display_name: display_name.into_boxed_str(),
                description: None,
                mail_nickname: nick.into_boxed_str(),
                membership_rule: kind
                    .dynamic()
                    .then(|| "(user.accountEnabled -eq true)".into()),
                visibility: kind.unified().then_some("Private"),
                created: t,
                on_prem_sid: (kind == GroupKind::OnPremisesSecurity).then(|| {
                    format!("S-1-5-21-1004336348-1177238915-682003330-{}", 90_000 + i)
                        .into_boxed_str()
                }),
                security_identifier: sid.into_boxed_str(),
                licenses: vec![],
                members: vec![],
                owners: vec![],
                deleted: None,
                seq,
            });
            d.ids.insert(id, ObjRef::group(i));
            let target = d.target(ObjRef::group(i));
            d.audit("GroupManagement", "Add group", "Add", None, vec![target]);
            out.id = Some(id.to_string());
        }
        Change::DeleteGroup { id } => {
            let gi = group_ix(d, id)?;
            d.groups[gi].deleted = Some(t);
            d.touch_group(gi);
            d.license_groups.retain(|g| *g as usize != gi);
            let me = ObjRef::group(gi);
            for g in 0..d.groups.len() {
                if d.groups[g].members.binary_search(&me).is_ok() {
                    d.remove_member(g, me);
                }
            }
            let target = d.target(me);
            d.audit(
                "GroupManagement",
                "Delete group",
                "Delete",
                None,
                vec![target],
            );
        }
        Change::AddMember {
            group_id,
            member_id,
        } => {
            let gi = group_ix(d, group_id)?;
            let m = obj(d, member_id)?;
            if !d.add_member(gi, m) {
                return Err(SimError::InvalidChange(format!(
                    "{member_id} is already a member of {group_id}"
                )));
            }
            let targets = vec![d.target(m), d.target(ObjRef::group(gi))];
            d.audit(
                "GroupManagement",
                "Add member to group",
                "Assign",
                None,
                targets,
            );
        }
        Change::RemoveMember {
            group_id,
            member_id,
        } => {
            let gi = group_ix(d, group_id)?;
            let m = obj(d, member_id)?;
            if !d.remove_member(gi, m) {
                return Err(SimError::InvalidChange(format!(
                    "{member_id} is not a member of {group_id}"
                )));
            }
            let targets = vec![d.target(m), d.target(ObjRef::group(gi))];
            d.audit(
                "GroupManagement",
                "Remove member from group",
                "Unassign",
                None,
                targets,
            );
        }
        Change::AddOwner { group_id, owner_id } => {
            let gi = group_ix(d, group_id)?;
            let m = obj(d, owner_id)?;
            match d.groups[gi].owners.binary_search(&m) {
                Ok(_) => {
                    return Err(SimError::InvalidChange(format!(
                        "{owner_id} already owns {group_id}"
                    )));
                }
                Err(p) => d.groups[gi].owners.insert(p, m),
            }
            d.touch_group(gi);
            let targets = vec![d.target(m), d.target(ObjRef::group(gi))];
            d.audit(
                "GroupManagement",
                "Add owner to group",
                "Assign",
                None,
                targets,
            );
        }
        Change::RemoveOwner { group_id, owner_id } => {
            let gi = group_ix(d, group_id)?;
            let m = obj(d, owner_id)?;
            let p = d.groups[gi].owners.binary_search(&m).map_err(|_| {
                SimError::InvalidChange(format!("{owner_id} does not own {group_id}"))
            })?;
            d.groups[gi].owners.remove(p);
            d.touch_group(gi);
            let targets = vec![d.target(m), d.target(ObjRef::group(gi))];
            d.audit(
                "GroupManagement",
                "Remove owner from group",
                "Unassign",
                None,
                targets,
            );
        }
        Change::AssignAppRole {
            service_principal_id,
            principal_id,
            app_role_id,
        } => {
            let si = d
                .find_sp(&service_principal_id.to_string())
                .ok_or_else(|| nf("service principal", service_principal_id))?;
            let p = obj(d, principal_id)?;
            let role = app_role_id.unwrap_or_else(Uuid::nil);
            let id = app_role_assignment_id(&principal_id, &mut d.rng);
            d.sps[si].assigned_to.push(AppRoleAssignment {
                id: id.clone(),
                app_role_id: role,
                principal: p,
                created: t,
            });
            let targets = vec![d.target(p), d.target(ObjRef::sp(si))];
            d.audit(
                "ApplicationManagement",
                "Add app role assignment grant to user",
                "Assign",
                None,
                targets,
            );
            out.id = Some(id);
        }
        Change::RemoveAppRoleAssignment {
            service_principal_id,
            assignment_id,
        } => {
            let si = d
                .find_sp(&service_principal_id.to_string())
                .ok_or_else(|| nf("service principal", service_principal_id))?;
            let pos = d.sps[si]
                .assigned_to
                .iter()
                .position(|a| a.id == assignment_id)
                .ok_or_else(|| nf("app role assignment", &assignment_id))?;
            let a = d.sps[si].assigned_to.remove(pos);
            let targets = vec![d.target(a.principal), d.target(ObjRef::sp(si))];
            d.audit(
                "ApplicationManagement",
                "Remove app role assignment from user",
                "Unassign",
                None,
                targets,
            );
        }
        Change::AssignDirectoryRole {
            role_definition_id,
            principal_id,
        } => {
            let ri = role_ix(d, role_definition_id)?;
            let p = obj(d, principal_id)?;
            let id = role_assignment_id(&role_definition_id, &principal_id);
            d.role_assignments.retain(|a| a.id != id);
            d.role_assignments.push(RoleAssignment {
                id: id.clone(),
                role: ri as u16,
                principal: p,
                created: t,
                end: None,
                via_pim: false,
            });
            let targets = vec![d.target(p)];
            let act = format!("Add member to role ({})", d.roles[ri].display_name);
            d.audit("RoleManagement", &act, "Assign", None, targets);
            out.id = Some(id);
        }
        Change::RemoveDirectoryRole {
            role_definition_id,
            principal_id,
        } => {
            let ri = role_ix(d, role_definition_id)?;
            let p = obj(d, principal_id)?;
            let before = d.role_assignments.len();
            d.role_assignments
                .retain(|a| !(a.role as usize == ri && a.principal == p));
            if before == d.role_assignments.len() {
                return Err(SimError::InvalidChange("no such role assignment".into()));
            }
            let targets = vec![d.target(p)];
            let act = format!("Remove member from role ({})", d.roles[ri].display_name);
            d.audit("RoleManagement", &act, "Unassign", None, targets);
        }
        Change::AddEligibility {
            role_definition_id,
            principal_id,
        } => {
            let ri = role_ix(d, role_definition_id)?;
            let p = obj(d, principal_id)?;
            let id = role_assignment_id(&role_definition_id, &principal_id).replace("-1", "-1-e");
            d.eligibilities.retain(|e| e.id != id);
            d.eligibilities.push(Eligibility {
                id: id.clone(),
                role: ri as u16,
                principal: p,
                created: t,
                start: t,
                end: None,
            });
            let targets = vec![d.target(p)];
            let act = format!(
                "Add eligible member to role in PIM completed ({})",
                d.roles[ri].display_name
            );
            d.audit("RoleManagement", &act, "Assign", None, targets);
            out.id = Some(id);
        }
        Change::RemoveEligibility {
            role_definition_id,
            principal_id,
        } => {
            let ri = role_ix(d, role_definition_id)?;
            let p = obj(d, principal_id)?;
            let before = d.eligibilities.len();
            d.eligibilities
                .retain(|e| !(e.role as usize == ri && e.principal == p));
            if before == d.eligibilities.len() {
                return Err(SimError::InvalidChange("no such eligibility".into()));
            }
            let targets = vec![d.target(p)];
            let act = format!(
                "Remove eligible member from role in PIM completed ({})",
                d.roles[ri].display_name
            );
            d.audit("RoleManagement", &act, "Unassign", None, targets);
        }
        Change::SetLicenses {
            user_id,
            add,
            remove,
        } => {
            let ui = user_ix(d, user_id)?;
            let idx = |d: &Directory, s: &Uuid| {
                d.skus
                    .iter()
                    .position(|k| k.sku_id == *s)
                    .map(|p| p as u16)
                    .ok_or_else(|| nf("sku", s))
            };
            let add: Vec<u16> = add.iter().map(|s| idx(d, s)).collect::<Result<_, _>>()?;
            let remove: Vec<u16> = remove.iter().map(|s| idx(d, s)).collect::<Result<_, _>>()?;
            let u = &mut d.users[ui];
            u.licenses.retain(|s| !remove.contains(s));
            for s in add {
                if !u.licenses.contains(&s) {
                    u.licenses.push(s);
                }
            }
            d.touch_user(ui);
            let target = d.target(ObjRef::user(ui));
            d.audit(
                "UserManagement",
                "Change user license",
                "Update",
                None,
                vec![target],
            );
        }
        Change::SetManager {
            user_id,
            manager_id,
        } => {
            let ui = user_ix(d, user_id)?;
            let mi = manager_id.map(|m| user_ix(d, m)).transpose()?;
            if mi == Some(ui) {
                return Err(SimError::InvalidChange(
                    "a user cannot be their own manager".into(),
                ));
            }
            d.set_manager(ui, mi.map(|m| m as u32));
            let target = d.target(ObjRef::user(ui));
            let activity = if mi.is_some() {
                "Set manager"
            } else {
                "Remove manager"
            };
            d.audit("UserManagement", activity, "Update", None, vec![target]);
        }
    }
    Ok(out)
}

/// The time, formatted like Graph, for callers outside the crate.
pub fn now_iso() -> String {
    fmt_ts(now())
}
