//! Writes that show up in reads and the audit log, and Graph's refusals.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{T, err_code, err_msg};

fn odata_id(id: &str) -> Value {
    json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")})
}

async fn non_member(t: &T, group: &str) -> String {
    let members = t.sim.group_members(group.parse().unwrap()).unwrap();
    t.user_ids()
        .await
        .into_iter()
        .find(|u| !members.iter().any(|m| m.to_string() == *u))
        .unwrap()
}

#[tokio::test]
async fn group_member_add_remove_and_refusals() {
    let t = T::new().await;
    let g = t.group_of_kind("security").await;
    let u = non_member(&t, &g).await;
    let audit_before = t.sim.truth().audit_records;
    let (s, v) = t
        .post(&format!("/v1.0/groups/{g}/members/$ref"), odata_id(&u))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert!(
        t.sim
            .group_members(g.parse().unwrap())
            .unwrap()
            .iter()
            .any(|m| m.to_string() == u)
    );
    let members = t
        .get_all(&format!("/v1.0/groups/{g}/members?$select=id"), false)
        .await;
    assert!(members.iter().any(|m| m["id"] == u.as_str()));
    let (s, v) = t
        .post(&format!("/v1.0/groups/{g}/members/$ref"), odata_id(&u))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err_code(&v), "Request_BadRequest");
    assert_eq!(
        err_msg(&v),
        "One or more added object references already exist for the following modified properties: 'members'."
    );
    let audit = t
        .get_all("/v1.0/auditLogs/directoryAudits?$top=5", false)
        .await;
    assert!(audit.len() > audit_before);
    assert_eq!(audit[0]["activityDisplayName"], "Add member to group");
    assert_eq!(
        audit[0]["initiatedBy"]["app"]["appId"],
        t.sim.customer_app().client_id.to_string()
    );
    let (s, _) = t
        .delete(&format!("/v1.0/groups/{g}/members/{u}/$ref"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = t
        .delete(&format!("/v1.0/groups/{g}/members/{u}/$ref"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(err_code(&v), "Request_ResourceNotFound");
    let refusals = [
        (
            "mail_enabled_security",
            "Cannot Update a mail-enabled security groups and or distribution list.",
        ),
        (
            "distribution",
            "Cannot Update a mail-enabled security groups and or distribution list.",
        ),
        (
            "on_premises_security",
            "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.",
        ),
    ];
    for (kind, msg) in refusals {
        let g = t.group_of_kind(kind).await;
        let u = non_member(&t, &g).await;
        let (s, v) = t
            .post(&format!("/v1.0/groups/{g}/members/$ref"), odata_id(&u))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{kind}");
        assert_eq!(err_msg(&v), msg);
    }
    let dynamic = t.group_of_kind("dynamic_security").await;
    let u = non_member(&t, &dynamic).await;
    let (s, _) = t
        .post(
            &format!("/v1.0/groups/{dynamic}/members/$ref"),
            odata_id(&u),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = t
        .post(
            &format!("/v1.0/groups/{g}/members/$ref"),
            odata_id("00000000-0000-0000-0000-000000000001"),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Owners.
    let m365 = t.group_of_kind("microsoft365").await;
    let o = non_member(&t, &m365).await;
    let (s, v) = t
        .post(&format!("/v1.0/groups/{m365}/owners/$ref"), odata_id(&o))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = t
        .post(&format!("/v1.0/groups/{m365}/owners/$ref"), odata_id(&o))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err_msg(&v).ends_with("'owners'."));
}

#[tokio::test]
async fn app_role_assignments_create_and_delete() {
    let t = T::new().await;
    let apps = t.get_all("/v1.0/servicePrincipals?$filter=servicePrincipalType eq 'Application'&$select=id,appRoles", false).await;
    let app = apps
        .iter()
        .find(|a| {
            a["appRoles"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["allowedMemberTypes"][0] == "User")
        })
        .unwrap();
    let sp = app["id"].as_str().unwrap();
    let role = app["appRoles"][0]["id"].as_str().unwrap();
    let user = t.user_ids().await[5].clone();
    let body = json!({"principalId": user, "resourceId": sp, "appRoleId": role});
    let path = format!("/v1.0/servicePrincipals/{sp}/appRoleAssignedTo");
    let (s, v) = t.post(&path, body.clone()).await;
    if s == StatusCode::BAD_REQUEST {
        // Already assigned by the generator: remove it first.
        let existing = t.get_all(&path, false).await;
        let a = existing
            .iter()
            .find(|a| a["principalId"] == user.as_str() && a["appRoleId"] == role)
            .unwrap();
        let (s, _) = t
            .delete(&format!("{path}/{}", a["id"].as_str().unwrap()))
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let (s, v) = if s == StatusCode::CREATED {
        (s, v)
    } else {
        t.post(&path, body.clone()).await
    };
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let aid = v["id"].as_str().unwrap().to_string();
    assert_eq!(aid.len(), 43);
    assert_eq!(v["principalType"], "User");
    let (s, v) = t.post(&path, body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        err_msg(&v),
        "Permission being assigned already exists on the object"
    );
    let (s, _) = t.delete(&format!("{path}/{aid}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = t.delete(&format!("{path}/{aid}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn directory_roles_and_pim_requests() {
    let t = T::new().await;
    let user = t.user_ids().await[9].clone();
    let role = "fdd7a751-b60b-444a-984c-02652fe8fa1c";
    let (s, v) = t
        .post(
            "/v1.0/roleManagement/directory/roleAssignments",
            json!({"roleDefinitionId": role, "principalId": user, "directoryScopeId": "/"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.ends_with("-1"));
    let (s, _) = t
        .post(
            "/v1.0/roleManagement/directory/roleAssignments",
            json!({"roleDefinitionId": role, "principalId": user, "directoryScopeId": "/"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = t
        .delete(&format!(
            "/v1.0/roleManagement/directory/roleAssignments/{id}"
        ))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let req = |action: &str| {
        json!({"action": action, "principalId": user, "roleDefinitionId": role, "directoryScopeId": "/", "justification": "JIT",
        "scheduleInfo": {"startDateTime": latchkey_entra_sim::now_iso(), "expiration": {"type": "afterDuration", "duration": "PT8H"}}})
    };
    let path = "/v1.0/roleManagement/directory/roleEligibilityScheduleRequests";
    let (s, v) = t.post(path, req("adminAssign")).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "Provisioned");
    let el = t.get_all(&format!("/v1.0/roleManagement/directory/roleEligibilitySchedules?$filter=principalId eq '{user}'"), false).await;
    assert_eq!(el.len(), 1);
    assert_eq!(el[0]["scheduleInfo"]["expiration"]["type"], "afterDateTime");
    let (s, v) = t.post(path, req("adminAssign")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err_code(&v), "RoleAssignmentExists");
    let (s, _) = t.post(path, req("adminRemove")).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = t.post(path, req("adminRemove")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(err_code(&v), "RoleAssignmentDoesNotExist");
    // Active PIM assignment appears in roleAssignments until removed.
    let apath = "/v1.0/roleManagement/directory/roleAssignmentScheduleRequests";
    let (s, _) = t.post(apath, req("adminAssign")).await;
    assert_eq!(s, StatusCode::CREATED);
    let ra = t
        .get_all(
            &format!(
                "/v1.0/roleManagement/directory/roleAssignments?$filter=principalId eq '{user}'"
            ),
            false,
        )
        .await;
    assert!(ra.iter().any(|a| a["roleDefinitionId"] == role));
    let (s, _) = t.post(apath, req("adminRemove")).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, v) = t.get(apath).await;
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn licenses_users_and_sessions() {
    let t = T::new().await;
    let users = t
        .get_all(
            "/v1.0/users?$select=id,usageLocation,assignedLicenses,userType&$top=999",
            false,
        )
        .await;
    let e3 = "6fd2c87f-b296-42f0-b197-1e91e994b900";
    let no_loc = users.iter().find(|u| u["usageLocation"].is_null()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"addLicenses": [{"skuId": e3, "disabledPlans": []}], "removeLicenses": []});
    let (s, v) = t
        .post(&format!("/v1.0/users/{no_loc}/assignLicense"), body.clone())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        err_msg(&v),
        "License assignment cannot be done for user with invalid usage location."
    );
    let (s, v) = t
        .post(
            &format!("/v1.0/users/{no_loc}/assignLicense"),
            json!({"addLicenses": []}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err_msg(&v).contains("removeLicenses"));
    let unlicensed = users
        .iter()
        .find(|u| {
            u["usageLocation"].is_string() && u["assignedLicenses"].as_array().unwrap().is_empty()
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = t
        .post(&format!("/v1.0/users/{unlicensed}/assignLicense"), body)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["id"], unlicensed.as_str());
    let (_, v) = t
        .get(&format!(
            "/v1.0/users/{unlicensed}?$select=assignedLicenses"
        ))
        .await;
    assert_eq!(v["assignedLicenses"][0]["skuId"], e3);
    // The fully consumed SKU refuses.
    let (_, skus) = t.get("/v1.0/subscribedSkus").await;
    let full = skus["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["consumedUnits"] == s["prepaidUnits"]["enabled"])
        .unwrap();
    let sku = full["skuId"].as_str().unwrap();
    let (s, v) = t
        .post(
            &format!("/v1.0/users/{unlicensed}/assignLicense"),
            json!({"addLicenses": [{"skuId": sku}], "removeLicenses": []}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        err_msg(&v),
        format!("Subscription with SKU {sku} does not have any available licenses.")
    );
    // Create user; duplicate UPN; weak password.
    let upn = format!("new.person@{}", t.sim.domain());
    let nu = json!({"accountEnabled": true, "displayName": "New Person", "mailNickname": "newperson", "userPrincipalName": upn,
        "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "Str0ng!Passw0rd"}});
    let (s, v) = t.post("/v1.0/users", nu.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(v.get("passwordProfile").is_none());
    let new_id = v["id"].as_str().unwrap().to_string();
    let (s, v) = t.post("/v1.0/users", nu.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        err_msg(&v),
        "Another object with the same value for property userPrincipalName already exists."
    );
    let mut weak = nu.clone();
    weak["userPrincipalName"] = json!(format!("weak@{}", t.sim.domain()));
    weak["passwordProfile"]["password"] = json!("abc");
    let (s, _) = t.post("/v1.0/users", weak).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Disable, then revoke sessions.
    let (s, _) = t
        .patch(
            &format!("/v1.0/users/{new_id}"),
            json!({"accountEnabled": false}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = t
        .get(&format!("/v1.0/users/{new_id}?$select=accountEnabled"))
        .await;
    assert_eq!(v["accountEnabled"], false);
    let (s, v) = t
        .post(
            &format!("/v1.0/users/{new_id}/revokeSignInSessions"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["value"], true);
}

#[tokio::test]
async fn bulk_bind_transitive_members_and_user_assignments() {
    let t = T::new().await;
    let g = t.group_of_kind("security").await;
    let members = t.sim.group_members(g.parse().unwrap()).unwrap();
    let outsiders: Vec<String> = t
        .user_ids()
        .await
        .into_iter()
        .filter(|u| !members.iter().any(|m| m.to_string() == *u))
        .take(3)
        .collect();
    let binds: Vec<String> = outsiders
        .iter()
        .map(|u| format!("https://graph.microsoft.com/v1.0/directoryObjects/{u}"))
        .collect();
    let (s, v) = t
        .patch(
            &format!("/v1.0/groups/{g}"),
            json!({"members@odata.bind": binds}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let now = t.sim.group_members(g.parse().unwrap()).unwrap();
    assert!(
        outsiders
            .iter()
            .all(|u| now.iter().any(|m| m.to_string() == *u))
    );
    // All or nothing: one duplicate refuses the whole request.
    let (s, _) = t.patch(&format!("/v1.0/groups/{g}"), json!({"members@odata.bind": [format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", outsiders[0])]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let dl = t.group_of_kind("distribution").await;
    let (s, _) = t.patch(&format!("/v1.0/groups/{dl}"), json!({"members@odata.bind": [format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", outsiders[0])]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Group 0 nests another group: transitive members include the nested group's members.
    let (_, v) = t.get("/v1.0/groups?$top=1&$select=id").await;
    let g0 = v["value"][0]["id"].as_str().unwrap().to_string();
    let direct = t
        .get_all(&format!("/v1.0/groups/{g0}/members?$select=id"), false)
        .await;
    let transitive = t
        .get_all(
            &format!("/v1.0/groups/{g0}/transitiveMembers?$select=id&$top=4"),
            false,
        )
        .await;
    assert!(transitive.len() >= direct.len());
    let (s, v) = t
        .get(&format!("/v1.0/users/{}/appRoleAssignments", outsiders[0]))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["value"].is_array());
}
