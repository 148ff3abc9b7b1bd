//! A sync that read Graph before provisioning changed something must not undo the change when
//! it writes its older picture afterwards. The simulated tenant holds the sync's answers for
//! users and group memberships (computed before the changes) until the changes are made and
//! verified; then the sync finishes, and the changes stand: a disabled account stays
//! disabled, a granted membership is not swept, a revoked one is not revived. The next sync,
//! which reads Graph after the changes, agrees.

use crate::provisioning::Env;
use latchkey_core::Role;
use latchkey_entra_sim::GroupKind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

async fn sync(env: &Env, token: &str, c: &str) -> String {
    let (s, v) = env
        .call(
            Method::POST,
            token,
            &format!("/api/v1/connectors/{c}/syncs"),
            Some(json!({"kind": "full"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

async fn sync_finished(env: &Env, token: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (_, v) = env.get(token, &format!("/api/v1/syncs/{id}")).await;
        if v["status"] == "succeeded" || v["status"] == "failed" {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sync never ended: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (whether the account is enabled in the store, whether the two users hold the membership).
async fn stored(
    env: &Env,
    token: &str,
    c: &str,
    account: &str,
    ent: &str,
    granted: &str,
    revoked: &str,
) -> (Value, bool, bool) {
    let mut cursor = String::new();
    let enabled = loop {
        let (_, page) = env
            .get(
                token,
                &format!("/api/v1/connectors/{c}/resources?type=user&limit=200{cursor}"),
            )
            .await;
        if let Some(r) = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == account)
        {
            break r["profile"]["account_enabled"].clone();
        }
        match page["next_cursor"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => break Value::Null,
        }
    };
    let mut holds = Vec::new();
    for p in [granted, revoked] {
        let (_, g) = env
            .get(
                token,
                &format!("/api/v1/connectors/{c}/grants?entitlement_id={ent}&principal_id={p}"),
            )
            .await;
        holds.push(!g["items"].as_array().unwrap().is_empty());
    }
    (enabled, holds[0], holds[1])
}

#[tokio::test]
async fn a_sync_that_read_graph_before_a_provisioning_change_does_not_undo_it() {
    let env = Env::start().await;
    let (org, _) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::ConnectorAdmin).await;
    let c = env.synced_connector(&token, true).await;

    let gid = env.group_of(GroupKind::Security);
    let members = env.sim.group_members(gid).unwrap();
    let users: Vec<_> = env
        .sim
        .truth_users()
        .into_iter()
        .filter(|u| u.user_type == "Member" && u.account_enabled)
        .collect();
    let outsider = users.iter().find(|u| !members.contains(&u.id)).unwrap().id;
    let insider = users.iter().find(|u| members.contains(&u.id)).unwrap().id;
    let account = users
        .iter()
        .find(|u| u.id != outsider && u.id != insider && !u.on_premises_sync_enabled)
        .unwrap()
        .id;
    let group = env.resource(&token, &c, "group", gid).await;
    let ent = env.entitlement(&token, &c, &group, "members").await;
    let granted = env.resource(&token, &c, "user", outsider).await;
    let revoked = env.resource(&token, &c, "user", insider).await;
    let acct = env.resource(&token, &c, "user", account).await;
    assert_eq!(
        stored(&env, &token, &c, &acct, &ent, &granted, &revoked).await,
        (json!(true), false, true)
    );
    let (_, g) = env
        .get(
            &token,
            &format!("/api/v1/connectors/{c}/grants?entitlement_id={ent}&principal_id={revoked}"),
        )
        .await;
    let membership = g["items"][0]["id"].as_str().unwrap().to_string();

    // A full sync reads users and memberships now; its answers are held back.
    let users_hold = env.sim.hold("GET", "/v1.0/users/delta");
    let members_hold = env.sim.hold("GET", "/beta/groups/delta");
    let run = sync(&env, &token, &c).await;
    for h in [&users_hold, &members_hold] {
        if tokio::time::timeout(Duration::from_secs(60), h.held())
            .await
            .is_err()
        {
            let seen: Vec<String> = env
                .sim
                .requests()
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect();
            let (_, v) = env.get(&token, &format!("/api/v1/syncs/{run}")).await;
            panic!("the sync did not read the tenant: {v} {seen:?}");
        }
    }

    // Meanwhile provisioning disables the account, grants and revokes; each is verified.
    let (s, v) = env
        .call(
            Method::POST,
            &token,
            &format!("/api/v1/connectors/{c}/accounts/{acct}/deprovision"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let mut tasks = vec![v["task_id"].as_str().unwrap().to_string()];
    tasks.push(env.grant(&token, &c, &ent, &granted).await);
    let (s, v) = env
        .call(
            Method::DELETE,
            &token,
            &format!("/api/v1/connectors/{c}/grants/{membership}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    tasks.push(v["task_id"].as_str().unwrap().to_string());
    for t in &tasks {
        let v = env.finished(&token, t).await;
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    assert_eq!(
        stored(&env, &token, &c, &acct, &ent, &granted, &revoked).await,
        (json!(false), true, false),
        "provisioning wrote the store at once"
    );
    let (_, v) = env.get(&token, &format!("/api/v1/syncs/{run}")).await;
    assert_eq!(v["status"], "running", "the sync still waits: {v}");

    // The sync writes what it read before the changes, sweeps, and ends: the changes stand.
    users_hold.release();
    members_hold.release();
    let v = sync_finished(&env, &token, &run).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(
        stored(&env, &token, &c, &acct, &ent, &granted, &revoked).await,
        (json!(false), true, false),
        "the older picture did not undo provisioning"
    );

    // The next sync reads Graph after the changes and agrees.
    let next = sync(&env, &token, &c).await;
    let v = sync_finished(&env, &token, &next).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(
        stored(&env, &token, &c, &acct, &ent, &granted, &revoked).await,
        (json!(false), true, false)
    );
}
