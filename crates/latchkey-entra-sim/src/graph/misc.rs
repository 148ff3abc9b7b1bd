//! Licences (subscribed SKUs), the organization, the audit feed and provisioning (synchronization) jobs.

use http::StatusCode;
use serde_json::{Value, json};

use super::out::{JsonF, filter_map, select_names};
use super::perms::*;
use super::read::{bad_token, collection_body, ok, prep_filter};
use super::{GReq, GResult, GraphError, no_content};
use crate::json::{fmt_ts, now};
use crate::model::{Directory, ProvisionOnDemandCall};
use crate::odata::{FilterRules, decode_token, encode_token, eval};
use crate::server::State;

fn sku_json(d: &Directory, i: usize) -> Value {
    let s = &d.skus[i];
    json!({
        "accountName": d.org_name, "accountId": d.tenant_id, "appliesTo": "User", "capabilityStatus": "Enabled",
        "consumedUnits": d.consumed_units(i as u16), "id": format!("{}_{}", d.tenant_id, s.sku_id),
        "prepaidUnits": {"enabled": s.enabled, "lockedOut": 0, "suspended": 0, "warning": 0},
        "servicePlans": s.plans.iter().map(|(id, name)| json!({"servicePlanId": id, "servicePlanName": name, "provisioningStatus": "Success", "appliesTo": "User"})).collect::<Vec<_>>(),
        "skuId": s.sku_id, "skuPartNumber": s.part_number, "subscriptionIds": [d.tenant_id],
    })
}

pub(crate) fn subscribed_skus(st: &State, r: &GReq, id: Option<&str>) -> GResult {
    r.require(&[
        "Organization.Read.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "LicenseAssignment.Read.All",
        "LicenseAssignment.ReadWrite.All",
    ])?;
    let d = st.read();
    let select = select_names(r);
    let items: Vec<Value> = (0..d.skus.len())
        .map(|i| sku_json(&d, i))
        .map(|v| match v {
            Value::Object(m) => Value::Object(filter_map(m, select.as_deref())),
            other => other,
        })
        .collect();
    match id {
        None => ok(
            json!({"@odata.context": r.context("subscribedSkus"), "value": items})
                .to_string()
                .into_bytes(),
        ),
        Some(id) => {
            let mut v = (0..d.skus.len())
                .find(|&i| sku_json(&d, i)["id"] == id)
                .map(|i| sku_json(&d, i))
                .ok_or_else(|| GraphError::not_found(id))?;
            v["@odata.context"] = json!(r.context("subscribedSkus/$entity"));
            ok(v.to_string().into_bytes())
        }
    }
}

pub(crate) fn license_details(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(USER_READ)?;
    let d = st.read();
    let ui = d.find_user(id).ok_or_else(|| GraphError::not_found(id))?;
    let items: Vec<Value> = d
        .assigned_skus(ui)
        .into_iter()
        .map(|s| {
            let k = &d.skus[s as usize];
            json!({"id": format!("{}_{}", d.users[ui].id, k.sku_id), "skuId": k.sku_id, "skuPartNumber": k.part_number,
                   "servicePlans": k.plans.iter().map(|(id, n)| json!({"servicePlanId": id, "servicePlanName": n, "provisioningStatus": "Success", "appliesTo": "User"})).collect::<Vec<_>>()})
        })
        .collect();
    ok(json!({"@odata.context": r.context(&format!("users('{id}')/licenseDetails")), "value": items}).to_string().into_bytes())
}

pub(crate) fn organization(st: &State, r: &GReq, id: Option<&str>) -> GResult {
    r.require(ORG_READ)?;
    let d = st.read();
    let f = st.faults();
    if let Some(id) = id
        && id != d.tenant_id.to_string()
    {
        return Err(GraphError::not_found(id));
    }
    let mut plans = vec![];
    if f.premium_p1 {
        plans.push(json!({"assignedDateTime": fmt_ts(d.created), "capabilityStatus": "Enabled", "service": "AADPremiumService", "servicePlanId": "41781fb2-bc02-4b7c-bd55-b576c07bb09d"}));
    }
    if f.premium_p2 {
        plans.push(json!({"assignedDateTime": fmt_ts(d.created), "capabilityStatus": "Enabled", "service": "AADPremiumService", "servicePlanId": "eec0eb4f-6444-4f95-aba0-50c24d67f998"}));
    }
    let org = json!({
        "id": d.tenant_id, "deletedDateTime": null, "displayName": d.org_name, "countryLetterCode": "US",
        "createdDateTime": fmt_ts(d.created), "tenantType": "AAD", "onPremisesSyncEnabled": true,
        "assignedPlans": plans,
        "verifiedDomains": [
            {"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": false, "isInitial": true, "name": d.initial_domain, "type": "Managed"},
            {"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": true, "isInitial": false, "name": d.domain, "type": "Managed"},
        ],
    });
    let org = match org {
        Value::Object(m) => Value::Object(filter_map(m, select_names(r).as_deref())),
        other => other,
    };
    match id {
        None => ok(
            json!({"@odata.context": r.context("organization"), "value": [org]})
                .to_string()
                .into_bytes(),
        ),
        Some(_) => {
            let mut v = org;
            v["@odata.context"] = json!(r.context("organization/$entity"));
            ok(v.to_string().into_bytes())
        }
    }
}

fn audit_json(d: &Directory, a: &crate::model::AuditRecord) -> Value {
    let initiated = match &a.app {
        Some((app_id, name, sp)) => {
            json!({"user": null, "app": {"appId": app_id, "displayName": name, "servicePrincipalId": sp, "servicePrincipalName": null}})
        }
        None => {
            let admin = &d.users[0];
            json!({"app": null, "user": {"id": admin.id, "displayName": admin.display_name, "userPrincipalName": admin.upn, "ipAddress": "203.0.113.10", "userType": null, "homeTenantId": d.tenant_id, "homeTenantName": null}})
        }
    };
    json!({
        "id": a.id, "category": a.category, "correlationId": uuid::Uuid::from_u128(crate::rng::mix(a.time as u64) as u128), "result": a.result,
        "resultReason": "", "activityDisplayName": a.activity, "activityDateTime": fmt_ts(a.time),
        "loggedByService": "Core Directory", "operationType": a.operation_type, "initiatedBy": initiated,
        "targetResources": a.targets.iter().map(|t| json!({
            "id": t.id, "displayName": t.display_name, "type": t.kind, "userPrincipalName": t.upn, "groupType": null,
            "modifiedProperties": t.modified.iter().map(|(n, o, v)| json!({"displayName": n, "oldValue": o, "newValue": v})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "additionalDetails": [],
    })
}

const AUDIT_RULES: FilterRules = FilterRules {
    resource: "DirectoryAudit",
    default: &[
        "activityDateTime",
        "category",
        "activityDisplayName",
        "operationType",
        "result",
        "loggedByService",
        "correlationId",
        "id",
        "initiatedBy",
        "targetResources",
    ],
    advanced: &[],
};

pub(crate) fn directory_audits(st: &State, r: &GReq, id: Option<&str>) -> GResult {
    r.require(AUDIT_READ)?;
    if st.faults().audit_unavailable {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        ));
    }
    let d = st.read();
    if let Some(id) = id {
        let a = d
            .audit
            .iter()
            .find(|a| a.id == id)
            .ok_or_else(|| GraphError::not_found(id))?;
        let mut v = audit_json(&d, a);
        v["@odata.context"] = json!(r.context("auditLogs/directoryAudits/$entity"));
        return ok(v.to_string().into_bytes());
    }
    let filter = prep_filter(r, &AUDIT_RULES)?;
    let select = select_names(r);
    let asc = r
        .param("orderby")
        .is_some_and(|o| o.to_ascii_lowercase().contains("asc"));
    let top = page_size_audit(r)?;
    let n = d.audit.len();
    // Newest first by default; the cursor is a record position, stable under appends.
    let cursor = match r.param("skiptoken") {
        None => None,
        Some(t) => Some(
            decode_token("directoryAudits", t)
                .filter(|f| f.len() == 1)
                .ok_or_else(bad_token)?[0] as usize,
        ),
    };
    let order: Box<dyn Iterator<Item = usize>> = if asc {
        Box::new(cursor.unwrap_or(0)..n)
    } else {
        Box::new((0..cursor.unwrap_or(n).min(n)).rev())
    };
    let mut items = Vec::new();
    let mut count = 0;
    let mut next = None;
    let mut last = None;
    let mut more = false;
    for i in order {
        if count == top {
            more = true;
            break;
        }
        let v = audit_json(&d, &d.audit[i]);
        if filter.as_ref().is_some_and(|f| !eval(f, &JsonF(&v))) {
            continue;
        }
        if count > 0 {
            items.push(b',');
        }
        let v = match v {
            Value::Object(m) => Value::Object(filter_map(m, select.as_deref())),
            other => other,
        };
        items.extend_from_slice(v.to_string().as_bytes());
        count += 1;
        last = Some(i);
    }
    if more && let Some(l) = last {
        next = Some(encode_token(
            "directoryAudits",
            &[if asc { l as u64 + 1 } else { l as u64 }],
        ));
    }
    ok(collection_body(
        r,
        "auditLogs/directoryAudits",
        None,
        next,
        &items,
    ))
}

fn page_size_audit(r: &GReq) -> Result<usize, GraphError> {
    match r.param("top") {
        None => Ok(100),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(GraphError::unsupported_query(format!(
                "Invalid page size specified: '{t}'. Must be between 1 and 1000 inclusive."
            ))),
        },
    }
}

fn job_json(j: &crate::model::SyncJob) -> Value {
    json!({
        "id": j.id, "templateId": j.template_id,
        "schedule": {"expiration": null, "interval": "PT40M", "state": if j.state == "Paused" { "Disabled" } else { "Active" }},
        "status": {
            "code": j.state, "countSuccessiveCompleteFailures": 0, "escrowsPruned": false,
            "lastExecution": j.last_started.map(|t| json!({"activityIdentifier": null, "countEntitled": 0, "timeBegan": fmt_ts(t), "timeEnded": fmt_ts(t), "state": "Succeeded"})),
            "lastSuccessfulExecution": null, "lastSuccessfulExecutionWithExports": null, "quarantine": null,
            "steadyStateFirstAchievedTime": "0001-01-01T00:00:00Z", "steadyStateLastAchievedTime": "0001-01-01T00:00:00Z",
            "synchronizedEntryCountByType": [], "troubleshootingUrl": null,
        },
        "synchronizationJobSettings": [],
    })
}

fn find_job(d: &Directory, sp: &str, job: &str) -> Result<(usize, usize), GraphError> {
    let si = d.find_sp(sp).ok_or_else(|| GraphError::not_found(sp))?;
    let ji = d.sps[si]
        .sync_jobs
        .iter()
        .position(|j| j.id == job)
        .ok_or_else(|| GraphError::not_found(job))?;
    Ok((si, ji))
}

pub(crate) fn sync_jobs(st: &State, r: &GReq, sp: &str) -> GResult {
    r.require(SYNC_READ)?;
    let d = st.read();
    let si = d.find_sp(sp).ok_or_else(|| GraphError::not_found(sp))?;
    let items: Vec<Value> = d.sps[si].sync_jobs.iter().map(job_json).collect();
    ok(json!({"value": items}).to_string().into_bytes())
}

pub(crate) fn sync_job(st: &State, r: &GReq, sp: &str, job: &str) -> GResult {
    r.require(SYNC_READ)?;
    let d = st.read();
    let (si, ji) = find_job(&d, sp, job)?;
    ok(job_json(&d.sps[si].sync_jobs[ji]).to_string().into_bytes())
}

pub(crate) fn sync_schema(st: &State, r: &GReq, sp: &str, job: &str) -> GResult {
    r.require(SYNC_READ)?;
    let d = st.read();
    let (si, ji) = find_job(&d, sp, job)?;
    let j = &d.sps[si].sync_jobs[ji];
    ok(json!({
        "id": j.id, "version": "1",
        "synchronizationRules": [{"id": j.rule_id, "name": "USER_TO_SCIM", "sourceDirectoryName": "Azure Active Directory", "targetDirectoryName": "customappsso", "editable": true, "objectMappings": []}],
        "directories": [],
    }).to_string().into_bytes())
}

pub(crate) fn sync_start(st: &State, r: &GReq, sp: &str, job: &str) -> GResult {
    r.require(SYNC_WRITE)?;
    let mut d = st.write();
    let (si, ji) = find_job(&d, sp, job)?;
    let j = &mut d.sps[si].sync_jobs[ji];
    j.state = "Active";
    j.last_started = Some(now());
    Ok(no_content())
}

pub(crate) fn provision_on_demand(st: &State, r: &GReq, sp: &str, job: &str) -> GResult {
    r.require(SYNC_WRITE)?;
    let body = r.json_body()?;
    let params = body
        .get("parameters")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            GraphError::bad_request(
                "The request body must contain a non-empty 'parameters' collection.",
            )
        })?;
    let mut d = st.write();
    let (si, ji) = find_job(&d, sp, job)?;
    let rule = d.sps[si].sync_jobs[ji].rule_id.clone();
    let mut subjects = Vec::new();
    let mut rule_id = String::new();
    for p in params {
        rule_id = p
            .get("ruleId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if rule_id != rule {
            return Err(GraphError::bad_request(format!(
                "The rule '{rule_id}' was not found in the job's schema."
            )));
        }
        for s in p
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let obj = s
                .get("objectId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let ty = s
                .get("objectTypeName")
                .and_then(Value::as_str)
                .unwrap_or("User")
                .to_string();
            if uuid::Uuid::parse_str(&obj)
                .ok()
                .and_then(|u| d.lookup(&u))
                .is_none()
            {
                return Err(GraphError::not_found(&obj));
            }
            subjects.push((obj, ty));
        }
    }
    if subjects.is_empty() {
        return Err(GraphError::bad_request("At least one subject is required."));
    }
    let t = now();
    let sp_id = d.sps[si].id;
    d.provision_calls.push(ProvisionOnDemandCall {
        service_principal_id: sp_id,
        job_id: job.to_string(),
        rule_id,
        subjects: subjects.clone(),
        time: fmt_ts(t),
    });
    let value = json!({
        "provisioningSteps": [
            {"name": "EntryImport", "status": "success", "description": format!("Retrieved {} from Microsoft Entra ID", subjects[0].0)},
            {"name": "EntryExportUpdate", "status": "success", "description": "User provisioned to the target application"},
        ],
        "statusInfo": {"status": "success"},
        "modifiedProperties": [],
    });
    ok(json!({
        "@odata.context": r.context("microsoft.graph.stringKeyStringValuePair"),
        "key": "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo",
        "value": value.to_string(),
    })
    .to_string()
    .into_bytes())
}
