//! The self-hosted connector as the customer runs it: the real `latchkey connector` process
//! against a real `latchkey serve` (and `worker`, for the hosted connector it is compared with)
//! and the simulated tenant.

use crate::support::{
    eventually, free_port, kill9, latchkey, membership_to_grant, run, snapshot, stderr, stdout,
};
use latchkey_entra_sim::{SimConfig, SimHandle, SimServer};
use latchkey_store::testing::TestDb;
use latchkey_store::{Store, resources};
use serde_json::{Value, json};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

const GRACE_SECS: u64 = 3;

struct Stack {
    db: TestDb,
    sim: SimHandle,
    port: u16,
    keys: String,
    serve: Option<Child>,
    worker: Option<Child>,
    http: reqwest::Client,
    org: Uuid,
    api_token: String,
    /// Where `serve` and `worker` write their logs (at debug level), when a test reads them.
    logs: Option<std::path::PathBuf>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(s) = self.serve.as_mut() {
            kill9(s);
        }
        if let Some(w) = self.worker.as_mut() {
            kill9(w);
        }
    }
}

impl Stack {
    async fn start(seed: u64) -> Stack {
        Stack::start_with(seed, None).await
    }

    /// [`Stack::start`], with the server's and the worker's debug logs in `logs`.
    async fn start_with(seed: u64, logs: Option<std::path::PathBuf>) -> Stack {
        let db = TestDb::new().await;
        let sim = SimServer::start(SimConfig::small(seed)).await.unwrap();
        let keys = latchkey_crypto::generate_key_entry("k1");
        let o = run(latchkey().env("DATABASE_URL", &db.url).args([
            "orgs",
            "create",
            "--name",
            "Contoso",
            "--admin-email",
            "ops@contoso.example",
            "--admin-password",
            "correct horse battery staple",
        ]));
        assert!(o.status.success(), "{}", stderr(&o));
        let org: Value = serde_json::from_str(&stdout(&o)).unwrap();
        let org = Uuid::parse_str(org["org_id"].as_str().unwrap()).unwrap();
        let o = run(latchkey().env("DATABASE_URL", &db.url).args([
            "api-clients",
            "create",
            "--org",
            &org.to_string(),
            "--name",
            "ops",
            "--role",
            "super_admin",
        ]));
        assert!(o.status.success(), "{}", stderr(&o));
        let creds: Value = serde_json::from_str(&stdout(&o)).unwrap();
        let mut s = Stack {
            db,
            sim,
            port: free_port(),
            keys,
            serve: None,
            worker: None,
            http: reqwest::Client::new(),
            org,
            api_token: String::new(),
            logs,
        };
        s.start_worker();
        s.start_serve().await;
        let t: Value = s
            .http
            .post(s.url("api/v1/auth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", creds["client_id"].as_str().unwrap()),
                ("client_secret", creds["client_secret"].as_str().unwrap()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        s.api_token = t["access_token"].as_str().unwrap().to_string();
        s
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn store(&self) -> &Store {
        &self.db.store
    }

    /// Where a process of the stack writes its output: `name` in the log directory (at debug
    /// level), or nowhere.
    fn output(&self, cmd: &mut std::process::Command, name: &str) {
        match &self.logs {
            Some(dir) => {
                let file = |n: &str| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.join(n))
                        .unwrap()
                };
                cmd.env("RUST_LOG", "debug")
                    .stdout(file(&format!("{name}.out")))
                    .stderr(file(&format!("{name}.err")));
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
    }

    fn start_worker(&mut self) {
        let mut cmd = latchkey();
        cmd.args(["worker"])
            .env("DATABASE_URL", &self.db.url)
            .env("LATCHKEY_MASTER_KEYS", &self.keys)
            .env("LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS", "true")
            .env("LATCHKEY_WORKER_POLL_MS", "200");
        self.output(&mut cmd, "worker");
        self.worker = Some(cmd.spawn().unwrap());
    }

    fn kill_worker(&mut self) {
        if let Some(mut w) = self.worker.take() {
            kill9(&mut w);
        }
    }

    async fn start_serve(&mut self) {
        let mut cmd = latchkey();
        cmd.args(["serve"])
            .env("DATABASE_URL", &self.db.url)
            .env("LATCHKEY_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("LATCHKEY_MASTER_KEYS", &self.keys)
            .env("LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS", "true")
            .env(
                "LATCHKEY_CONNECTOR_ROTATION_GRACE_SECS",
                GRACE_SECS.to_string(),
            );
        self.output(&mut cmd, "serve");
        self.serve = Some(cmd.spawn().unwrap());
        let http = self.http.clone();
        let ready = self.url("readyz");
        eventually("the server to answer", Duration::from_secs(30), || {
            let http = http.clone();
            let ready = ready.clone();
            async move {
                match http.get(&ready).send().await {
                    Ok(r) if r.status().is_success() => Some(()),
                    _ => None,
                }
            }
        })
        .await;
    }

    fn kill_serve(&mut self) {
        if let Some(mut s) = self.serve.take() {
            kill9(&mut s);
        }
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(&format!("api/v1/{path}")))
            .bearer_auth(&self.api_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// A hosted connector of the simulated tenant, synced.
    async fn hosted(&self) -> Uuid {
        let app = self.sim.customer_app();
        let (status, c) = self
            .api(
                reqwest::Method::POST,
                "connectors",
                Some(json!({
                    "display_name": "Hosted",
                    "app": {"new": {"name": "Entra (hosted)"}},
                    "settings": {
                        "auth": {"mode": "client_secret", "tenant_id": self.sim.tenant_id().to_string(),
                                 "client_id": app.client_id.to_string(), "client_secret": app.client_secret},
                        "graph_domain": self.sim.base_url(),
                    },
                })),
            )
            .await;
        assert_eq!(status, 201, "{c}");
        let id = Uuid::parse_str(c["id"].as_str().unwrap()).unwrap();
        self.wait_synced(id, 1).await;
        id
    }

    /// A self-hosted connector and its first credentials.
    async fn self_hosted(&self, name: &str) -> (Uuid, Value) {
        let (status, c) = self
            .api(
                reqwest::Method::POST,
                "connectors",
                Some(json!({
                    "display_name": name,
                    "kind": "self_hosted",
                    "app": {"new": {"name": format!("{name} app")}},
                })),
            )
            .await;
        assert_eq!(status, 201, "{c}");
        assert_eq!(c["status"], "setup_required");
        let id = Uuid::parse_str(c["id"].as_str().unwrap()).unwrap();
        (id, self.rotate(id).await)
    }

    async fn rotate(&self, id: Uuid) -> Value {
        let (status, creds) = self
            .api(
                reqwest::Method::POST,
                &format!("connectors/{id}/agent-credentials"),
                None,
            )
            .await;
        assert_eq!(status, 201, "{creds}");
        assert!(
            creds["client_secret"]
                .as_str()
                .unwrap()
                .starts_with("lkas_")
        );
        creds
    }

    /// Waits for `n` succeeded syncs of the connector; returns the newest.
    async fn wait_synced(&self, id: Uuid, n: usize) -> Value {
        eventually(
            "syncs to succeed",
            Duration::from_secs(120),
            || async move {
                let (_, page) = self
                    .api(
                        reqwest::Method::GET,
                        &format!("connectors/{id}/syncs"),
                        None,
                    )
                    .await;
                let items = page["items"].as_array().cloned().unwrap_or_default();
                let ok: Vec<Value> = items
                    .into_iter()
                    .filter(|s| s["status"] == "succeeded")
                    .collect();
                (ok.len() >= n).then(|| ok[0].clone())
            },
        )
        .await
    }

    async fn snapshot(
        &self,
        connector: Uuid,
    ) -> (
        Vec<(String, String, String, Value)>,
        Vec<resources::GrantKey>,
    ) {
        snapshot(self.store(), self.org, connector).await
    }

    async fn agent_token(&self, creds: &Value) -> reqwest::Response {
        self.http
            .post(self.url("api/v1/connector-agent/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", creds["client_id"].as_str().unwrap()),
                ("client_secret", creds["client_secret"].as_str().unwrap()),
            ])
            .send()
            .await
            .unwrap()
    }

    /// A sync task that the connector with `creds` asks for and holds: (job id, lease).
    async fn held_sync_task(&self, creds: &Value) -> (String, String) {
        let token: Value = self.agent_token(creds).await.json().await.unwrap();
        let task: Value = self
            .http
            .post(self.url("api/v1/connector-agent/syncs"))
            .bearer_auth(token["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            task["id"].as_str().unwrap().to_string(),
            task["lease"].as_str().unwrap().to_string(),
        )
    }

    /// Every endpoint of task `job` answers 404 to the connector `token`, its lease in hand
    /// (`body` sent to each); `whose` names the task in the failure message.
    async fn assert_task_out_of_reach(
        &self,
        token: &str,
        (job, lease): (&str, &str),
        body: &Value,
        whose: &str,
    ) {
        for (method, path) in [
            (reqwest::Method::GET, format!("tasks/{job}/batches")),
            (reqwest::Method::PUT, format!("tasks/{job}/batches/0")),
            (reqwest::Method::POST, format!("tasks/{job}/logs")),
            (reqwest::Method::POST, format!("tasks/{job}/result")),
        ] {
            let r = self
                .http
                .request(method, self.url(&format!("api/v1/connector-agent/{path}")))
                .bearer_auth(token)
                .header("Latchkey-Lease", lease)
                .json(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{whose} {path}");
        }
    }

    /// `latchkey connector` with the simulated tenant's and these Latchkey credentials.
    fn connector(&self, creds: &Value, extra: &[(&str, &str)]) -> std::process::Command {
        let app = self.sim.customer_app();
        let mut c = latchkey();
        c.arg("connector")
            .env("LATCHKEY_URL", self.url(""))
            .env("LATCHKEY_CLIENT_ID", creds["client_id"].as_str().unwrap())
            .env(
                "LATCHKEY_CLIENT_SECRET",
                creds["client_secret"].as_str().unwrap(),
            )
            .env("ENTRA_TENANT_ID", self.sim.tenant_id().to_string())
            .env("ENTRA_CLIENT_ID", app.client_id.to_string())
            .env("ENTRA_CLIENT_SECRET", &app.client_secret)
            .env("ENTRA_GRAPH_DOMAIN", self.sim.base_url())
            .env("LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS", "true")
            .env("LATCHKEY_POLL_INTERVAL", "1s")
            .env("HOSTNAME", "connector-pod-1");
        for (k, v) in extra {
            c.env(k, v);
        }
        c
    }

    async fn task(&self, id: &str) -> Value {
        eventually(
            "the task to finish",
            Duration::from_secs(60),
            || async move {
                let (_, t) = self
                    .api(reqwest::Method::GET, &format!("tasks/{id}"), None)
                    .await;
                matches!(t["status"].as_str(), Some("succeeded" | "failed")).then_some(t)
            },
        )
        .await
    }

    /// `(entitlement id, principal id, group, user)`: membership of a plain security group
    /// for a user who is not in it, on `connector`.
    async fn membership_to_grant(&self, connector: Uuid) -> (Uuid, Uuid, Uuid, Uuid) {
        membership_to_grant(&self.sim, self.store(), connector).await
    }
}

fn without_volatile(stats: &Value) -> Value {
    let mut s = stats.clone();
    for k in [
        "requests",
        "throttled",
        "retries",
        "transient_failures",
        "token_refreshes",
        "retry_wait_ms",
        "attempt_ms",
    ] {
        s.as_object_mut().unwrap().remove(k);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_hosted_connector_syncs_provisions_and_rotates_its_credentials() {
    let s = Stack::start(41).await;
    let hosted = s.hosted().await;
    let (id, creds) = s.self_hosted("On-premises").await;

    // Provisioning off: it syncs, but refuses grants whatever Latchkey asks.
    let mut agent = s
        .connector(&creds, &[("LATCHKEY_PROVISIONING", "false")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let synced = s.wait_synced(id, 1).await;
    let hosted_run = s.wait_synced(hosted, 1).await;
    assert_eq!(s.snapshot(id).await, s.snapshot(hosted).await);
    assert_eq!(
        without_volatile(&synced["stats"]),
        without_volatile(&hosted_run["stats"])
    );
    let (_, c) = s
        .api(reqwest::Method::GET, &format!("connectors/{id}"), None)
        .await;
    assert_eq!(c["status"], "connected", "{c}");
    assert_eq!(c["self_hosted"]["online"], true);
    assert_eq!(c["self_hosted"]["host"], "connector-pod-1");
    assert_eq!(c["self_hosted"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(c["self_hosted"]["provisioning"], false);
    // Its sync's log is there like a hosted one's.
    let job = c["last_sync"]["job_id"].as_str().unwrap().to_string();
    let (_, logs) = s
        .api(reqwest::Method::GET, &format!("jobs/{job}/logs"), None)
        .await;
    let lines: Vec<&str> = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("Reading users")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("Sync finished.")),
        "{lines:?}"
    );

    let (entitlement, principal, group, user) = s.membership_to_grant(id).await;
    let grant = json!({"entitlement_id": entitlement, "principal_id": principal});
    let (status, started) = s
        .api(
            reqwest::Method::POST,
            &format!("connectors/{id}/grants"),
            Some(grant.clone()),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let t = s.task(started["task_id"].as_str().unwrap()).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .contains("LATCHKEY_PROVISIONING"),
        "{t}"
    );
    assert!(!s.sim.group_members(group).unwrap().contains(&user));
    kill9(&mut agent);

    // Provisioning on: the grant is carried out in the tenant and verified.
    let mut agent = s
        .connector(&creds, &[("LATCHKEY_PROVISIONING", "true")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (status, started) = s
        .api(
            reqwest::Method::POST,
            &format!("connectors/{id}/grants"),
            Some(grant),
        )
        .await;
    assert_eq!(status, 202);
    let t = s.task(started["task_id"].as_str().unwrap()).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert!(t["verified_at"].is_string(), "{t}");
    assert!(s.sim.group_members(group).unwrap().contains(&user));
    let (_, grants) = s
        .api(
            reqwest::Method::GET,
            &format!("connectors/{id}/grants?principal_id={principal}"),
            None,
        )
        .await;
    let grant_id = grants["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["entitlement_id"] == json!(entitlement))
        .unwrap_or_else(|| panic!("the grant is stored: {grants}"))["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Revoke through the same connector: carried out in the tenant and verified.
    let (status, started) = s
        .api(
            reqwest::Method::DELETE,
            &format!("connectors/{id}/grants/{grant_id}"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let t = s.task(started["task_id"].as_str().unwrap()).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["operation"], "revoke", "{t}");
    assert!(t["verified_at"].is_string(), "{t}");
    assert!(
        !s.sim.group_members(group).unwrap().contains(&user),
        "the membership is gone from the tenant"
    );
    let (_, grants) = s
        .api(
            reqwest::Method::GET,
            &format!("connectors/{id}/grants?principal_id={principal}"),
            None,
        )
        .await;
    assert!(
        !grants["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["entitlement_id"] == json!(entitlement)),
        "{grants}"
    );
    kill9(&mut agent);

    // Rotation: the old secret works during the grace period, then not; the new one does.
    let old_token: Value = s.agent_token(&creds).await.json().await.unwrap();
    let fresh = s.rotate(id).await;
    assert!(fresh["previous_valid_until"].is_string());
    assert_eq!(s.agent_token(&creds).await.status(), 200);
    assert_eq!(s.agent_token(&fresh).await.status(), 200);
    tokio::time::sleep(Duration::from_secs(GRACE_SECS + 1)).await;
    assert_eq!(s.agent_token(&creds).await.status(), 401);
    let r = s
        .http
        .post(s.url("api/v1/connector-agent/tasks/next"))
        .bearer_auth(old_token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a token of the old secret ends with its grace period"
    );
    assert_eq!(s.agent_token(&fresh).await.status(), 200);
    let (_, events) = (
        (),
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM audit_events WHERE action = 'connector.credentials_rotated' AND target_id = $1",
        )
        .bind(id.to_string())
        .fetch_one(s.store().system())
        .await
        .unwrap(),
    );
    assert_eq!(events, 2);
}

async fn batches_of(store: &Store, job: Uuid) -> Vec<(i32, i64)> {
    sqlx::query_as(
        "SELECT attempt, seq FROM connector_agent_batches WHERE job_id = $1 ORDER BY attempt, seq",
    )
    .bind(job)
    .fetch_all(store.system())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_a_server_restart_loses_and_duplicates_nothing_and_stays_in_its_connector()
{
    let mut s = Stack::start(42).await;
    let hosted = s.hosted().await;
    let (id, creds) = s.self_hosted("Upload").await;

    // One-shot: a full sync into a file, without Latchkey.
    let dir = std::env::temp_dir().join(format!("latchkey-agent-test-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sync.jsonl");
    // The simulated tenant runs in this process: wait for the command off the runtime.
    let mut sync = s.connector(&creds, &[("LATCHKEY_URL", "http://127.0.0.1:9/")]);
    sync.args(["sync", "--output", file.to_str().unwrap()]);
    let o = tokio::task::spawn_blocking(move || run(&mut sync))
        .await
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["header"]["format"], 1);
    let end = &lines.last().unwrap()["end"];
    let total = end["batches"].as_u64().unwrap();
    assert_eq!(total as usize, lines.len() - 2);
    assert!(total >= 5, "enough batches to cut the upload: {total}");

    // Upload slowly, and kill the server in the middle of it.
    let upload = s
        .connector(&creds, &[("LATCHKEY_UPLOAD_PAUSE", "150ms")])
        .args(["upload", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store = s.store().clone();
    let job: Uuid = eventually("a few batches to arrive", Duration::from_secs(60), || {
        let store = store.clone();
        async move {
            let row: Option<(Uuid, i64)> = sqlx::query_as(
                "SELECT job_id, count(*) FROM connector_agent_batches GROUP BY job_id",
            )
            .fetch_optional(store.system())
            .await
            .unwrap();
            row.filter(|(_, n)| *n >= 2).map(|(j, _)| j)
        }
    })
    .await;
    s.kill_serve();
    let during = batches_of(&store, job).await.len() as u64;
    assert!(
        during < total,
        "the server was killed mid-upload ({during}/{total})"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.start_serve().await;
    let status = tokio::task::spawn_blocking(move || upload.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(status.status.success());
    let answer: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(answer["batches"], total);

    let got = batches_of(&store, job).await;
    assert_eq!(
        got,
        (0..total as i64).map(|q| (1, q)).collect::<Vec<_>>(),
        "every batch exactly once, in one attempt"
    );
    let synced = s.wait_synced(id, 1).await;
    assert_eq!(synced["id"], json!(job));
    assert_eq!(s.snapshot(id).await, s.snapshot(hosted).await);
    assert_eq!(
        without_volatile(&synced["stats"]),
        without_volatile(&s.wait_synced(hosted, 1).await["stats"])
    );
    let tenant = s.sim.tenant_id().to_string();
    let (_, c) = s
        .api(reqwest::Method::GET, &format!("connectors/{id}"), None)
        .await;
    assert_eq!(c["self_hosted"]["tenant_id"], json!(tenant), "{c}");

    // A file read from another tenant: refused before anything of it is written.
    let elsewhere = SimServer::start(SimConfig::small(142)).await.unwrap();
    let other_tenant = elsewhere.tenant_id().to_string();
    assert_ne!(other_tenant, tenant);
    let other_app = elsewhere.customer_app();
    let other_file = dir.join("other-tenant.jsonl");
    let mut sync = s.connector(
        &creds,
        &[
            ("LATCHKEY_URL", "http://127.0.0.1:9/"),
            ("ENTRA_TENANT_ID", &other_tenant),
            ("ENTRA_CLIENT_ID", &other_app.client_id.to_string()),
            ("ENTRA_CLIENT_SECRET", &other_app.client_secret),
            ("ENTRA_GRAPH_DOMAIN", elsewhere.base_url()),
        ],
    );
    sync.args(["sync", "--output", other_file.to_str().unwrap()]);
    let o = tokio::task::spawn_blocking(move || run(&mut sync))
        .await
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let picture = s.snapshot(id).await;
    let runs = sync_runs(&s, id).await;
    let mut upload = s.connector(&creds, &[]);
    upload.args(["upload", other_file.to_str().unwrap()]);
    let o = tokio::task::spawn_blocking(move || run(&mut upload))
        .await
        .unwrap();
    assert!(!o.status.success(), "refused: {}", stdout(&o));
    let why = stderr(&o);
    assert!(
        why.contains(&format!(
            "read from Entra tenant {other_tenant}; this connector syncs tenant {tenant}"
        )),
        "{why}"
    );
    assert!(why.contains("other-tenant.jsonl was not uploaded"), "{why}");
    assert_eq!(
        s.snapshot(id).await,
        picture,
        "the stored picture is unchanged"
    );
    assert_eq!(sync_runs(&s, id).await, runs, "no sync was started");
    assert_eq!(
        s.wait_synced(id, 1).await["id"],
        json!(job),
        "the last sync is still the upload of its own tenant"
    );
    // The service pointed at another ENTRA_TENANT_ID: its batches (which name their tenant)
    // are refused the same way, before anything is applied.
    let agent: Value = s.agent_token(&creds).await.json().await.unwrap();
    let agent = agent["access_token"].as_str().unwrap().to_string();
    let task: Value = s
        .http
        .post(s.url("api/v1/connector-agent/syncs"))
        .bearer_auth(&agent)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task_id = task["id"].as_str().unwrap().to_string();
    let lease = task["lease"].as_str().unwrap().to_string();
    let other_line: Value = serde_json::from_str(
        std::fs::read_to_string(&other_file)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap(),
    )
    .unwrap();
    let r = s
        .http
        .put(s.url(&format!("api/v1/connector-agent/tasks/{task_id}/batches/0")))
        .bearer_auth(&agent)
        .header("Latchkey-Lease", &lease)
        .header("Latchkey-Tenant", other_tenant.to_uppercase())
        .json(&other_line["batch"])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let refused: Value = r.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "tenant_mismatch", "{refused}");
    assert!(
        batches_of(&store, Uuid::parse_str(&task_id).unwrap())
            .await
            .is_empty()
    );
    assert_eq!(
        s.snapshot(id).await,
        picture,
        "the stored picture is unchanged"
    );
    let r = s
        .http
        .post(s.url(&format!("api/v1/connector-agent/tasks/{task_id}/result")))
        .bearer_auth(&agent)
        .header("Latchkey-Lease", &lease)
        .json(&json!({"sync": {"status": "failed", "error": "read from another tenant"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(elsewhere);

    // The same tenant named by its domain instead of its id: the connector names the tenant it
    // read by the token's tenant id, so the file is from this connector's tenant and is taken.
    let domain = s.sim.initial_domain();
    let (by_domain, _) = sync_file_with(&s, &creds, &[("ENTRA_TENANT_ID", &domain)]).await;
    let header: Value = serde_json::from_str(
        std::fs::read_to_string(&by_domain)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["header"]["tenant_id"], json!(tenant), "{header}");
    let mut upload = s.connector(&creds, &[]);
    upload.args(["upload", by_domain.to_str().unwrap()]);
    let o = tokio::task::spawn_blocking(move || run(&mut upload))
        .await
        .unwrap();
    assert!(o.status.success(), "taken: {}", stderr(&o));
    assert_ne!(
        s.wait_synced(id, 2).await["id"],
        json!(job),
        "the domain-named file is the last sync"
    );
    assert_eq!(
        s.snapshot(id).await,
        picture,
        "the same tenant, the same picture"
    );

    // Scoped: the credential reaches its own connector's tasks only.
    let token: Value = s.agent_token(&creds).await.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let (other, other_creds) = s.self_hosted("Other").await;
    let (other_job, lease) = s.held_sync_task(&other_creds).await;
    s.assert_task_out_of_reach(
        &token,
        (&other_job, &lease),
        &json!({"lines": [], "sync": {"status": "failed", "error": "x"}}),
        "another connector's",
    )
    .await;
    // Nothing of the organization beyond its tasks: the regular API refuses its token.
    for path in ["connectors", &format!("connectors/{id}/resources"), "users"] {
        let r = s
            .http
            .get(s.url(&format!("api/v1/{path}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    // ...and an API client's token is not a connector's.
    let r = s
        .http
        .post(s.url("api/v1/connector-agent/tasks/next"))
        .bearer_auth(&s.api_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Another organization's connector: its task is not found either.
    let o = run(latchkey().env("DATABASE_URL", &s.db.url).args([
        "orgs",
        "create",
        "--name",
        "Fabrikam",
        "--admin-email",
        "ops@fabrikam.example",
        "--admin-password",
        "correct horse battery staple",
    ]));
    assert!(o.status.success());
    let fab: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let o = run(latchkey().env("DATABASE_URL", &s.db.url).args([
        "api-clients",
        "create",
        "--org",
        fab["org_id"].as_str().unwrap(),
        "--name",
        "fab",
        "--role",
        "super_admin",
    ]));
    let fab_client: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let t: Value = s
        .http
        .post(s.url("api/v1/auth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", fab_client["client_id"].as_str().unwrap()),
            (
                "client_secret",
                fab_client["client_secret"].as_str().unwrap(),
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fab_token = t["access_token"].as_str().unwrap().to_string();
    let c: Value = s
        .http
        .post(s.url("api/v1/connectors"))
        .bearer_auth(&fab_token)
        .json(
            &json!({"display_name": "Fab", "kind": "self_hosted", "app": {"new": {"name": "Fab"}}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fab_connector = c["id"].as_str().unwrap();
    // Another organization's connector cannot be rotated by this organization either.
    let (status, _) = s
        .api(
            reqwest::Method::POST,
            &format!("connectors/{fab_connector}/agent-credentials"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    // Fabrikam's own self-hosted connector holds a task...
    let fab_creds: Value = s
        .http
        .post(s.url(&format!(
            "api/v1/connectors/{fab_connector}/agent-credentials"
        )))
        .bearer_auth(&fab_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (fab_job, fab_lease) = s.held_sync_task(&fab_creds).await;
    // ...which this organization's connector credential cannot reach, lease in hand.
    s.assert_task_out_of_reach(
        &token,
        (&fab_job, &fab_lease),
        &json!({"seq": 0, "lines": [{"level": "info", "message": "x"}],
                          "sync": {"status": "succeeded", "batches": 0, "stats": {}}}),
        "another organization's",
    )
    .await;
    let r = s
        .http
        .post(s.url("api/v1/connector-agent/tasks/next"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    if r.status() == 200 {
        let t: Value = r.json().await.unwrap();
        assert_ne!(t["id"].as_str(), Some(fab_job.as_str()), "never handed out");
    } else {
        assert_eq!(r.status(), 204);
    }
    // Nor the other organization's data through the regular API.
    for path in [
        format!("connectors/{fab_connector}"),
        format!("connectors/{fab_connector}/resources"),
        format!("tasks/{fab_job}"),
    ] {
        let r = s
            .http
            .get(s.url(&format!("api/v1/{path}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    // Fabrikam's task is untouched: still running under its lease, nothing uploaded or logged.
    let (status, lease_token, logs): (String, Option<Uuid>, i64) = sqlx::query_as(
        "SELECT j.status, j.lease_token, (SELECT count(*) FROM job_logs l WHERE l.job_id = j.id AND l.message = 'x')
           FROM jobs j WHERE j.id = $1",
    )
    .bind(Uuid::parse_str(&fab_job).unwrap())
    .fetch_one(store.system())
    .await
    .unwrap();
    assert_eq!(status, "running");
    assert_eq!(lease_token, Some(Uuid::parse_str(&fab_lease).unwrap()));
    assert_eq!(logs, 0);
    assert!(
        batches_of(&store, Uuid::parse_str(&fab_job).unwrap())
            .await
            .is_empty()
    );
    let _ = other;
    std::fs::remove_dir_all(&dir).ok();
}

/// How many syncs the connector has (any status).
async fn sync_runs(s: &Stack, id: Uuid) -> usize {
    let (_, page) = s
        .api(
            reqwest::Method::GET,
            &format!("connectors/{id}/syncs"),
            None,
        )
        .await;
    page["items"].as_array().unwrap().len()
}

/// Writes a full sync of the simulated tenant to a file with `latchkey connector sync --output`.
async fn sync_file(s: &Stack, creds: &Value) -> (std::path::PathBuf, u64) {
    sync_file_with(s, creds, &[]).await
}

/// [`sync_file`] with more of the connector's environment (`ENTRA_TENANT_ID`, …).
async fn sync_file_with(
    s: &Stack,
    creds: &Value,
    env: &[(&str, &str)],
) -> (std::path::PathBuf, u64) {
    let dir = std::env::temp_dir().join(format!("latchkey-agent-test-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sync.jsonl");
    let mut env = env.to_vec();
    env.push(("LATCHKEY_URL", "http://127.0.0.1:9/"));
    let mut sync = s.connector(creds, &env);
    sync.args(["sync", "--output", file.to_str().unwrap()]);
    let o = tokio::task::spawn_blocking(move || run(&mut sync))
        .await
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let last: Value = serde_json::from_str(
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let batches = last["end"]["batches"].as_u64().unwrap();
    (file, batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_sync_sweep_runs_in_the_worker_not_in_the_result_request() {
    const STALE: i64 = 100_000;
    let mut s = Stack::start(43).await;
    let (id, creds) = s.self_hosted("Sweep").await;
    let (file, _) = sync_file(&s, &creds).await;
    // A large sweep: the store holds many accounts the tenant no longer has.
    sqlx::query(
        "INSERT INTO resources (id, org_id, connector_id, type, external_id, display_name, last_seen_run)
         SELECT gen_random_uuid(), $1, $2, 'user', 'stale-' || g, 'Stale ' || g, gen_random_uuid()
           FROM generate_series(1, $3) AS g",
    )
    .bind(s.org)
    .bind(id)
    .bind(STALE)
    .execute(s.store().system())
    .await
    .unwrap();
    let stale = |store: Store| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM resources WHERE connector_id = $1 AND deleted_at IS NULL
                AND external_id LIKE 'stale-%'",
        )
        .bind(id)
        .fetch_one(store.system())
        .await
        .unwrap()
    };

    // No worker runs: the upload and its result still succeed, and nothing is swept yet.
    s.kill_worker();
    let mut upload = s.connector(&creds, &[]);
    upload.args(["upload", file.to_str().unwrap()]);
    let started = Instant::now();
    let o = tokio::task::spawn_blocking(move || run(&mut upload))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stale(s.store().clone()).await,
        STALE,
        "the request swept nothing"
    );
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE kind = 'entra.agent_sync_finish' AND connector_id = $1 AND status = 'queued'",
    )
    .bind(id)
    .fetch_one(s.store().system())
    .await
    .unwrap();
    assert_eq!(queued, 1, "the worker's job to finish the sync");

    // The worker finishes it: the run succeeds with the sweep in its stats.
    s.start_worker();
    let synced = s.wait_synced(id, 1).await;
    let deleted: i64 =
        sqlx::query_scalar("SELECT (stats->>'deleted')::bigint FROM sync_runs WHERE id = $1")
            .bind(Uuid::parse_str(synced["id"].as_str().unwrap()).unwrap())
            .fetch_one(s.store().system())
            .await
            .unwrap();
    assert!(deleted >= STALE, "{deleted}");
    assert_eq!(stale(s.store().clone()).await, 0);
    eprintln!("upload with {STALE} stale rows to sweep took {took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

/// A proxy to Latchkey that forwards every request, except that the answer to the first
/// result a connector posts is lost after Latchkey committed it (the connector sees 502, as
/// from a load balancer whose upstream connection dropped). Counts the results posted.
async fn ack_losing_proxy(
    target: String,
) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;
    let client = reqwest::Client::new();
    let results = Arc::new(AtomicUsize::new(0));
    let seen = results.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let client = client.clone();
        let target = target.clone();
        let seen = seen.clone();
        async move {
            let method = req.method().clone();
            let pq = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            let is_result = method == http::Method::POST && pq.ends_with("/result");
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
            if is_result && seen.fetch_add(1, Ordering::SeqCst) == 0 {
                return Response::builder().status(502).body(Body::empty()).unwrap();
            }
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
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, results, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_result_acknowledgement_is_retried_and_answered_the_same() {
    let s = Stack::start(44).await;
    let (id, creds) = s.self_hosted("Ack").await;
    let (file, total) = sync_file(&s, &creds).await;
    let (proxy, results, _proxy_task) =
        ack_losing_proxy(s.url("").trim_end_matches('/').to_string()).await;

    let mut upload = s.connector(&creds, &[("LATCHKEY_URL", &proxy)]);
    upload.args(["upload", file.to_str().unwrap()]);
    let o = tokio::task::spawn_blocking(move || run(&mut upload))
        .await
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        results.load(Ordering::SeqCst),
        2,
        "the result was sent again"
    );
    let answer: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(answer["batches"], total);
    assert_eq!(answer["status"]["repeated"], true, "{answer}");

    // Finished once.
    s.wait_synced(id, 1).await;
    let finishes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE kind = 'entra.agent_sync_finish' AND connector_id = $1",
    )
    .bind(id)
    .fetch_one(s.store().system())
    .await
    .unwrap();
    assert_eq!(finishes, 1);

    // A result for a different number of batches is not taken for the same one.
    let token: Value = s.agent_token(&creds).await.json().await.unwrap();
    let task = answer["task_id"].as_str().unwrap();
    let r = s
        .http
        .post(s.url(&format!("api/v1/connector-agent/tasks/{task}/result")))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .header("Latchkey-Lease", Uuid::new_v4().to_string())
        .json(&json!({"sync": {"status": "succeeded", "batches": total + 1, "stats": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

/// The stored user `external` of `connector` (its Latchkey id), if any.
async fn stored_user(store: &Store, connector: Uuid, external: Uuid) -> Option<Uuid> {
    sqlx::query_scalar(
        "SELECT id FROM resources WHERE connector_id = $1 AND type = 'user' AND external_id = $2
            AND deleted_at IS NULL",
    )
    .bind(connector)
    .bind(external.to_string())
    .fetch_optional(store.system())
    .await
    .unwrap()
}

/// Every row of the tables a password could leak into, as text, that contains `needle`.
async fn rows_containing(store: &Store, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for table in [
        "jobs",
        "job_logs",
        "provisioning_tasks",
        "provisioning_events",
        "audit_events",
        "vault_items",
        "resources",
        "sync_runs",
    ] {
        // The table names are this list's own.
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} t WHERE strpos(t::text, $1) > 0"
        )))
        .bind(needle)
        .fetch_one(store.system())
        .await
        .unwrap();
        if n > 0 {
            found.push(format!("{table}: {n}"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_hosted_connector_creates_and_deprovisions_accounts_and_the_password_stays_in_its_task()
 {
    let dir = std::env::temp_dir().join(format!("latchkey-agent-accounts-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let s = Stack::start_with(45, Some(dir.clone())).await;
    let (id, creds) = s.self_hosted("Accounts").await;
    let agent_out = |name: &str| {
        let file = |ext: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("{name}.{ext}")))
                .unwrap()
        };
        (file("out"), file("err"))
    };
    let spawn = |name: &str, env: &[(&str, &str)]| {
        let (out, err) = agent_out(name);
        let mut env = env.to_vec();
        env.push(("RUST_LOG", "debug"));
        s.connector(&creds, &env)
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap()
    };
    let domain = s.sim.domain();
    let account = |nick: &str, manager: Option<Uuid>| {
        json!({"user_principal_name": format!("{nick}@{domain}"), "display_name": format!("New {nick}"),
               "mail_nickname": nick, "usage_location": "gb", "manager_id": manager})
    };
    let in_tenant = |upn: &str| {
        s.sim
            .truth_users()
            .into_iter()
            .filter(|u| u.user_principal_name == upn)
            .collect::<Vec<_>>()
    };

    // Provisioning off: the connector refuses the account, and nothing reaches the tenant.
    let mut agent = spawn("agent-off", &[("LATCHKEY_PROVISIONING", "false")]);
    s.wait_synced(id, 1).await;
    s.sim.clear_requests();
    let (status, started) = s
        .api(
            reqwest::Method::POST,
            &format!("connectors/{id}/accounts"),
            Some(account("refused.hire", None)),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let refused = started["task_id"].as_str().unwrap().to_string();
    let t = s.task(&refused).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .contains("LATCHKEY_PROVISIONING"),
        "{t}"
    );
    assert!(t.get("vault_item_id").is_none(), "{t}");
    assert_eq!(s.sim.graph_writes(), Vec::<String>::new());
    assert!(in_tenant(&format!("refused.hire@{domain}")).is_empty());
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM vault_items WHERE task_id = $1")
        .bind(Uuid::parse_str(&refused).unwrap())
        .fetch_one(s.store().system())
        .await
        .unwrap();
    assert_eq!(kept, 0, "the refused task's password is dropped");
    kill9(&mut agent);

    // Provisioning on: the account is created in the tenant, read back, stored, verified.
    let mut agent = spawn("agent-on", &[("LATCHKEY_PROVISIONING", "true")]);
    let boss = s
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.user_type == "Member" && u.account_enabled)
        .unwrap();
    let boss_resource = stored_user(s.store(), id, boss.id).await.unwrap();
    let (status, started) = s
        .api(
            reqwest::Method::POST,
            &format!("connectors/{id}/accounts"),
            Some(account("new.hire", Some(boss_resource))),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let task = started["task_id"].as_str().unwrap().to_string();
    let t = s.task(&task).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(t["operation"], "create_account");
    for k in ["provisioned_at", "verified_at"] {
        assert!(t[k].is_string(), "{k} in {t}");
    }
    let upn = format!("new.hire@{domain}");
    let created = in_tenant(&upn);
    assert_eq!(created.len(), 1, "one account in the tenant");
    let created = &created[0];
    assert!(created.account_enabled);
    assert_eq!(created.usage_location.as_deref(), Some("GB"));
    assert_eq!(s.sim.user_manager(created.id), Some(boss.id));
    let stored = stored_user(s.store(), id, created.id)
        .await
        .expect("stored as a user at once");
    assert_eq!(t["principal_id"], json!(stored));

    // The vault reveals the password the tenant has, once.
    let item = t["vault_item_id"]
        .as_str()
        .expect("a vault item")
        .to_string();
    let reveal = format!("vault/{item}/reveal");
    let (status, v) = s.api(reqwest::Method::POST, &reveal, None).await;
    assert_eq!(status, 200, "{v}");
    let password = v["password"].as_str().unwrap().to_string();
    assert_eq!(v["account_id"], created.id.to_string());
    assert!(s.sim.user_password_is(created.id, &password));
    let (status, _) = s.api(reqwest::Method::POST, &reveal, None).await;
    assert_eq!(status, 410);

    // Handed out again after the connector died between creating the account and reporting:
    // the same password, and the account its lost attempt made, not a second one.
    let hold = s.sim.hold("POST", "/v1.0/users");
    let (status, started) = s
        .api(
            reqwest::Method::POST,
            &format!("connectors/{id}/accounts"),
            Some(account("second.hire", None)),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let second = started["task_id"].as_str().unwrap().to_string();
    tokio::time::timeout(Duration::from_secs(60), hold.held())
        .await
        .expect("the connector asked Graph to create the account");
    kill9(&mut agent);
    hold.release();
    let second_upn = format!("second.hire@{domain}");
    assert_eq!(in_tenant(&second_upn).len(), 1, "created before the crash");
    // Its lease runs out (as 60 s without a heartbeat would make it).
    sqlx::query(
        "UPDATE jobs SET locked_until = now() - interval '1 second'
          WHERE id = (SELECT job_id FROM provisioning_tasks WHERE id = $1)",
    )
    .bind(Uuid::parse_str(&second).unwrap())
    .execute(s.store().system())
    .await
    .unwrap();
    let mut agent = spawn("agent-again", &[("LATCHKEY_PROVISIONING", "true")]);
    let t = s.task(&second).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    let again = in_tenant(&second_upn);
    assert_eq!(again.len(), 1, "no second account");
    let (_, job) = s
        .api(
            reqwest::Method::GET,
            &format!("jobs/{}", t["job_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(job["attempts"], 2, "{job}");
    let (status, v) = s
        .api(
            reqwest::Method::POST,
            &format!("vault/{}/reveal", t["vault_item_id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let second_password = v["password"].as_str().unwrap().to_string();
    assert!(s.sim.user_password_is(again[0].id, &second_password));

    // Deprovisioning: deleting is off on this connector, so that is refused and changes
    // nothing; disabling sign-in is carried out and read back.
    s.sim.clear_requests();
    let (status, started) = s
        .api(
            reqwest::Method::POST,
            &format!("connectors/{id}/accounts/{stored}/deprovision"),
            Some(json!({"delete": true})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let t = s.task(started["task_id"].as_str().unwrap()).await;
    assert_eq!(t["status"], "failed", "{t}");
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .contains("LATCHKEY_ALLOW_ACCOUNT_DELETION"),
        "{t}"
    );
    assert_eq!(s.sim.graph_writes(), Vec::<String>::new());
    let (status, started) = s
        .api(
            reqwest::Method::POST,
            &format!("connectors/{id}/accounts/{stored}/deprovision"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let t = s.task(started["task_id"].as_str().unwrap()).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert!(t["verified_at"].is_string(), "{t}");
    assert!(!in_tenant(&upn)[0].account_enabled, "sign-in disabled");
    let enabled: Option<bool> = sqlx::query_scalar(
        "SELECT (profile->>'account_enabled')::boolean FROM resources WHERE id = $1",
    )
    .bind(stored)
    .fetch_one(s.store().system())
    .await
    .unwrap();
    assert_eq!(enabled, Some(false), "the stored account shows it at once");
    kill9(&mut agent);

    // The passwords went to the connector in its task and to the person at the reveal:
    // no log of the connector, the server or the worker has them, nor the database.
    for p in [&password, &second_password] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(!text.contains(p.as_str()), "the password in {path:?}");
        }
        assert_eq!(rows_containing(s.store(), p).await, Vec::<String>::new());
    }
    // Controls: the scans see what is there (the account's name is in the connector's log, on
    // its stderr, and in the task).
    let agent_log = std::fs::read_to_string(dir.join("agent-on.err")).unwrap();
    assert!(
        agent_log.contains(&format!("create account {upn}")),
        "{agent_log}"
    );
    assert!(!rows_containing(s.store(), &upn).await.is_empty());
    let logged: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(logged > 10_000, "the logs were written ({logged} bytes)");
    std::fs::remove_dir_all(&dir).ok();
}
