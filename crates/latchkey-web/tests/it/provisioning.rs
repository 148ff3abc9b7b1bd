//! Provisioning through the REST API against the simulated tenant, with a real worker: grant
//! and revoke group membership as tasks (202, then verified), a repeated grant changes nothing,
//! refusals and provisioning turned off never reach Graph, validation, roles, and another
//! organization's connector, grant and task are 404.

use crate::support::TestApp;
use latchkey_core::Role;
use latchkey_entra::OutboundPolicy;
use latchkey_entra_sim::{GroupKind, SimConfig, SimHandle, SimServer};
use latchkey_jobs::{WorkerConfig, WorkerPool};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct Env {
    pub app: TestApp,
    pub sim: SimHandle,
    stop: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Env {
    pub async fn start() -> Env {
        let sim = SimServer::start(SimConfig::small(31)).await.unwrap();
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
        let mut config = WorkerConfig::new("provisioning-api-worker").concurrency(3);
        config.poll_interval = Duration::from_millis(50);
        let registry = crate::support::entra_handlers(keys);
        tokio::spawn(WorkerPool::new(worker_store, config, registry).run(stop.clone()));
        Env { app, sim, stop }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
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

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, token, path, None).await
    }

    /// A connector with provisioning on (or off), after its first sync succeeded.
    pub async fn synced_connector(&self, token: &str, provisioning: bool) -> String {
        let c = self.sim.customer_app();
        let (s, body) = self
            .call(
                reqwest::Method::POST,
                token,
                "/api/v1/connectors",
                Some(json!({"display_name": "Contoso Entra", "app": {"new": {"name": "Microsoft Entra ID"}},
                  "settings": {"auth": {"mode": "client_secret", "tenant_id": self.sim.tenant_id().to_string(),
                  "client_id": c.client_id.to_string(), "client_secret": c.client_secret}, "graph_domain": self.sim.base_url(),
                  "provisioning": provisioning}})),
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

    /// The stored resource id of a directory object.
    pub async fn resource(&self, token: &str, c: &str, rtype: &str, external: Uuid) -> String {
        let mut cursor = String::new();
        loop {
            let (s, page) = self
                .get(
                    token,
                    &format!("/api/v1/connectors/{c}/resources?type={rtype}&limit=200{cursor}"),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{page}");
            if let Some(r) = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["external_id"] == external.to_string())
            {
                return r["id"].as_str().unwrap().to_string();
            }
            cursor = format!("&cursor={}", page["next_cursor"].as_str().expect("found"));
        }
    }

    pub async fn entitlement(&self, token: &str, c: &str, resource: &str, slug: &str) -> String {
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
            .find(|e| e["slug"] == slug)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn grant(&self, token: &str, c: &str, ent: &str, principal: &str) -> String {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                token,
                &format!("/api/v1/connectors/{c}/grants"),
                Some(json!({"entitlement_id": ent, "principal_id": principal})),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        v["task_id"].as_str().unwrap().to_string()
    }

    /// Polls `GET /tasks/{id}` until it is final.
    pub async fn finished(&self, token: &str, task: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (s, v) = self.get(token, &format!("/api/v1/tasks/{task}")).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let status = v["status"].as_str().unwrap();
            assert!(
                ["queued", "running", "succeeded", "failed"].contains(&status),
                "{v}"
            );
            if status == "succeeded" || status == "failed" {
                return v;
            }
            assert!(Instant::now() < deadline, "task never finished: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn group_of(&self, kind: GroupKind) -> Uuid {
        self.sim
            .truth_groups()
            .into_iter()
            .find(|g| g.kind == kind)
            .unwrap()
            .id
    }
}

#[tokio::test]
async fn grant_and_revoke_through_the_api_are_verified_in_the_tenant() {
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

    let task = env.grant(&token, &c, &ent, &user).await;
    let v = env.finished(&token, &task).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["operation"], "grant");
    assert!(v["error"].is_null());
    for k in ["requested_at", "provisioned_at", "verified_at"] {
        assert!(v[k].is_string(), "{k} in {v}");
    }
    assert!(env.sim.group_members(gid).unwrap().contains(&uid));
    // The stored grants show it at once.
    let (_, grants) = env
        .get(
            &token,
            &format!("/api/v1/connectors/{c}/grants?entitlement_id={ent}&principal_id={user}"),
        )
        .await;
    let items = grants["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{grants}");
    let grant_id = items[0]["id"].as_str().unwrap().to_string();

    // A retried grant: success, and no second membership.
    let n = env.sim.group_members(gid).unwrap().len();
    let again = env.grant(&token, &c, &ent, &user).await;
    assert_eq!(env.finished(&token, &again).await["status"], "succeeded");
    assert_eq!(env.sim.group_members(gid).unwrap().len(), n);

    let (s, v) = env
        .call(
            reqwest::Method::DELETE,
            &token,
            &format!("/api/v1/connectors/{c}/grants/{grant_id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = env.finished(&token, v["task_id"].as_str().unwrap()).await;
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["operation"], "revoke");
    assert!(v["verified_at"].is_string());
    assert!(!env.sim.group_members(gid).unwrap().contains(&uid));
    let (_, grants) = env
        .get(
            &token,
            &format!("/api/v1/connectors/{c}/grants?entitlement_id={ent}&principal_id={user}"),
        )
        .await;
    assert!(grants["items"].as_array().unwrap().is_empty(), "{grants}");

    // Refusals: decided before any Graph write, with the reason on the task.
    let owners = env.entitlement(&token, &c, &group, "owners").await;
    let sec_group = group.clone();
    let cases = [
        (
            GroupKind::MailEnabledSecurity,
            "members",
            None,
            "manage it in Exchange",
        ),
        (
            GroupKind::Distribution,
            "members",
            None,
            "manage it in Exchange",
        ),
        (
            GroupKind::DynamicSecurity,
            "members",
            None,
            "dynamic membership",
        ),
        (
            GroupKind::OnPremisesSecurity,
            "members",
            None,
            "on-premises Active Directory",
        ),
        // A group as owner of a group.
        (
            GroupKind::Security,
            "owners",
            Some(sec_group.clone()),
            "as owners",
        ),
    ];
    env.sim.clear_requests();
    for (kind, slug, principal, expected) in cases {
        let r = env.resource(&token, &c, "group", env.group_of(kind)).await;
        let e = if kind == GroupKind::Security && slug == "owners" {
            owners.clone()
        } else {
            env.entitlement(&token, &c, &r, slug).await
        };
        // A group as owner of itself would also be refused; use another group.
        let p = match principal {
            Some(_) => {
                env.resource(&token, &c, "group", env.group_of(GroupKind::Microsoft365))
                    .await
            }
            None => user.clone(),
        };
        let t = env.grant(&token, &c, &e, &p).await;
        let v = env.finished(&token, &t).await;
        assert_eq!(v["status"], "failed", "{kind:?}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(expected),
            "{kind:?}: {v}"
        );
        assert!(v["provisioned_at"].is_null() && v["verified_at"].is_null());
    }
    assert!(
        env.sim.graph_writes().is_empty(),
        "{:?}",
        env.sim.graph_writes()
    );
}

#[tokio::test]
async fn provisioning_off_validation_roles_and_other_organizations() {
    let env = Env::start().await;
    let (org, _) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::ConnectorAdmin).await;
    let c = env.synced_connector(&token, false).await;
    let gid = env.group_of(GroupKind::Security);
    let uid = env.sim.truth_users()[0].id;
    let group = env.resource(&token, &c, "group", gid).await;
    let user = env.resource(&token, &c, "user", uid).await;
    let ent = env.entitlement(&token, &c, &group, "members").await;

    // Provisioning is off: refused with that reason, before any call to Entra.
    env.sim.clear_requests();
    let t = env.grant(&token, &c, &ent, &user).await;
    let v = env.finished(&token, &t).await;
    assert_eq!(v["status"], "failed");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("Provisioning is turned off"),
        "{v}"
    );
    assert!(env.sim.requests().is_empty());

    // Validation.
    let (s, v) = env
        .call(
            reqwest::Method::POST,
            &token,
            &format!("/api/v1/connectors/{c}/grants"),
            Some(json!({"entitlement_id": ent})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Unknown entitlement or principal of this connector: 404.
    let (s, _) = env
        .call(
            reqwest::Method::POST,
            &token,
            &format!("/api/v1/connectors/{c}/grants"),
            Some(json!({"entitlement_id": Uuid::new_v4(), "principal_id": user})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Members may read but not provision.
    let (_, _, member) = env.app.api_token(org, Role::Member).await;
    let (s, v) = env
        .call(
            reqwest::Method::POST,
            &member,
            &format!("/api/v1/connectors/{c}/grants"),
            Some(json!({"entitlement_id": ent, "principal_id": user})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    // Another organization sees none of it.
    let (other, _) = env.app.org("fabrikam").await;
    let (_, _, intruder) = env.app.api_token(other, Role::SuperAdmin).await;
    let (s, _) = env
        .call(
            reqwest::Method::POST,
            &intruder,
            &format!("/api/v1/connectors/{c}/grants"),
            Some(json!({"entitlement_id": ent, "principal_id": user})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env
        .call(
            reqwest::Method::DELETE,
            &intruder,
            &format!("/api/v1/connectors/{c}/grants/{}", Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env.get(&intruder, &format!("/api/v1/tasks/{t}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env.get(&token, &format!("/api/v1/tasks/{t}")).await;
    assert_eq!(s, StatusCode::OK);
}
