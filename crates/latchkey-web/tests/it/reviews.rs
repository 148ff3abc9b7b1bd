//! Access reviews against the simulated tenant, with a real worker: a campaign over a synced
//! app decided by two reviewers in the browser pages (one of them kept off her own access),
//! a revoke verified in the tenant, a distribution list's member turned into a manual task,
//! closing with the end rule, the report (JSON and CSV) and its approver-quality signals, the
//! deadline job revoking what nobody decided, reminders, a recurring template, and another
//! organization seeing none of it; scopes (apps, directory roles, guests, inactive users, one
//! entitlement from its page) against the full scope, a snapshot that later syncs leave alone,
//! reassignment, API bulk decisions, inherited access (named in the report), and unknown
//! sign-in activity; a recurring review listed and stopped; a revoke the tenant refuses.

use crate::support::{Browser, PASSWORD, TestApp};
use latchkey_access::policy::{ApproverRule, Stage};
use latchkey_access::{Access, AccessConfig, AdvanceHandler, Caller, NewAsk, Policy, SweepHandler};
use latchkey_core::{OrgId, Role, UserId};
use latchkey_entra::OutboundPolicy;
use latchkey_entra_sim::{GroupKind, SimConfig, SimHandle, SimServer};
use latchkey_jobs::{WorkerConfig, WorkerPool};
use latchkey_reviews::jobs::{DeadlineHandler, ReminderHandler, TemplateHandler};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn access_config() -> AccessConfig {
    AccessConfig {
        min_duration_seconds: 1,
        sweep_every: Duration::from_secs(1),
        ..AccessConfig::default()
    }
}

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
    async fn start(seed: u64) -> Env {
        let sim = SimServer::start(SimConfig::small(seed)).await.unwrap();
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
        let mut config = WorkerConfig::new("reviews-worker").concurrency(3);
        config.poll_interval = Duration::from_millis(50);
        config.maintenance_interval = Duration::from_millis(200);
        let registry = crate::support::entra_handlers(keys)
            .with(AdvanceHandler::new(access_config()))
            .with(SweepHandler::new(access_config()))
            .with(DeadlineHandler)
            .with(ReminderHandler)
            .with(TemplateHandler);
        tokio::spawn(WorkerPool::new(worker_store, config, registry).run(stop.clone()));
        Env { app, sim, stop }
    }

    async fn call(
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

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, token, path, None).await
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, token, path, Some(body))
            .await
    }

    /// A connector with provisioning and sign-in activity on, owned by `owner`, after its
    /// first sync (the existing sync job) succeeded.
    async fn synced_connector(&self, token: &str, owner: UserId) -> String {
        let c = self.sim.customer_app();
        let (s, body) = self
            .post(
                token,
                "/api/v1/connectors",
                json!({"display_name": "Contoso Entra", "app": {"new": {"name": "Microsoft Entra ID"}},
                  "owners": [owner.0],
                  "settings": {"auth": {"mode": "client_secret", "tenant_id": self.sim.tenant_id().to_string(),
                  "client_id": c.client_id.to_string(), "client_secret": c.client_secret}, "graph_domain": self.sim.base_url(),
                  "provisioning": true, "fetch_sign_in_activity": true}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(120);
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

    async fn resource(&self, token: &str, c: &str, rtype: &str, external: Uuid) -> String {
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

    async fn members_entitlement(&self, token: &str, c: &str, group: Uuid) -> String {
        let r = self.resource(token, c, "group", group).await;
        let (_, page) = self
            .get(
                token,
                &format!("/api/v1/connectors/{c}/entitlements?resource_id={r}"),
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

    fn group_of(&self, kind: GroupKind) -> Uuid {
        self.sim
            .truth_groups()
            .into_iter()
            .find(|g| g.kind == kind)
            .unwrap()
            .id
    }

    /// User members of a group in the tenant (the ground truth).
    fn user_members(&self, group: Uuid) -> Vec<Uuid> {
        let users: Vec<Uuid> = self.sim.truth_users().into_iter().map(|u| u.id).collect();
        self.sim
            .group_members(group)
            .unwrap()
            .into_iter()
            .filter(|m| users.contains(m))
            .collect()
    }

    async fn items(&self, token: &str, campaign: &str) -> Vec<Value> {
        let (s, v) = self
            .get(
                token,
                &format!("/api/v1/review-campaigns/{campaign}/items?limit=200"),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(v["next_cursor"].is_null());
        v["items"].as_array().unwrap().clone()
    }

    /// Waits until `check` holds for the campaign's items.
    async fn until_items(
        &self,
        token: &str,
        campaign: &str,
        what: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let items = self.items(token, campaign).await;
            if check(&items) {
                return items;
            }
            assert!(Instant::now() < deadline, "never: {what}: {items:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn signed_in(&self, email: &str) -> Browser {
        let b = self.app.browser();
        let r = b.login(email, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "sign-in of {email}");
        b
    }

    async fn link(&self, org: OrgId, user: UserId, object_id: Uuid) {
        let mut tx = self.app.store().org_tx(org).await.unwrap();
        latchkey_store::identities::link(
            &mut tx,
            user,
            &self.sim.tenant_id().to_string(),
            &object_id.to_string(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
}

fn by_principal<'a>(items: &'a [Value], external: Uuid, entitlement: &str) -> &'a Value {
    items
        .iter()
        .find(|i| {
            i["principal"]["external_id"] == external.to_string()
                && i["access"]["entitlement_id"] == entitlement
        })
        .unwrap_or_else(|| panic!("no item for {external}"))
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// RFC 4180 quoting, written independently of the product's.
fn quote(cell: &str) -> String {
    if cell.contains([',', '"', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

#[tokio::test]
async fn a_campaign_over_a_synced_app_decided_by_two_reviewers() {
    let env = Env::start(41).await;
    let (org, admin) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::SuperAdmin).await;
    let alice = env
        .app
        .person(org, "alice@contoso.example", Role::Member)
        .await;
    let bob = env
        .app
        .person(org, "bob@contoso.example", Role::Member)
        .await;
    let c = env.synced_connector(&token, alice).await;

    let sec = env.group_of(GroupKind::Security);
    let dist = env.group_of(GroupKind::Distribution);
    let sec_users = env.user_members(sec);
    let dist_users = env.user_members(dist);
    assert!(sec_users.len() >= 4, "{sec_users:?}");
    assert!(!dist_users.is_empty());
    let sec_ent = env.members_entitlement(&token, &c, sec).await;
    let dist_ent = env.members_entitlement(&token, &c, dist).await;
    // Alice is one of the security group's members in Entra: she must not review that.
    let alice_account = sec_users[0];
    env.link(org, alice, alice_account).await;

    // Validation and roles first.
    let (s, v) = env
        .post(
            &token,
            "/api/v1/review-campaigns",
            json!({"name": "", "scope": {"connector_ids": [Uuid::nil()]}, "reviewers": {"strategy": "specific"},
                   "deadline": "2001-01-01T00:00:00Z", "end_rule": "keep"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let fields: Vec<&str> = v["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in ["name", "deadline", "reviewers.user_ids"] {
        assert!(fields.contains(&f), "{f} in {v}");
    }
    let (_, _, member_token) = env.app.api_token(org, Role::Member).await;
    let body = json!({
        "name": "Q4 Entra access",
        "scope": {"connector_ids": [c], "entitlement_ids": [sec_ent, dist_ent], "principal_types": ["user"],
                  "include_inherited": false},
        "reviewers": {"strategy": "specific", "user_ids": [alice.0, bob.0], "fallback_user_id": admin.0},
        "deadline": "2100-01-01T00:00:00Z",
        "end_rule": "keep",
    });
    let (s, v) = env
        .post(&member_token, "/api/v1/review-campaigns", body.clone())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    let (s, campaign) = env
        .post(&token, "/api/v1/review-campaigns", body.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{campaign}");
    let cid = id(&campaign);
    let total = (sec_users.len() + dist_users.len()) as i64;
    assert_eq!(campaign["status"], "active");
    assert_eq!(campaign["counts"]["items"], total, "{campaign}");
    assert_eq!(campaign["counts"]["undecided"], total);
    assert_eq!(campaign["counts"]["unassigned"], 0);

    // The snapshot: one item per member, with its evidence; nobody reviews their own access.
    let items = env.items(&token, &cid).await;
    assert_eq!(items.len() as i64, total);
    for i in &items {
        let mine = i["principal"]["external_id"] == alice_account.to_string();
        let (reviewer, source) = if mine {
            (bob, "specific")
        } else {
            (alice, "specific")
        };
        assert_eq!(i["reviewer"]["id"], reviewer.0.to_string(), "{i}");
        assert_eq!(i["reviewer"]["source"], source);
        assert_eq!(i["evidence"]["how"], "direct");
        assert!(i["evidence"]["since"].is_string());
        assert_eq!(i["evidence"]["sign_in_known"], true, "{i}");
        assert!(i["evidence"]["granted_through_latchkey"].is_null());
        assert!(i["evidence"]["jit_request"].is_null());
        // The recommendation follows the last sign-in.
        let rec = &i["evidence"]["recommendation"];
        let enabled = i["principal"]["enabled"] != false;
        match i["evidence"]["last_sign_in"].as_str() {
            _ if !enabled => assert_eq!(rec["reason"], "The account is disabled", "{i}"),
            None => assert_eq!(rec["reason"], "Never signed in", "{i}"),
            Some(t) => {
                let t =
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .unwrap();
                let days = (time::OffsetDateTime::now_utc() - t).whole_days();
                let expected = if days > 90 { "revoke" } else { "keep" };
                assert_eq!(rec["decision"], expected, "{i}");
            }
        }
    }
    // A later change in the tenant does not change what is reviewed: someone joins the
    // security group in Entra and a full sync reads it, but the campaign keeps its snapshot.
    let joiner = env
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.user_type == "Member" && u.account_enabled && !sec_users.contains(&u.id))
        .unwrap()
        .id;
    env.sim
        .apply(latchkey_entra_sim::Change::AddMember {
            group_id: sec,
            member_id: joiner,
        })
        .unwrap();
    env.full_sync(&token, &c).await;
    let joiner_resource = env.resource(&token, &c, "user", joiner).await;
    let (s, synced) = env
        .get(
            &token,
            &format!(
                "/api/v1/connectors/{c}/grants?entitlement_id={sec_ent}&principal_id={joiner_resource}"
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{synced}");
    assert_eq!(
        synced["items"].as_array().unwrap().len(),
        1,
        "the sync saw the new member: {synced}"
    );
    let (s, again) = env
        .get(&token, &format!("/api/v1/review-campaigns/{cid}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["counts"]["items"], total);
    assert_eq!(
        env.items(&token, &cid).await,
        items,
        "the items, evidence and all, are what they were"
    );

    let keep1 = by_principal(&items, sec_users[1], &sec_ent);
    let keep2 = by_principal(&items, sec_users[2], &sec_ent);
    let revoke_sec = by_principal(&items, sec_users[3], &sec_ent);
    let dist_user = *dist_users.iter().find(|u| **u != alice_account).unwrap();
    let revoke_dist = by_principal(&items, dist_user, &dist_ent);
    let own = by_principal(&items, alice_account, &sec_ent);

    // Alice: her inbox, a bulk keep of two items without opening them.
    let a = env.signed_in("alice@contoso.example").await;
    let (s, html) = a.get_text("/reviews").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Waiting for your decision"));
    assert!(
        html.contains(&id(keep1)) && !html.contains(&id(own)),
        "own item hidden"
    );
    let comment = "Still needed, says \"finance\"";
    let r = a
        .submit(
            "/reviews",
            "/reviews/decide",
            &[
                ("item_id", &id(keep1)),
                ("item_id", &id(keep2)),
                ("decision", "keep"),
                ("comment", comment),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Deciding her own access is refused, even by addressing it directly.
    let r = a
        .submit(
            "/reviews",
            &format!("/reviews/items/{}", id(own)),
            &[("decision", "keep")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Spread out, so only the bulk pair counts as decided within seconds of each other.
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let page = format!("/reviews/items/{}", id(revoke_sec));
    let (s, html) = a.get_text(&page).await;
    assert_eq!(s, StatusCode::OK);
    for evidence in [
        "Last sign-in",
        "From a Latchkey request",
        "Recommendation",
        "Direct",
    ] {
        assert!(html.contains(evidence), "{evidence}");
    }
    let r = a
        .submit(
            &page,
            &page,
            &[("decision", "revoke"), ("comment", "Left the team")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let page = format!("/reviews/items/{}", id(revoke_dist));
    a.get_text(&page).await;
    let r = a
        .submit(
            &page,
            &page,
            &[("decision", "revoke"), ("comment", "No longer in sales")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Bob: the one item Alice could not review.
    let b = env.signed_in("bob@contoso.example").await;
    let (_, html) = b.get_text("/reviews").await;
    assert!(html.contains(&id(own)) && !html.contains(&id(keep1)));
    let page = format!("/reviews/items/{}", id(own));
    b.get_text(&page).await;
    let r = b
        .submit(
            &page,
            &page,
            &[("decision", "keep"), ("comment", "Checked with Alice")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Bob cannot decide Alice's items.
    let r = b
        .submit(
            "/reviews",
            &format!("/reviews/items/{}/reassign", id(keep1)),
            &[("reviewer_id", &bob.0.to_string())],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The revoke is carried out by provisioning and verified in the tenant; the distribution
    // list's member becomes a manual task, and the tenant is untouched.
    let items = env
        .until_items(&token, &cid, "revoke verified", |items| {
            by_principal(items, sec_users[3], &sec_ent)["revocation"]["result"] == "verified"
        })
        .await;
    assert!(!env.sim.group_members(sec).unwrap().contains(&sec_users[3]));
    let dist_item = by_principal(&items, dist_user, &dist_ent);
    assert_eq!(
        dist_item["revocation"]["result"], "manual_task_open",
        "{dist_item}"
    );
    assert!(
        dist_item["revocation"]["detail"]
            .as_str()
            .unwrap()
            .contains("manage it in Exchange"),
        "{dist_item}"
    );
    assert!(env.sim.group_members(dist).unwrap().contains(&dist_user));

    // The administrator sees progress (with the chart) and completes the manual task.
    let admin_b = env.signed_in("admin@contoso.example").await;
    let progress = format!("/reviews/campaigns/{cid}");
    let (s, html) = admin_b.get_text(&progress).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        html.matches("<polyline").count(),
        3,
        "decided, undecided, revoked"
    );
    assert!(
        html.contains(&format!("5 of {total} decided")),
        "progress counts"
    );
    assert!(html.contains("manage it in Exchange"));
    let manual = dist_item["revocation"]["manual_task_id"].as_str().unwrap();
    let r = admin_b
        .submit(
            &progress,
            &format!("/reviews/manual-tasks/{manual}/done"),
            &[("note", "Removed in Exchange")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Closing applies the end rule (keep) to what is undecided.
    let (s, closed) = env
        .post(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/close"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{closed}");
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["closed_reason"], "closed");
    let counts = &closed["counts"];
    assert_eq!(counts["undecided"], 0);
    assert_eq!(counts["revoked"], 2);
    assert_eq!(counts["kept"], total - 2);
    assert_eq!(counts["revocations_verified"], 1);
    assert_eq!(counts["manual_done"], 1);
    let (s, _) = env
        .post(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/close"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = env
        .post(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/items"),
            json!({"decisions": [{"item_id": id(keep1), "decision": "revoke"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // The report, exactly: every item with decision, reviewer, time, comment and result.
    let items = env.items(&token, &cid).await;
    let (s, report) = env
        .get(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/report?format=json"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["campaign"]["status"], "closed");
    assert_eq!(report["campaign"]["counts"], closed["counts"]);
    let rows = report["items"].as_array().unwrap();
    assert_eq!(rows.len() as i64, total);
    let task_id = by_principal(&items, sec_users[3], &sec_ent)["revocation"]["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, task) = env.get(&token, &format!("/api/v1/tasks/{task_id}")).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    let verified_at = task["verified_at"].as_str().unwrap().to_string();
    let alice_tag = format!("user:{}", alice.0);
    let bob_tag = format!("user:{}", bob.0);
    let expect = |item: &Value| -> Value {
        let iid = id(item);
        let (decision, by, comment, bulk, viewed, result) = if iid == id(keep1) || iid == id(keep2)
        {
            (
                "keep",
                alice_tag.as_str(),
                comment,
                true,
                false,
                Value::Null,
            )
        } else if iid == id(revoke_sec) {
            (
                "revoke",
                alice_tag.as_str(),
                "Left the team",
                false,
                true,
                json!("verified"),
            )
        } else if iid == id(revoke_dist) {
            (
                "revoke",
                alice_tag.as_str(),
                "No longer in sales",
                false,
                true,
                json!("manual_task_done"),
            )
        } else if iid == id(own) {
            (
                "keep",
                bob_tag.as_str(),
                "Checked with Alice",
                false,
                true,
                Value::Null,
            )
        } else {
            (
                "keep",
                "end_rule",
                "Undecided when the campaign was closed: its end rule is to keep.",
                false,
                false,
                Value::Null,
            )
        };
        let detail = match result.as_str() {
            Some("verified") => json!(format!(
                "Provisioning task {task_id} removed the access; verified in the tenant at {verified_at}"
            )),
            Some(_) => item["revocation"]["detail"].clone(),
            None => Value::Null,
        };
        json!({
            "item_id": iid,
            "resource_type": "group",
            "resource": item["access"]["resource"],
            "entitlement": item["access"]["entitlement"],
            "principal_type": "user",
            "principal": item["principal"]["display_name"],
            "principal_upn": item["principal"]["upn"],
            "guest": item["principal"]["guest"],
            "how": "direct",
            "how_described": "Direct",
            "granted_since": item["evidence"]["since"],
            "sign_in_known": true,
            "last_sign_in": item["evidence"]["last_sign_in"],
            "granted_through_latchkey": null,
            "jit_request": null,
            "recommendation": item["evidence"]["recommendation"]["decision"],
            "recommendation_reason": item["evidence"]["recommendation"]["reason"],
            "reviewer": item["reviewer"]["email"],
            "decision": decision,
            "decided_by": by,
            "decided_at": item["decision"]["decided_at"],
            "comment": comment,
            "bulk": bulk,
            "evidence_viewed": viewed,
            "provisioning_result": result,
            "provisioning_detail": detail,
        })
    };
    let mut expected: BTreeMap<String, Value> = BTreeMap::new();
    for i in &items {
        expected.insert(id(i), expect(i));
    }
    for r in rows {
        let iid = r["item_id"].as_str().unwrap();
        assert_eq!(r, &expected[iid], "report row of {iid}");
        assert!(r["decided_at"].is_string());
    }
    for (iid, who) in [
        (id(keep1), "alice@contoso.example"),
        (id(own), "bob@contoso.example"),
    ] {
        let r = rows.iter().find(|r| r["item_id"] == iid.as_str()).unwrap();
        assert_eq!(r["reviewer"], who);
    }

    // The same rows as CSV, in the same order.
    let r = env
        .app
        .api()
        .get(
            env.app
                .url(&format!("/api/v1/review-campaigns/{cid}/report?format=csv")),
        )
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    let mut want = String::from(
        "item_id,resource_type,resource,entitlement,principal_type,principal,principal_upn,guest,how,how_described,granted_since,last_sign_in,granted_through_latchkey,jit_request,recommendation,recommendation_reason,reviewer,decision,decided_by,decided_at,comment,bulk,evidence_viewed,provisioning_result,provisioning_detail\r\n",
    );
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let yn = |v: &Value| if v == &json!(true) { "yes" } else { "no" }.to_string();
    for r in rows {
        let cells = [
            s(&r["item_id"]),
            s(&r["resource_type"]),
            s(&r["resource"]),
            s(&r["entitlement"]),
            s(&r["principal_type"]),
            s(&r["principal"]),
            s(&r["principal_upn"]),
            yn(&r["guest"]),
            s(&r["how"]),
            s(&r["how_described"]),
            s(&r["granted_since"]),
            r["last_sign_in"].as_str().unwrap_or("never").to_string(),
            s(&r["granted_through_latchkey"]),
            s(&r["jit_request"]),
            s(&r["recommendation"]),
            s(&r["recommendation_reason"]),
            s(&r["reviewer"]),
            s(&r["decision"]),
            s(&r["decided_by"]),
            s(&r["decided_at"]),
            s(&r["comment"]),
            yn(&r["bulk"]),
            yn(&r["evidence_viewed"]),
            s(&r["provisioning_result"]),
            s(&r["provisioning_detail"]),
        ];
        want.push_str(&cells.iter().map(|c| quote(c)).collect::<Vec<_>>().join(","));
        want.push_str("\r\n");
    }
    assert_eq!(csv, want);
    assert!(csv.contains("\"Still needed, says \"\"finance\"\"\""));
    // A format there is none of is refused, saying which there are.
    let (s, v) = env
        .get(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/report?format=xml"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "bad_request");
    assert_eq!(
        v["error"]["message"],
        "There is no report format \"xml\": `format` is json or csv."
    );

    // Approver-quality signals: Alice kept two items in bulk without opening them, within
    // seconds of each other; Bob looked first. The end rule is nobody's decision.
    let signals = report["signals"].as_array().unwrap();
    assert_eq!(signals.len(), 2, "{signals:?}");
    let sa = signals
        .iter()
        .find(|s| s["decided_by"] == alice_tag.as_str())
        .unwrap();
    assert_eq!(sa["reviewer"], "alice@contoso.example");
    assert_eq!(sa["decisions"], 4);
    assert_eq!(sa["kept"], 2);
    assert_eq!(sa["revoked"], 2);
    assert_eq!(sa["kept_without_evidence"], 2);
    assert_eq!(sa["kept_without_evidence_pct"], 100);
    assert_eq!(sa["rapid_decisions"], 1);
    assert_eq!(sa["bulk_decisions"], 2);
    // Time to decide: from the item's assignment (the campaign's start) to its decision.
    let started = rfc3339(&campaign["created_at"]);
    let waits = |by: &str| -> Vec<i64> {
        let mut w: Vec<i64> = rows
            .iter()
            .filter(|r| r["decided_by"] == by)
            .map(|r| (rfc3339(&r["decided_at"]) - started).whole_seconds().max(0))
            .collect();
        w.sort_unstable();
        w
    };
    let wa = waits(&alice_tag);
    assert_eq!(wa.len(), 4);
    assert_eq!(sa["median_seconds_to_decide"], (wa[1] + wa[2]) / 2);
    assert!(
        wa[3] - wa[0] >= 10,
        "Alice's decisions were spread out: {wa:?}"
    );
    assert_eq!(
        sa["flags"],
        json!(["Kept 2 of 2 item(s) without opening their evidence (100%)."])
    );
    let sb = signals
        .iter()
        .find(|s| s["decided_by"] == bob_tag.as_str())
        .unwrap();
    assert_eq!(sb["decisions"], 1);
    assert_eq!(sb["median_seconds_to_decide"], waits(&bob_tag)[0]);
    assert_eq!(sb["kept_without_evidence"], 0);
    assert_eq!(sb["rapid_decisions"], 0);
    assert_eq!(sb["flags"], json!([]));

    // The report page and its downloads for administrators.
    let (s, html) = admin_b
        .get_text(&format!("/reviews/campaigns/{cid}/report"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Approver quality") && html.contains("Left the team"));
    let r = admin_b
        .get(&format!("/reviews/campaigns/{cid}/report.csv"))
        .await;
    assert_eq!(r.text().await.unwrap(), csv);
    let (s, _) = a
        .get_text(&format!("/reviews/campaigns/{cid}/report"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "reviewers do not see the report");

    // Every decision, reassignment attempt aside, is in the audit trail.
    let mut tx = env.app.store().org_tx(org).await.unwrap();
    let events = latchkey_store::audit::list(
        &mut tx,
        &latchkey_store::audit::Filter {
            target_kind: None,
            target_id: None,
            action_prefix: Some("review_".into()),
        },
        None,
        200,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let actions: Vec<&str> = events.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "review_item.decided")
            .count(),
        5
    );
    for a in [
        "review_campaign.created",
        "review_campaign.closed",
        "review_manual_task.completed",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }

    // Another organization sees none of it.
    let (org_b, admin_of_b) = env.app.org("fabrikam").await;
    let (_, _, token_b) = env.app.api_token(org_b, Role::SuperAdmin).await;
    for path in [
        format!("/api/v1/review-campaigns/{cid}"),
        format!("/api/v1/review-campaigns/{cid}/items"),
        format!("/api/v1/review-campaigns/{cid}/report?format=csv"),
    ] {
        let (s, _) = env.get(&token_b, &path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let (s, _) = env
        .post(
            &token_b,
            &format!("/api/v1/review-campaigns/{cid}/close"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env
        .post(
            &token_b,
            &format!("/api/v1/review-campaigns/{cid}/items"),
            json!({"decisions": [{"item_id": id(keep1), "decision": "keep"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, list) = env.get(&token_b, "/api/v1/review-campaigns").await;
    assert_eq!(list["items"], json!([]));
    let (s, _) = env
        .post(
            &token_b,
            "/api/v1/review-campaigns",
            json!({"name": "theirs", "scope": {"connector_ids": [c]}, "reviewers": {"strategy": "app_owner"},
                   "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another organization's connector"
    );
    let other = env.signed_in("admin@fabrikam.example").await;
    for path in ["/reviews", "/reviews/campaigns"] {
        let (s, html) = other.get_text(path).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert!(
            !html.contains(&cid) && !html.contains("Q4 Entra access"),
            "{path}"
        );
    }
    for path in [
        format!("/reviews/campaigns/{cid}"),
        format!("/reviews/campaigns/{cid}/report.csv"),
        format!("/reviews/items/{}", id(keep1)),
    ] {
        let (s, _) = other.get_text(&path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    for path in [
        format!("/reviews/campaigns/{cid}/report"),
        format!("/reviews/campaigns/{cid}/report.json"),
    ] {
        let (s, _) = other.get_text(&path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let keep1_id = id(keep1);
    let admin_of_b = admin_of_b.0.to_string();
    let posts: [(String, Vec<(&str, &str)>); 5] = [
        (
            format!("/reviews/items/{keep1_id}"),
            vec![("decision", "revoke")],
        ),
        (
            format!("/reviews/items/{keep1_id}/reassign"),
            vec![("reviewer_id", admin_of_b.as_str())],
        ),
        (
            "/reviews/decide".to_string(),
            vec![("item_id", keep1_id.as_str()), ("decision", "revoke")],
        ),
        (format!("/reviews/campaigns/{cid}/close"), vec![]),
        (
            format!("/reviews/manual-tasks/{manual}/done"),
            vec![("note", "not yours")],
        ),
    ];
    for (action, form) in &posts {
        let r = other.submit("/reviews/campaigns/new", action, form).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{action}");
    }
    // And nothing it tried changed anything.
    let (_, after) = env
        .get(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/report?format=json"),
        )
        .await;
    assert_eq!(after, report);
}

#[tokio::test]
async fn the_deadline_revokes_what_nobody_decided_and_templates_repeat() {
    let env = Env::start(43).await;
    let (org, admin) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::SuperAdmin).await;
    let alice = env
        .app
        .person(org, "alice@contoso.example", Role::Member)
        .await;
    let c = env.synced_connector(&token, alice).await;
    let m365 = env.group_of(GroupKind::Microsoft365);
    let users = env.user_members(m365);
    assert!(!users.is_empty());
    let ent = env.members_entitlement(&token, &c, m365).await;

    // Reviewed by the app's owner; undecided access is revoked at the deadline, in seconds.
    let deadline = time::OffsetDateTime::now_utc() + time::Duration::seconds(4);
    let (s, campaign) = env
        .post(
            &token,
            "/api/v1/review-campaigns",
            json!({"name": "M365 membership", "scope": {"connector_ids": [c], "entitlement_ids": [ent],
                    "principal_types": ["user"], "include_inherited": false},
                   "reviewers": {"strategy": "app_owner", "fallback_user_id": admin.0},
                   "deadline": deadline.format(&time::format_description::well_known::Rfc3339).unwrap(),
                   "end_rule": "revoke", "reminder_hours_before": [], "repeat_every_days": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{campaign}");
    let cid = id(&campaign);
    let template = campaign["template_id"].as_str().unwrap().to_string();
    assert_eq!(campaign["counts"]["items"], users.len() as i64);
    for i in env.items(&token, &cid).await {
        assert_eq!(i["reviewer"]["id"], alice.0.to_string());
        assert_eq!(i["reviewer"]["source"], "app_owner");
    }

    let wait = Instant::now() + Duration::from_secs(60);
    let closed = loop {
        let (_, v) = env
            .get(&token, &format!("/api/v1/review-campaigns/{cid}"))
            .await;
        if v["status"] == "closed" {
            break v;
        }
        assert!(Instant::now() < wait, "the deadline never applied: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(closed["closed_reason"], "deadline");
    assert_eq!(closed["counts"]["revoked"], users.len() as i64);
    let items = env
        .until_items(&token, &cid, "every revoke verified", |items| {
            items
                .iter()
                .all(|i| i["revocation"]["result"] == "verified")
        })
        .await;
    for i in &items {
        assert_eq!(i["decision"]["decided_by"], "end_rule");
        assert_eq!(
            i["decision"]["comment"],
            "Undecided when the campaign reached its deadline: its end rule is to revoke."
        );
    }
    let left = env.user_members(m365);
    for u in &users {
        assert!(!left.contains(u), "{u} still a member in the tenant");
    }

    // Access that came from a just-in-time request: asked, approved, granted in the tenant.
    let sec = env.group_of(GroupKind::Security);
    let sec_ent = env.members_entitlement(&token, &c, sec).await;
    let members = env.sim.group_members(sec).unwrap();
    let outsider = env
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.user_type == "Member" && u.account_enabled && !members.contains(&u.id))
        .unwrap()
        .id;
    let requester = env
        .app
        .person(org, "requester@contoso.example", Role::Member)
        .await;
    env.link(org, requester, outsider).await;
    let access = Access::new(env.app.store().clone(), access_config());
    let admin_caller = Caller::person(admin, "admin@contoso.example", Role::SuperAdmin);
    let sec_ent_id = Uuid::parse_str(&sec_ent).unwrap();
    access
        .put_policy(
            org,
            &admin_caller,
            sec_ent_id,
            &Policy {
                requestable: true,
                max_duration_seconds: 7200,
                default_duration_seconds: 7200,
                decision_timeout_seconds: 600,
                reminder_before_seconds: 0,
                approval_stages: vec![Stage {
                    approvers: vec![ApproverRule::User { user_id: admin.0 }],
                    required: 1,
                }],
                ..Policy::default()
            },
        )
        .await
        .unwrap();
    let asked = access
        .ask(
            org,
            &Caller::person(requester, "requester@contoso.example", Role::Member),
            NewAsk {
                entitlement_id: sec_ent_id,
                duration_seconds: Some(7200),
                justification: "OPS-7 incident".into(),
                ..NewAsk::default()
            },
        )
        .await
        .unwrap();
    let jit = asked.request.id;
    access.approve(org, &admin_caller, jit, "ok").await.unwrap();
    let wait = Instant::now() + Duration::from_secs(60);
    loop {
        let mut tx = env.app.store().org_tx(org).await.unwrap();
        let r = latchkey_store::access_requests::get(&mut tx, jit)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        if r.state == "active" {
            break;
        }
        assert!(
            Instant::now() < wait,
            "the request never became active: {}",
            r.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(env.sim.group_members(sec).unwrap().contains(&outsider));

    // Reviewed by each user's manager in Entra (when the manager is a Latchkey user), else the
    // fallback.
    let truth = env.sim.truth_users();
    let manager_of = |u: &str| {
        truth
            .iter()
            .find(|t| t.id.to_string() == u)
            .and_then(|t| t.manager_id)
    };
    let sec_members = env.user_members(sec);
    let boss = sec_members
        .iter()
        .find_map(|u| manager_of(&u.to_string()))
        .expect("a member with a manager");
    let manager = env
        .app
        .person(org, "manager@contoso.example", Role::Member)
        .await;
    env.link(org, manager, boss).await;
    let (s, v) = env
        .post(
            &token,
            "/api/v1/review-campaigns",
            json!({"name": "By manager", "scope": {"connector_ids": [c], "entitlement_ids": [sec_ent],
                    "principal_types": ["user"]},
                   "reviewers": {"strategy": "manager", "fallback_user_id": admin.0},
                   "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let items = env.items(&token, &id(&v)).await;
    assert!(!items.is_empty());
    // The people linked to Entra accounts so far: the manager, and the requester above.
    let linked = [(boss, manager), (outsider, requester)];
    let mut managed = 0;
    for i in &items {
        let principal = i["principal"]["external_id"].as_str().unwrap();
        let by_manager = manager_of(principal)
            .and_then(|m| linked.iter().find(|(account, _)| *account == m))
            .map(|(_, person)| *person);
        if let Some(person) = by_manager {
            managed += usize::from(person == manager);
            assert_eq!(i["reviewer"]["id"], person.0.to_string(), "{i}");
            assert_eq!(i["reviewer"]["source"], "manager");
        } else {
            assert_eq!(i["reviewer"]["id"], admin.0.to_string(), "{i}");
            assert_eq!(i["reviewer"]["source"], "fallback");
        }
    }
    assert!(managed > 0, "some items went to the manager");

    // Reminders: an hour before a deadline an hour and a few seconds away.
    let deadline = time::OffsetDateTime::now_utc() + time::Duration::seconds(3603);
    let (s, v) = env
        .post(
            &token,
            "/api/v1/review-campaigns",
            json!({"name": "Security group", "scope": {"connector_ids": [c], "entitlement_ids": [sec_ent]},
                   "reviewers": {"strategy": "app_owner"},
                   "deadline": deadline.format(&time::format_description::well_known::Rfc3339).unwrap(),
                   "end_rule": "keep", "reminder_hours_before": [1]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // The requested access says where it came from, and is not recommended for removal.
    let items = env.items(&token, &id(&v)).await;
    // (It may also hold the group through nested groups: that inherited item is not the request's.)
    let from_jit = items
        .iter()
        .find(|i| {
            i["principal"]["external_id"] == outsider.to_string()
                && i["access"]["entitlement_id"] == sec_ent
                && i["evidence"]["how"] == "direct"
        })
        .unwrap();
    assert_eq!(
        from_jit["evidence"]["jit_request"]["id"],
        jit.to_string(),
        "{from_jit}"
    );
    assert!(from_jit["evidence"]["jit_request"]["expires_at"].is_string());
    assert_eq!(from_jit["evidence"]["recommendation"]["decision"], "keep");
    assert!(
        from_jit["evidence"]["recommendation"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("Just-in-time access from an approved request; it ends by itself on "),
        "{from_jit}"
    );
    for i in items.iter().filter(|i| i["id"] != from_jit["id"]) {
        assert!(i["evidence"]["jit_request"].is_null(), "{i}");
    }
    let wait = Instant::now() + Duration::from_secs(60);
    loop {
        let mut tx = env.app.store().org_tx(org).await.unwrap();
        let mail = latchkey_store::outbox::recent(&mut tx, 50).await.unwrap();
        tx.commit().await.unwrap();
        let to_alice: Vec<_> = mail
            .iter()
            .filter(|m| m.to_address == "alice@contoso.example")
            .collect();
        assert!(
            to_alice
                .iter()
                .any(|m| m.subject == "Access review: Security group"),
            "reviewers are told when the campaign starts"
        );
        if to_alice.iter().any(|m| {
            m.subject
                .starts_with("Reminder: access review Security group")
        }) {
            break;
        }
        assert!(Instant::now() < wait, "no reminder");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The template starts the next campaign when its schedule comes round (made due now).
    sqlx::query("UPDATE job_schedules SET next_run_at = now() WHERE name = $1")
        .bind(format!("review_template:{template}"))
        .execute(env.app.store().system())
        .await
        .unwrap();
    let wait = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = env.get(&token, "/api/v1/review-campaigns").await;
        let next: Vec<&Value> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["template_id"] == template.as_str() && c["id"] != cid.as_str())
            .collect();
        if let Some(n) = next.first() {
            assert_eq!(n["status"], "active");
            assert!(n["name"].as_str().unwrap().starts_with("M365 membership ("));
            assert_eq!(n["end_rule"], "revoke");
            assert_eq!(n["spec"], campaign["spec"]);
            // Its snapshot is of today's tenant: the revoked members are gone.
            assert_eq!(n["counts"]["items"], 0);
            break;
        }
        assert!(
            Instant::now() < wait,
            "the template never started a campaign: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Env {
    /// Every item of a campaign, page after page.
    async fn all_items(&self, token: &str, campaign: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let (s, v) = self
                .get(
                    token,
                    &format!("/api/v1/review-campaigns/{campaign}/items?limit=200{cursor}"),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            out.extend(v["items"].as_array().unwrap().iter().cloned());
            match v["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return out,
            }
        }
    }

    async fn start_campaign(&self, token: &str, body: Value) -> Value {
        let (s, v) = self.post(token, "/api/v1/review-campaigns", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// Waits for a provisioning task to succeed (verified in the tenant).
    async fn task_succeeded(&self, token: &str, task: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, t) = self.get(token, &format!("/api/v1/tasks/{task}")).await;
            if t["status"] == "succeeded" {
                return;
            }
            assert!(Instant::now() < deadline, "task never succeeded: {t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs a full sync of the connector to its end.
    async fn full_sync(&self, token: &str, c: &str) {
        let (s, started) = self
            .post(
                token,
                &format!("/api/v1/connectors/{c}/syncs"),
                json!({"kind": "full"}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{started}");
        let run = id(&started);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, v) = self.get(token, &format!("/api/v1/syncs/{run}")).await;
            if v["status"] == "succeeded" {
                return;
            }
            assert!(v["status"] != "failed", "sync failed: {v}");
            assert!(Instant::now() < deadline, "sync never finished: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn grant_ids(items: &[Value], keep: impl Fn(&Value) -> bool) -> std::collections::BTreeSet<String> {
    items
        .iter()
        .filter(|i| keep(i))
        .map(|i| i["grant_id"].as_str().unwrap().to_string())
        .collect()
}

fn rfc3339(v: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        v.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

#[tokio::test]
async fn scopes_filter_the_snapshot_which_later_syncs_leave_alone_and_items_move_between_reviewers()
{
    let env = Env::start(47).await;
    let (org, admin) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::SuperAdmin).await;
    let alice = env
        .app
        .person(org, "alice@contoso.example", Role::Member)
        .await;
    let bob = env
        .app
        .person(org, "bob@contoso.example", Role::Member)
        .await;
    let c = env.synced_connector(&token, alice).await;
    let (_, conn) = env.get(&token, &format!("/api/v1/connectors/{c}")).await;
    let app = conn["app"]["id"].as_str().unwrap().to_string();
    let truth = env.sim.truth_users();
    let guests: std::collections::BTreeSet<String> = truth
        .iter()
        .filter(|u| u.user_type == "Guest")
        .map(|u| u.id.to_string())
        .collect();
    assert!(!guests.is_empty(), "the tenant has guests");
    let sec = env.group_of(GroupKind::Security);
    let sec_ent = env.members_entitlement(&token, &c, sec).await;
    let sec_users = env.user_members(sec);
    // Alice, the app's owner, holds access in Entra herself.
    let alice_account = sec_users[0];
    env.link(org, alice, alice_account).await;

    // Everything the app gives, through the app rather than its connector: the app's owner
    // reviews it, except her own access, which goes to the fallback.
    let everything = env
        .start_campaign(
            &token,
            json!({"name": "Everything", "scope": {"app_ids": [app]},
                   "reviewers": {"strategy": "app_owner", "fallback_user_id": admin.0},
                   "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        )
        .await;
    let all_id = id(&everything);
    let all = env.all_items(&token, &all_id).await;
    assert_eq!(everything["counts"]["items"], all.len() as i64);
    assert_eq!(everything["counts"]["unassigned"], 0);
    let mut own = 0;
    for i in &all {
        if i["principal"]["external_id"] == alice_account.to_string() {
            own += 1;
            assert_eq!(i["reviewer"]["id"], admin.0.to_string(), "{i}");
            assert_eq!(i["reviewer"]["source"], "fallback");
        } else {
            assert_eq!(i["reviewer"]["id"], alice.0.to_string(), "{i}");
            assert_eq!(i["reviewer"]["source"], "app_owner");
        }
    }
    assert!(own > 0, "Alice's own access is in the campaign");
    for kind in ["group", "role"] {
        assert!(
            all.iter().any(|i| i["access"]["resource_type"] == kind),
            "{kind} access in the full scope"
        );
    }
    // Without a fallback, Alice's own access waits for an administrator to reassign it.
    let no_fallback = env
        .start_campaign(
            &token,
            json!({"name": "Security group, owner only", "scope": {"connector_ids": [c], "entitlement_ids": [sec_ent]},
                   "reviewers": {"strategy": "app_owner"},
                   "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        )
        .await;
    let nf_items = env.all_items(&token, &id(&no_fallback)).await;
    let alone: Vec<&Value> = nf_items
        .iter()
        .filter(|i| i["reviewer"].is_null())
        .collect();
    assert!(!alone.is_empty());
    assert_eq!(no_fallback["counts"]["unassigned"], alone.len() as i64);
    for i in alone {
        assert_eq!(i["principal"]["external_id"], alice_account.to_string());
    }

    // The same from the entitlement's page, through the New campaign form.
    let admin_page = env.signed_in("admin@contoso.example").await;
    let ent_page = format!("/apps/{app}/entitlements/{sec_ent}");
    let (s, html) = admin_page.get_text(&ent_page).await;
    assert_eq!(s, StatusCode::OK);
    let start = format!("/reviews/campaigns/new?connector_id={c}&amp;entitlement_id={sec_ent}");
    assert!(html.contains(&start), "a link to review this access");
    let new_page = start.replace("&amp;", "&");
    let (s, html) = admin_page.get_text(&new_page).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains(&format!(
            r#"name="entitlement_id" value="{sec_ent}" checked"#
        )),
        "the entitlement is chosen"
    );
    let admin_id = admin.0.to_string();
    let r = admin_page
        .submit(
            &new_page,
            "/reviews/campaigns",
            &[
                ("name", "Security group from its page"),
                ("connector_id", &c),
                ("entitlement_id", &sec_ent),
                ("include_inherited", "yes"),
                ("strategy", "app_owner"),
                ("deadline", "2099-12-31"),
                ("end_rule", "keep"),
                ("fallback_user_id", &admin_id),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let from_page = crate::support::location(&r)
        .strip_prefix("/reviews/campaigns/")
        .unwrap()
        .to_string();
    assert_eq!(
        grant_ids(&env.all_items(&token, &from_page).await, |_| true),
        grant_ids(&nf_items, |_| true)
    );

    // Narrowed scopes take exactly their part of everything.
    let directory_roles = env
        .start_campaign(
            &token,
            json!({"name": "Directory roles", "scope": {"app_ids": [app], "resource_types": ["role"]},
                   "reviewers": {"strategy": "app_owner", "fallback_user_id": admin.0},
                   "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        )
        .await;
    let want = grant_ids(&all, |i| i["access"]["resource_type"] == "role");
    assert!(!want.is_empty());
    assert_eq!(
        grant_ids(&env.all_items(&token, &id(&directory_roles)).await, |_| {
            true
        }),
        want,
        "directory roles"
    );
    let guest_campaign = env
        .start_campaign(
            &token,
            json!({"name": "Guests", "scope": {"connector_ids": [c], "guests_only": true},
                   "reviewers": {"strategy": "app_owner", "fallback_user_id": admin.0},
                   "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        )
        .await;
    let guest_items = env.all_items(&token, &id(&guest_campaign)).await;
    let want = grant_ids(&all, |i| {
        guests.contains(i["principal"]["external_id"].as_str().unwrap())
    });
    assert!(!want.is_empty(), "guests hold access");
    assert_eq!(grant_ids(&guest_items, |_| true), want, "guests");
    assert!(guest_items.iter().all(|i| i["principal"]["guest"] == true));
    let inactive = env
        .start_campaign(
            &token,
            json!({"name": "Inactive", "scope": {"connector_ids": [c], "inactive_days": 90, "include_inherited": false},
                   "reviewers": {"strategy": "app_owner", "fallback_user_id": admin.0},
                   "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        )
        .await;
    let since = rfc3339(&inactive["created_at"]) - time::Duration::days(90);
    let want = grant_ids(&all, |i| {
        i["principal"]["type"] == "user"
            && i["evidence"]["how"] == "direct"
            && match i["evidence"]["last_sign_in"].as_str() {
                None => true,
                Some(_) => rfc3339(&i["evidence"]["last_sign_in"]) < since,
            }
    });
    assert!(
        !want.is_empty(),
        "some users have not signed in for 90 days"
    );
    let inactive_items = env.all_items(&token, &id(&inactive)).await;
    assert_eq!(grant_ids(&inactive_items, |_| true), want, "inactive users");
    for i in &inactive_items {
        assert_eq!(i["evidence"]["sign_in_known"], true);
        assert_eq!(i["evidence"]["recommendation"]["decision"], "revoke", "{i}");
    }

    // The tenant changes and a full sync reads it: one member leaves the security group, an
    // outsider joins it (both through provisioning). The running campaign is unchanged.
    let leaver = sec_users[1];
    let leaver_item = by_principal(&all, leaver, &sec_ent);
    let (s, v) = env
        .call(
            reqwest::Method::DELETE,
            &token,
            &format!(
                "/api/v1/connectors/{c}/grants/{}",
                leaver_item["grant_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    env.task_succeeded(&token, v["task_id"].as_str().unwrap())
        .await;
    let outsider = truth
        .iter()
        .find(|u| u.user_type == "Member" && u.account_enabled && !sec_users.contains(&u.id))
        .unwrap()
        .id;
    let outsider_resource = env.resource(&token, &c, "user", outsider).await;
    let (s, v) = env
        .post(
            &token,
            &format!("/api/v1/connectors/{c}/grants"),
            json!({"entitlement_id": sec_ent, "principal_id": outsider_resource}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let grant_task = v["task_id"].as_str().unwrap().to_string();
    env.task_succeeded(&token, &grant_task).await;
    assert!(env.sim.group_members(sec).unwrap().contains(&outsider));
    assert!(!env.sim.group_members(sec).unwrap().contains(&leaver));
    env.full_sync(&token, &c).await;
    assert_eq!(
        env.all_items(&token, &all_id).await,
        all,
        "the snapshot, evidence and all, is what it was"
    );
    // The administrator holds access in Entra too.
    assert!(sec_users.len() >= 4, "{sec_users:?}");
    let admin_account = sec_users[3];
    env.link(org, admin, admin_account).await;
    // A campaign started now sees today's tenant, with the grant Latchkey made as evidence.
    let now_campaign = env
        .start_campaign(
            &token,
            json!({"name": "Security group", "scope": {"connector_ids": [c], "entitlement_ids": [sec_ent],
                    "principal_types": ["user"], "include_inherited": false},
                   "reviewers": {"strategy": "specific", "user_ids": [alice.0], "fallback_user_id": admin.0},
                   "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        )
        .await;
    let cid = id(&now_campaign);
    let items = env.all_items(&token, &cid).await;
    let members = env.user_members(sec);
    assert_eq!(items.len(), members.len());
    assert!(
        items
            .iter()
            .all(|i| i["principal"]["external_id"] != leaver.to_string())
    );
    let joined = by_principal(&items, outsider, &sec_ent);
    assert_eq!(
        joined["evidence"]["granted_through_latchkey"]["task_id"],
        grant_task.as_str(),
        "{joined}"
    );
    assert!(
        all.iter()
            .all(|i| i["principal"]["external_id"] != outsider.to_string()
                || i["access"]["entitlement_id"] != sec_ent)
    );

    // Reassigning: Alice hands an item to Bob, who now has it in his inbox, and she cannot
    // decide it any more.
    let moved = by_principal(&items, sec_users[2], &sec_ent);
    let moved_id = id(moved);
    let a = env.signed_in("alice@contoso.example").await;
    let page = format!("/reviews/items/{moved_id}");
    let (s, html) = a.get_text(&page).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("bob@contoso.example"), "Bob is offered");
    let r = a
        .submit(
            &page,
            &format!("{page}/reassign"),
            &[
                ("reviewer_id", &bob.0.to_string()),
                ("comment", "Bob runs that team"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, v) = env
        .get(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/items?reviewer_id={}", bob.0),
        )
        .await;
    let bobs = v["items"].as_array().unwrap();
    assert_eq!(bobs.len(), 1, "{v}");
    assert_eq!(bobs[0]["id"], moved_id.as_str());
    assert_eq!(bobs[0]["reviewer"]["source"], "reassigned");
    assert!(bobs[0]["decision"].is_null());
    let b = env.signed_in("bob@contoso.example").await;
    let (_, html) = b.get_text("/reviews").await;
    assert!(html.contains(&moved_id));
    let (_, html) = a.get_text("/reviews").await;
    assert!(!html.contains(&moved_id));
    let r = a.submit("/reviews", &page, &[("decision", "keep")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Nobody is given their own access, not even by an administrator.
    let (s, v) = env
        .post(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/items"),
            json!({"decisions": [{"item_id": id(by_principal(&items, alice_account, &sec_ent)),
                                  "decision": "reassign", "reviewer_id": alice.0}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["fields"][0]["field"], "reviewer_id");
    let r = b.submit("/reviews", &page, &[("decision", "keep")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Nor does anyone decide their own access through an API client they created.
    let (_, creds) = latchkey_web::api::api_clients::create_client(
        env.app.store(),
        org,
        &latchkey_core::DisplayName::parse("admin's script").unwrap(),
        Role::SuperAdmin,
        Some(admin),
    )
    .await
    .unwrap();
    let admins_token = env.app.token(&creds.client_id, &creds.client_secret).await;
    let admins_item = id(by_principal(&items, admin_account, &sec_ent));
    let (s, v) = env
        .post(
            &admins_token,
            &format!("/api/v1/review-campaigns/{cid}/items"),
            json!({"decisions": [{"item_id": admins_item, "decision": "keep"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    // Bulk decisions through the API are all or nothing.
    let others: Vec<String> = items
        .iter()
        .filter(|i| {
            let holder = i["principal"]["external_id"].as_str().unwrap();
            id(i) != moved_id
                && holder != alice_account.to_string()
                && holder != admin_account.to_string()
        })
        .map(id)
        .take(2)
        .collect();
    let (s, v) = env
        .post(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/items"),
            json!({"decisions": [{"item_id": others[0], "decision": "keep"},
                                 {"item_id": moved_id, "decision": "revoke"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (_, v) = env
        .get(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/items?decision=undecided&limit=200"),
        )
        .await;
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == others[0].as_str()),
        "the failed batch recorded nothing"
    );
    let (s, v) = env
        .post(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/items"),
            json!({"decisions": [{"item_id": others[0], "decision": "keep", "comment": "Quarterly check"},
                                 {"item_id": others[1], "decision": "keep", "comment": "Quarterly check"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for i in v["items"].as_array().unwrap() {
        assert_eq!(i["decision"]["decision"], "keep");
        assert_eq!(i["decision"]["bulk"], true);
        assert_eq!(i["decision"]["comment"], "Quarterly check");
        assert!(
            i["decision"]["decided_by"]
                .as_str()
                .unwrap()
                .starts_with("api_client:")
        );
    }
    let (_, v) = env
        .get(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/items?decision=keep"),
        )
        .await;
    let mut kept: Vec<String> = v["items"].as_array().unwrap().iter().map(id).collect();
    kept.sort();
    let mut want = vec![others[0].clone(), others[1].clone(), moved_id.clone()];
    want.sort();
    assert_eq!(kept, want);

    // Access inherited through a group is shown with its path, and revoking it is a manual
    // task (provisioning removes only direct access), the tenant untouched.
    let inherited = all
        .iter()
        .find(|i| {
            i["evidence"]["how"].as_str().unwrap().starts_with("group:")
                && i["principal"]["type"] == "user"
                && i["principal"]["external_id"] != leaver.to_string()
                && i["access"]["resource_type"] == "group"
        })
        .expect("access inherited through a nested group");
    let path = inherited["evidence"]["how"].as_str().unwrap();
    let first = path
        .split('>')
        .next()
        .unwrap()
        .strip_prefix("group:")
        .unwrap();
    let via = env
        .sim
        .truth_groups()
        .into_iter()
        .find(|g| g.id.to_string() == first)
        .unwrap()
        .display_name;
    let admin_b = env.signed_in("admin@contoso.example").await;
    let (s, html) = admin_b
        .get_text(&format!("/reviews/items/{}", id(inherited)))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Via group "), "the group path in words");
    if !via.contains(['&', '<', '>', '"', '\'']) {
        assert!(html.contains(&format!("Via group {via}")), "{via}");
    }
    // The report and the API say the same with the groups' names, the raw path beside it.
    let groups = env.sim.truth_groups();
    let described = format!(
        "Via {}",
        path.split('>')
            .map(|step| {
                let gid = step.strip_prefix("group:").unwrap();
                let g = groups.iter().find(|g| g.id.to_string() == gid).unwrap();
                format!("group {}", g.display_name)
            })
            .collect::<Vec<_>>()
            .join(" › ")
    );
    assert_eq!(inherited["evidence"]["how_described"], described.as_str());
    let (s, report) = env
        .get(
            &token,
            &format!("/api/v1/review-campaigns/{all_id}/report?format=json"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let row = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["item_id"] == inherited["id"])
        .unwrap();
    assert_eq!(row["how"], path);
    assert_eq!(row["how_described"], described.as_str());
    let csv = env
        .app
        .api()
        .get(env.app.url(&format!(
            "/api/v1/review-campaigns/{all_id}/report?format=csv"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = csv
        .split("\r\n")
        .find(|l| l.starts_with(&id(inherited)))
        .unwrap();
    assert!(
        line.contains(&format!(",{},{},", quote(path), quote(&described))),
        "{line}"
    );
    let (s, html) = admin_b
        .get_text(&format!("/reviews/campaigns/{all_id}/report"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("Via group "),
        "the report page names the groups too"
    );
    let (s, v) = env
        .post(
            &token,
            &format!("/api/v1/review-campaigns/{all_id}/items"),
            json!({"decisions": [{"item_id": id(inherited), "decision": "revoke", "comment": "Not via that group"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rev = &v["items"][0]["revocation"];
    assert_eq!(rev["result"], "manual_task_open", "{v}");
    assert!(rev["task_id"].is_null());
    assert!(
        rev["detail"]
            .as_str()
            .unwrap()
            .ends_with("not directly: revoke that group membership instead."),
        "{rev}"
    );

    // Without sign-in activity (turned off), the last sign-in is unknown rather than the date
    // kept from before, nothing is recommended on it, and inactivity cannot be filtered on.
    let (s, v) = env
        .call(
            reqwest::Method::PATCH,
            &token,
            &format!("/api/v1/connectors/{c}"),
            Some(json!({"settings": {"fetch_sign_in_activity": false}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    env.full_sync(&token, &c).await;
    let blind = env
        .start_campaign(
            &token,
            json!({"name": "Without sign-ins", "scope": {"connector_ids": [c], "entitlement_ids": [sec_ent],
                    "principal_types": ["user"], "include_inherited": false},
                   "reviewers": {"strategy": "app_owner", "fallback_user_id": admin.0},
                   "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        )
        .await;
    let blind_items = env.all_items(&token, &id(&blind)).await;
    assert!(!blind_items.is_empty());
    for i in &blind_items {
        assert_eq!(i["evidence"]["sign_in_known"], false, "{i}");
        assert!(i["evidence"]["last_sign_in"].is_null(), "{i}");
        if i["principal"]["enabled"] != false {
            assert!(i["evidence"]["recommendation"].is_null(), "{i}");
        }
    }
    let (s, html) = admin_b
        .get_text(&format!("/reviews/items/{}", id(&blind_items[0])))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Not reported by the tenant"));
    let (s, v) = env
        .post(
            &token,
            "/api/v1/review-campaigns",
            json!({"name": "Inactive again", "scope": {"connector_ids": [c], "inactive_days": 90},
                   "reviewers": {"strategy": "app_owner"}, "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["fields"][0]["field"], "scope.inactive_days");
    // Campaigns started before keep the evidence they were started with.
    assert_eq!(env.all_items(&token, &id(&inactive)).await, inactive_items);
}

/// The campaigns a template started, as the campaign list shows them.
async fn campaigns_of(env: &Env, token: &str, template: &str) -> Vec<Value> {
    let (s, list) = env.get(token, "/api/v1/review-campaigns").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["template_id"] == template)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_recurring_review_is_listed_and_once_stopped_starts_no_more_campaigns() {
    let env = Env::start(53).await;
    let (org, admin) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::SuperAdmin).await;
    let (_, _, member_token) = env.app.api_token(org, Role::Member).await;
    let c = env.synced_connector(&token, admin).await;
    let sec = env.group_of(GroupKind::Security);
    let sec_ent = env.members_entitlement(&token, &c, sec).await;

    let first = env
        .start_campaign(
            &token,
            json!({"name": "Weekly security group", "scope": {"connector_ids": [c], "entitlement_ids": [sec_ent],
                    "principal_types": ["user"], "include_inherited": false},
                   "reviewers": {"strategy": "app_owner", "fallback_user_id": admin.0},
                   "deadline": (time::OffsetDateTime::now_utc() + time::Duration::days(3))
                       .format(&time::format_description::well_known::Rfc3339).unwrap(),
                   "end_rule": "revoke", "repeat_every_days": 7}),
        )
        .await;
    let template = first["template_id"].as_str().unwrap().to_string();
    let schedule = format!("review_template:{template}");

    // Administrators' clients only; the recurring review as the API shows it.
    let (s, v) = env.get(&member_token, "/api/v1/review-templates").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = env
        .get(
            &member_token,
            &format!("/api/v1/review-templates/{template}"),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, list) = env.get(&token, "/api/v1/review-templates").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let t = &list["items"][0];
    assert_eq!(t["id"], template.as_str());
    assert_eq!(t["name"], "Weekly security group");
    assert_eq!(t["status"], "active");
    assert_eq!(t["every_days"], 7);
    assert_eq!(t["end_rule"], "revoke");
    assert_eq!(t["spec"], first["spec"]);
    assert!(t["stopped_at"].is_null());
    let next = rfc3339(&t["next_run_at"]);
    let in_a_week = time::OffsetDateTime::now_utc() + time::Duration::days(7);
    assert!(
        (next - in_a_week).whole_minutes().abs() <= 5,
        "next run a week from now: {t}"
    );
    assert_eq!(t["campaigns"].as_array().unwrap().len(), 1);
    assert_eq!(t["campaigns"][0]["id"], first["id"]);
    assert_eq!(t["campaigns"][0]["status"], "active");

    // Its schedule comes round (made due now): a second campaign starts, and the template
    // lists both.
    sqlx::query("UPDATE job_schedules SET next_run_at = now() WHERE name = $1")
        .bind(&schedule)
        .execute(env.app.store().system())
        .await
        .unwrap();
    let wait = Instant::now() + Duration::from_secs(60);
    while campaigns_of(&env, &token, &template).await.len() < 2 {
        assert!(
            Instant::now() < wait,
            "the template never started a campaign"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = campaigns_of(&env, &token, &template).await;
    let second = started
        .iter()
        .find(|c| c["id"] != first["id"])
        .unwrap()
        .clone();
    let (s, t) = env
        .get(&token, &format!("/api/v1/review-templates/{template}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let listed: Vec<&Value> = t["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(listed, vec![&first["id"], &second["id"]], "oldest first");

    // The page, reachable from the campaign list, with a Stop button.
    let admin_b = env.signed_in("admin@contoso.example").await;
    let (s, html) = admin_b.get_text("/reviews/campaigns").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains(r#"href="/reviews/templates""#),
        "a link to the recurring reviews"
    );
    let (s, html) = admin_b.get_text("/reviews/templates").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Weekly security group") && html.contains("7 days"));
    for cid in [id(&first), id(&second)] {
        assert!(html.contains(&format!("/reviews/campaigns/{cid}")), "{cid}");
    }
    let stop_action = format!(r#"action="/reviews/templates/{template}/stop""#);
    assert!(html.contains(&stop_action), "a Stop button");

    // Another organization: 404 for the template, an empty list, and its stops change nothing.
    let (org_b, _) = env.app.org("fabrikam").await;
    let (_, _, token_b) = env.app.api_token(org_b, Role::SuperAdmin).await;
    let (s, _) = env
        .get(&token_b, &format!("/api/v1/review-templates/{template}"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env
        .post(
            &token_b,
            &format!("/api/v1/review-templates/{template}/stop"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, theirs) = env.get(&token_b, "/api/v1/review-templates").await;
    assert_eq!(theirs["items"], json!([]));
    let other = env.signed_in("admin@fabrikam.example").await;
    let (s, html) = other.get_text("/reviews/templates").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!html.contains(&template) && !html.contains("Weekly security group"));
    let r = other
        .submit(
            "/reviews/templates",
            &format!("/reviews/templates/{template}/stop"),
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (_, still) = env
        .get(&token, &format!("/api/v1/review-templates/{template}"))
        .await;
    assert_eq!(still["status"], "active", "{still}");
    assert_eq!(still["next_run_at"], t["next_run_at"]);

    // Stopped from the page: no next run, who stopped it, and a second stop is a conflict.
    let r = admin_b
        .submit(
            "/reviews/templates",
            &format!("/reviews/templates/{template}/stop"),
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(crate::support::location(&r), "/reviews/templates");
    let (_, html) = admin_b.get_text("/reviews/templates").await;
    assert!(html.contains("Stopped "), "shown as stopped");
    assert!(!html.contains(&stop_action), "no Stop button any more");
    let (_, t) = env
        .get(&token, &format!("/api/v1/review-templates/{template}"))
        .await;
    assert_eq!(t["status"], "stopped", "{t}");
    assert!(t["next_run_at"].is_null(), "{t}");
    assert!(t["stopped_at"].is_string());
    assert_eq!(t["stopped_by"], format!("user:{}", admin.0));
    let (s, v) = env
        .post(
            &token,
            &format!("/api/v1/review-templates/{template}/stop"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // Its schedule is gone: making it due as above finds nothing to run.
    let forced = sqlx::query("UPDATE job_schedules SET next_run_at = now() WHERE name = $1")
        .bind(&schedule)
        .execute(env.app.store().system())
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(forced, 0, "no schedule left to come round");
    // A period enqueued just before the stop runs and starts nothing.
    let mut tx = env.app.store().org_tx(org).await.unwrap();
    let queued = latchkey_jobs::queue::enqueue(
        &mut tx,
        &latchkey_jobs::NewJob::new(
            latchkey_reviews::TEMPLATE_JOB,
            json!({"template_id": template}),
        ),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let job = queued.job.id.0;
    let wait = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, j) = env.get(&token, &format!("/api/v1/jobs/{job}")).await;
        if j["status"] == "succeeded" {
            break;
        }
        assert!(
            !["failed", "dead", "cancelled"].contains(&j["status"].as_str().unwrap_or("")),
            "{j}"
        );
        assert!(Instant::now() < wait, "the template job never ran: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A few scheduler rounds later there are still only the two campaigns, both running on.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = campaigns_of(&env, &token, &template).await;
    assert_eq!(after.len(), 2, "no campaign after the stop: {after:?}");
    for c in &after {
        assert_eq!(c["status"], "active", "campaigns started go on: {c}");
    }
    let (_, t) = env
        .get(&token, &format!("/api/v1/review-templates/{template}"))
        .await;
    assert_eq!(t["campaigns"].as_array().unwrap().len(), 2);

    // The stop is in the audit trail.
    let mut tx = env.app.store().org_tx(org).await.unwrap();
    let events = latchkey_store::audit::list(
        &mut tx,
        &latchkey_store::audit::Filter {
            target_kind: Some("review_template".into()),
            target_id: Some(template.clone()),
            action_prefix: None,
        },
        None,
        50,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let actions: Vec<&str> = events.items.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"review_template.stopped"), "{actions:?}");
}

#[tokio::test]
async fn a_revoke_the_tenant_refuses_is_a_failure_with_its_reason_on_the_item_and_the_report() {
    let env = Env::start(59).await;
    let (org, admin) = env.app.org("contoso").await;
    let (_, _, token) = env.app.api_token(org, Role::SuperAdmin).await;
    let c = env.synced_connector(&token, admin).await;
    let sec = env.group_of(GroupKind::Security);
    let sec_ent = env.members_entitlement(&token, &c, sec).await;
    let members = env.user_members(sec);
    let campaign = env
        .start_campaign(
            &token,
            json!({"name": "Security group", "scope": {"connector_ids": [c], "entitlement_ids": [sec_ent],
                    "principal_types": ["user"], "include_inherited": false},
                   "reviewers": {"strategy": "app_owner", "fallback_user_id": admin.0},
                   "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        )
        .await;
    let cid = id(&campaign);
    let items = env.items(&token, &cid).await;
    let target = by_principal(&items, members[0], &sec_ent);
    let target_id = id(target);

    // The tenant now refuses Latchkey's writes: its app keeps only the read permissions.
    env.sim
        .set_granted_permissions(latchkey_entra_sim::SYNC_PERMISSIONS.iter().copied());
    let (s, v) = env
        .post(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/items"),
            json!({"decisions": [{"item_id": target_id, "decision": "revoke", "comment": "Moved teams"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let items = env
        .until_items(&token, &cid, "the revoke failed", |items| {
            items
                .iter()
                .any(|i| i["id"] == target_id.as_str() && i["revocation"]["result"] == "failed")
        })
        .await;
    let item = items
        .iter()
        .find(|i| i["id"] == target_id.as_str())
        .unwrap();
    let task_id = item["revocation"]["task_id"].as_str().unwrap().to_string();
    let (_, task) = env.get(&token, &format!("/api/v1/tasks/{task_id}")).await;
    assert_eq!(task["status"], "failed", "{task}");
    let reason = task["error"].as_str().unwrap().to_string();
    assert!(
        reason.contains("GroupMember.ReadWrite.All")
            || reason.contains("Authorization_RequestDenied"),
        "Graph's refusal, named: {reason}"
    );
    assert_eq!(item["revocation"]["detail"], reason.as_str(), "{item}");
    assert!(
        env.sim.group_members(sec).unwrap().contains(&members[0]),
        "the tenant still has the access"
    );

    // The progress counts it, the report says it with its reason, in JSON, CSV and on the page.
    let (_, now) = env
        .get(&token, &format!("/api/v1/review-campaigns/{cid}"))
        .await;
    assert_eq!(now["counts"]["revocations_failed"], 1, "{now}");
    assert_eq!(now["counts"]["revocations_verified"], 0);
    let (s, report) = env
        .get(
            &token,
            &format!("/api/v1/review-campaigns/{cid}/report?format=json"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let row = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["item_id"] == target_id.as_str())
        .unwrap();
    assert_eq!(row["decision"], "revoke");
    assert_eq!(row["comment"], "Moved teams");
    assert_eq!(row["provisioning_result"], "failed");
    assert_eq!(row["provisioning_detail"], reason.as_str());
    let csv = env
        .app
        .api()
        .get(
            env.app
                .url(&format!("/api/v1/review-campaigns/{cid}/report?format=csv")),
        )
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = csv
        .split("\r\n")
        .find(|l| l.starts_with(&target_id))
        .unwrap();
    assert!(
        line.ends_with(&format!(",failed,{}", quote(&reason))),
        "{line}"
    );
    let admin_b = env.signed_in("admin@contoso.example").await;
    let (s, html) = admin_b.get_text(&format!("/reviews/campaigns/{cid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Revoke failed"), "the item says so");
    assert!(html.contains("1 failed"), "the progress counts it");
    let (_, html) = admin_b
        .get_text(&format!("/reviews/items/{target_id}"))
        .await;
    assert!(html.contains("Revoke failed"));
    assert!(
        html.contains("Authorization_RequestDenied") || html.contains("GroupMember.ReadWrite.All"),
        "the reason on the item's page"
    );
}
