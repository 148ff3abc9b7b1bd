//! Directory writes, with Graph's real refusals; each change is visible in reads, delta and the audit log.

use http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::out::*;
use super::perms::*;
use super::read::{assignment_value, ok};
use super::{GReq, GResult, GraphError, no_content};
use crate::json::now;
use crate::model::{
    AppRoleAssignment, AuditTarget, GroupKind, ObjKind, ObjRef, User, app_role_assignment_id,
};
use crate::server::{State, json_response};

fn created(body: Vec<u8>) -> GResult {
    Ok(json_response(StatusCode::CREATED, body))
}

fn str_field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn password_ok(p: &str) -> bool {
    let classes = [
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    p.chars().count() >= 8 && classes.iter().filter(|b| **b).count() >= 3
}

fn bs(s: &str) -> Box<str> {
    s.to_string().into_boxed_str()
}

const USAGE_LOCATIONS: &[&str] = &[
    "US", "GB", "IE", "SG", "DE", "FR", "NL", "CA", "AU", "JP", "IN", "BR", "ES", "IT", "SE",
];

fn usage_location(v: &str) -> Option<&'static str> {
    USAGE_LOCATIONS
        .iter()
        .find(|c| c.eq_ignore_ascii_case(v))
        .copied()
}

pub(crate) fn create_user(st: &State, r: &GReq) -> GResult {
    r.require(USER_WRITE)?;
    let body = r.json_body()?;
    for k in ["displayName", "mailNickname", "userPrincipalName"] {
        if str_field(&body, k).is_none() {
            return Err(GraphError::bad_request(format!(
                "Invalid value specified for property '{k}' of resource 'User'."
            )));
        }
    }
    let Some(pw) = body
        .get("passwordProfile")
        .and_then(|p| p.get("password"))
        .and_then(Value::as_str)
    else {
        return Err(GraphError::bad_request(
            "Invalid value specified for property 'passwordProfile' of resource 'User'.",
        ));
    };
    if !password_ok(pw) || pw.chars().count() < st.read().password_min_length {
        return Err(GraphError::bad_request(
            "The specified password does not comply with password complexity requirements. Please provide a different password.",
        ));
    }
    let pw = pw.to_string();
    let upn = str_field(&body, "userPrincipalName")
        .unwrap_or_default()
        .to_string();
    let mut d = st.write();
    let domain_ok = upn.rsplit_once('@').is_some_and(|(_, dom)| {
        dom.eq_ignore_ascii_case(&d.domain) || dom.eq_ignore_ascii_case(&d.initial_domain)
    });
    if !domain_ok {
        return Err(GraphError::bad_request(
            "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.",
        ));
    }
    if d.upns.contains_key(&upn.to_ascii_lowercase()) {
        return Err(GraphError::bad_request(
            "Another object with the same value for property userPrincipalName already exists.",
        ));
    }
    let id = d.new_id();
    let i = d.users.len();
    let t = now();
    let seq = d.next_seq();
    d.users.push(User {
        id,
        display_name: bs(str_field(&body, "displayName").unwrap_or_default()),
        given_name: str_field(&body, "givenName").map(bs),
        surname: str_field(&body, "surname").map(bs),
        upn: bs(&upn),
        mail: str_field(&body, "mail").map(bs),
        mail_nickname: bs(str_field(&body, "mailNickname").unwrap_or_default()),
        job_title: str_field(&body, "jobTitle").map(bs),
        department: str_field(&body, "department").map(bs),
        office_location: str_field(&body, "officeLocation").map(bs),
        mobile_phone: str_field(&body, "mobilePhone").map(bs),
        business_phone: None,
        preferred_language: None,
        company_name: None,
        employee_id: str_field(&body, "employeeId").map(bs),
        usage_location: str_field(&body, "usageLocation").and_then(usage_location),
        account_enabled: body
            .get("accountEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(true),
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
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(pw.as_bytes()).into();
    d.passwords.insert(id, digest);
    let target = d.target(ObjRef::user(i));
    d.audit("UserManagement", "Add user", "Add", r.actor(), vec![target]);
    let mut obj = Vec::new();
    write_user(&mut obj, &d, i, user_default(r.ver), false);
    let mut v: Value = serde_json::from_slice(&obj).unwrap_or(json!({}));
    v["@odata.context"] = json!(r.context("users/$entity"));
    created(v.to_string().into_bytes())
}

pub(crate) fn update_user(st: &State, r: &GReq, id: &str) -> GResult {
    let body = r.json_body()?;
    let Value::Object(fields) = &body else {
        return Err(GraphError::bad_request(
            "The request payload must be a JSON object.",
        ));
    };
    let only_enable = fields.keys().all(|k| k == "accountEnabled");
    r.require(if only_enable { USER_ENABLE } else { USER_WRITE })?;
    let mut d = st.write();
    let ui = d.find_user(id).ok_or_else(|| GraphError::not_found(id))?;
    if d.users[ui].on_prem.is_some() && fields.keys().any(|k| k != "usageLocation") {
        return Err(GraphError::bad_request(
            "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.",
        ));
    }
    let mut modified = Vec::new();
    for (k, v) in fields {
        let u = &mut d.users[ui];
        let sv = v.as_str();
        let old;
        match k.as_str() {
            "accountEnabled" => {
                let b = v.as_bool().ok_or_else(|| {
                    GraphError::bad_request(
                        "Invalid value specified for property 'accountEnabled' of resource 'User'.",
                    )
                })?;
                old = u.account_enabled.to_string();
                u.account_enabled = b;
            }
            "displayName" => {
                old = u.display_name.to_string();
                u.display_name = bs(sv.unwrap_or_default());
            }
            "jobTitle" => {
                old = u.job_title.as_deref().unwrap_or("").to_string();
                u.job_title = sv.map(bs);
            }
            "department" => {
                old = u.department.as_deref().unwrap_or("").to_string();
                u.department = sv.map(bs);
            }
            "givenName" => {
                old = u.given_name.as_deref().unwrap_or("").to_string();
                u.given_name = sv.map(bs);
            }
            "surname" => {
                old = u.surname.as_deref().unwrap_or("").to_string();
                u.surname = sv.map(bs);
            }
            "officeLocation" => {
                old = u.office_location.as_deref().unwrap_or("").to_string();
                u.office_location = sv.map(bs);
            }
            "mobilePhone" => {
                old = u.mobile_phone.as_deref().unwrap_or("").to_string();
                u.mobile_phone = sv.map(bs);
            }
            "employeeId" => {
                old = u.employee_id.as_deref().unwrap_or("").to_string();
                u.employee_id = sv.map(bs);
            }
            "usageLocation" => {
                old = u.usage_location.unwrap_or("").to_string();
                u.usage_location = match sv {
                    None => None,
                    Some(s) => Some(usage_location(s).ok_or_else(|| GraphError::bad_request(format!("Invalid value specified for property 'usageLocation' of resource 'User'. ({s})")))?),
                };
            }
            other => {
                return Err(GraphError::bad_request(format!(
                    "Property '{other}' does not exist on type 'microsoft.graph.user' or is not writable."
                )));
            }
        }
        modified.push((k.clone(), old, v.to_string()));
    }
    d.touch_user(ui);
    let mut target = d.target(ObjRef::user(ui));
    target.modified = modified;
    let activity = if only_enable {
        if d.users[ui].account_enabled {
            "Enable account"
        } else {
            "Disable account"
        }
    } else {
        "Update user"
    };
    d.audit(
        "UserManagement",
        activity,
        "Update",
        r.actor(),
        vec![target],
    );
    Ok(no_content())
}

pub(crate) fn delete_user(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(USER_WRITE)?;
    let mut d = st.write();
    let ui = d.find_user(id).ok_or_else(|| GraphError::not_found(id))?;
    let target = d.target(ObjRef::user(ui));
    crate::truth::delete_user_inner(&mut d, ui);
    d.audit(
        "UserManagement",
        "Delete user",
        "Delete",
        r.actor(),
        vec![target],
    );
    Ok(no_content())
}

pub(crate) fn revoke_sessions(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(USER_REVOKE)?;
    let mut d = st.write();
    let ui = d.find_user(id).ok_or_else(|| GraphError::not_found(id))?;
    d.users[ui].sessions_valid_from = now();
    d.touch_user(ui);
    let target = d.target(ObjRef::user(ui));
    d.audit(
        "UserManagement",
        "Revoke sign-in sessions",
        "Update",
        r.actor(),
        vec![target],
    );
    ok(
        json!({"@odata.context": r.context("Edm.Boolean"), "value": true})
            .to_string()
            .into_bytes(),
    )
}

pub(crate) fn assign_license(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(LICENSE_WRITE)?;
    let body = r.json_body()?;
    let missing: Vec<&str> = ["addLicenses", "removeLicenses"]
        .into_iter()
        .filter(|k| body.get(k).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(GraphError::bad_request(format!(
            "One or more parameters of the function import 'assignLicense' are missing from the request payload. The missing parameters are: {}.",
            missing.join(", ")
        )));
    }
    let adds: Vec<String> = body["addLicenses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.get("skuId").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let removes: Vec<String> = body["removeLicenses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut d = st.write();
    let ui = d.find_user(id).ok_or_else(|| GraphError::not_found(id))?;
    let find_sku = |d: &crate::model::Directory, s: &str| -> Result<u16, GraphError> {
        let id = Uuid::parse_str(s).ok();
        d.skus
            .iter()
            .position(|k| Some(k.sku_id) == id)
            .map(|p| p as u16)
            .ok_or_else(|| {
                GraphError::bad_request(format!(
                    "License {s} does not correspond to a valid company License."
                ))
            })
    };
    let add_idx: Vec<u16> = adds
        .iter()
        .map(|s| find_sku(&d, s))
        .collect::<Result<_, _>>()?;
    let rem_idx: Vec<u16> = removes
        .iter()
        .map(|s| find_sku(&d, s))
        .collect::<Result<_, _>>()?;
    if !add_idx.is_empty() && d.users[ui].usage_location.is_none() {
        return Err(GraphError::bad_request(
            "License assignment cannot be done for user with invalid usage location.",
        ));
    }
    for (k, &s) in add_idx.iter().enumerate() {
        let held = d.assigned_skus(ui).contains(&s);
        if !held && d.consumed_units(s) >= d.skus[s as usize].enabled {
            return Err(GraphError::bad_request(format!(
                "Subscription with SKU {} does not have any available licenses.",
                adds[k]
            )));
        }
    }
    for &s in &rem_idx {
        if !d.users[ui].licenses.contains(&s) {
            if d.license_states(ui)
                .iter()
                .any(|(k, g)| *k == s && g.is_some())
            {
                return Err(GraphError::bad_request(
                    "User license is inherited from a group membership and it cannot be removed directly from the user.",
                ));
            }
            return Err(GraphError::bad_request(
                "User does not have a corresponding license.",
            ));
        }
    }
    let u = &mut d.users[ui];
    u.licenses.retain(|s| !rem_idx.contains(s));
    for s in add_idx {
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
        r.actor(),
        vec![target],
    );
    let mut obj = Vec::new();
    write_user(&mut obj, &d, ui, user_default(r.ver), false);
    let mut v: Value = serde_json::from_slice(&obj).unwrap_or(json!({}));
    v["@odata.context"] = json!(r.context("users/$entity"));
    ok(v.to_string().into_bytes())
}

/// The object id at the end of an `@odata.id` reference.
pub(super) fn ref_target(body: &Value) -> Result<String, GraphError> {
    let raw = body
        .get("@odata.id")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::bad_request("Invalid request body: '@odata.id' is required."))?;
    let last = raw.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let last = last
        .trim_start_matches("directoryObjects(")
        .trim_start_matches('\'')
        .trim_end_matches(')')
        .trim_end_matches('\'');
    Ok(last.to_string())
}

/// Why Graph refuses to change a group's membership, if it does.
pub(crate) fn group_write_refusal(kind: GroupKind, rel: &str) -> Option<GraphError> {
    match kind {
        GroupKind::MailEnabledSecurity | GroupKind::Distribution => Some(GraphError::bad_request(
            "Cannot Update a mail-enabled security groups and or distribution list.",
        )),
        GroupKind::OnPremisesSecurity => Some(GraphError::bad_request(
            "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.",
        )),
        GroupKind::DynamicSecurity | GroupKind::DynamicMicrosoft365 if rel == "members" => {
            Some(GraphError::bad_request(
                "Insufficient privileges to complete the operation. Members of a group with dynamic membership cannot be changed directly; they follow the membership rule.",
            ))
        }
        _ => None,
    }
}

pub(crate) fn add_link(st: &State, r: &GReq, parent: &str, id: &str, rel: &str) -> GResult {
    r.require(if parent == "groups" {
        GROUP_MEMBER_WRITE
    } else {
        SP_WRITE
    })?;
    let body = r.json_body()?;
    let target_id = ref_target(&body)?;
    let mut d = st.write();
    let target = Uuid::parse_str(&target_id)
        .ok()
        .and_then(|u| d.lookup(&u))
        .ok_or_else(|| GraphError::not_found(&target_id))?;
    if parent == "groups" {
        let gi = d.find_group(id).ok_or_else(|| GraphError::not_found(id))?;
        let kind = d.groups[gi].kind;
        if let Some(e) = group_write_refusal(kind, rel) {
            return Err(e);
        }
        if kind == GroupKind::RoleAssignable && !r.token.has_any(ROLE_WRITE) {
            return Err(GraphError::denied());
        }
        if rel == "owners" && target.kind() == ObjKind::Group {
            return Err(GraphError::bad_request(
                "Invalid object identifier: a group cannot be an owner.",
            ));
        }
        if kind == GroupKind::RoleAssignable && target.kind() == ObjKind::Group {
            return Err(GraphError::bad_request(
                "Role-assignable groups cannot have groups as members.",
            ));
        }
        if target == ObjRef::group(gi) {
            return Err(GraphError::bad_request(
                "A group cannot be a member of itself.",
            ));
        }
        let dup = GraphError::bad_request(format!(
            "One or more added object references already exist for the following modified properties: '{rel}'."
        ));
        if rel == "members" {
            if !d.add_member(gi, target) {
                return Err(dup);
            }
        } else {
            let owners = &mut d.groups[gi].owners;
            match owners.binary_search(&target) {
                Ok(_) => return Err(dup),
                Err(p) => owners.insert(p, target),
            }
            d.touch_group(gi);
        }
        let targets = vec![d.target(target), d.target(ObjRef::group(gi))];
        let activity = if rel == "members" {
            "Add member to group"
        } else {
            "Add owner to group"
        };
        d.audit("GroupManagement", activity, "Assign", r.actor(), targets);
    } else {
        let si = d.find_sp(id).ok_or_else(|| GraphError::not_found(id))?;
        let owners = &mut d.sps[si].owners;
        match owners.binary_search(&target) {
            Ok(_) => {
                return Err(GraphError::bad_request(
                    "One or more added object references already exist for the following modified properties: 'owners'.",
                ));
            }
            Err(p) => owners.insert(p, target),
        }
        let targets = vec![d.target(target), d.target(ObjRef::sp(si))];
        d.audit(
            "ApplicationManagement",
            "Add owner to service principal",
            "Assign",
            r.actor(),
            targets,
        );
    }
    Ok(no_content())
}

pub(crate) fn remove_link(
    st: &State,
    r: &GReq,
    parent: &str,
    id: &str,
    rel: &str,
    member: &str,
) -> GResult {
    r.require(if parent == "groups" {
        GROUP_MEMBER_WRITE
    } else {
        SP_WRITE
    })?;
    let mut d = st.write();
    let target = Uuid::parse_str(member)
        .ok()
        .and_then(|u| d.ids.get(&u).copied())
        .ok_or_else(|| GraphError::not_found(member))?;
    if parent == "groups" {
        let gi = d.find_group(id).ok_or_else(|| GraphError::not_found(id))?;
        let kind = d.groups[gi].kind;
        if let Some(e) = group_write_refusal(kind, rel) {
            return Err(e);
        }
        if kind == GroupKind::RoleAssignable && !r.token.has_any(ROLE_WRITE) {
            return Err(GraphError::denied());
        }
        if rel == "members" {
            if !d.remove_member(gi, target) {
                return Err(GraphError::not_found(member));
            }
        } else {
            let owners = &d.groups[gi].owners;
            let Ok(p) = owners.binary_search(&target) else {
                return Err(GraphError::not_found(member));
            };
            if owners.len() == 1 && kind.unified() {
                return Err(GraphError::bad_request(
                    "The group must have at least one owner, hence this owner cannot be removed.",
                ));
            }
            d.groups[gi].owners.remove(p);
            d.touch_group(gi);
        }
        let targets = vec![d.target(target), d.target(ObjRef::group(gi))];
        let activity = if rel == "members" {
            "Remove member from group"
        } else {
            "Remove owner from group"
        };
        d.audit("GroupManagement", activity, "Unassign", r.actor(), targets);
    } else {
        let si = d.find_sp(id).ok_or_else(|| GraphError::not_found(id))?;
        let owners = &mut d.sps[si].owners;
        let Ok(p) = owners.binary_search(&target) else {
            return Err(GraphError::not_found(member));
        };
        owners.remove(p);
        let targets = vec![d.target(target), d.target(ObjRef::sp(si))];
        d.audit(
            "ApplicationManagement",
            "Remove owner from service principal",
            "Unassign",
            r.actor(),
            targets,
        );
    }
    Ok(no_content())
}

pub(crate) fn create_assignment(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(APP_ROLE_WRITE)?;
    let body = r.json_body()?;
    let get_uuid = |k: &str| -> Result<Uuid, GraphError> {
        body.get(k)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| {
                GraphError::bad_request(format!(
                    "Invalid value specified for property '{k}' of resource 'AppRoleAssignment'."
                ))
            })
    };
    let principal_id = get_uuid("principalId")?;
    let resource_id = get_uuid("resourceId")?;
    let app_role_id = get_uuid("appRoleId")?;
    let mut d = st.write();
    let si = d.find_sp(id).ok_or_else(|| GraphError::not_found(id))?;
    if d.sps[si].id != resource_id {
        return Err(GraphError::bad_request(format!(
            "Invalid value specified for property 'resourceId' of resource 'AppRoleAssignment'. Expected '{}'.",
            d.sps[si].id
        )));
    }
    let principal = d
        .lookup(&principal_id)
        .ok_or_else(|| GraphError::not_found(&principal_id.to_string()))?;
    if !app_role_id.is_nil() {
        let role = d.sps[si]
            .app_roles
            .iter()
            .find(|a| a.id == app_role_id)
            .ok_or_else(|| {
                GraphError::bad_request(format!(
                    "Permission being assigned was not found on application '{}'.",
                    d.sps[si].app_id
                ))
            })?;
        let needed = if principal.kind() == ObjKind::ServicePrincipal {
            "Application"
        } else {
            "User"
        };
        if !role.allowed_member_types.contains(&needed) {
            return Err(GraphError::bad_request(
                "Permission being assigned is not allowed for this principal type.",
            ));
        }
    }
    if d.sps[si]
        .assigned_to
        .iter()
        .any(|a| a.principal == principal && a.app_role_id == app_role_id)
    {
        return Err(GraphError::bad_request(
            "Permission being assigned already exists on the object",
        ));
    }
    let aid = {
        let dd = &mut *d;
        app_role_assignment_id(&principal_id, &mut dd.rng)
    };
    let a = AppRoleAssignment {
        id: aid,
        app_role_id,
        principal,
        created: now(),
    };
    let v = assignment_value(&d, si, &a);
    d.sps[si].assigned_to.push(a);
    let targets = vec![d.target(principal), d.target(ObjRef::sp(si))];
    let activity = match principal.kind() {
        ObjKind::User => "Add app role assignment grant to user",
        ObjKind::Group => "Add app role assignment to group",
        ObjKind::ServicePrincipal => "Add app role assignment to service principal",
    };
    d.audit(
        "ApplicationManagement",
        activity,
        "Assign",
        r.actor(),
        targets,
    );
    let mut v = v;
    v["@odata.context"] = json!(r.context(&format!(
        "servicePrincipals('{id}')/appRoleAssignedTo/$entity"
    )));
    created(v.to_string().into_bytes())
}

pub(crate) fn delete_assignment(st: &State, r: &GReq, id: &str, aid: &str) -> GResult {
    r.require(APP_ROLE_WRITE)?;
    let mut d = st.write();
    let si = d.find_sp(id).ok_or_else(|| GraphError::not_found(id))?;
    let pos = d.sps[si]
        .assigned_to
        .iter()
        .position(|a| a.id == aid)
        .ok_or_else(|| GraphError::not_found(aid))?;
    let a = d.sps[si].assigned_to.remove(pos);
    let targets: Vec<AuditTarget> = vec![d.target(a.principal), d.target(ObjRef::sp(si))];
    let activity = match a.principal.kind() {
        ObjKind::User => "Remove app role assignment from user",
        ObjKind::Group => "Remove app role assignment from group",
        ObjKind::ServicePrincipal => "Remove app role assignment from service principal",
    };
    d.audit(
        "ApplicationManagement",
        activity,
        "Unassign",
        r.actor(),
        targets,
    );
    Ok(no_content())
}

/// `PATCH /groups/{id}` with `members@odata.bind` / `owners@odata.bind`: at most 20, all or nothing.
pub(crate) fn patch_group(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(GROUP_MEMBER_WRITE)?;
    let body = r.json_body()?;
    let Value::Object(fields) = &body else {
        return Err(GraphError::bad_request(
            "The request payload must be a JSON object.",
        ));
    };
    let mut d = st.write();
    let gi = d.find_group(id).ok_or_else(|| GraphError::not_found(id))?;
    let kind = d.groups[gi].kind;
    let mut plan: Vec<(&str, ObjRef)> = Vec::new();
    for (k, v) in fields {
        let rel = match k.as_str() {
            "members@odata.bind" => "members",
            "owners@odata.bind" => "owners",
            other => {
                return Err(GraphError::bad_request(format!(
                    "Property '{other}' is not supported by this simulated tenant on group updates."
                )));
            }
        };
        let refs = v
            .as_array()
            .ok_or_else(|| GraphError::bad_request(format!("'{k}' must be an array.")))?;
        if let Some(e) = group_write_refusal(kind, rel) {
            return Err(e);
        }
        for item in refs {
            let raw = item.as_str().unwrap_or("");
            let tid = raw.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            let target = Uuid::parse_str(tid)
                .ok()
                .and_then(|u| d.lookup(&u))
                .ok_or_else(|| GraphError::not_found(tid))?;
            let exists = if rel == "members" {
                d.groups[gi].members.binary_search(&target).is_ok()
            } else {
                d.groups[gi].owners.binary_search(&target).is_ok()
            };
            if exists {
                return Err(GraphError::bad_request(format!(
                    "One or more added object references already exist for the following modified properties: '{rel}'."
                )));
            }
            plan.push((rel, target));
        }
    }
    if plan.len() > 20 {
        return Err(GraphError::bad_request(
            "The maximum number of references that can be added in a single request is 20.",
        ));
    }
    if kind == GroupKind::RoleAssignable && !r.token.has_any(ROLE_WRITE) {
        return Err(GraphError::denied());
    }
    for (rel, target) in plan {
        if rel == "members" {
            d.add_member(gi, target);
            let targets = vec![d.target(target), d.target(ObjRef::group(gi))];
            d.audit(
                "GroupManagement",
                "Add member to group",
                "Assign",
                r.actor(),
                targets,
            );
        } else {
            if let Err(p) = d.groups[gi].owners.binary_search(&target) {
                d.groups[gi].owners.insert(p, target);
            }
            d.touch_group(gi);
            let targets = vec![d.target(target), d.target(ObjRef::group(gi))];
            d.audit(
                "GroupManagement",
                "Add owner to group",
                "Assign",
                r.actor(),
                targets,
            );
        }
    }
    Ok(no_content())
}
