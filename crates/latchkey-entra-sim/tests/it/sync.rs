//! Delta queries, $batch, provisioning jobs and the introspection API.

use latchkey_entra_sim::Change;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::T;

async fn delta_round(t: &T, start: &str) -> (Vec<Value>, String) {
    let mut url = t.url(start);
    let mut items = Vec::new();
    for _ in 0..1000 {
        let (s, v, _) = t
            .send(
                t.http
                    .get(&url)
                    .bearer_auth(&t.token)
                    .header("Prefer", "odata.maxpagesize=5"),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        items.extend(v["value"].as_array().unwrap().iter().cloned());
        if let Some(n) = v["@odata.nextLink"].as_str() {
            url = n.to_string();
        } else {
            return (items, v["@odata.deltaLink"].as_str().unwrap().to_string());
        }
    }
    panic!("delta round did not end");
}

#[tokio::test]
async fn users_delta_reports_changes_and_removals() {
    let t = T::new().await;
    let (items, link) = delta_round(
        &t,
        "/v1.0/users/delta?$select=displayName,accountEnabled,manager",
    )
    .await;
    assert_eq!(items.len(), t.sim.truth().users);
    // A first round names every manager.
    let truth = t.sim.truth_users();
    for u in &truth {
        let item = items.iter().find(|i| i["id"] == u.id.to_string()).unwrap();
        assert_eq!(
            item["manager@delta"][0]["id"].as_str(),
            u.manager_id.map(|m| m.to_string()).as_deref(),
            "{item}"
        );
    }
    let (again, link) = delta_round(&t, link.trim_start_matches(t.sim.base_url())).await;
    assert!(again.is_empty());
    let ids = t.user_ids().await;
    let reports: Vec<String> = truth
        .iter()
        .filter(|u| u.manager_id.map(|m| m.to_string()).as_deref() == Some(ids[4].as_str()))
        .map(|u| u.id.to_string())
        .collect();
    assert!(!reports.is_empty(), "user 4 manages someone");
    t.sim
        .apply(Change::SetManager {
            user_id: ids[3].parse().unwrap(),
            manager_id: Some(ids[5].parse().unwrap()),
        })
        .unwrap();
    t.sim
        .apply(Change::UpdateUser {
            id: ids[3].parse().unwrap(),
            display_name: Some("Renamed".into()),
            job_title: None,
            account_enabled: None,
        })
        .unwrap();
    t.sim
        .apply(Change::DeleteUser {
            id: ids[4].parse().unwrap(),
        })
        .unwrap();
    let created = t
        .sim
        .apply(Change::CreateUser {
            display_name: "Fresh Hire".into(),
            user_principal_name: None,
            account_enabled: None,
            usage_location: None,
        })
        .unwrap();
    let (changes, _) = delta_round(&t, link.trim_start_matches(t.sim.base_url())).await;
    // The renamed, deleted and created users, and those whose manager was deleted.
    assert_eq!(changes.len(), 3 + reports.len(), "{changes:?}");
    let renamed = changes
        .iter()
        .find(|c| c["displayName"] == "Renamed")
        .unwrap();
    assert_eq!(renamed["manager@delta"][0]["id"], ids[5].as_str());
    for r in &reports {
        let c = changes.iter().find(|c| c["id"] == r.as_str()).unwrap();
        assert_eq!(c["manager@delta"][0]["id"], ids[4].as_str(), "{c}");
        assert_eq!(c["manager@delta"][0]["@removed"]["reason"], "deleted");
    }
    // The new user has no manager: nothing to say.
    let fresh = changes
        .iter()
        .find(|c| Some(c["id"].as_str().unwrap().to_string()) == created.id)
        .unwrap();
    assert!(fresh.get("manager@delta").is_none(), "{fresh}");
    assert!(
        changes
            .iter()
            .any(|c| c["id"] == ids[4].as_str() && c["@removed"]["reason"] == "changed")
    );
    assert!(
        changes
            .iter()
            .any(|c| Some(c["id"].as_str().unwrap().to_string()) == created.id)
    );
}

#[tokio::test]
async fn groups_delta_carries_member_changes() {
    let t = T::new().await;
    let (items, link) = delta_round(&t, "/v1.0/groups/delta?$select=displayName,members").await;
    let distinct: std::collections::HashSet<&str> =
        items.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), t.sim.truth().groups);
    assert!(
        items
            .iter()
            .any(|g| !g["members@delta"].as_array().unwrap().is_empty())
    );
    let g = t.group_of_kind("security").await;
    let members = t.sim.group_members(g.parse().unwrap()).unwrap();
    let newcomer = t
        .user_ids()
        .await
        .into_iter()
        .find(|u| !members.iter().any(|m| m.to_string() == *u))
        .unwrap();
    let user_ids = t.user_ids().await;
    let leaver = members
        .iter()
        .find(|m| user_ids.contains(&m.to_string()))
        .copied();
    let (s, _) = t.post(&format!("/v1.0/groups/{g}/members/$ref"), json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{newcomer}")})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    if let Some(l) = leaver {
        t.sim
            .apply(Change::RemoveMember {
                group_id: g.parse().unwrap(),
                member_id: l,
            })
            .unwrap();
    }
    let (changes, _) = delta_round(&t, link.trim_start_matches(t.sim.base_url())).await;
    let grp = changes.iter().find(|c| c["id"] == g.as_str()).unwrap();
    let md = grp["members@delta"].as_array().unwrap();
    assert!(
        md.iter()
            .any(|m| m["id"] == newcomer.as_str() && m.get("@removed").is_none())
    );
    if let Some(l) = leaver {
        assert!(
            md.iter()
                .any(|m| m["id"] == l.to_string().as_str() && m["@removed"]["reason"] == "deleted")
        );
    }
}

#[tokio::test]
async fn batch_dispatches_each_request_and_throttles_them_individually() {
    let t = T::new().await;
    let body = json!({"requests": [
        {"id": "1", "method": "GET", "url": "/users?$top=1&$select=id"},
        {"id": "2", "method": "GET", "url": "/groups/00000000-0000-0000-0000-000000000000"},
        {"id": "3", "method": "GET", "url": "/users?$filter=endswith(mail,'x')&$count=true", "headers": {"ConsistencyLevel": "eventual"}},
    ]});
    let (s, v) = t.post("/v1.0/$batch", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = v["responses"].as_array().unwrap();
    assert_eq!(r[0]["status"], 200);
    assert_eq!(r[0]["body"]["value"].as_array().unwrap().len(), 1);
    assert_eq!(r[1]["status"], 404);
    assert_eq!(r[1]["body"]["error"]["code"], "Request_ResourceNotFound");
    assert_eq!(r[2]["status"], 200);
    let (_, v) = t
        .post(
            "/v1.0/$batch",
            json!({"requests": [
                {"id": "a", "method": "GET", "url": "/groups/00000000-0000-0000-0000-000000000000"},
                {"id": "b", "method": "GET", "url": "/organization", "dependsOn": ["a"]},
            ]}),
        )
        .await;
    assert_eq!(v["responses"][1]["status"], 424);
    let too_many: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    let (s, _) = t.post("/v1.0/$batch", json!({"requests": too_many})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    t.sim
        .update_faults(|f| f.throttle = latchkey_entra_sim::Throttle::EveryN { n: 2 });
    let reqs: Vec<Value> = (0..4)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/organization"}))
        .collect();
    let (s, v) = t.post("/v1.0/$batch", json!({"requests": reqs})).await;
    if s == StatusCode::OK {
        let statuses: Vec<u64> = v["responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect();
        assert!(
            statuses.contains(&429) && statuses.contains(&200),
            "{statuses:?}"
        );
        let throttled = v["responses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == 429)
            .unwrap();
        assert!(throttled["headers"]["Retry-After"].is_string());
    } else {
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    }
}

#[tokio::test]
async fn provisioning_jobs_start_and_provision_on_demand() {
    let t = T::new().await;
    let sps = t.sim_get("/_sim/truth/service-principals").await;
    let sp = sps["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| !s["sync_jobs"].as_array().unwrap().is_empty())
        .unwrap()
        .clone();
    let id = sp["id"].as_str().unwrap();
    let (s, v) = t
        .get(&format!(
            "/v1.0/servicePrincipals/{id}/synchronization/jobs"
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    let job = v["value"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = t
        .post(
            &format!("/v1.0/servicePrincipals/{id}/synchronization/jobs/{job}/start"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = t
        .get(&format!(
            "/v1.0/servicePrincipals/{id}/synchronization/jobs/{job}"
        ))
        .await;
    assert_eq!(v["status"]["code"], "Active");
    let (_, schema) = t
        .get(&format!(
            "/v1.0/servicePrincipals/{id}/synchronization/jobs/{job}/schema"
        ))
        .await;
    let rule = schema["synchronizationRules"][0]["id"].as_str().unwrap();
    let user = &t.user_ids().await[2];
    let body = json!({"parameters": [{"ruleId": rule, "subjects": [{"objectId": user, "objectTypeName": "User"}]}]});
    let (s, v) = t
        .post(
            &format!("/v1.0/servicePrincipals/{id}/synchronization/jobs/{job}/provisionOnDemand"),
            body,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["value"].as_str().unwrap().contains("success"));
    let calls = t.sim_get("/_sim/truth/provision-on-demand").await;
    assert_eq!(calls["value"][0]["subjects"][0][0], user.as_str());
}

#[tokio::test]
async fn introspection_truth_requests_changes_and_faults() {
    let t = T::new().await;
    let info = t.sim_get("/_sim/info").await;
    assert_eq!(info["tenant_id"], t.sim.tenant_id().to_string());
    assert_eq!(
        info["customer_app"]["client_secret"],
        t.sim.customer_app().client_secret
    );
    let truth = t.sim_get("/_sim/truth").await;
    assert_eq!(truth["users"], 40);
    assert_eq!(truth["groups_by_kind"].as_object().unwrap().len(), 8);
    t.sim.clear_requests();
    let _ = t.get_eventual("/v1.0/users?$top=2&$count=true").await;
    let log = t.sim_get("/_sim/requests").await;
    let e = &log["value"][0];
    assert_eq!(e["method"], "GET");
    assert_eq!(e["path"], "/v1.0/users");
    assert_eq!(e["query"], "$top=2&$count=true");
    assert_eq!(e["status"], 200);
    assert_eq!(e["headers"]["consistencylevel"], "eventual");
    assert_eq!(e["headers"]["authorization"], "Bearer");
    // Out-of-band change through HTTP.
    let g = t.group_of_kind("security").await;
    let created = t
        .sim_post(
            "/_sim/changes",
            json!({"op": "create_user", "display_name": "Out Of Band"}),
        )
        .await;
    assert_eq!(created.0, StatusCode::OK, "{:?}", created.1);
    let uid = created.1["value"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = t
        .sim_post(
            "/_sim/changes",
            json!([{"op": "add_member", "group_id": g, "member_id": uid}]),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let members = t
        .get_all(&format!("/v1.0/groups/{g}/members?$select=id"), false)
        .await;
    assert!(members.iter().any(|m| m["id"] == uid.as_str()));
    let (s, _) = t
        .sim_post(
            "/_sim/changes",
            json!({"op": "add_member", "group_id": g, "member_id": uid}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Faults at run time.
    let r = t
        .http
        .patch(t.url("/_sim/faults"))
        .json(&json!({"transient_rate": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, _) = t.get("/v1.0/organization").await;
    assert!(s == StatusCode::SERVICE_UNAVAILABLE || s == StatusCode::GATEWAY_TIMEOUT);
    let r = t
        .http
        .patch(t.url("/_sim/consent"))
        .json(&json!({"outcome": "deny"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["outcome"], "deny");
}

#[tokio::test]
async fn groups_delta_splits_big_groups_across_appearances() {
    let t = T::new().await;
    let mut url = t.url("/beta/groups/delta?$select=displayName,members");
    let mut seen: std::collections::HashMap<String, (usize, std::collections::HashSet<String>)> =
        Default::default();
    for _ in 0..10_000 {
        let (s, v, _) = t
            .send(
                t.http
                    .get(&url)
                    .bearer_auth(&t.token)
                    .header("Prefer", "odata.maxpagesize=1"),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for g in v["value"].as_array().unwrap() {
            let e = seen
                .entry(g["id"].as_str().unwrap().to_string())
                .or_default();
            e.0 += 1;
            for m in g["members@delta"].as_array().unwrap() {
                e.1.insert(m["id"].as_str().unwrap().to_string());
            }
        }
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    // With one object per page, members come 10 at a time: a group with more appears repeatedly.
    let mut split = 0;
    for (id, (appearances, members)) in &seen {
        let truth = t.sim.group_members(id.parse().unwrap()).unwrap();
        assert_eq!(members.len(), truth.len(), "group {id}");
        if truth.len() > 10 {
            assert!(*appearances > 1);
            split += 1;
        }
    }
    assert!(split > 0);
}

#[tokio::test]
async fn refresh_tokens_issue_new_access_tokens() {
    let t = T::new().await;
    let lk = t.sim.latchkey_app();
    let mut u = url::Url::parse(&format!("{}/oauth2/v2.0/authorize", t.sim.authority())).unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", &lk.client_id.to_string())
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &lk.redirect_uris[0])
        .append_pair(
            "scope",
            "openid offline_access https://graph.microsoft.com/User.Read",
        );
    let r = t.http.get(u.as_str()).send().await.unwrap();
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = loc
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let cid = lk.client_id.to_string();
    let (s, v) = t
        .token_response(&[
            ("grant_type", "authorization_code"),
            ("client_id", &cid),
            ("client_secret", &lk.client_secret),
            ("code", &code),
            ("redirect_uri", &lk.redirect_uris[0]),
        ])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["scope"], "User.Read");
    let rt = v["refresh_token"].as_str().unwrap().to_string();
    let (s, v) = t
        .token_response(&[
            ("grant_type", "refresh_token"),
            ("client_id", &cid),
            ("client_secret", &lk.client_secret),
            ("refresh_token", &rt),
        ])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["access_token"].is_string());
    let (s, v) = t
        .token_response(&[
            ("grant_type", "refresh_token"),
            ("client_id", &cid),
            ("client_secret", &lk.client_secret),
            ("refresh_token", "nope"),
        ])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "invalid_grant");
}

#[tokio::test]
async fn rust_ground_truth_accessors() {
    let t = T::new().await;
    let users = t.sim.truth_users();
    let groups = t.sim.truth_groups();
    assert_eq!(users.len(), t.sim.truth().users);
    assert_eq!(groups.len(), t.sim.truth().groups);
    let g = &groups[0];
    assert_eq!(t.sim.group_members(g.id).unwrap().len(), g.members);
    assert_eq!(t.sim.group_owners(g.id).unwrap().len(), g.owners);
    let sps = t.sim_get("/_sim/truth/service-principals").await;
    let with = sps["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["app_role_assignments"].as_u64().unwrap() > 0)
        .unwrap();
    let list = t
        .sim
        .app_role_assignments(with["id"].as_str().unwrap().parse().unwrap())
        .unwrap();
    assert!(!list.is_empty());
    assert!(t.sim.provision_on_demand_calls().is_empty());
}
