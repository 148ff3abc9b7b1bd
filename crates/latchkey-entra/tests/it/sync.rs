//! The Entra sync against the simulated tenant and a real database: the stored picture equals
//! the simulator's ground truth for every type and grant kind, under faults, for full and
//! incremental syncs, and across a worker handing the job over mid-sync.

use latchkey_core::{DisplayName, Email, OrgId};
use latchkey_crypto::KeyRing;
use latchkey_entra::OutboundPolicy;
use latchkey_entra::onboarding::connection_test::secret_ref;
use latchkey_entra::onboarding::{AuthMode, AuthSettings, EntraSettings};
use latchkey_entra::sync::{SyncHandler, SyncKind, SyncOptions, request_sync};
use latchkey_entra_sim::{Change, Faults, SimConfig, SimHandle, SimServer, Throttle};
use latchkey_jobs::{Registry, WorkerConfig, WorkerPool};
use latchkey_store::testing::TestDb;
use latchkey_store::{Store, apps, connectors, orgs, resources, secrets, sync_runs};
use secrecy::SecretString;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct Env {
    pub db: TestDb,
    pub sim: SimHandle,
    pub org: OrgId,
    pub keys: Arc<KeyRing>,
}

pub struct Tweaks {
    pub skip_ad_groups: bool,
    pub sign_in: bool,
    pub disable_audit_feed: bool,
}

impl Default for Tweaks {
    fn default() -> Self {
        Tweaks {
            skip_ad_groups: false,
            sign_in: true,
            disable_audit_feed: false,
        }
    }
}

impl Env {
    pub async fn new(cfg: SimConfig) -> Env {
        let db = TestDb::new().await;
        let sim = SimServer::start(cfg).await.expect("sim starts");
        let (org, _) = orgs::create_with_admin(
            &db.store,
            &DisplayName::parse("Contoso").unwrap(),
            &Email::parse("admin@contoso.test").unwrap(),
            &DisplayName::parse("Admin").unwrap(),
            "x",
        )
        .await
        .unwrap();
        let keys = Arc::new(KeyRing::parse(&latchkey_crypto::generate_key_entry("k1")).unwrap());
        Env { db, sim, org, keys }
    }

    pub fn store(&self) -> &Store {
        &self.db.store
    }

    /// A connector of the simulated tenant, configured with client secret.
    pub async fn connector(&self, t: &Tweaks) -> Uuid {
        let app = self.sim.customer_app();
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        // One managed app, several connectors (apps_discovered_unique allows one managed app
        // per organization with no source).
        let a = match apps::list(&mut tx, "managed")
            .await
            .unwrap()
            .into_iter()
            .next()
        {
            Some(a) => a,
            None => apps::create_managed(&mut tx, "Entra ID").await.unwrap(),
        };
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
            provisioning: false,
            skip_ad_groups: t.skip_ad_groups,
            fetch_sign_in_activity: t.sign_in,
            schedule_scim_provisioning: false,
            disable_audit_feed: t.disable_audit_feed,
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

    pub fn handler_with(&self, delta_page: u32) -> SyncHandler {
        SyncHandler::new(self.keys.clone(), None, OutboundPolicy::INSECURE_DEV).with_options(
            SyncOptions {
                concurrency: 3,
                delta_page,
                ..SyncOptions::default()
            },
        )
    }

    pub fn worker(&self, id: &str) -> WorkerPool {
        self.worker_with(id, 50)
    }

    pub fn worker_with(&self, id: &str, delta_page: u32) -> WorkerPool {
        let mut cfg = WorkerConfig::new(id);
        cfg.concurrency = 2;
        cfg.sync_slots = 1;
        cfg.poll_interval = Duration::from_millis(100);
        WorkerPool::new(
            self.store().clone(),
            cfg,
            Registry::new().with(self.handler_with(delta_page)),
        )
    }

    /// Enqueues a sync and runs the queue until it is idle; returns the run.
    pub async fn sync(&self, connector: Uuid, kind: SyncKind) -> sync_runs::SyncRun {
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        let (job, _) = request_sync(&mut tx, connector, kind, "test")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        self.worker("w1")
            .run_until_idle(CancellationToken::new())
            .await
            .unwrap();
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        let run = sync_runs::get(&mut tx, job).await.unwrap();
        tx.commit().await.unwrap();
        run
    }

    pub async fn connector_row(&self, id: Uuid) -> connectors::Connector {
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        let c = connectors::get(&mut tx, id).await.unwrap();
        tx.commit().await.unwrap();
        c
    }

    pub async fn stored(&self, connector: Uuid) -> Picture {
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        let (res, grants) = resources::snapshot(&mut tx, connector).await.unwrap();
        let summary = resources::summary(&mut tx, connector).await.unwrap();
        tx.commit().await.unwrap();
        let mut p = Picture::default();
        for (t, ext, _, profile) in res {
            if t == "user" {
                // A missing field reads as a wrong value, not as "no manager".
                let m = match profile.get("manager_id") {
                    Some(Value::String(m)) => Some(m.clone()),
                    Some(Value::Null) => None,
                    other => Some(format!("no manager_id field: {other:?}")),
                };
                p.managers.insert(ext.clone(), m);
            }
            p.resources.insert((t, ext));
        }
        for (kind, rtype, rext, slug, pext, source) in grants {
            if kind == "license_assigned" {
                p.grants
                    .insert((kind, rtype, rext, slug, pext, String::new()));
            } else if source == "direct" {
                p.grants.insert((kind, rtype, rext, slug, pext, source));
            } else {
                p.expanded += 1;
            }
        }
        p.summary = summary.grants;
        p
    }

    async fn truth(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.sim.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The picture the simulator's ground truth says a sync must store.
    pub async fn expected(&self, skip_ad: bool) -> Picture {
        let mut p = Picture::default();
        let truth = self.sim.truth();
        p.counted.insert("role".into(), truth.role_definitions);
        p.counted.insert("license".into(), truth.skus);
        let users = self.sim.truth_users();
        let on_prem_users: BTreeSet<Uuid> = users
            .iter()
            .filter(|u| u.on_premises_sync_enabled)
            .map(|u| u.id)
            .collect();
        let mut principals: BTreeSet<Uuid> = BTreeSet::new();
        for u in &users {
            p.resources.insert(("user".into(), u.id.to_string()));
            p.managers
                .insert(u.id.to_string(), u.manager_id.map(|m| m.to_string()));
            principals.insert(u.id);
            for sku in &u.licenses {
                p.grants.insert(g(
                    "license_assigned",
                    "license",
                    &sku.to_string(),
                    "assigned",
                    &u.id.to_string(),
                    "",
                ));
            }
        }
        let groups: Vec<_> = self
            .sim
            .truth_groups()
            .into_iter()
            .filter(|gr| !(skip_ad && gr.kind == latchkey_entra_sim::GroupKind::OnPremisesSecurity))
            .collect();
        let sps = self
            .truth("/_sim/truth/service-principals?limit=100000")
            .await;
        for s in sps["value"].as_array().unwrap() {
            let id = s["id"].as_str().unwrap().to_string();
            let t = match s["type"].as_str().unwrap() {
                "Application" => "enterprise_application",
                _ => "managed_identity",
            };
            p.resources.insert((t.into(), id.clone()));
            principals.insert(id.parse().unwrap());
        }
        for gr in &groups {
            principals.insert(gr.id);
        }
        for gr in &groups {
            let gid = gr.id.to_string();
            p.resources.insert(("group".into(), gid.clone()));
            for m in self.sim.group_members(gr.id).unwrap() {
                if principals.contains(&m) && !(skip_ad && on_prem_users.contains(&m)) {
                    p.grants.insert(g(
                        "group_members",
                        "group",
                        &gid,
                        "members",
                        &m.to_string(),
                        "direct",
                    ));
                }
            }
            for o in self.sim.group_owners(gr.id).unwrap() {
                if principals.contains(&o) {
                    p.grants.insert(g(
                        "group_owners",
                        "group",
                        &gid,
                        "owners",
                        &o.to_string(),
                        "direct",
                    ));
                }
            }
        }
        for s in sps["value"].as_array().unwrap() {
            if s["type"] != "Application" {
                continue;
            }
            let id = s["id"].as_str().unwrap();
            let detail = self
                .truth(&format!("/_sim/truth/service-principals/{id}"))
                .await;
            for a in detail["assignments"].as_array().unwrap() {
                let pid: Uuid = a["principal_id"].as_str().unwrap().parse().unwrap();
                if principals.contains(&pid) {
                    p.grants.insert(g(
                        "app_role_assignments",
                        "enterprise_application",
                        id,
                        &format!("assignment:{}", a["app_role_id"].as_str().unwrap()),
                        &pid.to_string(),
                        "direct",
                    ));
                }
            }
            for o in detail["owners"].as_array().unwrap() {
                let pid: Uuid = o["id"].as_str().unwrap().parse().unwrap();
                if principals.contains(&pid) {
                    p.grants.insert(g(
                        "app_owners",
                        "enterprise_application",
                        id,
                        "owners",
                        &pid.to_string(),
                        "direct",
                    ));
                }
            }
        }
        for (path, kind, slug) in [
            ("/_sim/truth/role-assignments", "role_assigned", "assigned"),
            (
                "/_sim/truth/role-eligibilities",
                "role_eligible",
                "eligible",
            ),
        ] {
            for a in self.truth(path).await["value"].as_array().unwrap() {
                let pid: Uuid = a["principal_id"].as_str().unwrap().parse().unwrap();
                if principals.contains(&pid) {
                    p.grants.insert(g(
                        kind,
                        "role",
                        a["role_definition_id"].as_str().unwrap(),
                        slug,
                        &pid.to_string(),
                        "direct",
                    ));
                }
            }
        }
        p
    }
}

fn g(
    kind: &str,
    rtype: &str,
    rext: &str,
    slug: &str,
    pext: &str,
    source: &str,
) -> resources::GrantKey {
    (
        kind.into(),
        rtype.into(),
        rext.into(),
        slug.into(),
        pext.into(),
        source.into(),
    )
}

#[derive(Debug, Default, PartialEq)]
pub struct Picture {
    pub resources: BTreeSet<(String, String)>,
    pub grants: BTreeSet<resources::GrantKey>,
    pub expanded: usize,
    pub summary: BTreeMap<String, i64>,
    /// Each user's manager (object id), from `profile.manager_id`.
    pub managers: BTreeMap<String, Option<String>>,
    /// Types the ground truth only counts (role definitions, SKUs).
    pub counted: BTreeMap<String, usize>,
}

/// Asserts that what is stored equals what the simulator holds, kind by kind (with the first
/// differences, not a wall of ids).
pub fn assert_same(stored: &Picture, expected: &Picture) {
    let types: BTreeSet<&String> = expected.resources.iter().map(|r| &r.0).collect();
    for t in types {
        let s: BTreeSet<_> = stored.resources.iter().filter(|r| &r.0 == t).collect();
        let e: BTreeSet<_> = expected.resources.iter().filter(|r| &r.0 == t).collect();
        assert_eq!(
            s.len(),
            e.len(),
            "{t}: stored {} vs truth {}",
            s.len(),
            e.len()
        );
        assert_eq!(s, e, "{t} differ");
    }
    let wrong: Vec<_> = expected
        .managers
        .iter()
        .filter(|(u, m)| stored.managers.get(*u) != Some(*m))
        .take(3)
        .map(|(u, m)| (u, m, stored.managers.get(u)))
        .collect();
    assert!(
        wrong.is_empty(),
        "managers (user, truth, stored) differ: {wrong:?}"
    );
    assert!(
        expected.managers.values().any(Option::is_some),
        "the tenant has managers"
    );
    for (t, n) in &expected.counted {
        let s = stored.resources.iter().filter(|r| &r.0 == t).count();
        assert_eq!(s, *n, "{t}: stored {s} vs truth {n}");
    }
    for kind in resources::GRANT_KINDS {
        let s: BTreeSet<_> = stored.grants.iter().filter(|x| x.0 == *kind).collect();
        let e: BTreeSet<_> = expected.grants.iter().filter(|x| x.0 == *kind).collect();
        let missing: Vec<_> = e.difference(&s).take(3).collect();
        let extra: Vec<_> = s.difference(&e).take(3).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{kind}: stored {} vs truth {}; missing {missing:?}; extra {extra:?}",
            s.len(),
            e.len()
        );
        assert_eq!(
            stored.summary.get(*kind).copied().unwrap_or(0) as usize,
            e.len(),
            "summary count of {kind}"
        );
    }
}

#[tokio::test]
async fn full_sync_stores_the_ground_truth_of_every_type_and_grant_kind() {
    let env = Env::new(SimConfig::small(11)).await;
    let c = env.connector(&Tweaks::default()).await;
    let run = env.sync(c, SyncKind::Full).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    assert_eq!(run.kind, "full");
    let stored = env.stored(c).await;
    let expected = env.expected(false).await;
    assert_same(&stored, &expected);
    for kind in resources::GRANT_KINDS {
        assert!(
            expected.grants.iter().any(|x| x.0 == *kind),
            "the small tenant has {kind}"
        );
    }
    assert!(
        stored.expanded > 0,
        "nested groups and grants to groups are expanded"
    );
    let conn = env.connector_row(c).await;
    assert_eq!(conn.status, "connected", "{:?}", conn.status_reason);
    assert!(conn.last_sync_at.is_some());
    assert!(run.stats["requests"].as_u64().unwrap() > 0);
    assert_eq!(run.warnings, serde_json::json!([]));

    // Sign-in activity was read (P1) and SSO apps became discovered apps.
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let page = resources::list_resources(
        &mut tx,
        c,
        &resources::ResourceFilter {
            types: vec!["user".into()],
            ..Default::default()
        },
        None,
        200,
    )
    .await
    .unwrap();
    assert!(
        page.items
            .iter()
            .any(|u| u.profile.get("last_sign_in").is_some_and(|v| !v.is_null()))
    );
    // Discovered apps: exactly the tenant's own and third-party apps with single sign-on or
    // a provisioning job (the small tenant has one that only provisions, and one with
    // neither), each described by what it does.
    let discovered = apps::list(&mut tx, "discovered").await.unwrap();
    let mut found: Vec<String> = discovered
        .iter()
        .filter_map(|a| a.external_id.clone())
        .collect();
    found.sort();
    let truth: Vec<String> = env
        .sim
        .discoverable_apps()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(found, truth);
    assert!(
        discovered.iter().any(|a| a
            .description
            .as_deref()
            .is_some_and(|d| d.contains("provisions users"))),
        "{discovered:?}"
    );
    // After its first sync the connector syncs periodically: incremental often, full daily.
    let schedules = latchkey_store::jobs::schedules::list(&mut tx)
        .await
        .unwrap();
    let mine: Vec<_> = schedules
        .iter()
        .filter(|s| s.connector_id == Some(c))
        .map(|s| (s.name.clone(), s.payload["kind"].clone(), s.every_seconds))
        .collect();
    assert_eq!(
        mine,
        vec![
            (
                format!("sync-full:{c}"),
                serde_json::json!("full"),
                86_400.0
            ),
            (format!("sync:{c}"), serde_json::json!("incremental"), 900.0),
        ]
    );
    tx.commit().await.unwrap();

    // Deleting in the tenant and syncing again marks the rows deleted (history kept).
    let gone = env.sim.truth_users()[3].id;
    env.sim.apply(Change::DeleteUser { id: gone }).unwrap();
    let again = env.sync(c, SyncKind::Full).await;
    assert_eq!(again.status, "succeeded");
    assert_same(&env.stored(c).await, &env.expected(false).await);
    assert!(again.stats["deleted"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn faults_throttling_transient_failures_and_token_expiry_do_not_change_the_picture() {
    let mut cfg = SimConfig::small(12);
    cfg.faults = Faults {
        throttle: Throttle::EveryN { n: 5 },
        retry_after_secs: 0.02,
        transient_rate: 0.05,
        token_lifetime_secs: 1,
        latency_ms: 2,
        ..Faults::default()
    };
    let env = Env::new(cfg).await;
    let c = env.connector(&Tweaks::default()).await;
    let run = env.sync(c, SyncKind::Full).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    assert!(
        run.stats["throttled"].as_u64().unwrap() > 0,
        "{}",
        run.stats
    );
    assert!(run.stats["retries"].as_u64().unwrap() > 0);
    assert_same(&env.stored(c).await, &env.expected(false).await);
}

#[tokio::test]
async fn no_premium_licence_skip_ad_groups_and_audit_feed_off_degrade_with_warnings() {
    let mut cfg = SimConfig::small(13);
    cfg.faults = Faults {
        premium_p1: false,
        premium_p2: false,
        audit_unavailable: true,
        ..Faults::default()
    };
    let env = Env::new(cfg).await;
    let c = env
        .connector(&Tweaks {
            skip_ad_groups: true,
            sign_in: true,
            disable_audit_feed: true,
        })
        .await;
    let run = env.sync(c, SyncKind::Full).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    let warnings = run.warnings.as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let mut expected = env.expected(true).await;
    // Without P2 there is no PIM to read.
    expected.grants.retain(|x| x.0 != "role_eligible");
    assert_same(&env.stored(c).await, &expected);
    let conn = env.connector_row(c).await;
    assert_eq!(conn.status, "connected");
    assert!(conn.status_reason.unwrap().contains("warning"));
}

/// With the sync-only permission set (no Synchronization.Read.All) the apps that only
/// provision users cannot be found: a warning says so, everything else is synced, and the
/// apps with single sign-on are still discovered.
#[tokio::test]
async fn sync_only_permissions_skip_provisioning_jobs_with_a_warning() {
    let env = Env::new(
        SimConfig::small(11).with_permissions(latchkey_entra_sim::SYNC_PERMISSIONS.iter().copied()),
    )
    .await;
    let c = env.connector(&Tweaks::default()).await;
    let run = env.sync(c, SyncKind::Full).await;
    assert_eq!(run.status, "succeeded", "{run:?}");
    let warnings = run.warnings.as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("provision users without single sign-on") && w.contains("Synchronization"),
        "{w}"
    );
    assert_same(&env.stored(c).await, &env.expected(false).await);
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let discovered = apps::list(&mut tx, "discovered").await.unwrap();
    assert!(!discovered.is_empty());
    assert!(
        discovered.iter().all(|a| a
            .description
            .as_deref()
            .is_some_and(|d| d.contains("single sign-on"))),
        "{discovered:?}"
    );
    assert!(discovered.len() < env.sim.discoverable_apps().len());
}

/// Nests a few groups with members (a chain, a cycle and a second parent), so that changes to
/// nesting have something to change.
fn nest(sim: &SimHandle) {
    let mut groups = sim.truth_groups();
    groups.sort_by_key(|g| std::cmp::Reverse(g.members));
    // The largest stays out: the changes below add to it.
    let g: Vec<Uuid> = groups.iter().skip(1).take(4).map(|g| g.id).collect();
    for (parent, child) in [(g[0], g[1]), (g[1], g[2]), (g[2], g[0]), (g[3], g[1])] {
        sim.apply(Change::AddMember {
            group_id: parent,
            member_id: child,
        })
        .unwrap();
    }
}

/// About 1% of the small tenant (and at least one of every kind of change) made out of band.
fn mutate(sim: &SimHandle) {
    let users = sim.truth_users();
    let groups = sim.truth_groups();
    let big = groups.iter().max_by_key(|g| g.members).unwrap().id;
    let members = sim.group_members(big).unwrap();
    let outsider = users.iter().find(|u| !members.contains(&u.id)).unwrap().id;
    let created = sim
        .apply(Change::CreateUser {
            display_name: "Nadia Newhire".into(),
            user_principal_name: None,
            account_enabled: Some(true),
            usage_location: Some("US".into()),
        })
        .unwrap()
        .id
        .unwrap()
        .parse::<Uuid>()
        .unwrap();
    let unmanaged = sim
        .apply(Change::CreateUser {
            display_name: "Omar Nomanager".into(),
            user_principal_name: None,
            account_enabled: Some(true),
            usage_location: None,
        })
        .unwrap()
        .id
        .unwrap()
        .parse::<Uuid>()
        .unwrap();
    let with_manager = users.iter().find(|u| u.manager_id.is_some()).unwrap().id;
    let changes = vec![
        // Managers: a new user gets one, another keeps none, one changes, one is removed
        // (and deleting users[2] takes the manager away from those reporting to them).
        Change::SetManager {
            user_id: created,
            manager_id: Some(users[1].id),
        },
        Change::SetManager {
            user_id: unmanaged,
            manager_id: None,
        },
        Change::SetManager {
            user_id: users[4].id,
            manager_id: Some(users[6].id),
        },
        Change::SetManager {
            user_id: with_manager,
            manager_id: None,
        },
        Change::UpdateUser {
            id: users[1].id,
            display_name: Some("Renamed Person".into()),
            job_title: Some("Auditor".into()),
            account_enabled: Some(false),
        },
        Change::DeleteUser { id: users[2].id },
        Change::AddMember {
            group_id: big,
            member_id: created,
        },
        Change::AddMember {
            group_id: big,
            member_id: outsider,
        },
        Change::RemoveMember {
            group_id: big,
            member_id: members[0],
        },
        Change::AddOwner {
            group_id: big,
            owner_id: users[5].id,
        },
        Change::CreateGroup {
            display_name: "Project Falcon".into(),
            kind: latchkey_entra_sim::GroupKind::Security,
        },
        Change::DeleteGroup {
            id: groups.iter().min_by_key(|g| g.members).unwrap().id,
        },
    ];
    for c in changes {
        sim.apply(c).unwrap();
    }
    // Nesting: a nested group leaves its parent, another group (with members) joins the big
    // one, and a group nested somewhere is deleted.
    let group_ids: BTreeSet<Uuid> = sim.truth_groups().iter().map(|g| g.id).collect();
    let nested: Vec<(Uuid, Uuid)> = sim
        .truth_groups()
        .iter()
        .flat_map(|g| {
            sim.group_members(g.id)
                .unwrap()
                .into_iter()
                .filter(|m| group_ids.contains(m))
                .map(move |m| (g.id, m))
        })
        .collect();
    assert!(
        nested.len() >= 2,
        "the small tenant nests groups: {nested:?}"
    );
    let (parent, child) = nested[0];
    sim.apply(Change::RemoveMember {
        group_id: parent,
        member_id: child,
    })
    .unwrap();
    let joiner = sim
        .truth_groups()
        .into_iter()
        .filter(|g| {
            g.id != big && g.members > 0 && !sim.group_members(big).unwrap().contains(&g.id)
        })
        .max_by_key(|g| g.members)
        .unwrap()
        .id;
    sim.apply(Change::AddMember {
        group_id: big,
        member_id: joiner,
    })
    .unwrap();
    let doomed = nested
        .iter()
        .map(|n| n.1)
        .find(|g| *g != child && *g != joiner && *g != big)
        .unwrap();
    sim.apply(Change::DeleteGroup { id: doomed }).unwrap();
}

/// Changes to apps, roles and licences, which Graph's delta queries do not carry.
async fn mutate_apps_roles_licences(env: &Env) {
    let sps = env.truth("/_sim/truth/service-principals").await;
    let app = sps["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "Application" && s["app_role_assignments"].as_u64().unwrap() > 1)
        .unwrap();
    let app_id: Uuid = app["id"].as_str().unwrap().parse().unwrap();
    let detail = env
        .truth(&format!("/_sim/truth/service-principals/{app_id}"))
        .await;
    let gone = detail["assignments"][0]["id"].as_str().unwrap().to_string();
    let user = env.sim.truth_users()[7].id;
    let roles = env.truth("/_sim/truth/role-assignments").await;
    let role = &roles["value"][0];
    let role_id: Uuid = role["role_definition_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let role_holder: Uuid = role["principal_id"].as_str().unwrap().parse().unwrap();
    let sku = env
        .sim
        .truth_users()
        .iter()
        .flat_map(|u| u.licenses.clone())
        .next()
        .unwrap();
    // A grant to a group with members (its members inherit it).
    let group = env
        .sim
        .truth_groups()
        .into_iter()
        .filter(|g| {
            g.members > 0
                && !detail["assignments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["principal_id"] == g.id.to_string())
        })
        .max_by_key(|g| g.members)
        .unwrap()
        .id;
    for c in [
        Change::AssignAppRole {
            service_principal_id: app_id,
            principal_id: user,
            app_role_id: None,
        },
        Change::AssignAppRole {
            service_principal_id: app_id,
            principal_id: group,
            app_role_id: None,
        },
        Change::RemoveAppRoleAssignment {
            service_principal_id: app_id,
            assignment_id: gone,
        },
        Change::AssignDirectoryRole {
            role_definition_id: role_id,
            principal_id: user,
        },
        Change::RemoveDirectoryRole {
            role_definition_id: role_id,
            principal_id: role_holder,
        },
        Change::AddEligibility {
            role_definition_id: role_id,
            principal_id: env.sim.truth_users()[8].id,
        },
        Change::SetLicenses {
            user_id: env.sim.truth_users()[9].id,
            add: vec![sku],
            remove: vec![],
        },
    ] {
        env.sim.apply(c).unwrap();
    }
}

async fn graph_requests(env: &Env) -> usize {
    env.sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1.0/") || r.path.starts_with("/beta/"))
        .filter(|r| !r.in_batch)
        .count()
}

#[tokio::test]
async fn incremental_sync_after_changes_equals_a_fresh_full_sync() {
    let env = Env::new(SimConfig::small(14)).await;
    let tweaks = Tweaks {
        sign_in: false,
        ..Tweaks::default()
    };
    nest(&env.sim);
    let a = env.connector(&tweaks).await;
    env.sim.clear_requests();
    let full = env.sync(a, SyncKind::Full).await;
    assert_eq!(full.status, "succeeded");
    let full_requests = graph_requests(&env).await;

    mutate(&env.sim);
    mutate_apps_roles_licences(&env).await;
    env.sim.clear_requests();
    let inc = env.sync(a, SyncKind::Incremental).await;
    assert_eq!(inc.status, "succeeded", "{inc:?}");
    assert_eq!(inc.kind, "incremental");
    let inc_requests = graph_requests(&env).await;
    // It re-expanded only what changed.
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let logs = latchkey_store::jobs::logs(
        &mut tx,
        latchkey_store::jobs::JobId(inc.id),
        None,
        Some(1000),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(
        logs.iter()
            .any(|l| l.message.contains("changed memberships")),
        "{:?}",
        logs.iter().map(|l| &l.message).collect::<Vec<_>>()
    );
    // On a tenant this small a full sync is already a handful of requests; what matters is
    // that the incremental one does not grow with the tenant: one audit read, one page of each
    // delta, and the objects the audit feed names (the ratio at scale is in the benchmark).
    assert!(
        inc_requests <= 14,
        "incremental {inc_requests} requests (full: {full_requests})"
    );
    assert_eq!(
        inc.stats["requests"].as_u64().unwrap() as usize,
        inc_requests
    );

    // The same tenant into a second connector with a full sync: identical stored state.
    let b = env.connector(&tweaks).await;
    assert_eq!(env.sync(b, SyncKind::Full).await.status, "succeeded");
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let (ra, ga) = resources::snapshot(&mut tx, a).await.unwrap();
    let (rb, gb) = resources::snapshot(&mut tx, b).await.unwrap();
    tx.commit().await.unwrap();
    let diff_r: Vec<_> = ra.iter().filter(|r| !rb.contains(r)).take(3).collect();
    let diff_r2: Vec<_> = rb.iter().filter(|r| !ra.contains(r)).take(3).collect();
    assert!(
        diff_r.is_empty() && diff_r2.is_empty(),
        "resources: incremental-only {diff_r:?}; full-only {diff_r2:?}"
    );
    let diff_g: Vec<_> = ga.iter().filter(|g| !gb.contains(g)).take(5).collect();
    let diff_g2: Vec<_> = gb.iter().filter(|g| !ga.contains(g)).take(5).collect();
    assert!(
        diff_g.is_empty() && diff_g2.is_empty(),
        "grants: incremental-only {diff_g:?}; full-only {diff_g2:?}"
    );
    assert_same(&env.stored(a).await, &env.expected(false).await);

    // With the audit feed off, the incremental sync rereads apps and roles in full.
    let c = env
        .connector(&Tweaks {
            sign_in: false,
            disable_audit_feed: true,
            ..Tweaks::default()
        })
        .await;
    assert_eq!(env.sync(c, SyncKind::Full).await.status, "succeeded");
    mutate_apps_roles_licences(&env).await;
    assert_eq!(env.sync(c, SyncKind::Incremental).await.status, "succeeded");
    assert_same(&env.stored(c).await, &env.expected(false).await);
}

#[tokio::test]
async fn incremental_syncs_refresh_sign_in_activity_when_the_option_is_on() {
    let env = Env::new(SimConfig::small(17)).await;
    let c = env.connector(&Tweaks::default()).await;
    assert_eq!(env.sync(c, SyncKind::Full).await.status, "succeeded");
    let user = env.sim.truth_users()[5].id;
    let last_sign_in = |env: &Env, c: Uuid| {
        let store = env.store().clone();
        let org = env.org;
        async move {
            let mut tx = store.org_tx(org).await.unwrap();
            let (res, _) = resources::snapshot(&mut tx, c).await.unwrap();
            tx.commit().await.unwrap();
            res.into_iter()
                .find(|r| r.0 == "user" && r.1 == user.to_string())
                .map(|r| r.3["last_sign_in"].clone())
                .unwrap()
        }
    };
    let before = last_sign_in(&env, c).await;
    env.sim.apply(Change::RecordSignIn { id: user }).unwrap();
    env.sim.clear_requests();
    let inc = env.sync(c, SyncKind::Incremental).await;
    assert_eq!(inc.status, "succeeded", "{inc:?}");
    assert_eq!(inc.kind, "incremental");
    let after = last_sign_in(&env, c).await;
    assert_ne!(after, before, "the new sign-in was read");
    // Only recent sign-ins were asked for.
    assert!(
        env.sim.requests().iter().any(|r| r.path.contains("users")
            && r.query
                .as_deref()
                .is_some_and(|q| q.contains("lastSignInDateTime"))),
        "{:?}",
        env.sim
            .requests()
            .iter()
            .map(|r| format!("{} {:?}", r.path, r.query))
            .collect::<Vec<_>>()
    );
    // The same as a fresh full sync reads.
    let fresh = env.connector(&Tweaks::default()).await;
    assert_eq!(env.sync(fresh, SyncKind::Full).await.status, "succeeded");
    assert_eq!(last_sign_in(&env, fresh).await, after);
}

#[tokio::test]
async fn an_incremental_sync_without_a_previous_full_sync_runs_as_a_full_one() {
    let env = Env::new(SimConfig::small(15)).await;
    let c = env.connector(&Tweaks::default()).await;
    let run = env.sync(c, SyncKind::Incremental).await;
    assert_eq!(run.status, "succeeded");
    assert_eq!(run.kind, "full");
    assert_same(&env.stored(c).await, &env.expected(false).await);
}

#[tokio::test]
async fn a_sync_whose_worker_dies_resumes_from_its_checkpoint_on_another_worker() {
    let mut cfg = SimConfig::small(16);
    cfg.faults.latency_ms = 30;
    // Small delta pages make the sync long enough to interrupt half way.
    let small_pages = 4;
    let env = Env::new(cfg).await;
    let c = env.connector(&Tweaks::default()).await;
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let (job, _) = request_sync(&mut tx, c, SyncKind::Full, "test")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Worker 1 runs until the sync is past its first phases, then dies without a word. It has
    // connections of its own, as a worker process would: dropped mid-transaction, they must not
    // come back to the test's pool (a dead process's connections close with it).
    let mut cfg1 = WorkerConfig::new("doomed");
    cfg1.lease = Duration::from_secs(2);
    cfg1.heartbeat_interval = Duration::from_millis(500);
    cfg1.poll_interval = Duration::from_millis(50);
    let doomed_store = Store::connect(&latchkey_store::DbConfig::new(env.db.url.clone()))
        .await
        .unwrap();
    let pool = WorkerPool::new(
        doomed_store.clone(),
        cfg1,
        Registry::new().with(env.handler_with(small_pages)),
    );
    let task = tokio::spawn(pool.run(CancellationToken::new()));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut tx = env.store().org_tx(env.org).await.unwrap();
        let j = latchkey_store::jobs::get(&mut tx, latchkey_store::jobs::JobId(job))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // Some phases done, some half way: a crash now loses neither.
        let cp = j.checkpoint.clone().unwrap_or(Value::Null);
        let done = cp["done"].as_array().map_or(0, Vec::len);
        let half_way = cp["cursors"].as_object().is_some_and(|c| !c.is_empty());
        if done >= 1 && half_way {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sync never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    let _ = task.await;
    tokio::time::timeout(Duration::from_secs(10), doomed_store.system().close())
        .await
        .expect("the dead worker's connections close");

    // Worker 2 takes the job once the dead worker's lease has expired, and finishes it. On a
    // loaded machine the lease may not have expired at the first look: keep looking.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        env.worker_with("rescuer", small_pages)
            .run_until_idle(CancellationToken::new())
            .await
            .unwrap();
        let mut tx = env.store().org_tx(env.org).await.unwrap();
        let status = sync_runs::get(&mut tx, job).await.unwrap().status;
        tx.commit().await.unwrap();
        if status != "running" || std::time::Instant::now() > deadline {
            break;
        }
    }
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let run = sync_runs::get(&mut tx, job).await.unwrap();
    let logs =
        latchkey_store::jobs::logs(&mut tx, latchkey_store::jobs::JobId(job), None, Some(1000))
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(run.status, "succeeded", "{run:?}");
    assert!(
        logs.iter()
            .any(|l| l.message.starts_with("Resuming the full sync with")
                && !l.message.contains("with 0 of")),
        "{:?}",
        logs.iter().map(|l| &l.message).collect::<Vec<_>>()
    );
    assert_same(&env.stored(c).await, &env.expected(false).await);
    assert_eq!(env.connector_row(c).await.status, "connected");
}
