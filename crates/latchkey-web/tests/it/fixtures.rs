//! One populated deployment for the route-walking tests (authz_matrix, hostile_input): two
//! organizations, a person and an API client of every role in each, and in the first a
//! synced connector with provisioning, a grant task, a created account's vault item, a
//! review campaign and a recurring review, so that path parameters can be filled with real ids.

use crate::provisioning::Env;
use crate::support::{Browser, PASSWORD, TestApp};
use latchkey_core::{OrgId, Role};
use latchkey_entra_sim::GroupKind;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::HashMap;
use uuid::Uuid;

/// Who calls, in one organization.
pub struct Caller {
    pub role: Role,
    pub browser: Browser,
    /// The session's CSRF token, sent with every form.
    pub csrf: String,
    pub token: String,
}

pub struct Org {
    pub id: OrgId,
    pub callers: Vec<Caller>,
    /// A self-hosted connector's token (its own credentials), and its client secret.
    pub agent: String,
    pub agent_secret: String,
}

impl Org {
    pub fn caller(&self, role: Role) -> &Caller {
        self.callers.iter().find(|c| c.role == role).unwrap()
    }
}

pub struct Fixture {
    pub env: Env,
    pub own: Org,
    pub other: Org,
    /// Ids of the first organization's objects, by kind (see [`Fixture::fill`]).
    pub ids: HashMap<&'static str, String>,
}

impl Fixture {
    pub fn app(&self) -> &TestApp {
        &self.env.app
    }

    pub async fn build() -> Fixture {
        let env = Env::start().await;
        let own = org(&env.app, "acme").await;
        let other = org(&env.app, "globex").await;
        let admin = &own.caller(Role::SuperAdmin).token;
        let c = env.synced_connector(admin, true).await;
        let mut ids: HashMap<&'static str, String> = HashMap::new();
        // The self-hosted connector starts a sync: a task of its own.
        let (s, v) = env
            .call(
                Method::POST,
                &own.agent,
                "/api/v1/connector-agent/syncs",
                None,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        ids.insert("agent_task", v["id"].as_str().unwrap().to_string());
        ids.insert("agent_lease", v["lease"].as_str().unwrap().to_string());
        ids.insert("connector", c.clone());

        // A grant task (a group membership), and an account with its vault item.
        let gid = env.group_of(GroupKind::Security);
        let members = env.sim.group_members(gid).unwrap();
        let uid = env
            .sim
            .truth_users()
            .into_iter()
            .find(|u| u.user_type == "Member" && !members.contains(&u.id))
            .unwrap()
            .id;
        let group = env.resource(admin, &c, "group", gid).await;
        let user = env.resource(admin, &c, "user", uid).await;
        let ent = env.entitlement(admin, &c, &group, "members").await;
        let task = env.grant(admin, &c, &ent, &user).await;
        env.finished(admin, &task).await;
        let upn = format!("matrix.hire@{}", env.sim.domain());
        let (s, v) = env
            .call(
                Method::POST,
                admin,
                &format!("/api/v1/connectors/{c}/accounts"),
                Some(
                    json!({"user_principal_name": upn, "display_name": "Matrix Hire", "mail_nickname": "matrix.hire"}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let account_task = v["task_id"].as_str().unwrap().to_string();
        env.finished(admin, &account_task).await;
        let (s, v) = env
            .call(
                Method::POST,
                admin,
                "/api/v1/review-campaigns",
                Some(json!({"name": "Matrix", "scope": {"connector_ids": [c]},
                    "reviewers": {"strategy": "specific", "user_ids": [own_user(&env.app, own.id).await]},
                    "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        // A recurring review (its template), started the same way with a repeat.
        let (s, v) = env
            .call(
                Method::POST,
                admin,
                "/api/v1/review-campaigns",
                Some(json!({"name": "Matrix quarterly", "scope": {"connector_ids": [c]},
                    "reviewers": {"strategy": "specific", "user_ids": [own_user(&env.app, own.id).await]},
                    "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep", "repeat_every_days": 91})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        ids.insert(
            "review_template",
            v["template_id"].as_str().unwrap().to_string(),
        );

        ids.insert("task", task);
        ids.insert("user_resource", user);
        ids.insert("entitlement", ent);
        ids.insert("app", one(&env.app, own.id, "apps", "true").await);
        ids.insert("job", one(&env.app, own.id, "jobs", "true").await);
        ids.insert("sync", one(&env.app, own.id, "sync_runs", "true").await);
        ids.insert("grant", one(&env.app, own.id, "grants", "true").await);
        ids.insert("vault", one(&env.app, own.id, "vault_items", "true").await);
        ids.insert(
            "campaign",
            one(&env.app, own.id, "review_campaigns", "template_id IS NULL").await,
        );
        ids.insert(
            "review_item",
            one(&env.app, own.id, "review_items", "true").await,
        );
        // Targets of the people and API client actions: never one of the callers.
        let target = env
            .app
            .person(own.id, "target@acme.example", Role::Member)
            .await;
        ids.insert("person", target.0.to_string());
        let (client, _) = latchkey_web::api::api_clients::create_client(
            env.app.store(),
            own.id,
            &latchkey_core::DisplayName::parse("target client").unwrap(),
            Role::Member,
            None,
        )
        .await
        .unwrap();
        ids.insert("api_client", client.id.to_string());
        // Objects this deployment has no cheap way to make: unknown ids, which must be 404.
        for kind in ["access_request", "manual_task", "invite"] {
            ids.insert(kind, Uuid::new_v4().to_string());
        }
        Fixture {
            env,
            own,
            other,
            ids,
        }
    }

    /// `path` with each `{param}` replaced by the id of the object it names.
    pub fn fill(&self, path: &str) -> String {
        let segments: Vec<&str> = path.split('/').collect();
        let mut out = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            if !seg.starts_with('{') {
                out.push(seg.to_string());
                continue;
            }
            let prev = segments[i - 1];
            let kind = match (prev, *seg) {
                (_, "{action}") => "cancel",
                (_, "{seq}") => "0",
                (_, "{token}") => "invite",
                ("people" | "users", _) => "person",
                ("api-clients", _) => "api_client",
                ("connectors", _) => "connector",
                ("jobs", _) => "job",
                ("syncs", _) => "sync",
                ("tasks", _) if path.starts_with("/api/v1/connector-agent") => "agent_task",
                ("tasks", _) => "task",
                ("grants", _) => "grant",
                ("accounts", _) => "user_resource",
                ("apps", _) => "app",
                ("entitlements" | "request" | "policies", _) => "entitlement",
                ("items", _) => "review_item",
                ("campaigns" | "review-campaigns", _) => "campaign",
                ("templates" | "review-templates", _) => "review_template",
                ("manual-tasks", _) => "manual_task",
                ("requests" | "access-requests", _) => "access_request",
                ("vault", _) => "vault",
                other => panic!("no fixture for {other:?} in {path}: add one to fixtures.rs"),
            };
            out.push(
                self.ids
                    .get(kind)
                    .cloned()
                    .unwrap_or_else(|| kind.to_string()),
            );
        }
        out.join("/")
    }
}

/// An organization with a signed-in person and an API client of every role.
async fn org(app: &TestApp, slug: &str) -> Org {
    let (id, _) = app.org(slug).await;
    let mut callers = Vec::new();
    for role in Role::ALL {
        let email = format!("{}@{slug}.example", role.as_str());
        let person = app.person(id, &email, role).await;
        let browser = app.browser();
        let r = browser.login(&email, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{email} signs in");
        let csrf = csrf_of(app, &email).await;
        // The client acts for the person (access requests need someone to act for).
        let (_, creds) = latchkey_web::api::api_clients::create_client(
            app.store(),
            id,
            &latchkey_core::DisplayName::parse(&format!("{} client", role.as_str())).unwrap(),
            role,
            Some(person),
        )
        .await
        .unwrap();
        let token = app.token(&creds.client_id, &creds.client_secret).await;
        callers.push(Caller {
            role,
            browser,
            csrf,
            token,
        });
    }
    let admin = &callers[0].token;
    let (agent, agent_secret) = self_hosted(app, admin).await;
    Org {
        id,
        callers,
        agent,
        agent_secret,
    }
}

/// A self-hosted connector made over the API, its credentials and a token for them.
async fn self_hosted(app: &TestApp, admin: &str) -> (String, String) {
    let api = app.api();
    let r = api
        .post(app.url("/api/v1/connectors"))
        .bearer_auth(admin)
        .json(
            &json!({"display_name": "On premises", "kind": "self_hosted",
            "app": {"new": {"name": "On premises app"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let c: serde_json::Value = r.json().await.unwrap();
    let r = api
        .post(app.url(&format!(
            "/api/v1/connectors/{}/agent-credentials",
            c["id"].as_str().unwrap()
        )))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let creds: serde_json::Value = r.json().await.unwrap();
    let secret = creds["client_secret"].as_str().unwrap().to_string();
    let r = api
        .post(app.url("/api/v1/connector-agent/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", creds["client_id"].as_str().unwrap()),
            ("client_secret", &secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let t: serde_json::Value = r.json().await.unwrap();
    (t["access_token"].as_str().unwrap().to_string(), secret)
}

/// The CSRF token of the newest session of `email`.
pub async fn csrf_of(app: &TestApp, email: &str) -> String {
    sqlx::query_scalar(
        "SELECT s.csrf_token FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE u.email = $1 ORDER BY s.created_at DESC LIMIT 1",
    )
    .bind(email)
    .fetch_one(app.store().system())
    .await
    .unwrap()
}

async fn own_user(app: &TestApp, org: OrgId) -> Uuid {
    sqlx::query_scalar("SELECT id FROM users WHERE org_id = $1 AND role = 'super_admin' LIMIT 1")
        .bind(org.0)
        .fetch_one(app.store().system())
        .await
        .unwrap()
}

/// The id of one row of `table` in `org` matching `filter` (SQL of the test's own making).
async fn one(app: &TestApp, org: OrgId, table: &str, filter: &str) -> String {
    let id: Uuid = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM {table} WHERE org_id = $1 AND {filter} ORDER BY id LIMIT 1"
    )))
    .bind(org.0)
    .fetch_one(app.store().system())
    .await
    .unwrap_or_else(|e| panic!("no row in {table} where {filter}: {e}"));
    id.to_string()
}
