//! Accounts, the vault and time-bound grants through the REST API against the simulated
//! tenant with a real worker: an account is created with a password revealed exactly once
//! (410 after, 403 to another client, 404 to another organization), duplicate UPNs and weak
//! passwords fail with clear reasons, deprovisioning disables sign-in and revokes sessions
//! (deletion only when the connector allows it, refused before any Graph write otherwise),
//! `expires_at` is validated and ends the grant, and every step is in the audit trail.

use crate::provisioning::Env;
use latchkey_core::{OrgId, Role};
use latchkey_entra_sim::GroupKind;
use latchkey_store::audit::{self, Filter};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// The organization's audit trail, oldest first: (action, actor kind, details).
async fn audit_trail(env: &Env, org: OrgId) -> Vec<(String, String, Value)> {
    let mut tx = env.app.store().org_tx(org).await.unwrap();
    let page = audit::list(&mut tx, &Filter::default(), None, 500)
        .await
        .unwrap();
    let check = audit::verify_chain(&mut tx).await.unwrap();
    assert!(check.intact(), "the audit chain is intact");
    tx.commit().await.unwrap();
    let mut v: Vec<_> = page
        .items
        .into_iter()
        .map(|e| (e.action, e.actor.kind.as_str().to_string(), e.details))
        .collect();
    v.reverse();
    v
}

async fn task_actions(env: &Env, org: OrgId, task: &str) -> Vec<String> {
    let mut tx = env.app.store().org_tx(org).await.unwrap();
    let page = audit::list(
        &mut tx,
        &Filter {
            target_kind: Some("provisioning_task".into()),
            target_id: Some(task.to_string()),
            action_prefix: None,
        },
        None,
        100,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut v: Vec<String> = page.items.into_iter().map(|e| e.action).collect();
    v.reverse();
    v
}

async fn post(env: &Env, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    env.call(Method::POST, token, path, Some(body)).await
}

#[tokio::test]
async fn an_account_is_created_its_password_revealed_once_and_it_is_deprovisioned() {
    let env = Env::start().await;
    let (org, _) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::ConnectorAdmin).await;
    let c = env.synced_connector(&token, true).await;
    let domain = env.sim.domain();
    let boss = env
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.user_type == "Member")
        .unwrap();
    let boss_resource = env.resource(&token, &c, "user", boss.id).await;
    let upn = format!("new.hire@{domain}");
    let body = json!({"user_principal_name": upn, "display_name": "New Hire", "mail_nickname": "new.hire",
        "given_name": "New", "surname": "Hire", "department": "Finance", "job_title": "Analyst",
        "employee_id": "E-1001", "usage_location": "gb", "manager_id": boss_resource});

    // Validation first: nothing is stored or sent.
    env.sim.clear_requests();
    let (s, v) = post(
        &env,
        &token,
        &format!("/api/v1/connectors/{c}/accounts"),
        json!({"user_principal_name": "no-at-sign", "display_name": " ", "mail_nickname": "has space",
               "usage_location": "GBR", "manager_id": Uuid::new_v4()}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let fields: Vec<&str> = v["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in [
        "user_principal_name",
        "display_name",
        "mail_nickname",
        "usage_location",
        "manager_id",
    ] {
        assert!(fields.contains(&f), "{f} in {v}");
    }
    // A domain the connection test did not list as verified.
    let (s, v) = post(
        &env,
        &token,
        &format!("/api/v1/connectors/{c}/accounts"),
        json!({"user_principal_name": "x@not-ours.example", "display_name": "X", "mail_nickname": "x"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["fields"][0]["message"]
            .as_str()
            .unwrap()
            .contains("verified domains"),
        "{v}"
    );
    assert!(env.sim.graph_writes().is_empty());

    // Create.
    let (s, v) = post(
        &env,
        &token,
        &format!("/api/v1/connectors/{c}/accounts"),
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let task = v["task_id"].as_str().unwrap().to_string();
    let t = env.finished(&token, &task).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["operation"], "create_account");
    for k in ["requested_at", "provisioned_at", "verified_at"] {
        assert!(t[k].is_string(), "{k} in {t}");
    }
    let item = t["vault_item_id"]
        .as_str()
        .expect("a vault item")
        .to_string();
    let account = env
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.user_principal_name == upn)
        .expect("the account exists in the tenant");
    assert!(account.account_enabled);
    assert_eq!(account.usage_location.as_deref(), Some("GB"));
    assert_eq!(env.sim.user_manager(account.id), Some(boss.id));
    // Stored as a user resource at once, and it is the task's principal.
    let stored = env.resource(&token, &c, "user", account.id).await;
    assert_eq!(t["principal_id"], stored.as_str());
    let create_write = env
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/users"))
        .expect("POST /users");
    assert_eq!(create_write.status, 201);

    // The vault: another client of the organization may not read it, another organization
    // does not see it, the asker reads it once.
    let (_, _, colleague) = env.app.api_token(org, Role::ConnectorAdmin).await;
    let reveal = format!("/api/v1/vault/{item}/reveal");
    let (s, v) = post(&env, &colleague, &reveal, json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (other, _) = env.app.org("fabrikam").await;
    let (_, _, intruder) = env.app.api_token(other, Role::SuperAdmin).await;
    let (s, _) = post(&env, &intruder, &reveal, json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env.get(&intruder, &format!("/api/v1/tasks/{task}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let r = env
        .app
        .api()
        .post(env.app.url(&reveal))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    let password = v["password"].as_str().unwrap().to_string();
    assert!(password.len() >= 32, "a strong password");
    assert_eq!(v["user_principal_name"], upn.as_str());
    assert_eq!(v["account_id"], account.id.to_string());
    // The password the tenant got is the one revealed, and it must be changed at first sign-in.
    let sent = env
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/users"))
        .unwrap();
    assert!(sent.query.unwrap_or_default().is_empty());
    let (s, v) = post(&env, &token, &reveal, json!({})).await;
    assert_eq!(s, StatusCode::GONE, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already revealed"),
        "{v}"
    );
    // Nothing else shows it.
    let (_, t) = env.get(&token, &format!("/api/v1/tasks/{task}")).await;
    assert!(!t.to_string().contains(&password));
    let (_, tasks) = env
        .get(&token, &format!("/api/v1/connectors/{c}/tasks"))
        .await;
    assert!(!tasks.to_string().contains(&password));
    assert_eq!(tasks["items"][0]["id"], task.as_str(), "{tasks}");

    let trail = audit_trail(&env, org).await;
    let vault: Vec<(String, Value)> = trail
        .iter()
        .filter(|(a, ..)| a.starts_with("vault."))
        .map(|(a, _, d)| (a.clone(), d.clone()))
        .collect();
    assert_eq!(
        vault
            .iter()
            .map(|(a, d)| format!("{a}:{}", d["reason"].as_str().unwrap_or("")))
            .collect::<Vec<_>>(),
        [
            "vault.reveal_refused:not_allowed",
            "vault.revealed:",
            "vault.reveal_refused:already_revealed"
        ]
    );
    assert!(!format!("{trail:?}").contains(&password));
    assert_eq!(
        task_actions(&env, org, &task).await,
        [
            "provisioning.account_create_requested",
            "provisioning.account_create_succeeded",
            "provisioning.account_create_verified"
        ]
    );
    let requested = trail
        .iter()
        .find(|(a, ..)| a == "provisioning.account_create_requested")
        .unwrap();
    assert_eq!(requested.1, "api_client", "who asked");
    assert_eq!(requested.2["user_principal_name"], upn.as_str());

    // A duplicate UPN and a password the tenant's policy refuses: clear failures, no vault item.
    let (_, v) = post(
        &env,
        &token,
        &format!("/api/v1/connectors/{c}/accounts"),
        body.clone(),
    )
    .await;
    let dup = v["task_id"].as_str().unwrap().to_string();
    let t = env.finished(&token, &dup).await;
    assert_eq!(t["status"], "failed");
    assert!(
        t["error"].as_str().unwrap().contains("already exists"),
        "{t}"
    );
    assert!(t.get("vault_item_id").is_none(), "{t}");
    assert_eq!(
        task_actions(&env, org, &dup).await,
        [
            "provisioning.account_create_requested",
            "provisioning.account_create_failed"
        ]
    );
    env.sim.set_password_min_length(200);
    let (_, v) = post(
        &env,
        &token,
        &format!("/api/v1/connectors/{c}/accounts"),
        json!({"user_principal_name": format!("strict@{domain}"), "display_name": "Strict", "mail_nickname": "strict"}),
    )
    .await;
    let weak = v["task_id"].as_str().unwrap().to_string();
    let t = env.finished(&token, &weak).await;
    env.sim.set_password_min_length(8);
    assert_eq!(t["status"], "failed");
    assert!(
        t["error"].as_str().unwrap().contains("not complex enough"),
        "{t}"
    );
    assert!(t.get("vault_item_id").is_none());
    assert!(
        !env.sim
            .truth_users()
            .iter()
            .any(|u| u.user_principal_name.starts_with("strict@"))
    );

    // Deprovision: sign-in disabled and sessions revoked, in the tenant and in the store.
    let before = env.sim.user_sessions_valid_from(account.id).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, v) = post(
        &env,
        &token,
        &format!("/api/v1/connectors/{c}/accounts/{stored}/deprovision"),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let dep = v["task_id"].as_str().unwrap().to_string();
    let t = env.finished(&token, &dep).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["operation"], "deprovision_account");
    assert!(t["verified_at"].is_string());
    let now = env
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.id == account.id)
        .unwrap();
    assert!(!now.account_enabled);
    assert!(env.sim.user_sessions_valid_from(account.id).unwrap() > before);
    let (_, page) = env
        .get(
            &token,
            &format!("/api/v1/connectors/{c}/resources?type=user&q=new.hire"),
        )
        .await;
    assert_eq!(
        page["items"][0]["profile"]["account_enabled"], false,
        "{page}"
    );
    assert_eq!(
        task_actions(&env, org, &dep).await,
        [
            "provisioning.account_deprovision_requested",
            "provisioning.account_deprovision_succeeded",
            "provisioning.account_deprovision_verified"
        ]
    );

    // Deleting is refused, before any Graph write, while the connector does not allow it.
    env.sim.clear_requests();
    let (_, v) = post(
        &env,
        &token,
        &format!("/api/v1/connectors/{c}/accounts/{stored}/deprovision"),
        json!({"delete": true}),
    )
    .await;
    let del = v["task_id"].as_str().unwrap().to_string();
    let t = env.finished(&token, &del).await;
    assert_eq!(t["status"], "failed");
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .contains("Deleting accounts is turned off"),
        "{t}"
    );
    assert!(
        env.sim.graph_writes().is_empty(),
        "{:?}",
        env.sim.graph_writes()
    );
    assert!(env.sim.truth_users().iter().any(|u| u.id == account.id));
    assert_eq!(
        task_actions(&env, org, &del).await,
        [
            "provisioning.account_deprovision_requested",
            "provisioning.account_deprovision_refused"
        ]
    );
    // Allowed: deleted in the tenant and gone from the store.
    let (s, v) = env
        .call(
            Method::PATCH,
            &token,
            &format!("/api/v1/connectors/{c}"),
            Some(json!({"settings": {"allow_account_deletion": true}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["settings"]["allow_account_deletion"], true);
    let (_, v) = post(
        &env,
        &token,
        &format!("/api/v1/connectors/{c}/accounts/{stored}/deprovision"),
        json!({"delete": true}),
    )
    .await;
    let t = env.finished(&token, v["task_id"].as_str().unwrap()).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert!(!env.sim.truth_users().iter().any(|u| u.id == account.id));
    let (_, page) = env
        .get(
            &token,
            &format!("/api/v1/connectors/{c}/resources?type=user&q=new.hire"),
        )
        .await;
    assert!(page["items"].as_array().unwrap().is_empty(), "{page}");

    // Roles and other organizations.
    let (_, _, member) = env.app.api_token(org, Role::Member).await;
    let (s, _) = post(
        &env,
        &member,
        &format!("/api/v1/connectors/{c}/accounts"),
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = post(
        &env,
        &intruder,
        &format!("/api/v1/connectors/{c}/accounts"),
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = post(
        &env,
        &intruder,
        &format!("/api/v1/connectors/{c}/accounts/{boss_resource}/deprovision"),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env
        .get(&intruder, &format!("/api/v1/connectors/{c}/tasks"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Deprovisioning a group is not a thing.
    let group = env
        .resource(&token, &c, "group", env.group_of(GroupKind::Security))
        .await;
    let (s, v) = post(
        &env,
        &token,
        &format!("/api/v1/connectors/{c}/accounts/{group}/deprovision"),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

#[tokio::test]
async fn time_bound_grants_are_validated_audited_and_revoked_at_their_end() {
    let env = Env::start().await;
    let (org, _) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::ConnectorAdmin).await;
    let c = env.synced_connector(&token, true).await;
    let gid = env.group_of(GroupKind::Security);
    let members = env.sim.group_members(gid).unwrap();
    let uid = env
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.user_type == "Member" && !members.contains(&u.id))
        .unwrap()
        .id;
    let group = env.resource(&token, &c, "group", gid).await;
    let user = env.resource(&token, &c, "user", uid).await;
    let ent = env.entitlement(&token, &c, &group, "members").await;
    let path = format!("/api/v1/connectors/{c}/grants");
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let now = time::OffsetDateTime::now_utc();
    for (bad, says) in [
        ("tomorrow".to_string(), "RFC 3339"),
        (fmt(now - time::Duration::hours(1)), "in the future"),
        (fmt(now + time::Duration::days(400)), "at most 366 days"),
    ] {
        let (s, v) = post(
            &env,
            &token,
            &path,
            json!({"entitlement_id": ent, "principal_id": user, "expires_at": bad}),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert_eq!(v["error"]["fields"][0]["field"], "expires_at");
        assert!(
            v["error"]["fields"][0]["message"]
                .as_str()
                .unwrap()
                .contains(says),
            "{v}"
        );
    }
    let end = fmt(now + time::Duration::hours(2));
    let (s, v) = post(
        &env,
        &token,
        &path,
        json!({"entitlement_id": ent, "principal_id": user, "expires_at": end}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let task = v["task_id"].as_str().unwrap().to_string();
    let t = env.finished(&token, &task).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["expires_at"], end.as_str());
    assert!(env.sim.group_members(gid).unwrap().contains(&uid));
    assert_eq!(
        task_actions(&env, org, &task).await,
        [
            "provisioning.grant_requested",
            "provisioning.grant_succeeded",
            "provisioning.grant_verified"
        ]
    );

    // Its end is a revoke task, queued to run then.
    let (_, tasks) = env
        .get(&token, &format!("/api/v1/connectors/{c}/tasks"))
        .await;
    let revoke = tasks["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["operation"] == "revoke")
        .unwrap_or_else(|| panic!("a scheduled revoke: {tasks}"))
        .clone();
    assert_eq!(revoke["status"], "queued");
    assert_eq!(revoke["requested_by"], "expiry");
    // Bring the end forward instead of waiting two hours.
    sqlx::query("UPDATE jobs SET run_at = now() WHERE id = $1")
        .bind(Uuid::parse_str(revoke["job_id"].as_str().unwrap()).unwrap())
        .execute(env.app.store().system())
        .await
        .unwrap();
    let r = env.finished(&token, revoke["id"].as_str().unwrap()).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert!(!env.sim.group_members(gid).unwrap().contains(&uid));
    let trail = audit_trail(&env, org).await;
    let ended = trail
        .iter()
        .find(|(a, ..)| a == "provisioning.revoke_requested")
        .unwrap();
    assert_eq!(ended.1, "system");
    assert_eq!(ended.2["requested_by"], "expiry");
}

#[tokio::test]
async fn pages_offer_provisioning_to_owners_and_admins_only_with_csrf() {
    use crate::support::{PASSWORD, csrf_token};
    let env = Env::start().await;
    let (org, _) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::ConnectorAdmin).await;
    let c = env.synced_connector(&token, true).await;
    let (_, conn) = env.get(&token, &format!("/api/v1/connectors/{c}")).await;
    let app = conn["app"]["id"].as_str().unwrap().to_string();
    let gid = env.group_of(GroupKind::Security);
    let group = env.resource(&token, &c, "group", gid).await;
    let ent = env.entitlement(&token, &c, &group, "members").await;
    let user = env
        .resource(&token, &c, "user", env.sim.truth_users()[0].id)
        .await;

    // A member sees no buttons and may not post.
    env.app
        .person(org, "mia@contoso.example", Role::Member)
        .await;
    let member = env.app.browser();
    member.login("mia@contoso.example", PASSWORD).await;
    let (s, html) = member
        .get_text(&format!("/apps/{app}/entitlements/{ent}?who=a"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!html.contains("Grant access"));
    let (_, html) = member.get_text(&format!("/apps/{app}?tab=accounts")).await;
    assert!(!html.contains("Create account") && !html.contains("Deprovision"));
    let r = member
        .submit(
            &format!("/apps/{app}"),
            &format!("/connectors/{c}/grants"),
            &[("entitlement_id", &ent), ("principal_id", &user)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (s, _) = member
        .get_text(&format!("/connectors/{c}/accounts/new"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The admin sees them; a post without the session's token is refused.
    let admin = env.app.browser();
    admin.login("admin@contoso.example", PASSWORD).await;
    let (_, html) = admin
        .get_text(&format!("/apps/{app}/entitlements/{ent}?who=a"))
        .await;
    assert!(html.contains("Grant access"), "admins get the grant form");
    assert!(csrf_token(&html).is_some());
    let r = admin
        .post(
            &format!("/connectors/{c}/grants"),
            &[
                ("entitlement_id", &ent),
                ("principal_id", &user),
                ("csrf_token", "forged"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, tasks) = env
        .get(&token, &format!("/api/v1/connectors/{c}/tasks"))
        .await;
    assert!(tasks["items"].as_array().unwrap().is_empty(), "{tasks}");
    let r = admin
        .submit(
            &format!("/apps/{app}"),
            &format!("/connectors/{c}/grants"),
            &[
                ("entitlement_id", &ent),
                ("principal_id", &user),
                ("expires_at", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let task_page = crate::support::location(&r);
    assert!(task_page.starts_with(&format!("/connectors/{c}/tasks/")));
    let (s, html) = admin.get_text(&format!("/connectors/{c}/tasks")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("admin@contoso.example"), "who asked");

    // Another organization's person gets 404s.
    let (other, _) = env.app.org("fabrikam").await;
    let _ = other;
    let intruder = env.app.browser();
    intruder.login("admin@fabrikam.example", PASSWORD).await;
    for path in [
        format!("/connectors/{c}/tasks"),
        task_page.clone(),
        format!("/connectors/{c}/accounts/new"),
        format!("/vault/{}", Uuid::new_v4()),
    ] {
        let (s, _) = intruder.get_text(&path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn account_tasks_on_a_self_hosted_connector_are_queued_for_the_connector() {
    use crate::support::PASSWORD;
    let env = Env::start().await;
    let (org, _) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::ConnectorAdmin).await;
    let (s, c) = post(
        &env,
        &token,
        "/api/v1/connectors",
        json!({"display_name": "On premises", "kind": "self_hosted", "app": {"new": {"name": "Entra on premises"}}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let c = c["id"].as_str().unwrap().to_string();
    let accounts = format!("/api/v1/connectors/{c}/accounts");

    // Checked as for any connector: nothing is stored.
    let (s, v) = post(
        &env,
        &token,
        &accounts,
        json!({"user_principal_name": "no-at-sign", "display_name": "X", "mail_nickname": "x"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["fields"][0]["field"], "user_principal_name");
    // An account Latchkey does not hold cannot be deprovisioned.
    let (s, v) = post(
        &env,
        &token,
        &format!("{accounts}/{}/deprovision", Uuid::new_v4()),
        json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (_, tasks) = env
        .get(&token, &format!("/api/v1/connectors/{c}/tasks"))
        .await;
    assert!(tasks["items"].as_array().unwrap().is_empty(), "{tasks}");

    // Over the API: a task the connector carries out (a job of its own queue, which workers
    // never claim).
    let (s, v) = post(
        &env,
        &token,
        &accounts,
        json!({"user_principal_name": "new.hire@contoso.example", "display_name": "New Hire", "mail_nickname": "new.hire"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let task = v["task_id"].as_str().unwrap().to_string();
    let (_, t) = env.get(&token, &format!("/api/v1/tasks/{task}")).await;
    assert_eq!(t["operation"], "create_account", "{t}");
    assert_eq!(t["status"], "queued", "{t}");
    let kind: String = sqlx::query_scalar("SELECT kind FROM jobs WHERE id = $1")
        .bind(Uuid::parse_str(t["job_id"].as_str().unwrap()).unwrap())
        .fetch_one(env.app.store().system())
        .await
        .unwrap();
    assert_eq!(kind, "connector_agent.provision");

    // In the browser: the form says who creates the account, and posting it asks for one.
    let admin = env.app.browser();
    admin.login("admin@contoso.example", PASSWORD).await;
    let form = format!("/connectors/{c}/accounts/new");
    let (s, html) = admin.get_text(&form).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("self-hosted connector creates the account"),
        "{html}"
    );
    let r = admin
        .submit(
            &form,
            &form,
            &[
                ("user_principal_name", "second.hire@contoso.example"),
                ("display_name", "Second Hire"),
                ("mail_nickname", "second.hire"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(crate::support::location(&r).starts_with(&format!("/connectors/{c}/tasks/")));
    let (_, tasks) = env
        .get(&token, &format!("/api/v1/connectors/{c}/tasks"))
        .await;
    let items = tasks["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{tasks}");
    assert!(
        items
            .iter()
            .all(|t| t["operation"] == "create_account" && t["status"] == "queued"),
        "{tasks}"
    );

    // An account its sync brought in: the Accounts tab offers deprovisioning, deletion
    // included (the connector's own LATCHKEY_ALLOW_ACCOUNT_DELETION decides), and the form
    // asks the connector for it.
    let account = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO resources (id, org_id, connector_id, type, external_id, display_name, last_seen_run)
         VALUES ($1, $2, $3, 'user', $4, 'Synced Person', gen_random_uuid())",
    )
    .bind(account)
    .bind(org.0)
    .bind(Uuid::parse_str(&c).unwrap())
    .bind(Uuid::new_v4().to_string())
    .execute(env.app.store().system())
    .await
    .unwrap();
    let (_, conn) = env.get(&token, &format!("/api/v1/connectors/{c}")).await;
    let app = format!("/apps/{}?tab=accounts", conn["app"]["id"].as_str().unwrap());
    let (s, html) = admin.get_text(&app).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("Deprovision Synced Person") && html.contains("and delete"),
        "{html}"
    );
    let r = admin
        .submit(
            &app,
            &format!("/connectors/{c}/accounts/{account}/deprovision"),
            &[("delete", "yes")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, tasks) = env
        .get(&token, &format!("/api/v1/connectors/{c}/tasks"))
        .await;
    let deprovision = tasks["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["operation"] == "deprovision_account")
        .unwrap_or_else(|| panic!("a deprovisioning task: {tasks}"))
        .clone();
    assert_eq!(deprovision["status"], "queued", "{deprovision}");
    assert_eq!(deprovision["principal_id"], account.to_string());
}
