//! What a grant or revoke will do in Graph, or why it is refused — decided from the stored
//! access model alone, before any Graph call.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Grant or revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Grant,
    Revoke,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Grant => "grant",
            Operation::Revoke => "revoke",
        }
    }
}

/// A resource (or principal) as the sync stored it: type, directory object id, name, profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Object {
    /// `user`, `group`, `enterprise_application`, `managed_identity`, `role`, `license`.
    #[serde(rename = "type")]
    pub rtype: String,
    pub external_id: String,
    pub display_name: String,
    #[serde(default)]
    pub profile: Value,
}

impl Object {
    fn flag(&self, field: &str) -> bool {
        self.profile
            .get(field)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
    fn text(&self, field: &str) -> Option<&str> {
        self.profile.get(field).and_then(Value::as_str)
    }
    fn object_id(&self) -> Option<Uuid> {
        Uuid::parse_str(&self.external_id).ok()
    }
}

/// One provisioning request in the access model's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub operation: Operation,
    /// The resource offering the entitlement.
    pub resource: Object,
    /// `members`, `owners`, `assignment:<appRoleId>`, `assigned`, `eligible`.
    pub slug: String,
    pub principal: Object,
    /// For a revoke: the stored grant is inherited (`group:<id>>…`) rather than direct.
    #[serde(default)]
    pub inherited_via: Option<String>,
    /// Current direct holders of the entitlement as stored (owners of a group, for the
    /// last-owner rule).
    #[serde(default)]
    pub current_holders: Option<i64>,
    /// For a revoke: Graph's id of the stored grant (an app role assignment's id), when known.
    #[serde(default)]
    pub grant_external_id: Option<String>,
    /// Whether the tenant has PIM (Entra ID P2), as the last connection test found; `None`
    /// when unknown.
    #[serde(default)]
    pub pim: Option<bool>,
    /// RFC 3339 end of a time-bound grant (directory roles through PIM).
    #[serde(default)]
    pub end: Option<String>,
}

/// Which side of a group a link is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRel {
    Members,
    Owners,
}

impl GroupRel {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupRel::Members => "members",
            GroupRel::Owners => "owners",
        }
    }
}

/// The Graph change a request comes down to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// `POST /groups/{group}/{rel}/$ref`.
    AddGroupLink {
        group: Uuid,
        rel: GroupRel,
        principal: Uuid,
    },
    /// `DELETE /groups/{group}/{rel}/{principal}/$ref`.
    RemoveGroupLink {
        group: Uuid,
        rel: GroupRel,
        principal: Uuid,
    },
    /// `POST /servicePrincipals/{app}/appRoleAssignedTo`.
    AssignAppRole {
        app: Uuid,
        app_role: Uuid,
        principal: Uuid,
        /// The principal is a service principal (app roles allow `Application`), not a user
        /// or group (`User`).
        principal_is_app: bool,
    },
    /// `DELETE /servicePrincipals/{app}/appRoleAssignedTo/{assignment}` (the assignment is
    /// looked up when the stored grant does not know its id).
    RemoveAppRole {
        app: Uuid,
        app_role: Uuid,
        principal: Uuid,
    },
    /// `POST /servicePrincipals/{app}/owners/$ref`.
    AddAppOwner { app: Uuid, principal: Uuid },
    /// `DELETE /servicePrincipals/{app}/owners/{principal}/$ref`.
    RemoveAppOwner { app: Uuid, principal: Uuid },
    /// A directory role, active (`eligible: false`) or eligible: through a PIM schedule request
    /// (`adminAssign`) when the tenant has PIM, else `POST roleManagement/directory/roleAssignments`.
    AssignRole {
        role: Uuid,
        principal: Uuid,
        eligible: bool,
        via_pim: bool,
    },
    /// `adminRemove` through PIM, else `DELETE roleManagement/directory/roleAssignments/{id}`.
    RemoveRole {
        role: Uuid,
        principal: Uuid,
        eligible: bool,
        via_pim: bool,
    },
    /// `POST /users/{user}/assignLicense` adding `sku` (after checking the user's usage
    /// location and the seats left).
    AssignLicense { user: Uuid, sku: Uuid },
    /// `POST /users/{user}/assignLicense` removing `sku` (direct assignment only).
    RemoveLicense { user: Uuid, sku: Uuid },
}

impl Step {
    /// Adds access (as opposed to removing it).
    pub fn is_grant(&self) -> bool {
        matches!(
            self,
            Step::AddGroupLink { .. }
                | Step::AssignAppRole { .. }
                | Step::AddAppOwner { .. }
                | Step::AssignLicense { .. }
                | Step::AssignRole { .. }
        )
    }
}

/// Why Latchkey will not send a change to Graph. Each message says what is wrong and what to
/// do instead; none of these is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "Provisioning is turned off for this connector, so Latchkey does not change access in Entra. Turn on Provisioning in the connector's settings (the app also needs the provisioning permissions)."
    )]
    ProvisioningDisabled,
    #[error(
        "{group} is a {kind}: Microsoft Graph cannot change membership of mail-enabled security groups or distribution lists; manage it in Exchange."
    )]
    ExchangeManaged { group: String, kind: &'static str },
    #[error(
        "{group} has dynamic membership: its members follow its membership rule and cannot be added or removed directly; change the rule in Entra > Groups > {group} > Dynamic membership rules."
    )]
    DynamicGroup { group: String },
    #[error(
        "{group} is synchronised from on-premises Active Directory: its {rel} are managed there, not in Entra; change them in Active Directory and let Entra Connect sync it."
    )]
    OnPremisesGroup { group: String, rel: &'static str },
    #[error("{principal} is a {kind}; {resource} {accepts}.")]
    PrincipalKind {
        principal: String,
        kind: String,
        resource: String,
        accepts: &'static str,
    },
    #[error(
        "{principal} is the last owner of {group}: Entra does not allow removing the last owner, and nobody would be answerable for it. Add another owner first."
    )]
    LastOwner { principal: String, group: String },
    #[error(
        "{principal} holds this access through {via}, not directly: revoke that group membership instead."
    )]
    Inherited { principal: String, via: String },
    #[error(
        "The app role of {app} cannot be assigned to a {kind}: the role allows only {allowed}. Choose another role, or change the role's allowed member types in Entra > App registrations > App roles."
    )]
    AppRoleNotAssignable {
        app: String,
        kind: String,
        allowed: String,
    },
    #[error("The app role {role} no longer exists on {app}; run a sync and choose another role.")]
    AppRoleMissing { app: String, role: String },
    #[error(
        "{user} has no usage location, and Entra assigns licences only to users with one. Set it in Entra > Users > {user} > Properties > Usage location (or in the HR source that feeds it), then ask again."
    )]
    NoUsageLocation { user: String },
    #[error(
        "No {sku} licences are left: all purchased seats are in use. Free a seat or buy more in the Microsoft 365 admin center > Billing > Licenses, then ask again."
    )]
    NoSeats { sku: String },
    #[error(
        "Eligible assignments of {role} need Privileged Identity Management, which needs Microsoft Entra ID P2 (or ID Governance); this tenant does not have it. Ask for an active assignment instead, or license the tenant for P2."
    )]
    NeedsP2 { role: String },
    #[error("A group cannot be a member of itself.")]
    SelfMembership,
    #[error(
        "Latchkey cannot provision '{slug}' of a {rtype} yet: this kind of entitlement is not supported by provisioning."
    )]
    Unsupported { rtype: String, slug: String },
    #[error("The stored object id '{0}' is not a directory object id; run a sync and try again.")]
    BadObjectId(String),
}

fn kind_label(rtype: &str) -> String {
    match rtype {
        "user" => "user".into(),
        "group" => "group".into(),
        "enterprise_application" => "enterprise application (service principal)".into(),
        "managed_identity" => "managed identity".into(),
        "role" => "directory role".into(),
        "license" => "licence".into(),
        other => other.replace('_', " "),
    }
}

/// Decides the Graph change for `req`, or refuses it. Never calls Graph.
pub fn plan(req: &Request, provisioning_enabled: bool) -> Result<Step, Refusal> {
    if !provisioning_enabled {
        return Err(Refusal::ProvisioningDisabled);
    }
    if let Some(via) = req
        .inherited_via
        .as_ref()
        .filter(|v| v.as_str() != "direct")
    {
        return Err(Refusal::Inherited {
            principal: req.principal.display_name.clone(),
            via: via.clone(),
        });
    }
    match (req.resource.rtype.as_str(), req.slug.as_str()) {
        ("group", "members") => group_step(req, GroupRel::Members),
        ("group", "owners") => group_step(req, GroupRel::Owners),
        ("enterprise_application", "owners") => app_owner_step(req),
        ("license", "assigned") => license_step(req),
        ("role", "assigned") => role_step(req, false),
        ("role", "eligible") => role_step(req, true),
        ("enterprise_application", slug) if slug.starts_with("assignment:") => {
            app_role_step(req, &slug["assignment:".len()..])
        }
        (rtype, slug) => Err(Refusal::Unsupported {
            rtype: kind_label(rtype),
            slug: slug.to_string(),
        }),
    }
}

fn group_step(req: &Request, rel: GroupRel) -> Result<Step, Refusal> {
    let g = &req.resource;
    let p = &req.principal;
    let name = g.display_name.clone();
    match g.text("group_type") {
        Some("mail_enabled_security") => {
            return Err(Refusal::ExchangeManaged {
                group: name,
                kind: "mail-enabled security group",
            });
        }
        Some("distribution") => {
            return Err(Refusal::ExchangeManaged {
                group: name,
                kind: "distribution list",
            });
        }
        _ => {}
    }
    if g.flag("on_premises_sync_enabled") {
        return Err(Refusal::OnPremisesGroup {
            group: name,
            rel: rel.as_str(),
        });
    }
    if rel == GroupRel::Members && g.text("membership_type") == Some("dynamic") {
        return Err(Refusal::DynamicGroup { group: name });
    }
    let unified = g.text("group_type") == Some("microsoft_365");
    let role_assignable = g.flag("is_assignable_to_role");
    let accepts: Option<&'static str> = match (rel, p.rtype.as_str()) {
        (_, "role" | "license") => Some(if rel == GroupRel::Members {
            "accepts users, groups and service principals as members"
        } else {
            "accepts users and service principals as owners"
        }),
        (GroupRel::Members, "user") => None,
        (GroupRel::Members, "group") if unified => {
            Some("is a Microsoft 365 group, which accepts only users as members")
        }
        (GroupRel::Members, "group") if role_assignable => {
            Some("is role-assignable, which does not accept groups as members")
        }
        (GroupRel::Members, "group") => None,
        (GroupRel::Members, "enterprise_application" | "managed_identity") if unified => {
            Some("is a Microsoft 365 group, which accepts only users as members")
        }
        (GroupRel::Members, "enterprise_application" | "managed_identity") => None,
        (GroupRel::Owners, "user" | "enterprise_application" | "managed_identity") => None,
        (GroupRel::Owners, "group") => Some("accepts users and service principals as owners"),
        (_, _) => Some("accepts only users, groups and service principals"),
    };
    if let Some(accepts) = accepts {
        return Err(Refusal::PrincipalKind {
            principal: p.display_name.clone(),
            kind: kind_label(&p.rtype),
            resource: name,
            accepts,
        });
    }
    if g.external_id == p.external_id {
        return Err(Refusal::SelfMembership);
    }
    if req.operation == Operation::Revoke
        && rel == GroupRel::Owners
        && req.current_holders.is_some_and(|n| n <= 1)
    {
        return Err(Refusal::LastOwner {
            principal: p.display_name.clone(),
            group: name,
        });
    }
    let group = g
        .object_id()
        .ok_or_else(|| Refusal::BadObjectId(g.external_id.clone()))?;
    let principal = p
        .object_id()
        .ok_or_else(|| Refusal::BadObjectId(p.external_id.clone()))?;
    Ok(match req.operation {
        Operation::Grant => Step::AddGroupLink {
            group,
            rel,
            principal,
        },
        Operation::Revoke => Step::RemoveGroupLink {
            group,
            rel,
            principal,
        },
    })
}

fn ids(req: &Request) -> Result<(Uuid, Uuid), Refusal> {
    let r = req
        .resource
        .object_id()
        .ok_or_else(|| Refusal::BadObjectId(req.resource.external_id.clone()))?;
    let p = req
        .principal
        .object_id()
        .ok_or_else(|| Refusal::BadObjectId(req.principal.external_id.clone()))?;
    Ok((r, p))
}

fn role_step(req: &Request, eligible: bool) -> Result<Step, Refusal> {
    let p = &req.principal;
    let accepts = match p.rtype.as_str() {
        "user" | "enterprise_application" | "managed_identity" => None,
        "group" if p.flag("is_assignable_to_role") => None,
        "group" => Some(
            "can be held only by role-assignable groups (created with 'Microsoft Entra roles can be assigned to the group')",
        ),
        _ => Some("can be held by users, role-assignable groups and service principals"),
    };
    if let Some(accepts) = accepts {
        return Err(Refusal::PrincipalKind {
            principal: p.display_name.clone(),
            kind: kind_label(&p.rtype),
            resource: req.resource.display_name.clone(),
            accepts,
        });
    }
    if eligible && req.pim == Some(false) {
        return Err(Refusal::NeedsP2 {
            role: req.resource.display_name.clone(),
        });
    }
    let (role, principal) = ids(req)?;
    // Eligibility exists only in PIM; active assignments go through PIM when the tenant has it,
    // so that its policies and history apply.
    let via_pim = eligible || req.pim == Some(true);
    Ok(match req.operation {
        Operation::Grant => Step::AssignRole {
            role,
            principal,
            eligible,
            via_pim,
        },
        Operation::Revoke => Step::RemoveRole {
            role,
            principal,
            eligible,
            via_pim,
        },
    })
}

fn license_step(req: &Request) -> Result<Step, Refusal> {
    let p = &req.principal;
    if p.rtype != "user" {
        return Err(Refusal::PrincipalKind {
            principal: p.display_name.clone(),
            kind: kind_label(&p.rtype),
            resource: req.resource.display_name.clone(),
            accepts: "is assigned to users only (assign it to a group's members through group-based licensing in Entra)",
        });
    }
    let (sku, user) = ids(req)?;
    Ok(match req.operation {
        Operation::Grant => Step::AssignLicense { user, sku },
        Operation::Revoke => Step::RemoveLicense { user, sku },
    })
}

fn app_owner_step(req: &Request) -> Result<Step, Refusal> {
    let p = &req.principal;
    if !matches!(
        p.rtype.as_str(),
        "user" | "enterprise_application" | "managed_identity"
    ) {
        return Err(Refusal::PrincipalKind {
            principal: p.display_name.clone(),
            kind: kind_label(&p.rtype),
            resource: req.resource.display_name.clone(),
            accepts: "accepts users and service principals as owners",
        });
    }
    if req.operation == Operation::Revoke && req.current_holders.is_some_and(|n| n <= 1) {
        // Not a Graph rule, but an app nobody owns is an app nobody is answerable for.
        return Err(Refusal::LastOwner {
            principal: p.display_name.clone(),
            group: req.resource.display_name.clone(),
        });
    }
    let (app, principal) = ids(req)?;
    Ok(match req.operation {
        Operation::Grant => Step::AddAppOwner { app, principal },
        Operation::Revoke => Step::RemoveAppOwner { app, principal },
    })
}

fn app_role_step(req: &Request, role: &str) -> Result<Step, Refusal> {
    let p = &req.principal;
    let principal_is_app = match p.rtype.as_str() {
        "user" | "group" => false,
        "enterprise_application" | "managed_identity" => true,
        _ => {
            return Err(Refusal::PrincipalKind {
                principal: p.display_name.clone(),
                kind: kind_label(&p.rtype),
                resource: req.resource.display_name.clone(),
                accepts: "assigns app roles to users, groups and service principals",
            });
        }
    };
    let app_role = Uuid::parse_str(role).map_err(|_| Refusal::AppRoleMissing {
        app: req.resource.display_name.clone(),
        role: role.to_string(),
    })?;
    let (app, principal) = ids(req)?;
    Ok(match req.operation {
        Operation::Grant => Step::AssignAppRole {
            app,
            app_role,
            principal,
            principal_is_app,
        },
        Operation::Revoke => Step::RemoveAppRole {
            app,
            app_role,
            principal,
        },
    })
}

/// The same refusal as [`plan`] would give, recognised in Graph's own answer (the stored model
/// was older than the tenant, e.g. a group became dynamic since the last sync).
pub fn refusal_from_graph(message: &str, group: &str, rel: GroupRel) -> Option<Refusal> {
    let m = message.to_ascii_lowercase();
    if m.contains("mail-enabled security group") || m.contains("originated within an external") {
        Some(Refusal::ExchangeManaged {
            group: group.to_string(),
            kind: "mail-enabled security group or distribution list",
        })
    } else if m.contains("on-premises mastered") {
        Some(Refusal::OnPremisesGroup {
            group: group.to_string(),
            rel: rel.as_str(),
        })
    } else if m.contains("dynamic membership") {
        Some(Refusal::DynamicGroup {
            group: group.to_string(),
        })
    } else if m.contains("at least one owner") {
        Some(Refusal::LastOwner {
            principal: "This principal".into(),
            group: group.to_string(),
        })
    } else {
        None
    }
}
