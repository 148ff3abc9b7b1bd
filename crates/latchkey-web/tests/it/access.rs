//! JIT access requests and the audit trail through the REST API, with a real worker and the
//! simulated tenant: policy editing (validation, roles, audit), ask → approve → verified,
//! refusals as HTTP statuses, another organization sees 404 everywhere, and tampering with
//! any audit row is reported by the chain check.

use crate::support::TestApp;
use latchkey_access::{AccessConfig, AdvanceHandler, SweepHandler};
use latchkey_core::{DisplayName, OrgId, Role, UserId};
use latchkey_entra::OutboundPolicy;
use latchkey_entra_sim::{GroupKind, SimConfig, SimHandle, SimServer};
use latchkey_jobs::{WorkerConfig, WorkerPool};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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

fn access_config() -> AccessConfig {
    AccessConfig {
        min_duration_seconds: 1,
        sweep_every: Duration::from_secs(1),
        ..AccessConfig::default()
    }
}

impl Env {
    async fn start() -> Env {
        let sim = SimServer::start(SimConfig::small(41)).await.unwrap();
        let db = latchkey_store::testing::TestDb::new().await;
        let keys = std::sync::Arc::new(
            latchkey_crypto::KeyRing::parse(&latchkey_crypto::generate_key_entry("k1")).unwrap(),
        );
        let worker_store = db.store.clone();
        let app = TestApp::serve(db, keys.clone(), |c| {
            c.outbound_policy = OutboundPolicy::INSECURE_DEV;
            c.access = AccessConfig {
                public_url: c.public_url.clone(),
                ..access_config()
            };
        })
        .await;
        let stop = CancellationToken::new();
        let mut config = WorkerConfig::new("access-api-worker").concurrency(3);
        config.poll_interval = Duration::from_millis(50);
        let registry = crate::support::entra_handlers(keys)
            .with(AdvanceHandler::new(access_config()))
            .with(SweepHandler::new(access_config()));
        tokio::spawn(WorkerPool::new(worker_store, config, registry).run(stop.clone()));
        Env { app, sim, stop }
    }

    async fn call(
        &self,
        method: Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .app
            .api()
            .request(method, self.app.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, token, path, None).await
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, token, path, Some(body)).await
    }

    /// An API client created by `user` (it acts for them), and its token.
    async fn token_for(&self, org: OrgId, role: Role, user: Option<UserId>) -> String {
        let (_, creds) = latchkey_web::api::api_clients::create_client(
            self.app.store(),
            org,
            &DisplayName::parse("client").unwrap(),
            role,
            user,
        )
        .await
        .unwrap();
        self.app.token(&creds.client_id, &creds.client_secret).await
    }

    async fn synced_connector(&self, token: &str) -> String {
        let c = self.sim.customer_app();
        let (s, body) = self
            .post(
                token,
                "/api/v1/connectors",
                json!({"display_name": "Contoso Entra", "app": {"new": {"name": "Microsoft Entra ID"}},
                  "settings": {"auth": {"mode": "client_secret", "tenant_id": self.sim.tenant_id().to_string(),
                  "client_id": c.client_id.to_string(), "client_secret": c.client_secret}, "graph_domain": self.sim.base_url(),
                  "provisioning": true}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (_, page) = self
                .get(token, &format!("/api/v1/connectors/{id}/syncs"))
                .await;
            if page["items"][0]["status"] == "succeeded" {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "first sync never finished: {page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn members_entitlement(&self, token: &str, c: &str, group: Uuid) -> String {
        let (_, page) = self
            .get(
                token,
                &format!("/api/v1/connectors/{c}/resources?type=group&limit=200"),
            )
            .await;
        let resource = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["external_id"] == group.to_string())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, page) = self
            .get(
                token,
                &format!("/api/v1/connectors/{c}/entitlements?resource_id={resource}"),
            )
            .await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["slug"] == "members")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn linked_person(&self, org: OrgId, email: &str, entra: Uuid) -> UserId {
        let user = self.app.person(org, email, Role::Member).await;
        let mut tx = self.app.store().org_tx(org).await.unwrap();
        latchkey_store::identities::link(
            &mut tx,
            user,
            &self.sim.tenant_id().to_string(),
            &entra.to_string(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        user
    }
}

#[tokio::test]
async fn requests_policies_and_audit_through_the_api_with_isolation_and_tamper_detection() {
    let env = Env::start().await;
    let (org, admin) = env.app.org("acme").await;
    let admin_token = env.token_for(org, Role::SuperAdmin, Some(admin)).await;
    let c = env.synced_connector(&admin_token).await;
    let group = env
        .sim
        .truth_groups()
        .into_iter()
        .find(|g| g.kind == GroupKind::Security)
        .unwrap()
        .id;
    let members = env.sim.group_members(group).unwrap();
    let outsiders: Vec<Uuid> = env
        .sim
        .truth_users()
        .into_iter()
        .filter(|u| u.user_type == "Member" && u.account_enabled && !members.contains(&u.id))
        .map(|u| u.id)
        .collect();
    let ent = env.members_entitlement(&admin_token, &c, group).await;
    let requester = env
        .linked_person(org, "req@acme.example", outsiders[0])
        .await;
    let approver = env
        .linked_person(org, "appr@acme.example", outsiders[1])
        .await;
    let req_token = env.token_for(org, Role::Member, Some(requester)).await;
    let appr_token = env.token_for(org, Role::Member, Some(approver)).await;

    // Policies: the default is not requestable; members may not change it; bad fields are 422.
    let (s, p) = env
        .get(&admin_token, &format!("/api/v1/entitlements/{ent}/policy"))
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(
        (p["version"].clone(), p["policy"]["requestable"].clone()),
        (json!(0), json!(false))
    );
    let policy = json!({"requestable": true, "risk": "high", "max_duration_seconds": 3600, "default_duration_seconds": 600,
        "justification_required": true, "justification_pattern": "^[A-Z]+-[0-9]+",
        "approval_stages": [{"approvers": [{"type": "user", "user_id": approver.0}], "required": 1}],
        "decision_timeout_seconds": 3600, "reminder_before_seconds": 0});
    let path = format!("/api/v1/entitlements/{ent}/policy");
    let (s, _) = env
        .call(Method::PUT, &req_token, &path, Some(policy.clone()))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let mut bad = policy.clone();
    bad["max_duration_seconds"] = json!(0);
    bad["approval_stages"] = json!([]);
    let (s, e) = env.call(Method::PUT, &admin_token, &path, Some(bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let fields: Vec<&str> = e["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"max_duration_seconds") && fields.contains(&"approval_stages"),
        "{fields:?}"
    );
    let (s, p) = env
        .call(Method::PUT, &admin_token, &path, Some(policy))
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["version"], 1);

    // Ask: the pattern is enforced, then 201.
    let (s, e) = env
        .post(
            &req_token,
            "/api/v1/access-requests",
            json!({"entitlement_id": ent, "duration_seconds": 600, "justification": "please"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"]["fields"][0]["field"], "justification");
    let (s, r) = env
        .post(&req_token, "/api/v1/access-requests", json!({"entitlement_id": ent, "duration_seconds": 600, "justification": "OPS-7 prod fix"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    assert_eq!(r["state"], "pending");
    assert_eq!(r["approvers"][0]["email"], "appr@acme.example");
    // The requester cannot approve; the approver sees it in their inbox and approves.
    let (s, _) = env
        .post(
            &req_token,
            &format!("/api/v1/access-requests/{id}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, inbox) = env
        .get(&appr_token, "/api/v1/access-requests?awaiting_me=true")
        .await;
    assert_eq!(inbox["items"][0]["id"], id.as_str());
    let (s, r) = env
        .post(
            &appr_token,
            &format!("/api/v1/access-requests/{id}/approve"),
            json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let (s, _) = env
        .post(
            &appr_token,
            &format!("/api/v1/access-requests/{id}/deny"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, r) = env
            .get(&req_token, &format!("/api/v1/access-requests/{id}"))
            .await;
        if r["state"] == "active" {
            assert!(r["granted_at"].is_string() && r["expires_at"].is_string());
            break;
        }
        assert!(Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        env.sim
            .group_members(group)
            .unwrap()
            .contains(&outsiders[0])
    );
    let (_, list) = env
        .get(&admin_token, "/api/v1/access-requests?state=active")
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (s, _) = env
        .get(&admin_token, "/api/v1/access-requests?state=granted")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Another organization: 404 for the request, its actions, the entitlement's policy; empty lists.
    let (org_b, admin_b) = env.app.org("globex").await;
    let b = env.token_for(org_b, Role::SuperAdmin, Some(admin_b)).await;
    for (method, p) in [
        (Method::GET, format!("/api/v1/access-requests/{id}")),
        (
            Method::POST,
            format!("/api/v1/access-requests/{id}/approve"),
        ),
        (
            Method::POST,
            format!("/api/v1/access-requests/{id}/release"),
        ),
        (Method::GET, format!("/api/v1/entitlements/{ent}/policy")),
        (Method::PUT, format!("/api/v1/entitlements/{ent}/policy")),
    ] {
        let body = (method != Method::GET).then(|| json!({}));
        let (s, v) = env.call(method.clone(), &b, &p, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {p}: {v}");
    }
    let (s, e) = env
        .post(
            &b,
            "/api/v1/access-requests",
            json!({"entitlement_id": ent, "justification": "OPS-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (_, list) = env.get(&b, "/api/v1/access-requests").await;
    assert_eq!(list["items"], json!([]));
    let (_, events) = env.get(&b, "/api/v1/audit-events").await;
    assert_eq!(events["items"], json!([]));

    // Audit: administrators only; every step is there; the chain holds until a row is changed.
    let (s, _) = env.get(&req_token, "/api/v1/audit-events").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, events) = env
        .get(
            &admin_token,
            &format!("/api/v1/audit-events?target_id={id}"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "access_request.created",
        "access_request.approved",
        "access_request.granted",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let (_, policy_events) = env
        .get(&admin_token, "/api/v1/audit-events?action=access_policy.")
        .await;
    assert_eq!(policy_events["items"].as_array().unwrap().len(), 1);
    let (_, chain) = env.get(&admin_token, "/api/v1/audit-events/verify").await;
    assert_eq!(chain["intact"], true, "{chain}");
    let total = chain["events"].as_i64().unwrap();
    assert!(total >= 5);
    let export = env
        .app
        .api()
        .get(env.app.url("/api/v1/audit-events/export"))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = export
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as i64, total);
    assert_eq!(lines[0]["seq"], 1);

    // Tampering with any one row (here the third) is found, and where.
    sqlx::query("UPDATE audit_events SET details = details || '{\"reason\": \"edited\"}' WHERE org_id = $1 AND seq = 3")
        .bind(org.0)
        .execute(env.app.store().system())
        .await
        .unwrap();
    let (_, chain) = env.get(&admin_token, "/api/v1/audit-events/verify").await;
    assert_eq!(
        (chain["intact"].clone(), chain["broken_at"].clone()),
        (json!(false), json!(3)),
        "{chain}"
    );
    // The other organization's chain is its own, and untouched.
    let (_, chain_b) = env.get(&b, "/api/v1/audit-events/verify").await;
    assert_eq!(chain_b["intact"], true);
}
