//! Provisioning tasks run as `entra.provision` jobs against the simulated tenant and a real
//! database: task timestamps and trail, stored grants updated at once, idempotent repeats,
//! every refusal (and provisioning turned off) with no Graph write, another organization's ids.

use std::time::Duration;

use latchkey_core::{DisplayName, Email};
use latchkey_entra::OutboundPolicy;
use latchkey_entra::onboarding::EntraSettings;
use latchkey_entra::provision::{self, Ask, ProvisionHandler, VerifyPolicy};
use latchkey_entra::sync::SyncKind;
use latchkey_entra_sim::{GroupKind, SimConfig};
use latchkey_jobs::{Registry, WorkerConfig, WorkerPool};
use latchkey_store::provisioning::{self, Task};
use latchkey_store::resources::{self, GrantFilter, ResourceFilter};
use latchkey_store::{StoreError, connectors, orgs};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::sync::{Env, Tweaks};

async fn set_provisioning(env: &Env, connector: Uuid, on: bool) {
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let row = connectors::get(&mut tx, connector).await.unwrap();
    let mut s: EntraSettings = serde_json::from_value(row.settings.unwrap()).unwrap();
    s.provisioning = on;
    connectors::set_settings(&mut tx, connector, &serde_json::to_value(&s).unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn run_jobs(env: &Env) {
    pool(env)
        .run_until_idle(CancellationToken::new())
        .await
        .unwrap();
}

/// A worker running provisioning jobs.
fn pool(env: &Env) -> WorkerPool {
    let mut cfg = WorkerConfig::new("prov");
    cfg.concurrency = 2;
    cfg.poll_interval = Duration::from_millis(50);
    let handler = ProvisionHandler::new(env.keys.clone(), None, OutboundPolicy::INSECURE_DEV)
        .with_verify(VerifyPolicy {
            timeout: Duration::from_secs(3),
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(400),
        });
    WorkerPool::new(env.store().clone(), cfg, Registry::new().with(handler))
}

/// Stored resource id of the object with this directory id.
async fn resource_id(env: &Env, connector: Uuid, rtype: &str, external: Uuid) -> Uuid {
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let mut after = None;
    loop {
        let page = resources::list_resources(
            &mut tx,
            connector,
            &ResourceFilter {
                types: vec![rtype.into()],
                ..Default::default()
            },
            after,
            200,
        )
        .await
        .unwrap();
        if let Some(r) = page
            .items
            .iter()
            .find(|r| r.external_id == external.to_string())
        {
            return r.id;
        }
        after = Some(
            latchkey_store::Cursor::parse(&page.next_cursor.expect("resource is stored")).unwrap(),
        );
    }
}

async fn entitlement(env: &Env, connector: Uuid, resource: Uuid, slug: &str) -> Uuid {
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    resources::list_entitlements(&mut tx, connector, Some(resource), None, None, 50)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.slug == slug)
        .unwrap()
        .id
}

async fn ask(env: &Env, connector: Uuid, a: Ask) -> Uuid {
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let id = provision::request(&mut tx, connector, a, "user:tester")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn task(env: &Env, id: Uuid) -> (Task, Vec<String>) {
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let t = provisioning::get_task(&mut tx, id).await.unwrap();
    let ev = provisioning::events(&mut tx, id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    (t, ev)
}

async fn direct_grants(env: &Env, connector: Uuid, ent: Uuid, principal: Uuid) -> Vec<Uuid> {
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    resources::list_grants(
        &mut tx,
        connector,
        &GrantFilter {
            entitlement: Some(ent),
            principal: Some(principal),
            ..Default::default()
        },
        None,
        50,
    )
    .await
    .unwrap()
    .items
    .into_iter()
    .map(|g| g.id)
    .collect()
}

/// A member user (object id, stored id) holding none of `ents` directly (seeded role
/// assignments and eligibilities differ per role).
async fn user_without(env: &Env, connector: Uuid, ents: &[Uuid]) -> (Uuid, Uuid) {
    for u in env.sim.truth_users().into_iter().rev() {
        if u.user_type != "Member" {
            continue;
        }
        let user = resource_id(env, connector, "user", u.id).await;
        let mut free = true;
        for e in ents {
            free &= direct_grants(env, connector, *e, user).await.is_empty();
        }
        if free {
            return (u.id, user);
        }
    }
    panic!("every user holds one of {ents:?}");
}

fn group_of(env: &Env, kind: GroupKind) -> Uuid {
    env.sim
        .truth_groups()
        .into_iter()
        .find(|g| g.kind == kind)
        .unwrap()
        .id
}

#[tokio::test]
async fn grant_and_revoke_as_tasks_update_the_tenant_and_the_stored_grants() {
    let env = Env::new(SimConfig::small(7)).await;
    let c = env.connector(&Tweaks::default()).await;
    set_provisioning(&env, c, true).await;
    env.sync(c, SyncKind::Full).await;

    let gid = group_of(&env, GroupKind::Security);
    let members = env.sim.group_members(gid).unwrap();
    let uid = env
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.user_type == "Member" && !members.contains(&u.id))
        .unwrap()
        .id;
    let group = resource_id(&env, c, "group", gid).await;
    let user = resource_id(&env, c, "user", uid).await;
    let ent = entitlement(&env, c, group, "members").await;
    assert!(direct_grants(&env, c, ent, user).await.is_empty());

    let t1 = ask(
        &env,
        c,
        Ask::Grant {
            entitlement: ent,
            principal: user,
        },
    )
    .await;
    let (queued, _) = task(&env, t1).await;
    assert_eq!(queued.status, "queued");
    run_jobs(&env).await;
    let (done, events) = task(&env, t1).await;
    assert_eq!(done.status, "succeeded", "{:?}", done.error);
    assert!(done.provisioned_at.is_some() && done.verified_at.is_some());
    assert!(done.requested_at <= done.provisioned_at.unwrap());
    assert!(done.provisioned_at.unwrap() <= done.verified_at.unwrap());
    assert_eq!(events, ["requested", "provisioned", "verified"]);
    assert!(env.sim.group_members(gid).unwrap().contains(&uid));
    // Stored at once, without a sync.
    let stored = direct_grants(&env, c, ent, user).await;
    assert_eq!(stored.len(), 1);

    // Asking again (a retried request): Graph says it already exists; nothing doubles.
    let n = env.sim.group_members(gid).unwrap().len();
    let t2 = ask(
        &env,
        c,
        Ask::Grant {
            entitlement: ent,
            principal: user,
        },
    )
    .await;
    run_jobs(&env).await;
    let (again, _) = task(&env, t2).await;
    assert_eq!(again.status, "succeeded");
    assert_eq!(again.details["already"], true);
    assert_eq!(env.sim.group_members(gid).unwrap().len(), n);
    assert_eq!(direct_grants(&env, c, ent, user).await, stored);

    // A sync afterwards finds the same grant row.
    env.sync(c, SyncKind::Full).await;
    assert_eq!(direct_grants(&env, c, ent, user).await, stored);

    // Revoke by the stored grant's id.
    let t3 = ask(&env, c, Ask::Revoke { grant: stored[0] }).await;
    run_jobs(&env).await;
    let (revoked, events) = task(&env, t3).await;
    assert_eq!(revoked.status, "succeeded", "{:?}", revoked.error);
    assert_eq!(revoked.operation, "revoke");
    assert!(revoked.verified_at.is_some());
    assert_eq!(events, ["requested", "provisioned", "verified"]);
    assert!(!env.sim.group_members(gid).unwrap().contains(&uid));
    assert!(direct_grants(&env, c, ent, user).await.is_empty());
}

#[tokio::test]
async fn refused_tasks_fail_with_the_reason_and_never_write() {
    let env = Env::new(SimConfig::small(7)).await;
    let c = env.connector(&Tweaks::default()).await;
    env.sync(c, SyncKind::Full).await;
    let uid = env
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.user_type == "Member")
        .unwrap()
        .id;
    let user = resource_id(&env, c, "user", uid).await;
    let sec = resource_id(&env, c, "group", group_of(&env, GroupKind::Security)).await;
    let sec_members = entitlement(&env, c, sec, "members").await;
    let mesg = resource_id(
        &env,
        c,
        "group",
        group_of(&env, GroupKind::MailEnabledSecurity),
    )
    .await;
    let mesg_members = entitlement(&env, c, mesg, "members").await;

    // Provisioning is off on this connector (the default): refused before any call.
    env.sim.clear_requests();
    let off = ask(
        &env,
        c,
        Ask::Grant {
            entitlement: sec_members,
            principal: user,
        },
    )
    .await;
    run_jobs(&env).await;
    let (t, events) = task(&env, off).await;
    assert_eq!(t.status, "failed");
    assert!(
        t.error
            .as_deref()
            .unwrap()
            .contains("Provisioning is turned off"),
        "{:?}",
        t.error
    );
    assert!(t.provisioned_at.is_none() && t.verified_at.is_none());
    assert_eq!(events, ["requested", "refused"]);
    assert!(env.sim.requests().is_empty(), "not even a token request");

    set_provisioning(&env, c, true).await;
    let refused = ask(
        &env,
        c,
        Ask::Grant {
            entitlement: mesg_members,
            principal: user,
        },
    )
    .await;
    run_jobs(&env).await;
    let (t, _) = task(&env, refused).await;
    assert_eq!(t.status, "failed");
    assert!(
        t.error.as_deref().unwrap().contains(
            "Microsoft Graph cannot change membership of mail-enabled security groups or distribution lists; manage it in Exchange"
        ),
        "{:?}",
        t.error
    );
    assert_no_graph_write(&env, "mail-enabled security group");

    // Every other refusal of the table, each as a task run by a job that has Graph at hand:
    // failed with the reason, and the tenant's request log shows no write.
    let group = |kind| group_of(&env, kind);
    let mut cases: Vec<(&str, Ask)> = Vec::new();
    for (kind, says) in [
        (GroupKind::Distribution, "manage it in Exchange"),
        (GroupKind::DynamicSecurity, "dynamic membership"),
        (
            GroupKind::OnPremisesSecurity,
            "on-premises Active Directory",
        ),
    ] {
        let g = resource_id(&env, c, "group", group(kind)).await;
        let entitlement = entitlement(&env, c, g, "members").await;
        cases.push((
            says,
            Ask::Grant {
                entitlement,
                principal: user,
            },
        ));
    }
    // A principal of a kind the entitlement does not accept: a group as a group's owner.
    let m365 = resource_id(&env, c, "group", group(GroupKind::Microsoft365)).await;
    cases.push((
        "as owners",
        Ask::Grant {
            entitlement: entitlement(&env, c, sec, "owners").await,
            principal: m365,
        },
    ));
    // The last owner of a group.
    let lone = env
        .sim
        .truth_groups()
        .into_iter()
        .find(|g| g.kind == GroupKind::Security && env.sim.group_owners(g.id).unwrap().len() == 1)
        .expect("a security group with one owner");
    let owner = env.sim.group_owners(lone.id).unwrap()[0];
    let lone_owners = entitlement(
        &env,
        c,
        resource_id(&env, c, "group", lone.id).await,
        "owners",
    )
    .await;
    let owner_grant = direct_grants(
        &env,
        c,
        lone_owners,
        resource_id(&env, c, "user", owner).await,
    )
    .await[0];
    cases.push(("last owner", Ask::Revoke { grant: owner_grant }));
    // A licence for a user without a usage location (Graph is read to know it; never written).
    let nowhere = env
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.user_type == "Member" && u.usage_location.is_none())
        .expect("a user without usage location");
    let sku = env
        .sim
        .truth_users()
        .into_iter()
        .flat_map(|u| u.licenses)
        .find(|l| !nowhere.licenses.contains(l))
        .expect("a licence the user lacks");
    let licence = resource_id(&env, c, "license", sku).await;
    cases.push((
        "Usage location",
        Ask::Grant {
            entitlement: entitlement(&env, c, licence, "assigned").await,
            principal: resource_id(&env, c, "user", nowhere.id).await,
        },
    ));

    for (says, a) in cases {
        env.sim.clear_requests();
        let id = ask(&env, c, a).await;
        run_jobs(&env).await;
        let (t, events) = task(&env, id).await;
        assert_eq!(t.status, "failed", "{says}: {:?}", t.error);
        assert!(
            t.error.as_deref().unwrap_or("").contains(says),
            "{says}: {:?}",
            t.error
        );
        assert_eq!(events, ["requested", "refused"], "{says}");
        assert_no_graph_write(&env, says);
    }
}

/// A refused task left no trace in the tenant: the request log shows no write.
fn assert_no_graph_write(env: &Env, case: &str) {
    let writes = env.sim.graph_writes();
    assert!(writes.is_empty(), "{case}: {writes:?}");
}

#[tokio::test]
async fn another_organizations_ids_are_not_found() {
    let env = Env::new(SimConfig::small(7)).await;
    let c = env.connector(&Tweaks::default()).await;
    env.sync(c, SyncKind::Full).await;
    let gid = group_of(&env, GroupKind::Security);
    let group = resource_id(&env, c, "group", gid).await;
    let ent = entitlement(&env, c, group, "members").await;
    let (other, _) = orgs::create_with_admin(
        &env.db.store,
        &DisplayName::parse("Fabrikam").unwrap(),
        &Email::parse("admin@fabrikam.test").unwrap(),
        &DisplayName::parse("Admin").unwrap(),
        "x",
    )
    .await
    .unwrap();
    let mut tx = env.store().org_tx(other).await.unwrap();
    let r = provision::request(
        &mut tx,
        c,
        Ask::Grant {
            entitlement: ent,
            principal: group,
        },
        "user:intruder",
    )
    .await;
    assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
}

#[tokio::test]
async fn app_role_tasks_store_the_assignment_as_the_sync_would() {
    let env = Env::new(SimConfig::small(7)).await;
    let c = env.connector(&Tweaks::default()).await;
    set_provisioning(&env, c, true).await;
    env.sync(c, SyncKind::Full).await;
    // An app with a role users may hold, from the stored model.
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let apps = resources::list_resources(
        &mut tx,
        c,
        &ResourceFilter {
            types: vec!["enterprise_application".into()],
            ..Default::default()
        },
        None,
        200,
    )
    .await
    .unwrap()
    .items;
    tx.commit().await.unwrap();
    let tenant = env.sim.tenant_id().to_string();
    let mut chosen = None;
    for a in apps
        .iter()
        .filter(|a| a.profile["app_owner_organization_id"] == tenant.as_str())
    {
        let mut tx = env.store().org_tx(env.org).await.unwrap();
        let ents = resources::list_entitlements(&mut tx, c, Some(a.id), None, None, 50)
            .await
            .unwrap()
            .items;
        if let Some(e) = ents
            .into_iter()
            .find(|e| e.slug.starts_with("assignment:") && e.display_name.ends_with("User"))
        {
            chosen = Some((a.clone(), e));
            break;
        }
    }
    let (app, ent) = chosen.expect("an app with a User role");
    let app_id = Uuid::parse_str(&app.external_id).unwrap();
    let holders: Vec<Uuid> = env
        .sim
        .app_role_assignments(app_id)
        .unwrap()
        .iter()
        .map(|a| a.1)
        .collect();
    let uid = env
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.user_type == "Member" && !holders.contains(&u.id))
        .unwrap()
        .id;
    let user = resource_id(&env, c, "user", uid).await;

    let t = ask(
        &env,
        c,
        Ask::Grant {
            entitlement: ent.id,
            principal: user,
        },
    )
    .await;
    run_jobs(&env).await;
    let (done, _) = task(&env, t).await;
    assert_eq!(done.status, "succeeded", "{:?}", done.error);
    let stored = direct_grants(&env, c, ent.id, user).await;
    assert_eq!(stored.len(), 1);
    // The next sync derives the same grant id from Graph's assignment id.
    env.sync(c, SyncKind::Full).await;
    assert_eq!(direct_grants(&env, c, ent.id, user).await, stored);

    let r = ask(&env, c, Ask::Revoke { grant: stored[0] }).await;
    run_jobs(&env).await;
    let (done, _) = task(&env, r).await;
    assert_eq!(done.status, "succeeded", "{:?}", done.error);
    assert!(direct_grants(&env, c, ent.id, user).await.is_empty());
    assert!(
        !env.sim
            .app_role_assignments(app_id)
            .unwrap()
            .iter()
            .any(|a| a.1 == uid)
    );
}

#[tokio::test]
async fn role_tasks_store_the_assignment_as_the_sync_would() {
    let env = Env::new(SimConfig::small(7)).await;
    let c = env.connector(&Tweaks::default()).await;
    set_provisioning(&env, c, true).await;
    env.sync(c, SyncKind::Full).await;
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let role = resources::list_resources(
        &mut tx,
        c,
        &ResourceFilter {
            types: vec!["role".into()],
            ..Default::default()
        },
        None,
        200,
    )
    .await
    .unwrap()
    .items
    .into_iter()
    .next()
    .unwrap();
    tx.commit().await.unwrap();
    let assigned = entitlement(&env, c, role.id, "assigned").await;
    let eligible = entitlement(&env, c, role.id, "eligible").await;
    let (_, user) = user_without(&env, c, &[assigned, eligible]).await;

    let mut stored = Vec::new();
    for ent in [assigned, eligible] {
        let t = ask(
            &env,
            c,
            Ask::Grant {
                entitlement: ent,
                principal: user,
            },
        )
        .await;
        run_jobs(&env).await;
        let (done, _) = task(&env, t).await;
        assert_eq!(done.status, "succeeded", "{:?}", done.error);
        let g = direct_grants(&env, c, ent, user).await;
        assert_eq!(g.len(), 1);
        stored.push(g[0]);
    }
    env.sync(c, SyncKind::Full).await;
    assert_eq!(direct_grants(&env, c, assigned, user).await, [stored[0]]);
    assert_eq!(direct_grants(&env, c, eligible, user).await, [stored[1]]);
    for (ent, g) in [(assigned, stored[0]), (eligible, stored[1])] {
        let t = ask(&env, c, Ask::Revoke { grant: g }).await;
        run_jobs(&env).await;
        let (done, _) = task(&env, t).await;
        assert_eq!(done.status, "succeeded", "{:?}", done.error);
        assert!(direct_grants(&env, c, ent, user).await.is_empty());
    }
}

/// A pass-through in front of the simulated tenant that answers group membership additions 204
/// without passing them on: Graph accepting a write that never takes effect.
async fn swallowing_proxy(target: String) -> (String, tokio::task::JoinHandle<()>) {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |req: Request| {
        let client = client.clone();
        let target = target.clone();
        async move {
            let method = req.method().clone();
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            if method == http::Method::POST && pq.contains("/members/$ref") {
                return Response::builder().status(204).body(Body::empty()).unwrap();
            }
            let headers = req.headers().clone();
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap();
            let mut out = client.request(method, format!("{target}{pq}"));
            for (k, v) in headers.iter() {
                if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
                    out = out.header(k, v);
                }
            }
            let r = out.body(body).send().await.unwrap();
            let mut resp = Response::builder().status(r.status());
            for (k, v) in r.headers() {
                if k != http::header::TRANSFER_ENCODING && k != http::header::CONTENT_LENGTH {
                    resp = resp.header(k, v);
                }
            }
            resp.body(Body::from(r.bytes().await.unwrap())).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, task)
}

#[tokio::test]
async fn a_write_that_never_takes_effect_fails_verification() {
    let env = Env::new(SimConfig::small(7)).await;
    let c = env.connector(&Tweaks::default()).await;
    set_provisioning(&env, c, true).await;
    env.sync(c, SyncKind::Full).await;
    let (proxy, _task) = swallowing_proxy(env.sim.base_url().to_string()).await;
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let row = connectors::get(&mut tx, c).await.unwrap();
    let mut s: EntraSettings = serde_json::from_value(row.settings.unwrap()).unwrap();
    s.graph_domain = proxy;
    connectors::set_settings(&mut tx, c, &serde_json::to_value(&s).unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let gid = group_of(&env, GroupKind::Security);
    let members = env.sim.group_members(gid).unwrap();
    let uid = env
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.user_type == "Member" && !members.contains(&u.id))
        .unwrap()
        .id;
    let group = resource_id(&env, c, "group", gid).await;
    let user = resource_id(&env, c, "user", uid).await;
    let ent = entitlement(&env, c, group, "members").await;
    let t = ask(
        &env,
        c,
        Ask::Grant {
            entitlement: ent,
            principal: user,
        },
    )
    .await;
    run_jobs(&env).await;
    let (done, events) = task(&env, t).await;
    assert_eq!(done.status, "failed");
    assert!(done.provisioned_at.is_some(), "Graph accepted it");
    assert!(done.verified_at.is_none());
    let why = done.verification_failed.as_deref().unwrap();
    assert!(why.contains("did not appear"), "{why}");
    assert!(
        done.error
            .as_deref()
            .unwrap()
            .contains("could not be verified"),
        "{:?}",
        done.error
    );
    assert_eq!(events, ["requested", "provisioned", "verification_failed"]);
    assert!(!env.sim.group_members(gid).unwrap().contains(&uid));
    // Nothing is stored as granted.
    assert!(direct_grants(&env, c, ent, user).await.is_empty());
}

#[tokio::test]
async fn app_role_grants_provision_downstream_on_demand_or_warn() {
    let env = Env::new(SimConfig::small(7)).await;
    let c = env.connector(&Tweaks::default()).await;
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let row = connectors::get(&mut tx, c).await.unwrap();
    let mut s: EntraSettings = serde_json::from_value(row.settings.unwrap()).unwrap();
    s.provisioning = true;
    s.schedule_scim_provisioning = true;
    connectors::set_settings(&mut tx, c, &serde_json::to_value(&s).unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    env.sync(c, SyncKind::Full).await;

    let conn = crate::connect_with(&crate::settings(&env.sim), crate::fast_retries());
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let apps = resources::list_resources(
        &mut tx,
        c,
        &ResourceFilter {
            types: vec!["enterprise_application".into()],
            ..Default::default()
        },
        None,
        200,
    )
    .await
    .unwrap()
    .items;
    tx.commit().await.unwrap();
    let tenant = env.sim.tenant_id().to_string();
    // (has a provisioning job, entitlement of a users' role)
    let mut with_job = None;
    let mut without_job = None;
    for a in apps
        .iter()
        .filter(|a| a.profile["app_owner_organization_id"] == tenant.as_str())
    {
        let jobs: serde_json::Value = conn
            .graph
            .get(&latchkey_entra::Query::v1(format!(
                "servicePrincipals/{}/synchronization/jobs",
                a.external_id
            )))
            .await
            .unwrap();
        let has = !jobs["value"].as_array().unwrap().is_empty();
        let slot = if has { &mut with_job } else { &mut without_job };
        if slot.is_some() {
            continue;
        }
        let mut tx = env.store().org_tx(env.org).await.unwrap();
        let ent = resources::list_entitlements(&mut tx, c, Some(a.id), None, None, 50)
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.slug.starts_with("assignment:"));
        if let Some(e) = ent {
            *slot = Some((a.external_id.clone(), e.id));
        }
    }
    let (job_app, job_ent) = with_job.expect("an app with a SCIM job");
    let (_, plain_ent) = without_job.expect("an app without one");
    let uid = env.sim.truth_users().last().unwrap().id;
    let user = resource_id(&env, c, "user", uid).await;

    let t = ask(
        &env,
        c,
        Ask::Grant {
            entitlement: job_ent,
            principal: user,
        },
    )
    .await;
    run_jobs(&env).await;
    let (done, events) = task(&env, t).await;
    assert_eq!(done.status, "succeeded", "{:?}", done.error);
    assert_eq!(
        events,
        ["requested", "provisioned", "verified", "scim_provisioned"]
    );
    let calls = env.sim.provision_on_demand_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.service_principal_id.to_string() == job_app
                && c.subjects.iter().any(|s| s.0 == uid.to_string())),
        "{calls:?}"
    );

    let t = ask(
        &env,
        c,
        Ask::Grant {
            entitlement: plain_ent,
            principal: user,
        },
    )
    .await;
    run_jobs(&env).await;
    let (done, events) = task(&env, t).await;
    assert_eq!(done.status, "succeeded", "a missing job is not a failure");
    assert_eq!(events.last().unwrap(), "scim_warning");
    let warnings = done.details["warnings"].as_array().unwrap();
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("no provisioning job"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn time_bound_role_grants_end_in_entra_itself() {
    let env = Env::new(SimConfig::small(7)).await;
    let c = env.connector(&Tweaks::default()).await;
    set_provisioning(&env, c, true).await;
    env.sync(c, SyncKind::Full).await;
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let role = resources::list_resources(
        &mut tx,
        c,
        &ResourceFilter {
            types: vec!["role".into()],
            ..Default::default()
        },
        None,
        200,
    )
    .await
    .unwrap()
    .items
    .into_iter()
    .next()
    .unwrap();
    tx.commit().await.unwrap();
    let eligible = entitlement(&env, c, role.id, "eligible").await;
    let (uid, user) = user_without(&env, c, &[eligible]).await;
    let until = (time::OffsetDateTime::now_utc() + time::Duration::hours(8))
        .replace_nanosecond(0)
        .unwrap();
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let t = provision::request_until(
        &mut tx,
        c,
        Ask::Grant {
            entitlement: eligible,
            principal: user,
        },
        "user:tester",
        Some(until),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    run_jobs(&env).await;
    let (done, _) = task(&env, t).await;
    assert_eq!(done.status, "succeeded", "{:?}", done.error);

    let conn = crate::connect_with(&crate::settings(&env.sim), crate::fast_retries());
    let v: serde_json::Value = conn
        .graph
        .get(
            &latchkey_entra::Query::v1("roleManagement/directory/roleEligibilitySchedules")
                .filter(format!("principalId eq '{uid}'")),
        )
        .await
        .unwrap();
    let schedule = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["roleDefinitionId"] == role.external_id.as_str())
        .expect("the eligibility exists");
    let end = time::OffsetDateTime::parse(
        schedule["scheduleInfo"]["expiration"]["endDateTime"]
            .as_str()
            .unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        (end - until).abs() < time::Duration::seconds(2),
        "{end} vs {until}"
    );

    // An active time-bound assignment too; then the sync stores both ends as Entra has them
    // (active ones from their schedule instances, since roleAssignments carry no schedule).
    let assigned = entitlement(&env, c, role.id, "assigned").await;
    let (_, active_user) = user_without(&env, c, &[assigned, eligible]).await;
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    // What a connection test records for a tenant with P2: active roles go through PIM.
    latchkey_store::connectors::set_capabilities(
        &mut tx,
        c,
        &serde_json::json!({"features": {"pim": {"state": "available"}}}),
    )
    .await
    .unwrap();
    let t = provision::request_until(
        &mut tx,
        c,
        Ask::Grant {
            entitlement: assigned,
            principal: active_user,
        },
        "user:tester",
        Some(until),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    run_jobs(&env).await;
    let (done, _) = task(&env, t).await;
    assert_eq!(done.status, "succeeded", "{:?}", done.error);
    env.sync(c, SyncKind::Full).await;
    for (ent, principal) in [(eligible, user), (assigned, active_user)] {
        let mut tx = env.store().org_tx(env.org).await.unwrap();
        let g = resources::list_grants(
            &mut tx,
            c,
            &GrantFilter {
                entitlement: Some(ent),
                principal: Some(principal),
                ..Default::default()
            },
            None,
            5,
        )
        .await
        .unwrap()
        .items;
        assert_eq!(g.len(), 1);
        let details = g[0].details.clone().unwrap_or_default();
        let stored_end = details["end"]
            .as_str()
            .unwrap_or_else(|| panic!("{details}"));
        let stored_end =
            time::OffsetDateTime::parse(stored_end, &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert!(
            (stored_end - until).abs() < time::Duration::seconds(2),
            "{ent}: {stored_end} vs {until}"
        );
    }
}

#[tokio::test]
async fn a_worker_dying_after_graph_created_the_account_loses_no_password() {
    use latchkey_crypto::ExposeSecret;
    use latchkey_entra::provision::accounts::NewAccount;
    use latchkey_store::vault;
    let env = Env::new(SimConfig::small(7)).await;
    let c = env.connector(&Tweaks::default()).await;
    env.sync(c, SyncKind::Full).await;
    set_provisioning(&env, c, true).await;
    let upn = format!("crash.test@{}", env.sim.domain());
    let new = NewAccount {
        user_principal_name: upn.clone(),
        display_name: "Crash Test".into(),
        mail_nickname: "crash.test".into(),
        ..Default::default()
    };
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let id = provision::request_account(&mut tx, c, &new, "user:tester")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // The first attempt: Graph creates the account; its answer is held back, and the worker
    // dies (its tasks aborted) before it can record anything.
    let hold = env.sim.hold("POST", "/v1.0/users");
    let worker = tokio::spawn(pool(&env).run(CancellationToken::new()));
    tokio::time::timeout(Duration::from_secs(60), hold.held())
        .await
        .expect("the worker asked Graph to create the account");
    worker.abort();
    let _ = worker.await;
    hold.release();
    let created: Vec<_> = env
        .sim
        .truth_users()
        .into_iter()
        .filter(|u| u.user_principal_name == upn)
        .collect();
    assert_eq!(created.len(), 1, "Graph created the account");
    let (t, _) = task(&env, id).await;
    assert!(
        t.vault_item_id.is_none() && t.provisioned_at.is_none(),
        "{t:?}"
    );

    // Its lease runs out and the job is handed back; the retry reuses the kept password and
    // recognises the account its lost attempt created.
    sqlx::query(
        "UPDATE jobs SET locked_until = now() - interval '1 second' WHERE status = 'running'",
    )
    .execute(env.store().system())
    .await
    .unwrap();
    latchkey_store::jobs::worker::reap_expired(env.store(), 10)
        .await
        .unwrap();
    run_jobs(&env).await;
    let (t, events) = task(&env, id).await;
    assert_eq!(t.status, "succeeded", "{t:?} {events:?}");
    assert_eq!(
        env.sim
            .truth_users()
            .iter()
            .filter(|u| u.user_principal_name == upn)
            .count(),
        1,
        "no second account"
    );
    let item = t.vault_item_id.expect("the password is in the vault");
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let (kept, password) = vault::reveal(&mut tx, &env.keys, item, "user:tester", "Tester")
        .await
        .map_err(|e| format!("{e:?}"))
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(kept.account_external_id, created[0].id.to_string());
    assert!(
        env.sim
            .user_password_is(created[0].id, password.expose_secret()),
        "the vault holds the password the tenant has"
    );
}
