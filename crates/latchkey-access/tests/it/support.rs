//! One organization with a synced, provisioning-enabled connector to a simulated tenant, a
//! worker running the provisioning and lifecycle jobs, and people linked to Entra accounts.

use latchkey_access::policy::{ApproverRule, Stage};
use latchkey_access::{Access, AccessConfig, AdvanceHandler, Caller, Policy, SweepHandler};
use latchkey_core::{DisplayName, Email, OrgId, Role, UserId};
use latchkey_crypto::KeyRing;
use latchkey_entra::OutboundPolicy;
use latchkey_entra::onboarding::connection_test::secret_ref;
use latchkey_entra::onboarding::{AuthMode, AuthSettings, EntraSettings};
use latchkey_entra::provision::{ProvisionHandler, VerifyPolicy};
use latchkey_entra::sync::{SyncHandler, SyncKind, request_sync};
use latchkey_entra_sim::{GroupKind, SimConfig, SimHandle, SimServer};
use latchkey_jobs::{Registry, WorkerConfig, WorkerPool};
use latchkey_store::access_requests::{self, Request};
use latchkey_store::testing::TestDb;
use latchkey_store::{
    Store, apps, connectors, identities, orgs, outbox, resources, secrets, users,
};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct Env {
    pub db: TestDb,
    pub sim: SimHandle,
    pub org: OrgId,
    pub admin: UserId,
    pub keys: Arc<KeyRing>,
    pub connector: Uuid,
    pub access: Access,
    worker: Option<CancellationToken>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(w) = &self.worker {
            w.cancel();
        }
    }
}

pub fn config() -> AccessConfig {
    AccessConfig {
        min_duration_seconds: 1,
        sweep_every: Duration::from_secs(1),
        ..AccessConfig::default()
    }
}

impl Env {
    pub async fn new(seed: u64) -> Env {
        let db = TestDb::new().await;
        let sim = SimServer::start(SimConfig::small(seed)).await.unwrap();
        let (org, admin) = orgs::create_with_admin(
            &db.store,
            &DisplayName::parse("Contoso").unwrap(),
            &Email::parse(&format!("admin{seed}@contoso.test")).unwrap(),
            &DisplayName::parse("Admin").unwrap(),
            "x",
        )
        .await
        .unwrap();
        let keys = Arc::new(KeyRing::parse(&latchkey_crypto::generate_key_entry("k1")).unwrap());
        let access = Access::new(db.store.clone(), config());
        let mut env = Env {
            db,
            sim,
            org,
            admin,
            keys,
            connector: Uuid::nil(),
            access,
            worker: None,
        };
        env.connector = env.make_connector().await;
        env.sync().await;
        env.start_worker();
        env
    }

    pub fn store(&self) -> &Store {
        &self.db.store
    }

    async fn make_connector(&self) -> Uuid {
        let app = self.sim.customer_app();
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        let a = apps::create_managed(&mut tx, "Entra ID").await.unwrap();
        let c = connectors::create(
            &mut tx,
            connectors::NewConnector {
                app_id: a.id,
                kind: "entra",
                display_name: "Contoso tenant",
                created_by: None,
            },
        )
        .await
        .unwrap();
        let settings = EntraSettings {
            auth: AuthSettings {
                mode: AuthMode::ClientSecret,
                tenant_id: self.sim.tenant_id().to_string(),
                client_id: Some(app.client_id.to_string()),
            },
            graph_domain: self.sim.base_url().to_string(),
            login_authority: None,
            provisioning: true,
            skip_ad_groups: false,
            fetch_sign_in_activity: false,
            schedule_scim_provisioning: false,
            disable_audit_feed: false,
            allow_account_deletion: false,
        };
        connectors::set_settings(&mut tx, c.id, &serde_json::to_value(&settings).unwrap())
            .await
            .unwrap();
        secrets::put(
            &mut tx,
            &self.keys,
            secret_ref(c.id),
            &SecretString::from(app.client_secret),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        c.id
    }

    fn registry(&self) -> Registry {
        Registry::new()
            .with(SyncHandler::new(
                self.keys.clone(),
                None,
                OutboundPolicy::INSECURE_DEV,
            ))
            .with(
                ProvisionHandler::new(self.keys.clone(), None, OutboundPolicy::INSECURE_DEV)
                    .with_verify(VerifyPolicy {
                        timeout: Duration::from_secs(3),
                        first_delay: Duration::from_millis(50),
                        max_delay: Duration::from_millis(400),
                    }),
            )
            .with(AdvanceHandler::new(config()))
            .with(SweepHandler::new(config()))
    }

    async fn sync(&self) {
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        request_sync(&mut tx, self.connector, SyncKind::Full, "test")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut cfg = WorkerConfig::new("sync");
        cfg.poll_interval = Duration::from_millis(50);
        WorkerPool::new(self.store().clone(), cfg, self.registry())
            .run_until_idle(CancellationToken::new())
            .await
            .unwrap();
    }

    /// A worker running in the background until [`Env::stop_worker`].
    pub fn start_worker(&mut self) {
        let stop = CancellationToken::new();
        let mut cfg = WorkerConfig::new(format!("w-{}", Uuid::now_v7())).concurrency(3);
        cfg.poll_interval = Duration::from_millis(50);
        tokio::spawn(WorkerPool::new(self.store().clone(), cfg, self.registry()).run(stop.clone()));
        self.worker = Some(stop);
    }

    pub fn stop_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            w.cancel();
        }
    }

    /// A security group's id in the tenant and its stored resource id.
    pub async fn group(&self, nth: usize) -> (Uuid, Uuid) {
        let g = self
            .sim
            .truth_groups()
            .into_iter()
            .filter(|g| g.kind == GroupKind::Security)
            .nth(nth)
            .expect("enough security groups");
        (g.id, self.resource(g.id).await)
    }

    pub async fn resource(&self, external: Uuid) -> Uuid {
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        let id = access_requests::user_resource(&mut tx, self.connector, &external.to_string())
            .await
            .unwrap();
        if let Some(id) = id {
            return id;
        }
        let page = resources::list_resources(
            &mut tx,
            self.connector,
            &resources::ResourceFilter::default(),
            None,
            200,
        )
        .await
        .unwrap();
        page.items
            .into_iter()
            .find(|r| r.external_id == external.to_string())
            .expect("stored")
            .id
    }

    /// The `members` entitlement of a group resource.
    pub async fn members_of(&self, group_resource: Uuid) -> Uuid {
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        resources::list_entitlements(
            &mut tx,
            self.connector,
            Some(group_resource),
            None,
            None,
            50,
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.slug == "members")
        .unwrap()
        .id
    }

    /// Member users of the tenant that are not in `group` (their object ids).
    pub fn outsiders(&self, group: Uuid) -> Vec<Uuid> {
        let members = self.sim.group_members(group).unwrap_or_default();
        self.sim
            .truth_users()
            .into_iter()
            .filter(|u| u.user_type == "Member" && u.account_enabled && !members.contains(&u.id))
            .map(|u| u.id)
            .collect()
    }

    /// A Latchkey person linked to an Entra account.
    pub async fn person(&self, name: &str, role: Role, entra: Uuid) -> (UserId, Caller) {
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        let u = users::create(
            &mut tx,
            &Email::parse(&format!("{name}@contoso.test")).unwrap(),
            &DisplayName::parse(name).unwrap(),
            role,
        )
        .await
        .unwrap();
        identities::link(
            &mut tx,
            UserId(u.id),
            &self.sim.tenant_id().to_string(),
            &entra.to_string(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        (UserId(u.id), Caller::person(UserId(u.id), u.email, role))
    }

    pub fn admin_caller(&self) -> Caller {
        Caller::person(self.admin, "admin", Role::SuperAdmin)
    }

    /// Makes the entitlement requestable with `policy` (approval by `approver` unless the
    /// policy names its own stages).
    pub async fn policy(&self, entitlement: Uuid, mut policy: Policy, approver: Option<UserId>) {
        policy.requestable = true;
        if let Some(a) = approver {
            policy.approval_stages = vec![Stage {
                approvers: vec![ApproverRule::User { user_id: a.0 }],
                required: 1,
            }];
        }
        self.access
            .put_policy(self.org, &self.admin_caller(), entitlement, &policy)
            .await
            .unwrap();
    }

    pub async fn get(&self, id: Uuid) -> Request {
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        access_requests::get(&mut tx, id).await.unwrap()
    }

    pub async fn events(&self, id: Uuid) -> Vec<String> {
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        access_requests::transitions(&mut tx, id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.event)
            .collect()
    }

    /// Waits until the request reaches `state`.
    pub async fn wait_state(&self, id: Uuid, state: &str, within: Duration) -> Request {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let r = self.get(id).await;
            if r.state == state {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "request {id} is {} (not {state}) after {within:?}; events {:?}",
                r.state,
                self.events(id).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn in_group(&self, group: Uuid, user: Uuid) -> bool {
        self.sim
            .group_members(group)
            .unwrap_or_default()
            .contains(&user)
    }

    /// (to, subject) of every email written so far.
    pub async fn mail(&self) -> Vec<(String, String, String)> {
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        outbox::recent(&mut tx, 500)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.to_address, m.subject, m.body_text))
            .collect()
    }
}
