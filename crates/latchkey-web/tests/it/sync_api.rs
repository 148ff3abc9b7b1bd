//! The sync through the REST API: onboarding's first sync runs on a real worker against the
//! simulated tenant, the connector ends *Connected*, and the syncs, summary, resources,
//! entitlements and grants endpoints answer in their documented shapes, for this organization only.

use crate::support::{PASSWORD, TestApp};
use latchkey_core::Role;
use latchkey_entra::OutboundPolicy;
use latchkey_entra::onboarding::ConnectionTestHandler;
use latchkey_entra::sync::SyncHandler;
use latchkey_entra_sim::{SimConfig, SimHandle, SimServer};
use latchkey_jobs::{Registry, WorkerConfig, WorkerPool};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

struct Env {
    app: TestApp,
    sim: SimHandle,
    stop: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Env {
    async fn start() -> Env {
        let sim = SimServer::start(SimConfig::small(21)).await.unwrap();
        let db = latchkey_store::testing::TestDb::new().await;
        let keys = std::sync::Arc::new(
            latchkey_crypto::KeyRing::parse(&latchkey_crypto::generate_key_entry("k1")).unwrap(),
        );
        let worker_store = db.store.clone();
        let app = TestApp::serve(db, keys.clone(), |c| {
            c.outbound_policy = OutboundPolicy::INSECURE_DEV;
        })
        .await;
        let stop = CancellationToken::new();
        let mut config = WorkerConfig::new("sync-api-worker").concurrency(3);
        config.poll_interval = Duration::from_millis(100);
        let registry = Registry::new()
            .with(ConnectionTestHandler::new(
                keys.clone(),
                None,
                OutboundPolicy::INSECURE_DEV,
            ))
            .with(SyncHandler::new(keys, None, OutboundPolicy::INSECURE_DEV));
        tokio::spawn(WorkerPool::new(worker_store, config, registry).run(stop.clone()));
        Env { app, sim, stop }
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let r = self
            .app
            .api()
            .get(self.app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .app
            .api()
            .post(self.app.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn connector(&self, token: &str) -> String {
        let c = self.sim.customer_app();
        let (s, body) = self
            .post(
                token,
                "/api/v1/connectors",
                json!({"display_name": "Contoso Entra", "app": {"new": {"name": "Microsoft Entra ID"}},
                  "settings": {"auth": {"mode": "client_secret", "tenant_id": self.sim.tenant_id().to_string(),
                  "client_id": c.client_id.to_string(), "client_secret": c.client_secret}, "graph_domain": self.sim.base_url(),
                  "fetch_sign_in_activity": true}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Polls `GET /syncs/{id}` until the sync is final.
    async fn finished(&self, token: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (s, v) = self.get(token, &format!("/api/v1/syncs/{id}")).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            if ["succeeded", "failed", "cancelled"].contains(&v["status"].as_str().unwrap()) {
                return v;
            }
            assert!(Instant::now() < deadline, "sync never finished: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn first_sync_connects_and_the_synced_model_is_readable_through_the_api() {
    let env = Env::start().await;
    let (org, _) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::ConnectorAdmin).await;
    let id = env.connector(&token).await;

    // The connection test enqueues the first sync; wait for it through the syncs list.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let (s, page) = env
            .get(&token, &format!("/api/v1/connectors/{id}/syncs"))
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        if let Some(item) = page["items"].as_array().unwrap().first() {
            break item["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no sync was started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let run = env.finished(&token, &first).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["kind"], "full");
    for k in [
        "id",
        "kind",
        "status",
        "started_at",
        "finished_at",
        "stats",
        "warnings",
    ] {
        assert!(run.get(k).is_some(), "{k} in {run}");
    }
    assert!(run["stats"]["requests"].as_u64().unwrap() > 0);

    let (_, c) = env.get(&token, &format!("/api/v1/connectors/{id}")).await;
    assert_eq!(c["status"], "connected", "{c}");

    // Summary: the counting rules of the issue against the simulator's counts.
    let truth = env.sim.truth();
    let (s, summary) = env
        .get(&token, &format!("/api/v1/connectors/{id}/summary"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(summary["resources"]["user"], truth.users);
    assert_eq!(summary["resources"]["group"], truth.groups);
    assert_eq!(
        summary["resources"]["managed_identity"],
        truth.managed_identities
    );
    assert_eq!(summary["resources"]["role"], truth.role_definitions);
    assert_eq!(summary["resources"]["license"], truth.skus);
    assert_eq!(summary["grants"]["group_members"], truth.memberships);
    assert_eq!(
        summary["grants"]["app_role_assignments"],
        truth.app_role_assignments
    );
    assert_eq!(
        summary["grants"]["role_assigned"],
        truth.active_role_assignments
    );
    assert_eq!(
        summary["grants"]["role_eligible"],
        truth.eligible_role_assignments
    );
    let licence_pairs: usize = env.sim.truth_users().iter().map(|u| u.licenses.len()).sum();
    assert_eq!(summary["grants"]["license_assigned"], licence_pairs);
    // Every service principal of type Application, Microsoft's first-party ones included.
    assert_eq!(
        summary["resources"]["enterprise_application"],
        truth.service_principals - truth.managed_identities
    );
    for k in ["group_owners", "app_owners"] {
        assert!(summary["grants"][k].as_u64().unwrap() > 0, "{summary}");
    }

    // Resources: filtered by type, searched, paginated.
    let (s, groups) = env
        .get(
            &token,
            &format!("/api/v1/connectors/{id}/resources?type=group&limit=5"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{groups}");
    let items = groups["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    for k in ["id", "type", "external_id", "display_name", "profile"] {
        assert!(items[0].get(k).is_some(), "{k}");
    }
    assert!(items.iter().all(|g| g["type"] == "group"));
    let cursor = groups["next_cursor"].as_str().unwrap();
    let (_, next) = env
        .get(
            &token,
            &format!("/api/v1/connectors/{id}/resources?type=group&limit=5&cursor={cursor}"),
        )
        .await;
    assert!(next["items"][0]["id"] != items[0]["id"]);
    let first_user = env.sim.truth_users()[0].clone();
    let q = &first_user.user_principal_name[..6];
    let (_, found) = env
        .get(
            &token,
            &format!("/api/v1/connectors/{id}/resources?type=user&q={q}"),
        )
        .await;
    assert!(
        found["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["external_id"] == first_user.id.to_string()),
        "{found}"
    );
    let (s, bad) = env
        .get(
            &token,
            &format!("/api/v1/connectors/{id}/resources?type=printer"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");

    // Entitlements of a group and its member grants, direct and expanded.
    let group = env
        .sim
        .truth_groups()
        .into_iter()
        .max_by_key(|g| g.members)
        .unwrap();
    let (_, gpage) = env
        .get(
            &token,
            &format!(
                "/api/v1/connectors/{id}/resources?type=group&q={}",
                group.display_name
            ),
        )
        .await;
    let gres = gpage["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["external_id"] == group.id.to_string())
        .unwrap()
        .clone();
    let (_, ents) = env
        .get(
            &token,
            &format!(
                "/api/v1/connectors/{id}/entitlements?resource_id={}",
                gres["id"].as_str().unwrap()
            ),
        )
        .await;
    let ents = ents["items"].as_array().unwrap().clone();
    let slugs: Vec<&str> = ents.iter().map(|e| e["slug"].as_str().unwrap()).collect();
    assert!(
        slugs.contains(&"members") && slugs.contains(&"owners"),
        "{slugs:?}"
    );
    let members = ents.iter().find(|e| e["slug"] == "members").unwrap();
    let mut direct = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "/api/v1/connectors/{id}/grants?entitlement_id={}&limit=200",
            members["id"].as_str().unwrap()
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (_, page) = env.get(&token, &path).await;
        for g in page["items"].as_array().unwrap() {
            assert_eq!(g["source"], "direct");
            for k in ["id", "entitlement_id", "principal_id", "source"] {
                assert!(g.get(k).is_some());
            }
            direct += 1;
        }
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(direct, group.members);
    let (_, with_expanded) = env
        .get(
            &token,
            &format!("/api/v1/connectors/{id}/grants?include=expanded&limit=200"),
        )
        .await;
    assert_eq!(with_expanded["items"].as_array().unwrap().len(), 200);

    // A second request while one is queued or running returns that one.
    let (s, a) = env
        .post(
            &token,
            &format!("/api/v1/connectors/{id}/syncs"),
            json!({"kind": "incremental"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{a}");
    let (s, b) = env
        .post(
            &token,
            &format!("/api/v1/connectors/{id}/syncs"),
            json!({"kind": "incremental"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let second = env.finished(&token, a["id"].as_str().unwrap()).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    if b["id"] != a["id"] {
        // Only when the first had already finished before the second request.
        env.finished(&token, b["id"].as_str().unwrap()).await;
    }
    assert_eq!(second["kind"], "incremental");
    let (s, bad) = env
        .post(
            &token,
            &format!("/api/v1/connectors/{id}/syncs"),
            json!({"kind": "partial"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");

    // Members may read but not start syncs; other organizations see nothing.
    let (_, _, member) = env.app.api_token(org, Role::Member).await;
    let (s, _) = env
        .post(
            &member,
            &format!("/api/v1/connectors/{id}/syncs"),
            json!({"kind": "full"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (other, _) = env.app.org("fabrikam").await;
    let (_, _, stranger) = env.app.api_token(other, Role::SuperAdmin).await;
    for path in [
        format!("/api/v1/connectors/{id}/summary"),
        format!("/api/v1/connectors/{id}/resources"),
        format!("/api/v1/connectors/{id}/syncs"),
        format!("/api/v1/syncs/{first}"),
    ] {
        let (s, body) = env.get(&stranger, &path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body["error"]["code"].is_string());
    }
}

#[tokio::test]
async fn applications_pages_show_accounts_and_entitlements_with_their_grants() {
    let env = Env::start().await;
    let (org, _) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::ConnectorAdmin).await;
    let id = env.connector(&token).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, c) = env.get(&token, &format!("/api/v1/connectors/{id}")).await;
        if c["status"] == "connected" {
            break;
        }
        assert!(Instant::now() < deadline, "never connected: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, c) = env.get(&token, &format!("/api/v1/connectors/{id}")).await;
    let app_id = c["app"]["id"].as_str().unwrap().to_string();

    let browser = env.app.browser();
    browser.login("admin@contoso.example", PASSWORD).await;
    let (s, list) = browser.get_text("/apps").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        list.contains("Microsoft Entra ID") && list.contains("Connected"),
        "{list}"
    );
    assert!(list.contains("Discovered"));

    let users = env.sim.truth_users();
    let (s, accounts) = browser.get_text(&format!("/apps/{app_id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        accounts.contains(&users[0].display_name),
        "accounts tab lists users"
    );
    let guest = users.iter().find(|u| u.user_type == "Guest").unwrap();
    let member = users.iter().find(|u| u.user_type == "Member").unwrap();
    let (_, guests) = browser
        .get_text(&format!("/apps/{app_id}?tab=accounts&guest=yes"))
        .await;
    assert!(guests.contains(&guest.user_principal_name));
    assert!(!guests.contains(&member.user_principal_name));
    let disabled = users.iter().find(|u| !u.account_enabled).unwrap();
    let (_, off) = browser
        .get_text(&format!("/apps/{app_id}?tab=accounts&enabled=no"))
        .await;
    assert!(off.contains(&disabled.user_principal_name));
    assert!(!off.contains(&member.user_principal_name) || !member.account_enabled);
    let (_, none) = browser
        .get_text(&format!(
            "/apps/{app_id}?tab=accounts&q=nobody-by-this-name"
        ))
        .await;
    assert!(none.contains("No accounts match"));

    let group = env
        .sim
        .truth_groups()
        .into_iter()
        .max_by_key(|g| g.members)
        .unwrap();
    let (s, ents) = browser
        .get_text(&format!(
            "/apps/{app_id}?tab=entitlements&q={}",
            group.display_name.replace(' ', "+")
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    let marker = format!("/apps/{app_id}/entitlements/");
    let link = ents
        .split(&marker)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an entitlement link");
    let (s, page) = browser
        .get_text(&format!("/apps/{app_id}/entitlements/{link}?expanded=yes"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("Direct"), "{page}");
    assert!(page.contains("Since"));

    // Another organization's app is not found.
    let (other, _) = env.app.org("fabrikam").await;
    let _ = other;
    let stranger = env.app.browser();
    stranger.login("admin@fabrikam.example", PASSWORD).await;
    let (s, _) = stranger.get_text(&format!("/apps/{app_id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
