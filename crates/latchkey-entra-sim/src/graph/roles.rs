//! Directory roles, unified role definitions and assignments, and PIM schedules and requests.

use http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::out::{JsonF, MixedSelect, filter_map, select_names, write_member};
use super::perms::*;
use super::read::{collection_body, ok, page_indices, page_size, prep_filter};
use super::{GReq, GResult, GraphError, no_content};
use crate::json::{fmt_ts, now, parse_ts};
use crate::model::{
    Directory, Eligibility, ObjRef, RoleAssignment, ScheduleRequest, role_assignment_id,
};
use crate::odata::{FilterRules, eval};
use crate::server::{State, json_response};

fn role_json(d: &Directory, i: usize) -> Value {
    let r = &d.roles[i];
    json!({
        "id": r.id, "description": r.description, "displayName": r.display_name, "isBuiltIn": true, "isEnabled": true,
        "isPrivileged": r.privileged, "resourceScopes": ["/"], "templateId": r.id, "version": "1",
        "rolePermissions": [{"allowedResourceActions": [], "condition": null}], "inheritsPermissionsFrom": []
    })
}

fn directory_role_json(d: &Directory, i: usize) -> Value {
    let r = &d.roles[i];
    json!({"id": r.directory_role_id, "deletedDateTime": null, "description": r.description, "displayName": r.display_name, "roleTemplateId": r.id})
}

pub(crate) fn directory_roles(st: &State, r: &GReq) -> GResult {
    r.require(ROLE_READ)?;
    let d = st.read();
    // directoryRoles lists activated roles and does not page.
    let items: Vec<Value> = (0..d.roles.len())
        .map(|i| directory_role_json(&d, i))
        .collect();
    ok(
        json!({"@odata.context": r.context("directoryRoles"), "value": items})
            .to_string()
            .into_bytes(),
    )
}

fn find_directory_role(d: &Directory, id: &str) -> Option<usize> {
    if let Some(t) = id
        .strip_prefix("(roleTemplateId='")
        .and_then(|s| s.strip_suffix("')"))
    {
        let t = Uuid::parse_str(t).ok()?;
        return d.roles.iter().position(|r| r.id == t);
    }
    let id = Uuid::parse_str(id).ok()?;
    d.roles.iter().position(|r| r.directory_role_id == id)
}

pub(crate) fn directory_role(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(ROLE_READ)?;
    let d = st.read();
    let i = find_directory_role(&d, id).ok_or_else(|| GraphError::not_found(id))?;
    let mut v = directory_role_json(&d, i);
    v["@odata.context"] = json!(r.context("directoryRoles/$entity"));
    ok(v.to_string().into_bytes())
}

pub(crate) fn directory_role_members(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(ROLE_READ)?;
    let sel = super::out::mixed_select(r)?;
    let d = st.read();
    let i = find_directory_role(&d, id).ok_or_else(|| GraphError::not_found(id))?;
    let t = now();
    let mut members: Vec<ObjRef> = d
        .active_assignments(t)
        .filter(|a| a.role as usize == i)
        .map(|a| a.principal)
        .collect();
    members.sort();
    members.dedup();
    let mut items = Vec::new();
    for (k, m) in members.iter().enumerate() {
        if k > 0 {
            items.push(b',');
        }
        write_member(&mut items, &d, *m, &sel);
    }
    ok(collection_body(r, "directoryObjects", None, None, &items))
}

fn require_p2(st: &State) -> Result<(), GraphError> {
    if st.faults().premium_p2 {
        Ok(())
    } else {
        Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "AadPremiumLicenseRequired",
            "The tenant needs to have Microsoft Entra ID P2 or Microsoft Entra ID Governance license.",
        ))
    }
}

fn assignment_json(d: &Directory, a: &RoleAssignment, expand_principal: bool) -> Value {
    let mut v = json!({
        "id": a.id, "principalId": d.obj_id(a.principal), "roleDefinitionId": d.roles[a.role as usize].id,
        "directoryScopeId": "/", "appScopeId": null, "condition": null, "resourceScope": "/",
    });
    if expand_principal {
        let mut out = Vec::new();
        let sel = MixedSelect {
            user: super::out::user_default(super::Ver::V1),
            group: super::out::group_default(super::Ver::V1),
            sp: None,
        };
        write_member(&mut out, d, a.principal, &sel);
        v["principal"] = serde_json::from_slice(&out).unwrap_or(Value::Null);
    }
    v
}

fn schedule_info(start: i64, end: Option<i64>) -> Value {
    json!({
        "startDateTime": fmt_ts(start), "recurrence": null,
        "expiration": match end {
            Some(e) => json!({"type": "afterDateTime", "endDateTime": fmt_ts(e), "duration": null}),
            None => json!({"type": "noExpiration", "endDateTime": null, "duration": null}),
        }
    })
}

fn eligibility_json(d: &Directory, e: &Eligibility) -> Value {
    json!({
        "id": e.id, "principalId": d.obj_id(e.principal), "roleDefinitionId": d.roles[e.role as usize].id,
        "directoryScopeId": "/", "appScopeId": null, "createdUsing": e.id, "createdDateTime": fmt_ts(e.created),
        "modifiedDateTime": null, "status": "Provisioned", "memberType": "Direct",
        "scheduleInfo": schedule_info(e.start, e.end),
    })
}

fn eligibility_instance_json(d: &Directory, e: &Eligibility) -> Value {
    json!({
        "id": e.id, "principalId": d.obj_id(e.principal), "roleDefinitionId": d.roles[e.role as usize].id,
        "directoryScopeId": "/", "appScopeId": null, "startDateTime": fmt_ts(e.start),
        "endDateTime": e.end.map(fmt_ts), "memberType": "Direct", "roleEligibilityScheduleId": e.id,
    })
}

fn assignment_schedule_json(d: &Directory, a: &RoleAssignment, instance: bool) -> Value {
    let mut v = json!({
        "id": a.id, "principalId": d.obj_id(a.principal), "roleDefinitionId": d.roles[a.role as usize].id,
        "directoryScopeId": "/", "appScopeId": null, "assignmentType": "Assigned", "memberType": "Direct",
    });
    if instance {
        v["startDateTime"] = json!(fmt_ts(a.created));
        v["endDateTime"] = json!(a.end.map(fmt_ts));
        v["roleAssignmentOriginId"] = json!(a.id);
        v["roleAssignmentScheduleId"] = json!(a.id);
    } else {
        v["createdUsing"] = json!(a.id);
        v["createdDateTime"] = json!(fmt_ts(a.created));
        v["modifiedDateTime"] = Value::Null;
        v["status"] = json!("Provisioned");
        v["scheduleInfo"] = schedule_info(a.created, a.end);
    }
    v
}

fn request_json(d: &Directory, q: &ScheduleRequest, r: &GReq) -> Value {
    json!({
        "id": q.id, "status": q.status, "createdDateTime": fmt_ts(q.created), "completedDateTime": fmt_ts(q.created),
        "approvalId": null, "customData": null, "action": q.action, "principalId": d.obj_id(q.principal),
        "roleDefinitionId": d.roles[q.role as usize].id, "directoryScopeId": "/", "appScopeId": null,
        "isValidationOnly": false, "targetScheduleId": q.target_schedule_id, "justification": q.justification,
        "createdBy": {"application": {"id": r.token.app_id, "displayName": r.token.app_name}, "device": null, "user": null},
        "scheduleInfo": {
            "startDateTime": fmt_ts(q.start), "recurrence": null,
            "expiration": {"type": q.expiration_type, "endDateTime": q.end.map(fmt_ts), "duration": q.duration},
        },
        "ticketInfo": {"ticketNumber": null, "ticketSystem": null},
    })
}

const SCHEDULE_RULES: FilterRules = FilterRules {
    resource: "UnifiedRoleSchedule",
    default: &[
        "principalId",
        "roleDefinitionId",
        "directoryScopeId",
        "id",
        "status",
        "memberType",
        "assignmentType",
        "action",
    ],
    advanced: &[],
};

/// A JSON collection with `$filter`, `$select` and paging by position.
fn json_collection(
    r: &GReq,
    kind: &str,
    ctx: &str,
    values: Vec<Value>,
    rules: &FilterRules,
    default_top: usize,
) -> GResult {
    let filter = prep_filter(r, rules)?;
    let select = select_names(r);
    let top = page_size(r, default_top, 999)?;
    let matches = |i: usize| filter.as_ref().is_none_or(|f| eval(f, &JsonF(&values[i])));
    let page = page_indices(r, kind, values.len(), &matches, None, top)?;
    let mut items = Vec::new();
    for (k, &i) in page.items.iter().enumerate() {
        if k > 0 {
            items.push(b',');
        }
        let m = match &values[i] {
            Value::Object(m) => filter_map(m.clone(), select.as_deref()),
            _ => Map::new(),
        };
        items.extend_from_slice(Value::Object(m).to_string().as_bytes());
    }
    ok(collection_body(r, ctx, None, page.next, &items))
}

pub(crate) fn role_management(st: &State, r: &GReq, rest: &[&str]) -> GResult {
    let get = r.method == Method::GET;
    let post = r.method == Method::POST;
    let del = r.method == Method::DELETE;
    let ctx = |s: &str| format!("roleManagement/directory/{s}");
    match rest {
        ["roleDefinitions"] if get => {
            r.require(ROLE_READ)?;
            let d = st.read();
            let values = (0..d.roles.len()).map(|i| role_json(&d, i)).collect();
            let rules = FilterRules {
                resource: "UnifiedRoleDefinition",
                default: &[
                    "id",
                    "displayName",
                    "templateId",
                    "isBuiltIn",
                    "isEnabled",
                    "isPrivileged",
                ],
                advanced: &[],
            };
            json_collection(
                r,
                "roleDefinitions",
                &ctx("roleDefinitions"),
                values,
                &rules,
                100,
            )
        }
        ["roleDefinitions", id] if get => {
            r.require(ROLE_READ)?;
            let d = st.read();
            let i = d.find_role(id).ok_or_else(|| GraphError::not_found(id))?;
            let mut v = role_json(&d, i);
            v["@odata.context"] = json!(r.context(&ctx("roleDefinitions/$entity")));
            ok(v.to_string().into_bytes())
        }
        ["roleAssignments"] if get => {
            r.require(ROLE_READ)?;
            let expand = r
                .param("expand")
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("principal"));
            let d = st.read();
            let values = d
                .active_assignments(now())
                .map(|a| assignment_json(&d, a, expand))
                .collect();
            json_collection(
                r,
                "roleAssignments",
                &ctx("roleAssignments"),
                values,
                &SCHEDULE_RULES,
                100,
            )
        }
        ["roleAssignments", id] if get => {
            r.require(ROLE_READ)?;
            let d = st.read();
            let a = d
                .active_assignments(now())
                .find(|a| a.id == *id)
                .ok_or_else(|| GraphError::not_found(id))?;
            let mut v = assignment_json(&d, a, false);
            v["@odata.context"] = json!(r.context(&ctx("roleAssignments/$entity")));
            ok(v.to_string().into_bytes())
        }
        ["roleAssignments"] if post => create_role_assignment(st, r),
        ["roleAssignments", id] if del => {
            r.require(ROLE_WRITE)?;
            let mut d = st.write();
            let t = now();
            let pos = d
                .role_assignments
                .iter()
                .position(|a| a.id == *id && a.end.is_none_or(|e| e > t))
                .ok_or_else(|| GraphError::not_found(id))?;
            let a = d.role_assignments.remove(pos);
            let targets = vec![d.target(a.principal)];
            let act = format!(
                "Remove member from role ({})",
                d.roles[a.role as usize].display_name
            );
            d.audit("RoleManagement", &act, "Unassign", r.actor(), targets);
            Ok(no_content())
        }
        ["roleEligibilitySchedules"] if get => {
            r.require(PIM_ELIGIBILITY_READ)?;
            require_p2(st)?;
            let d = st.read();
            let values = d
                .active_eligibilities(now())
                .map(|e| eligibility_json(&d, e))
                .collect();
            json_collection(
                r,
                "roleEligibilitySchedules",
                &ctx("roleEligibilitySchedules"),
                values,
                &SCHEDULE_RULES,
                100,
            )
        }
        ["roleEligibilityScheduleInstances"] if get => {
            r.require(PIM_ELIGIBILITY_READ)?;
            require_p2(st)?;
            let d = st.read();
            let values = d
                .active_eligibilities(now())
                .map(|e| eligibility_instance_json(&d, e))
                .collect();
            json_collection(
                r,
                "roleEligibilityScheduleInstances",
                &ctx("roleEligibilityScheduleInstances"),
                values,
                &SCHEDULE_RULES,
                100,
            )
        }
        ["roleAssignmentSchedules"] if get => {
            r.require(PIM_ASSIGNMENT_READ)?;
            require_p2(st)?;
            let d = st.read();
            let values = d
                .active_assignments(now())
                .map(|a| assignment_schedule_json(&d, a, false))
                .collect();
            json_collection(
                r,
                "roleAssignmentSchedules",
                &ctx("roleAssignmentSchedules"),
                values,
                &SCHEDULE_RULES,
                100,
            )
        }
        ["roleAssignmentScheduleInstances"] if get => {
            r.require(PIM_ASSIGNMENT_READ)?;
            require_p2(st)?;
            let d = st.read();
            let values = d
                .active_assignments(now())
                .map(|a| assignment_schedule_json(&d, a, true))
                .collect();
            json_collection(
                r,
                "roleAssignmentScheduleInstances",
                &ctx("roleAssignmentScheduleInstances"),
                values,
                &SCHEDULE_RULES,
                100,
            )
        }
        [kind @ ("roleAssignmentScheduleRequests" | "roleEligibilityScheduleRequests")] if get => {
            let eligibility = *kind == "roleEligibilityScheduleRequests";
            r.require(if eligibility {
                PIM_ELIGIBILITY_READ
            } else {
                PIM_ASSIGNMENT_READ
            })?;
            require_p2(st)?;
            let d = st.read();
            let list = if eligibility {
                &d.eligibility_requests
            } else {
                &d.assignment_requests
            };
            let values = list.iter().map(|q| request_json(&d, q, r)).collect();
            json_collection(r, kind, &ctx(kind), values, &SCHEDULE_RULES, 100)
        }
        [kind @ ("roleAssignmentScheduleRequests" | "roleEligibilityScheduleRequests")] if post => {
            schedule_request(st, r, *kind == "roleEligibilityScheduleRequests")
        }
        [first, ..] => Err(GraphError::segment(first)),
        [] => Err(GraphError::segment("directory")),
    }
}

fn body_uuid(body: &Value, k: &str, resource: &str) -> Result<Uuid, GraphError> {
    body.get(k)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| {
            GraphError::bad_request(format!(
                "Invalid value specified for property '{k}' of resource '{resource}'."
            ))
        })
}

fn create_role_assignment(st: &State, r: &GReq) -> GResult {
    r.require(ROLE_WRITE)?;
    let body = r.json_body()?;
    let role_id = body_uuid(&body, "roleDefinitionId", "UnifiedRoleAssignment")?;
    let principal_id = body_uuid(&body, "principalId", "UnifiedRoleAssignment")?;
    let scope = body
        .get("directoryScopeId")
        .and_then(Value::as_str)
        .unwrap_or("/");
    if scope != "/" {
        return Err(GraphError::bad_request(
            "Only the tenant-wide directory scope '/' is supported by this simulated tenant.",
        ));
    }
    let mut d = st.write();
    let role = d
        .roles
        .iter()
        .position(|x| x.id == role_id)
        .ok_or_else(|| GraphError::not_found(&role_id.to_string()))?;
    let principal = d
        .lookup(&principal_id)
        .ok_or_else(|| GraphError::not_found(&principal_id.to_string()))?;
    if principal.kind() == crate::model::ObjKind::Group
        && d.groups[principal.idx()].kind != crate::model::GroupKind::RoleAssignable
    {
        return Err(GraphError::bad_request(
            "Only groups with isAssignableToRole set to true can be assigned to roles.",
        ));
    }
    let t = now();
    if d.active_assignments(t)
        .any(|a| a.role as usize == role && a.principal == principal)
    {
        return Err(GraphError::bad_request(
            "A conflicting object with one or more of the specified property values is present in the directory.",
        ));
    }
    let a = RoleAssignment {
        id: role_assignment_id(&role_id, &principal_id),
        role: role as u16,
        principal,
        created: t,
        end: None,
        via_pim: false,
    };
    d.role_assignments.retain(|x| x.id != a.id);
    let mut v = assignment_json(&d, &a, false);
    d.role_assignments.push(a);
    let targets = vec![d.target(principal)];
    let act = format!("Add member to role ({})", d.roles[role].display_name);
    d.audit("RoleManagement", &act, "Assign", r.actor(), targets);
    v["@odata.context"] = json!(r.context("roleManagement/directory/roleAssignments/$entity"));
    Ok(json_response(
        StatusCode::CREATED,
        v.to_string().into_bytes(),
    ))
}

/// ISO 8601 durations as PIM accepts them (`PT8H`, `P1D`, `P1DT12H30M`).
fn parse_duration(s: &str) -> Option<i64> {
    let s = s.strip_prefix('P')?;
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, t),
        None => (s, ""),
    };
    let mut total = 0i64;
    let mut num = String::new();
    for c in date.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let n: i64 = num.parse().ok()?;
            num.clear();
            total += n * match c {
                'D' => 86_400,
                'W' => 7 * 86_400,
                _ => return None,
            };
        }
    }
    for c in time.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let n: i64 = num.parse().ok()?;
            num.clear();
            total += n * match c {
                'H' => 3600,
                'M' => 60,
                'S' => 1,
                _ => return None,
            };
        }
    }
    Some(total)
}

fn schedule_request(st: &State, r: &GReq, eligibility: bool) -> GResult {
    r.require(if eligibility {
        PIM_ELIGIBILITY_WRITE
    } else {
        PIM_ASSIGNMENT_WRITE
    })?;
    require_p2(st)?;
    let resource = if eligibility {
        "UnifiedRoleEligibilityScheduleRequest"
    } else {
        "UnifiedRoleAssignmentScheduleRequest"
    };
    let body = r.json_body()?;
    let action = body
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !matches!(
        action.as_str(),
        "adminAssign" | "adminRemove" | "adminUpdate" | "adminExtend"
    ) {
        return Err(GraphError::bad_request(format!(
            "The action '{action}' is not supported for requests made by an application."
        )));
    }
    let role_id = body_uuid(&body, "roleDefinitionId", resource)?;
    let principal_id = body_uuid(&body, "principalId", resource)?;
    let t = now();
    let sched = body.get("scheduleInfo").cloned().unwrap_or(Value::Null);
    let start = sched
        .get("startDateTime")
        .and_then(Value::as_str)
        .and_then(parse_ts)
        .unwrap_or(t);
    let exp = sched.get("expiration").cloned().unwrap_or(Value::Null);
    let exp_type = exp
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("noExpiration")
        .to_string();
    let duration = exp
        .get("duration")
        .and_then(Value::as_str)
        .map(str::to_string);
    let end = match exp_type.as_str() {
        "afterDuration" => Some(
            start
                + duration
                    .as_deref()
                    .and_then(parse_duration)
                    .ok_or_else(|| {
                        GraphError::bad_request(
                            "The expiration duration is not a valid ISO 8601 duration.",
                        )
                    })?,
        ),
        "afterDateTime" => Some(
            exp.get("endDateTime")
                .and_then(Value::as_str)
                .and_then(parse_ts)
                .ok_or_else(|| {
                    GraphError::bad_request("The expiration endDateTime is missing or invalid.")
                })?,
        ),
        _ => None,
    };
    let mut d = st.write();
    let role = d
        .roles
        .iter()
        .position(|x| x.id == role_id)
        .ok_or_else(|| GraphError::not_found(&role_id.to_string()))?;
    let principal = d
        .lookup(&principal_id)
        .ok_or_else(|| GraphError::not_found(&principal_id.to_string()))?;
    let sched_id = role_assignment_id(&role_id, &principal_id);
    let sched_id = if eligibility {
        sched_id.replace("-1", "-1-e")
    } else {
        sched_id
    };
    let exists = if eligibility {
        d.active_eligibilities(t)
            .any(|e| e.role as usize == role && e.principal == principal)
    } else {
        d.active_assignments(t)
            .any(|a| a.role as usize == role && a.principal == principal)
    };
    let assign = action != "adminRemove";
    if action == "adminAssign" && exists {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "RoleAssignmentExists",
            "The Role assignment already exists.",
        ));
    }
    if !assign && !exists {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "RoleAssignmentDoesNotExist",
            "The Role assignment does not exist.",
        ));
    }
    if matches!(action.as_str(), "adminUpdate" | "adminExtend") && !exists {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "RoleAssignmentDoesNotExist",
            "The Role assignment does not exist.",
        ));
    }
    if eligibility {
        d.eligibilities
            .retain(|e| !(e.role as usize == role && e.principal == principal));
        if assign {
            d.eligibilities.push(Eligibility {
                id: sched_id.clone(),
                role: role as u16,
                principal,
                created: t,
                start,
                end,
            });
        }
    } else {
        d.role_assignments
            .retain(|a| !(a.role as usize == role && a.principal == principal));
        if assign {
            d.role_assignments.push(RoleAssignment {
                id: sched_id.clone(),
                role: role as u16,
                principal,
                created: start,
                end,
                via_pim: true,
            });
        }
    }
    let id = d.new_id();
    let q = ScheduleRequest {
        id,
        action: action.clone(),
        role: role as u16,
        principal,
        justification: body
            .get("justification")
            .and_then(Value::as_str)
            .map(str::to_string),
        created: t,
        start,
        end,
        expiration_type: exp_type,
        duration,
        status: if assign { "Provisioned" } else { "Revoked" },
        target_schedule_id: sched_id,
    };
    let mut v = request_json(&d, &q, r);
    if eligibility {
        d.eligibility_requests.push(q);
    } else {
        d.assignment_requests.push(q);
    }
    let targets = vec![d.target(principal)];
    let what = if eligibility { "eligible" } else { "active" };
    let act = if assign {
        format!(
            "Add {what} member to role in PIM completed ({})",
            d.roles[role].display_name
        )
    } else {
        format!(
            "Remove {what} member from role in PIM completed ({})",
            d.roles[role].display_name
        )
    };
    d.audit(
        "RoleManagement",
        &act,
        if assign { "Assign" } else { "Unassign" },
        r.actor(),
        targets,
    );
    let kind = if eligibility {
        "roleEligibilityScheduleRequests"
    } else {
        "roleAssignmentScheduleRequests"
    };
    v["@odata.context"] = json!(r.context(&format!("roleManagement/directory/{kind}/$entity")));
    Ok(json_response(
        StatusCode::CREATED,
        v.to_string().into_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT8H"), Some(8 * 3600));
        assert_eq!(parse_duration("P1DT30M"), Some(86_400 + 1800));
        assert_eq!(parse_duration("8H"), None);
    }
}
