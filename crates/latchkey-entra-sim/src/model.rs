//! The in-memory directory: compact object tables indexed by `u32`, with change sequence numbers for delta.

use std::collections::HashMap;

use uuid::Uuid;

use crate::rng::Rng;

/// A directory object reference packed in 32 bits: kind in the top two bits, table index below.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub(crate) struct ObjRef(u32);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ObjKind {
    User,
    Group,
    ServicePrincipal,
}

impl ObjRef {
    const SHIFT: u32 = 30;
    const MASK: u32 = (1 << Self::SHIFT) - 1;
    pub(crate) fn user(i: usize) -> Self {
        ObjRef(i as u32)
    }
    pub(crate) fn group(i: usize) -> Self {
        ObjRef((1 << Self::SHIFT) | i as u32)
    }
    pub(crate) fn sp(i: usize) -> Self {
        ObjRef((2 << Self::SHIFT) | i as u32)
    }
    pub(crate) fn kind(self) -> ObjKind {
        match self.0 >> Self::SHIFT {
            0 => ObjKind::User,
            1 => ObjKind::Group,
            _ => ObjKind::ServicePrincipal,
        }
    }
    pub(crate) fn idx(self) -> usize {
        (self.0 & Self::MASK) as usize
    }
    pub(crate) fn raw(self) -> u32 {
        self.0
    }
}

impl ObjKind {
    pub(crate) fn odata_type(self) -> &'static str {
        match self {
            ObjKind::User => "#microsoft.graph.user",
            ObjKind::Group => "#microsoft.graph.group",
            ObjKind::ServicePrincipal => "#microsoft.graph.servicePrincipal",
        }
    }
    pub(crate) fn name(self) -> &'static str {
        match self {
            ObjKind::User => "User",
            ObjKind::Group => "Group",
            ObjKind::ServicePrincipal => "ServicePrincipal",
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SignIn {
    pub last: i64,
    pub last_non_interactive: i64,
    pub last_successful: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: Uuid,
    pub display_name: Box<str>,
    pub given_name: Option<Box<str>>,
    pub surname: Option<Box<str>>,
    pub upn: Box<str>,
    pub mail: Option<Box<str>>,
    pub mail_nickname: Box<str>,
    pub job_title: Option<Box<str>>,
    pub department: Option<Box<str>>,
    pub office_location: Option<Box<str>>,
    pub mobile_phone: Option<Box<str>>,
    pub business_phone: Option<Box<str>>,
    pub preferred_language: Option<&'static str>,
    pub company_name: Option<&'static str>,
    pub employee_id: Option<Box<str>>,
    pub usage_location: Option<&'static str>,
    pub account_enabled: bool,
    pub guest: bool,
    pub created: i64,
    pub on_prem: Option<OnPrem>,
    pub sign_in: Option<SignIn>,
    pub sessions_valid_from: i64,
    pub manager: Option<u32>,
    /// Directly assigned SKUs (indexes into `Directory::skus`).
    pub licenses: Vec<u16>,
    pub deleted: Option<i64>,
    pub seq: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct OnPrem {
    pub immutable_id: Box<str>,
    pub sam_account_name: Box<str>,
    pub sid: Box<str>,
    pub last_sync: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    Security,
    Microsoft365,
    MailEnabledSecurity,
    Distribution,
    DynamicSecurity,
    DynamicMicrosoft365,
    OnPremisesSecurity,
    RoleAssignable,
}

impl GroupKind {
    pub const ALL: [GroupKind; 8] = [
        GroupKind::Security,
        GroupKind::Microsoft365,
        GroupKind::MailEnabledSecurity,
        GroupKind::Distribution,
        GroupKind::DynamicSecurity,
        GroupKind::DynamicMicrosoft365,
        GroupKind::OnPremisesSecurity,
        GroupKind::RoleAssignable,
    ];
    pub(crate) fn unified(self) -> bool {
        matches!(
            self,
            GroupKind::Microsoft365 | GroupKind::DynamicMicrosoft365
        )
    }
    pub(crate) fn dynamic(self) -> bool {
        matches!(
            self,
            GroupKind::DynamicSecurity | GroupKind::DynamicMicrosoft365
        )
    }
    pub(crate) fn mail_enabled(self) -> bool {
        matches!(
            self,
            GroupKind::Microsoft365
                | GroupKind::DynamicMicrosoft365
                | GroupKind::MailEnabledSecurity
                | GroupKind::Distribution
        )
    }
    pub(crate) fn security_enabled(self) -> bool {
        !matches!(self, GroupKind::Distribution)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub id: Uuid,
    pub kind: GroupKind,
    pub display_name: Box<str>,
    pub description: Option<Box<str>>,
    pub mail_nickname: Box<str>,
    pub membership_rule: Option<Box<str>>,
    pub visibility: Option<&'static str>,
    pub created: i64,
    pub on_prem_sid: Option<Box<str>>,
    pub security_identifier: Box<str>,
    /// Group-based licensing: members inherit these SKUs.
    pub licenses: Vec<u16>,
    /// Sorted, so paging can resume after the last id seen even while members change.
    pub members: Vec<ObjRef>,
    pub owners: Vec<ObjRef>,
    pub deleted: Option<i64>,
    pub seq: u64,
}

impl Group {
    pub(crate) fn on_prem(&self) -> bool {
        self.kind == GroupKind::OnPremisesSecurity
    }
    pub(crate) fn mail(&self, domain: &str) -> Option<String> {
        self.kind
            .mail_enabled()
            .then(|| format!("{}@{}", self.mail_nickname, domain))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpType {
    Application,
    ManagedIdentity,
}

#[derive(Debug, Clone)]
pub(crate) struct AppRole {
    pub id: Uuid,
    pub display_name: String,
    pub value: String,
    pub description: String,
    pub allowed_member_types: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub(crate) struct AppRoleAssignment {
    pub id: String,
    pub app_role_id: Uuid,
    pub principal: ObjRef,
    pub created: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct SyncJob {
    pub id: String,
    pub template_id: &'static str,
    pub state: &'static str,
    pub rule_id: String,
    pub last_started: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServicePrincipal {
    pub id: Uuid,
    pub app_id: Uuid,
    pub display_name: String,
    pub sp_type: SpType,
    pub owner_org: Option<Uuid>,
    pub account_enabled: bool,
    pub app_roles: Vec<AppRole>,
    pub tags: Vec<String>,
    pub names: Vec<String>,
    pub alternative_names: Vec<String>,
    pub homepage: Option<String>,
    pub description: Option<String>,
    pub assignment_required: bool,
    pub first_party: bool,
    /// `preferredSingleSignOnMode` (`saml`, `password`, ...): `None` for apps without single
    /// sign-on (some only provision users, through their synchronization jobs).
    pub sso_mode: Option<&'static str>,
    pub owners: Vec<ObjRef>,
    pub assigned_to: Vec<AppRoleAssignment>,
    pub sync_jobs: Vec<SyncJob>,
    pub created: i64,
    pub deleted: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct RoleDef {
    pub id: Uuid,
    pub display_name: &'static str,
    pub description: &'static str,
    pub privileged: bool,
    /// The activated `directoryRoles` object id (differs from the template id, as in Graph).
    pub directory_role_id: Uuid,
}

#[derive(Debug, Clone)]
pub(crate) struct RoleAssignment {
    pub id: String,
    pub role: u16,
    pub principal: ObjRef,
    pub created: i64,
    /// Set for PIM time-bound assignments.
    pub end: Option<i64>,
    pub via_pim: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Eligibility {
    pub id: String,
    pub role: u16,
    pub principal: ObjRef,
    pub created: i64,
    pub start: i64,
    pub end: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct ScheduleRequest {
    pub id: Uuid,
    pub action: String,
    pub role: u16,
    pub principal: ObjRef,
    pub justification: Option<String>,
    pub created: i64,
    pub start: i64,
    pub end: Option<i64>,
    pub expiration_type: String,
    pub duration: Option<String>,
    pub status: &'static str,
    pub target_schedule_id: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Sku {
    pub sku_id: Uuid,
    pub part_number: &'static str,
    pub enabled: u32,
    pub plans: Vec<(Uuid, &'static str)>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct AuditRecord {
    pub id: String,
    pub category: &'static str,
    pub activity: String,
    pub operation_type: &'static str,
    pub time: i64,
    pub result: &'static str,
    /// `(appId, displayName, servicePrincipalId)` when an app did it; otherwise the admin user.
    pub app: Option<(Uuid, String, Uuid)>,
    pub targets: Vec<AuditTarget>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct AuditTarget {
    pub id: Uuid,
    pub display_name: String,
    pub kind: &'static str,
    pub upn: Option<String>,
    pub modified: Vec<(String, String, String)>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct MemberChange {
    pub seq: u64,
    pub group: u32,
    pub member: ObjRef,
    pub added: bool,
}

/// A user's manager changed (set, replaced, removed, or the manager was deleted), for delta:
/// `previous` is the manager before this change.
#[derive(Debug, Clone)]
pub(crate) struct ManagerChange {
    pub seq: u64,
    pub user: u32,
    pub previous: Option<u32>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProvisionOnDemandCall {
    pub service_principal_id: Uuid,
    pub job_id: String,
    pub rule_id: String,
    pub subjects: Vec<(String, String)>,
    pub time: String,
}

pub(crate) struct Directory {
    pub tenant_id: Uuid,
    pub org_name: String,
    pub initial_domain: String,
    pub domain: String,
    pub created: i64,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub sps: Vec<ServicePrincipal>,
    pub ids: HashMap<Uuid, ObjRef>,
    pub upns: HashMap<String, u32>,
    pub app_ids: HashMap<Uuid, u32>,
    pub roles: Vec<RoleDef>,
    pub role_assignments: Vec<RoleAssignment>,
    pub eligibilities: Vec<Eligibility>,
    pub assignment_requests: Vec<ScheduleRequest>,
    pub eligibility_requests: Vec<ScheduleRequest>,
    pub skus: Vec<Sku>,
    pub audit: Vec<AuditRecord>,
    pub member_log: Vec<MemberChange>,
    pub manager_log: Vec<ManagerChange>,
    pub provision_calls: Vec<ProvisionOnDemandCall>,
    /// Groups that hand licences to their members (kept short, so inheritance is cheap to compute).
    pub license_groups: Vec<u32>,
    pub seq: u64,
    pub rng: Rng,
    /// The tenant's password policy: at least this many characters (Entra's default is 8; a
    /// test raises it to see Graph refuse a password as not complex enough).
    pub password_min_length: usize,
    /// SHA-256 of the password each account created through Graph was given, by object id
    /// (tests check that the password Latchkey kept is the one the tenant has).
    pub passwords: std::collections::HashMap<Uuid, [u8; 32]>,
}

pub(crate) const MICROSOFT_TENANT: Uuid = Uuid::from_u128(0xf8cdef31_a31e_4b4a_93e4_5f571e91255a);

impl Directory {
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(crate) fn user(&self, i: usize) -> &User {
        &self.users[i]
    }

    pub(crate) fn lookup(&self, id: &Uuid) -> Option<ObjRef> {
        let r = *self.ids.get(id)?;
        (!self.is_deleted(r)).then_some(r)
    }

    pub(crate) fn is_deleted(&self, r: ObjRef) -> bool {
        match r.kind() {
            ObjKind::User => self.users[r.idx()].deleted.is_some(),
            ObjKind::Group => self.groups[r.idx()].deleted.is_some(),
            ObjKind::ServicePrincipal => self.sps[r.idx()].deleted.is_some(),
        }
    }

    /// A user by GUID or by userPrincipalName, as `/users/{id | userPrincipalName}` accepts.
    pub(crate) fn find_user(&self, key: &str) -> Option<usize> {
        if let Ok(id) = Uuid::parse_str(key) {
            return match self.lookup(&id) {
                Some(r) if r.kind() == ObjKind::User => Some(r.idx()),
                _ => None,
            };
        }
        let i = *self.upns.get(&key.to_ascii_lowercase())? as usize;
        self.users[i].deleted.is_none().then_some(i)
    }

    pub(crate) fn find_group(&self, key: &str) -> Option<usize> {
        let id = Uuid::parse_str(key).ok()?;
        match self.lookup(&id) {
            Some(r) if r.kind() == ObjKind::Group => Some(r.idx()),
            _ => None,
        }
    }

    /// A service principal by object id, or `(appId='...')` addressing.
    pub(crate) fn find_sp(&self, key: &str) -> Option<usize> {
        if let Some(app) = key
            .strip_prefix("(appId='")
            .and_then(|k| k.strip_suffix("')"))
        {
            let app = Uuid::parse_str(app).ok()?;
            let i = *self.app_ids.get(&app)? as usize;
            return self.sps[i].deleted.is_none().then_some(i);
        }
        let id = Uuid::parse_str(key).ok()?;
        match self.lookup(&id) {
            Some(r) if r.kind() == ObjKind::ServicePrincipal => Some(r.idx()),
            _ => None,
        }
    }

    pub(crate) fn find_role(&self, key: &str) -> Option<usize> {
        let id = Uuid::parse_str(key).ok()?;
        self.roles.iter().position(|r| r.id == id)
    }

    pub(crate) fn obj_id(&self, r: ObjRef) -> Uuid {
        match r.kind() {
            ObjKind::User => self.users[r.idx()].id,
            ObjKind::Group => self.groups[r.idx()].id,
            ObjKind::ServicePrincipal => self.sps[r.idx()].id,
        }
    }

    pub(crate) fn obj_name(&self, r: ObjRef) -> String {
        match r.kind() {
            ObjKind::User => self.users[r.idx()].display_name.to_string(),
            ObjKind::Group => self.groups[r.idx()].display_name.to_string(),
            ObjKind::ServicePrincipal => self.sps[r.idx()].display_name.clone(),
        }
    }

    /// SKUs a user holds: `(sku index, Some(group index) when inherited)`; direct first.
    pub(crate) fn license_states(&self, ui: usize) -> Vec<(u16, Option<u32>)> {
        let u = &self.users[ui];
        let mut out: Vec<(u16, Option<u32>)> = u.licenses.iter().map(|&s| (s, None)).collect();
        let me = ObjRef::user(ui);
        for &g in &self.license_groups {
            let grp = &self.groups[g as usize];
            if grp.deleted.is_none() && grp.members.binary_search(&me).is_ok() {
                for &s in &grp.licenses {
                    out.push((s, Some(g)));
                }
            }
        }
        out
    }

    /// Calls `f(sku, inherited_from)` for each licence state without allocating; direct first.
    pub(crate) fn for_each_license(&self, ui: usize, mut f: impl FnMut(u16, Option<u32>)) {
        for &s in &self.users[ui].licenses {
            f(s, None);
        }
        let me = ObjRef::user(ui);
        for &g in &self.license_groups {
            let grp = &self.groups[g as usize];
            if grp.deleted.is_none() && grp.members.binary_search(&me).is_ok() {
                for &s in &grp.licenses {
                    f(s, Some(g));
                }
            }
        }
    }

    /// Distinct SKUs in `assignedLicenses`.
    pub(crate) fn assigned_skus(&self, ui: usize) -> Vec<u16> {
        let mut skus: Vec<u16> = self
            .license_states(ui)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let mut seen = Vec::with_capacity(skus.len());
        skus.retain(|s| {
            if seen.contains(s) {
                false
            } else {
                seen.push(*s);
                true
            }
        });
        skus
    }

    pub(crate) fn consumed_units(&self, sku: u16) -> u32 {
        (0..self.users.len())
            .filter(|&i| self.users[i].deleted.is_none())
            .filter(|&i| {
                self.users[i].licenses.contains(&sku)
                    || self.license_groups.iter().any(|&g| {
                        let grp = &self.groups[g as usize];
                        grp.licenses.contains(&sku)
                            && grp.members.binary_search(&ObjRef::user(i)).is_ok()
                    })
            })
            .count() as u32
    }

    /// Adds a member and records the change for delta; the caller has checked it is allowed.
    pub(crate) fn add_member(&mut self, g: usize, m: ObjRef) -> bool {
        match self.groups[g].members.binary_search(&m) {
            Ok(_) => false,
            Err(pos) => {
                self.groups[g].members.insert(pos, m);
                let seq = self.next_seq();
                self.groups[g].seq = seq;
                self.member_log.push(MemberChange {
                    seq,
                    group: g as u32,
                    member: m,
                    added: true,
                });
                true
            }
        }
    }

    pub(crate) fn remove_member(&mut self, g: usize, m: ObjRef) -> bool {
        match self.groups[g].members.binary_search(&m) {
            Err(_) => false,
            Ok(pos) => {
                self.groups[g].members.remove(pos);
                let seq = self.next_seq();
                self.groups[g].seq = seq;
                self.member_log.push(MemberChange {
                    seq,
                    group: g as u32,
                    member: m,
                    added: false,
                });
                true
            }
        }
    }

    /// The user's manager if it is a live user.
    pub(crate) fn live_manager(&self, i: usize) -> Option<u32> {
        self.users[i]
            .manager
            .filter(|&m| self.users[m as usize].deleted.is_none())
    }

    /// Records that user `i`'s manager (as delta shows it) changed from `previous`; the user
    /// shows up in the next delta round with `manager@delta`.
    pub(crate) fn log_manager_change(&mut self, i: usize, previous: Option<u32>) {
        self.touch_user(i);
        let seq = self.users[i].seq;
        self.manager_log.push(ManagerChange {
            seq,
            user: i as u32,
            previous,
        });
    }

    /// Sets (or with `None` removes) user `i`'s manager.
    pub(crate) fn set_manager(&mut self, i: usize, manager: Option<u32>) {
        let previous = self.live_manager(i);
        self.users[i].manager = manager;
        self.log_manager_change(i, previous);
    }

    pub(crate) fn touch_user(&mut self, i: usize) {
        let seq = self.next_seq();
        self.users[i].seq = seq;
    }

    pub(crate) fn touch_group(&mut self, i: usize) {
        let seq = self.next_seq();
        self.groups[i].seq = seq;
    }

    pub(crate) fn new_id(&mut self) -> Uuid {
        self.rng.uuid()
    }

    /// Active role assignments, dropping PIM ones whose end has passed.
    pub(crate) fn active_assignments(&self, now: i64) -> impl Iterator<Item = &RoleAssignment> {
        self.role_assignments
            .iter()
            .filter(move |a| a.end.is_none_or(|e| e > now) && !self.is_deleted(a.principal))
    }

    pub(crate) fn active_eligibilities(&self, now: i64) -> impl Iterator<Item = &Eligibility> {
        self.eligibilities
            .iter()
            .filter(move |e| e.end.is_none_or(|end| end > now) && !self.is_deleted(e.principal))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn audit(
        &mut self,
        category: &'static str,
        activity: &str,
        operation_type: &'static str,
        app: Option<(Uuid, String, Uuid)>,
        targets: Vec<AuditTarget>,
    ) {
        let id = format!("Directory_{}", self.rng.uuid().simple());
        self.audit.push(AuditRecord {
            id,
            category,
            activity: activity.to_string(),
            operation_type,
            time: crate::json::now(),
            result: "success",
            app,
            targets,
        });
    }

    pub(crate) fn target(&self, r: ObjRef) -> AuditTarget {
        AuditTarget {
            id: self.obj_id(r),
            display_name: self.obj_name(r),
            kind: r.kind().name(),
            upn: (r.kind() == ObjKind::User).then(|| self.users[r.idx()].upn.to_string()),
            modified: Vec::new(),
        }
    }
}

/// Role assignment ids as Graph builds them for directory scope `/`: base64url(role id) + base64url(principal id) + `-1`.
pub(crate) fn role_assignment_id(role: &Uuid, principal: &Uuid) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}{}-1",
        e.encode(role.to_bytes_le()),
        e.encode(principal.to_bytes_le())
    )
}

/// appRoleAssignment ids: base64url of the principal id bytes followed by 16 more bytes (43 chars).
pub(crate) fn app_role_assignment_id(principal: &Uuid, rng: &mut Rng) -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&principal.to_bytes_le());
    b[16..].copy_from_slice(&rng.bytes::<16>());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objref_packs_kind_and_index() {
        let u = ObjRef::user(5);
        let g = ObjRef::group(5);
        let s = ObjRef::sp(7);
        assert_eq!((u.kind(), u.idx()), (ObjKind::User, 5));
        assert_eq!((g.kind(), g.idx()), (ObjKind::Group, 5));
        assert_eq!((s.kind(), s.idx()), (ObjKind::ServicePrincipal, 7));
        assert!(u < g && g < s);
    }

    #[test]
    fn assignment_ids_have_graph_shape() {
        let p = Uuid::from_u128(1);
        let id = app_role_assignment_id(&p, &mut Rng::new(1));
        assert_eq!(id.len(), 43);
        let r = role_assignment_id(&Uuid::from_u128(2), &p);
        assert!(r.ends_with("-1"));
    }
}
