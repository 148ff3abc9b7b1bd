//! Graph reads: paging, $select, $filter, advanced queries, errors, v1.0 vs beta, $expand truncation.

use latchkey_entra_sim::{SimConfig, Sizes};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{T, err_code, err_msg};

#[tokio::test]
async fn users_page_with_next_links_to_the_end() {
    let t = T::new().await;
    let truth = t.sim.truth();
    let (s, v) = t.get("/v1.0/users?$top=7&$select=id,displayName").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["value"].as_array().unwrap().len(), 7);
    let next = v["@odata.nextLink"].as_str().unwrap();
    assert!(
        next.contains("$skiptoken=")
            && next.contains("$top=7")
            && next.starts_with(t.sim.base_url())
    );
    assert!(
        v["@odata.context"]
            .as_str()
            .unwrap()
            .contains("$metadata#users")
    );
    let all = t
        .get_all("/v1.0/users?$top=7&$select=id,displayName", false)
        .await;
    assert_eq!(all.len(), truth.users);
    let mut ids: Vec<&str> = all.iter().map(|u| u["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), truth.users);
    // $select returns only what was asked.
    assert_eq!(all[0].as_object().unwrap().len(), 2);
    // A bad skip token is Graph's expired-token error.
    let (s, v) = t.get("/v1.0/users?$skiptoken=bogus").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err_code(&v), "Directory_ExpiredPageToken");
}

#[tokio::test]
async fn select_defaults_and_page_size_rules() {
    let t = T::new().await;
    let (_, v) = t.get("/v1.0/users?$top=1").await;
    let u = v["value"][0].as_object().unwrap();
    assert!(u.contains_key("userPrincipalName") && u.contains_key("businessPhones"));
    assert!(!u.contains_key("accountEnabled") && !u.contains_key("signInActivity"));
    let (_, v) = t.get("/beta/users?$top=1").await;
    assert!(v["value"][0].get("accountEnabled").is_some());
    let (s, v) = t.get("/v1.0/users?$top=1000").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err_code(&v), "Request_UnsupportedQuery");
    assert_eq!(
        err_msg(&v),
        "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."
    );
    let (s, v) = t
        .get("/v1.0/users?$select=id,employeeType,onPremisesExtensionAttributes,identities&$top=1")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["value"][0]["onPremisesExtensionAttributes"]["extensionAttribute15"].is_null());
    assert_eq!(
        v["value"][0]["identities"][0]["signInType"],
        "userPrincipalName"
    );
    let (s, v) = t.get("/v1.0/users?$select=id,favouriteColour").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err_msg(&v).contains("favouriteColour"));
    let (_, v) = t.get("/v1.0/users?$select=id,accountEnabled,userType,assignedLicenses,licenseAssignmentStates,onPremisesSyncEnabled&$top=999").await;
    let users = v["value"].as_array().unwrap();
    assert!(users.iter().any(|u| u["userType"] == "Guest"));
    assert!(users.iter().any(|u| u["accountEnabled"] == false));
    assert!(users.iter().any(|u| u["onPremisesSyncEnabled"] == true));
    // Direct and group-inherited licences.
    let states: Vec<&Value> = users
        .iter()
        .flat_map(|u| u["licenseAssignmentStates"].as_array().unwrap())
        .collect();
    assert!(states.iter().any(|s| s["assignedByGroup"].is_null()));
    assert!(states.iter().any(|s| s["assignedByGroup"].is_string()));
}

#[tokio::test]
async fn sign_in_activity_needs_premium_and_caps_the_page() {
    let mut cfg = SimConfig::small(5);
    cfg.sizes = Sizes {
        users: 620,
        groups: 4,
        memberships: 50,
        ..Sizes::small()
    };
    let t = T::with(cfg).await;
    let (s, v) = t
        .get("/v1.0/users?$select=id,signInActivity&$top=999")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["value"].as_array().unwrap().len(), 500);
    assert!(
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["signInActivity"]["lastSignInDateTime"].is_string())
    );
    t.sim.update_faults(|f| f.premium_p1 = false);
    let (s, v) = t.get("/v1.0/users?$select=id,signInActivity").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        err_code(&v),
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
    );
    assert_eq!(
        err_msg(&v),
        "Neither tenant is B2C or tenant doesn't have premium license"
    );
}

#[tokio::test]
async fn filters_and_the_advanced_query_rule() {
    let t = T::new().await;
    let truth = t.sim.truth();
    let disabled = t
        .get_all(
            "/v1.0/users?$filter=accountEnabled eq false&$select=id",
            false,
        )
        .await;
    assert_eq!(disabled.len(), truth.disabled_users);
    let guests = t
        .get_all("/v1.0/users?$filter=userType eq 'Guest'&$select=id", false)
        .await;
    assert_eq!(guests.len(), truth.guests);
    let (s, v) = t
        .get("/v1.0/users?$filter=startswith(displayName,'Ada')&$select=displayName")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["displayName"].as_str().unwrap().starts_with("Ada"))
    );
    // endsWith / ne need ConsistencyLevel: eventual and $count=true.
    let (s, v) = t
        .get("/v1.0/users?$filter=endswith(mail,'@contoso.com')")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err_code(&v), "Request_UnsupportedQuery");
    assert!(err_msg(&v).starts_with(
        "Operator 'endsWith' is not supported because the required parameters might be missing."
    ));
    let (s, v) = t
        .get_eventual("/v1.0/users?$filter=endswith(mail,'@contoso.com')")
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "header alone is not enough: {v}"
    );
    let (s, v) = t
        .get_eventual("/v1.0/users?$filter=userType ne 'Guest'&$count=true&$select=id")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["@odata.count"], truth.users - truth.guests);
    // $count=true without the header is ignored.
    let (_, v) = t.get("/v1.0/users?$count=true").await;
    assert!(v.get("@odata.count").is_none());
    let (s, v) = t.get("/v1.0/users/$count").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err_msg(&v), "$count is not currently supported.");
    let (s, v) = t.get_eventual("/v1.0/users/$count").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, Value::from(truth.users as u64));
    let (s, v) = t
        .get("/v1.0/groups?$filter=createdDateTime ge 2020-01-01T00:00:00Z")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        err_msg(&v),
        "Unsupported or invalid query filter clause specified for property 'createdDateTime' of resource 'Group'."
    );
    let (s, v) = t
        .get("/v1.0/users?$filter=accountEnabled eq true&$orderby=displayName")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err_msg(&v), "Sorting not supported for current query.");
    let (s, _) = t.get("/v1.0/users?$orderby=displayName").await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = t.get("/v1.0/users?$search=\"displayName:ada\"").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err_msg(&v).contains("ConsistencyLevel: eventual"));
    let (s, v) = t
        .get_eventual("/v1.0/users?$search=\"displayName:ada\"&$select=displayName")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!v["value"].as_array().unwrap().is_empty());
    // Licence filter (default-supported) and its next-link quirk without advanced parameters.
    let (s, v) = t.get("/v1.0/users?$filter=assignedLicenses/any(a:a/skuId eq 6fd2c87f-b296-42f0-b197-1e91e994b900)&$top=2&$select=id").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let next = v["@odata.nextLink"].as_str().unwrap();
    let r = t.http.get(next).bearer_auth(&t.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let groups = t
        .get_all(
            "/v1.0/groups?$filter=groupTypes/any(c:c eq 'Unified')&$select=id,groupTypes",
            false,
        )
        .await;
    assert!(!groups.is_empty() && groups.iter().all(|g| g["groupTypes"][0] == "Unified"));
}

#[tokio::test]
async fn errors_use_graph_envelope_and_auth_failures_are_401() {
    let t = T::new().await;
    let r = t
        .http
        .get(t.url("/v1.0/users/00000000-0000-0000-0000-00000000dead"))
        .bearer_auth(&t.token)
        .header("client-request-id", "my-request-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["client-request-id"], "my-request-1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(err_code(&v), "Request_ResourceNotFound");
    assert_eq!(
        v["error"]["innerError"]["client-request-id"],
        "my-request-1"
    );
    assert!(
        v["error"]["innerError"]["request-id"].is_string()
            && v["error"]["innerError"]["date"].is_string()
    );
    let r = t.http.get(t.url("/v1.0/users")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(err_code(&v), "InvalidAuthenticationToken");
    assert_eq!(err_msg(&v), "Access token is empty.");
    let r = t
        .http
        .get(t.url("/v1.0/users"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        err_msg(&v),
        "CompactToken parsing failed with error code: 80049217"
    );
    t.sim.update_faults(|f| f.token_lifetime_secs = 0);
    let expired = t.fetch_token().await;
    let r = t
        .http
        .get(t.url("/v1.0/users"))
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        err_msg(&v),
        "Lifetime validation failed, the token is expired."
    );
    // Users are addressable by UPN too.
    let (s, v) = t
        .get(&format!("/v1.0/users/admin@{}", t.sim.domain()))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["displayName"], "Ada Admin");
    let (s, v) = t.get("/v1.0/widgets").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err_msg(&v), "Resource not found for the segment 'widgets'.");
}

#[tokio::test]
async fn members_differ_between_v1_and_beta_and_page_verbatim() {
    let t = T::new().await;
    // Group 0 of every generated tenant holds a nested group and a service principal.
    let (_, v) = t.get("/v1.0/groups?$top=1&$select=id").await;
    let g = v["value"][0]["id"].as_str().unwrap().to_string();
    let truth_members = t.sim.group_members(g.parse().unwrap()).unwrap();
    let beta = t
        .get_all(
            &format!("/beta/groups/{g}/members?$top=3&$select=id,servicePrincipalType"),
            false,
        )
        .await;
    let v1 = t
        .get_all(
            &format!("/v1.0/groups/{g}/members?$top=3&$select=id"),
            false,
        )
        .await;
    assert_eq!(beta.len(), truth_members.len());
    assert!(
        beta.iter()
            .any(|m| m["@odata.type"] == "#microsoft.graph.servicePrincipal")
    );
    assert!(
        beta.iter()
            .any(|m| m["@odata.type"] == "#microsoft.graph.group")
    );
    assert!(
        !v1.iter()
            .any(|m| m["@odata.type"] == "#microsoft.graph.servicePrincipal")
    );
    assert!(v1.len() < beta.len());
    let users = t
        .get_all(
            &format!("/beta/groups/{g}/members/microsoft.graph.user?$select=id"),
            false,
        )
        .await;
    assert!(
        users.len() < beta.len()
            && users
                .iter()
                .all(|m| m["@odata.type"] == "#microsoft.graph.user")
    );
    let owners = t.get_all(&format!("/v1.0/groups/{g}/owners"), false).await;
    assert!(!owners.is_empty());
    // $filter on members needs the advanced parameters.
    let (s, _) = t
        .get(&format!(
            "/beta/groups/{g}/members?$filter=onPremisesSyncEnabled ne true"
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = t
        .get_eventual(&format!(
            "/beta/groups/{g}/members?$filter=onPremisesSyncEnabled ne true&$count=true&$select=id"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["@odata.count"].as_u64().unwrap() <= beta.len() as u64);
}

#[tokio::test]
async fn expand_is_truncated_without_a_next_link() {
    let mut cfg = SimConfig::small(11);
    cfg.sizes = Sizes {
        users: 80,
        groups: 8,
        memberships: 600,
        ..Sizes::small()
    };
    let t = T::with(cfg).await;
    let groups = t.sim_get("/_sim/truth/groups").await;
    let big = groups["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["members"].as_u64().unwrap() > 30)
        .unwrap();
    let id = big["id"].as_str().unwrap();
    let (s, v) = t.get(&format!("/beta/groups/{id}?$expand=members")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["members"].as_array().unwrap().len(), 20);
    assert!(v.get("members@odata.nextLink").is_none());
    let all = t
        .get_all(&format!("/beta/groups/{id}/members?$select=id"), false)
        .await;
    assert_eq!(all.len() as u64, big["members"].as_u64().unwrap());
}

#[tokio::test]
async fn service_principal_owners_expand_inline_as_the_owners_endpoint_lists_them() {
    let t = T::new().await;
    let sps = t
        .get_all(
            "/beta/servicePrincipals?$select=id&$expand=owners($select=id)",
            false,
        )
        .await;
    assert!(!sps.is_empty());
    let mut with_owners = 0;
    for sp in &sps {
        let inline = sp["owners"].as_array().unwrap_or_else(|| panic!("{sp}"));
        let id = sp["id"].as_str().unwrap();
        let all = t
            .get_all(
                &format!("/beta/servicePrincipals/{id}/owners?$select=id"),
                false,
            )
            .await;
        let ids = |v: &[Value]| v.iter().map(|o| o["id"].clone()).collect::<Vec<_>>();
        assert_eq!(ids(inline), ids(&all[..all.len().min(20)]), "{id}");
        with_owners += usize::from(!inline.is_empty());
    }
    assert!(with_owners > 0, "no service principal has owners");
}

#[tokio::test]
async fn service_principals_managed_identities_and_assignments() {
    let t = T::new().await;
    let truth = t.sim.truth();
    let mis = t.get_all("/v1.0/servicePrincipals?$filter=servicePrincipalType eq 'ManagedIdentity'&$select=id,alternativeNames,servicePrincipalType", false).await;
    assert_eq!(mis.len(), truth.managed_identities);
    assert!(mis.iter().all(|m| {
        m["alternativeNames"][0]
            .as_str()
            .unwrap()
            .starts_with("isExplicit=")
    }));
    let apps = t.get_all("/v1.0/servicePrincipals?$filter=servicePrincipalType eq 'Application'&$select=id,appId,appRoles,appOwnerOrganizationId,tags", false).await;
    assert!(apps.iter().any(|a| a["appOwnerOrganizationId"]
        == latchkey_entra_sim::MICROSOFT_SERVICES_TENANT.to_string()));
    let with_roles = apps
        .iter()
        .find(|a| {
            a["appRoles"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["allowedMemberTypes"][0] == "User")
        })
        .unwrap();
    let id = with_roles["id"].as_str().unwrap();
    let assigned = t
        .get_all(
            &format!("/v1.0/servicePrincipals/{id}/appRoleAssignedTo?$top=2"),
            false,
        )
        .await;
    assert!(!assigned.is_empty());
    assert_eq!(assigned[0]["resourceId"], id);
    assert!(
        ["User", "Group", "ServicePrincipal"]
            .contains(&assigned[0]["principalType"].as_str().unwrap())
    );
    let app_id = with_roles["appId"].as_str().unwrap();
    let (s, v) = t
        .get(&format!(
            "/v1.0/servicePrincipals(appId='{app_id}')?$select=id,displayName"
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], id);
    let (s, v) = t
        .get("/v1.0/servicePrincipals?$expand=appRoleAssignedTo&$select=id")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["appRoleAssignedTo"].as_array().unwrap().len() <= 20)
    );
}

#[tokio::test]
async fn roles_pim_licenses_organization_and_audit() {
    let t = T::new().await;
    let truth = t.sim.truth();
    let (s, v) = t
        .get("/v1.0/roleManagement/directory/roleDefinitions")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["value"].as_array().unwrap().len(), truth.role_definitions);
    let ra = t
        .get_all(
            "/v1.0/roleManagement/directory/roleAssignments?$expand=principal",
            false,
        )
        .await;
    assert_eq!(ra.len(), truth.active_role_assignments);
    assert!(ra.iter().all(|a| a["principal"]["id"] == a["principalId"]));
    let (_, v) = t.get("/v1.0/directoryRoles").await;
    let ga = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["displayName"] == "Global Administrator")
        .unwrap()
        .clone();
    let (_, v) = t
        .get(&format!(
            "/v1.0/directoryRoles/{}/members",
            ga["id"].as_str().unwrap()
        ))
        .await;
    assert!(!v["value"].as_array().unwrap().is_empty());
    let el = t
        .get_all(
            "/v1.0/roleManagement/directory/roleEligibilitySchedules",
            false,
        )
        .await;
    assert_eq!(el.len(), truth.eligible_role_assignments);
    assert_eq!(el[0]["status"], "Provisioned");
    assert!(el[0]["scheduleInfo"]["expiration"]["type"].is_string());
    let (s, _) = t
        .get("/v1.0/roleManagement/directory/roleAssignmentScheduleInstances")
        .await;
    assert_eq!(s, StatusCode::OK);
    t.sim.update_faults(|f| f.premium_p2 = false);
    let (s, v) = t
        .get("/v1.0/roleManagement/directory/roleEligibilitySchedules")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err_code(&v), "AadPremiumLicenseRequired");
    let (_, v) = t.get("/v1.0/subscribedSkus").await;
    let skus = v["value"].as_array().unwrap();
    assert_eq!(skus.len(), truth.skus);
    assert!(
        skus.iter().all(|s| s["consumedUnits"].as_u64().unwrap()
            <= s["prepaidUnits"]["enabled"].as_u64().unwrap())
    );
    let (_, v) = t.get("/v1.0/organization?$select=id,displayName").await;
    assert_eq!(v["value"][0].as_object().unwrap().len(), 2);
    let (_, v) = t.get("/v1.0/organization").await;
    assert_eq!(v["value"][0]["id"], t.sim.tenant_id().to_string());
    assert!(
        v["value"][0]["verifiedDomains"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["isInitial"] == true)
    );
    let audit = t.get_all("/v1.0/auditLogs/directoryAudits?$filter=activityDateTime ge 2000-01-01T00:00:00Z&$top=7", false).await;
    assert_eq!(audit.len(), truth.audit_records);
    assert!(
        audit[0]["targetResources"].as_array().is_some() && audit[0]["initiatedBy"].is_object()
    );
    t.sim.update_faults(|f| f.audit_unavailable = true);
    let (s, v) = t.get("/v1.0/auditLogs/directoryAudits").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        err_code(&v),
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
    );
}
