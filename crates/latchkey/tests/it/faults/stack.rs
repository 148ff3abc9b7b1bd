//! The deployment the fault scenarios break: the real `latchkey serve` and `latchkey worker`
//! processes on one PostgreSQL (a test database of the shared server, or a private cluster
//! the test may restart), a simulated Entra tenant, and an API client.

pub use crate::support::{eventually, kill9};
use crate::support::{free_port, latchkey, membership_to_grant, run, snapshot, stderr, stdout};
use latchkey_entra_sim::{SimConfig, SimHandle, SimServer};
use latchkey_store::testing::TestDb;
use latchkey_store::{DbConfig, Store, resources};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;
use uuid::Uuid;

/// Lease of the test workers: a killed worker's job is taken over within a few seconds.
pub const LEASE_SECS: &str = "2";

pub struct Stack {
    /// The shared server's test database (dropped with the stack), if that is where it runs.
    _db: Option<TestDb>,
    pub url: String,
    pub store: Store,
    pub sim: SimHandle,
    pub port: u16,
    keys: String,
    serve: Option<Child>,
    /// Worker processes by their `LATCHKEY_WORKER_ID`.
    workers: Vec<(String, Child)>,
    pub http: reqwest::Client,
    pub org: Uuid,
    token: String,
    /// Each process's stderr goes to a file here, kept when the test fails.
    pub logs: PathBuf,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(s) = self.serve.as_mut() {
            kill9(s);
        }
        for (_, w) in &mut self.workers {
            kill9(w);
        }
        if std::thread::panicking() {
            eprintln!("the processes' logs are in {}", self.logs.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.logs);
        }
    }
}

impl Stack {
    /// A test database of the shared server, `sim` tenant, `serve` and no workers yet.
    pub async fn shared(sim: SimConfig) -> Stack {
        let db = TestDb::new().await;
        let url = db.url.clone();
        let store = db.store.clone();
        Self::start(Some(db), url, store, sim).await
    }

    /// The stack on a database that `url` names (created and migrated by the CLI).
    pub async fn on(url: &str, sim: SimConfig) -> Stack {
        let o = run(latchkey().env("DATABASE_URL", url).arg("migrate"));
        assert!(o.status.success(), "{}", stderr(&o));
        let store = Store::connect(&DbConfig::new(url)).await.unwrap();
        Self::start(None, url.to_string(), store, sim).await
    }

    async fn start(db: Option<TestDb>, url: String, store: Store, sim: SimConfig) -> Stack {
        let sim = SimServer::start(sim).await.unwrap();
        let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("faults-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&logs).unwrap();
        let o = run(latchkey().env("DATABASE_URL", &url).args([
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
        let o = run(latchkey().env("DATABASE_URL", &url).args([
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
            _db: db,
            url,
            store,
            sim,
            port: free_port(),
            keys: latchkey_crypto::generate_key_entry("k1"),
            serve: None,
            workers: Vec::new(),
            http: reqwest::Client::new(),
            org,
            token: String::new(),
            logs,
        };
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
        s.token = t["access_token"].as_str().unwrap().to_string();
        s
    }

    /// The API client's access token.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{name}.log")))
            .unwrap()
    }

    pub async fn start_serve(&mut self) {
        let child = latchkey()
            .arg("serve")
            .env("DATABASE_URL", &self.url)
            .env("LATCHKEY_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("LATCHKEY_MASTER_KEYS", &self.keys)
            .env("LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS", "true")
            .env("LATCHKEY_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(self.log_file("serve"))
            .spawn()
            .unwrap();
        self.serve = Some(child);
        let http = self.http.clone();
        let ready = self.url("readyz");
        eventually("the server to answer", Duration::from_secs(60), || {
            let (http, ready) = (http.clone(), ready.clone());
            async move {
                match http.get(&ready).send().await {
                    Ok(r) if r.status().is_success() => Some(()),
                    _ => None,
                }
            }
        })
        .await;
    }

    pub fn kill9_serve(&mut self) {
        if let Some(mut s) = self.serve.take() {
            kill9(&mut s);
        }
    }

    /// Starts `latchkey worker` as `id` with short leases and backoffs, plus `env`.
    pub fn start_worker(&mut self, id: &str, env: &[(&str, &str)]) {
        let mut cmd = latchkey();
        cmd.arg("worker")
            .env("DATABASE_URL", &self.url)
            .env("LATCHKEY_MASTER_KEYS", &self.keys)
            .env("LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS", "true")
            .env("LATCHKEY_LOG_FORMAT", "json")
            .env("LATCHKEY_WORKER_ID", id)
            .env("LATCHKEY_WORKER_LEASE_SECS", LEASE_SECS)
            .env("LATCHKEY_WORKER_POLL_MS", "200")
            .env("LATCHKEY_WORKER_BACKOFF_BASE_SECS", "0.2")
            .env("LATCHKEY_WORKER_BACKOFF_MAX_SECS", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(self.log_file(id))
            .spawn()
            .unwrap();
        self.workers.push((id.to_string(), child));
    }

    /// `kill -9` of the worker process `id`.
    pub fn kill9_worker(&mut self, id: &str) {
        let i = self
            .workers
            .iter()
            .position(|(w, _)| w == id)
            .unwrap_or_else(|| panic!("no worker {id}"));
        let (_, mut child) = self.workers.remove(i);
        kill9(&mut child);
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(&format!("api/v1/{path}")))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.api(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// A client-secret connector of the simulated tenant with provisioning on; its
    /// connection test and first sync start at once (if a worker runs).
    pub async fn connector(&self, name: &str) -> Uuid {
        let app = self.sim.customer_app();
        let (status, c) = self
            .api(
                reqwest::Method::POST,
                "connectors",
                Some(json!({
                    "display_name": name,
                    "app": {"new": {"name": format!("{name} app")}},
                    "settings": {
                        "auth": {"mode": "client_secret", "tenant_id": self.sim.tenant_id().to_string(),
                                 "client_id": app.client_id.to_string(), "client_secret": app.client_secret},
                        "graph_domain": self.sim.base_url(),
                        "provisioning": true,
                    },
                })),
            )
            .await;
        assert_eq!(status, 201, "{c}");
        Uuid::parse_str(c["id"].as_str().unwrap()).unwrap()
    }

    /// The connector's syncs (newest first), as the API lists them.
    pub async fn syncs(&self, connector: Uuid) -> Vec<Value> {
        self.get(&format!("connectors/{connector}/syncs")).await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits for the connector's first sync job to exist; returns its id.
    pub async fn first_sync_job(&self, connector: Uuid) -> Uuid {
        eventually("the first sync to start", Duration::from_secs(60), || async move {
            sqlx::query_scalar::<_, Uuid>(
                "SELECT id FROM jobs WHERE connector_id = $1 AND kind = 'entra.sync' ORDER BY created_at LIMIT 1",
            )
            .bind(connector)
            .fetch_optional(self.store.system())
            .await
            .unwrap()
        })
        .await
    }

    /// Waits until the job is finished (succeeded, failed, dead or cancelled); returns it.
    pub async fn finished_job(&self, job: Uuid, within: Duration) -> Value {
        eventually("the job to finish", within, || async move {
            // The web process may answer 500 while its database restarts: ask again.
            let (status, j) = self
                .api(reqwest::Method::GET, &format!("jobs/{job}"), None)
                .await;
            (status == 200
                && matches!(
                    j["status"].as_str(),
                    Some("succeeded" | "failed" | "dead" | "cancelled")
                ))
            .then_some(j)
        })
        .await
    }

    pub async fn job_logs(&self, job: Uuid) -> Vec<String> {
        self.get(&format!("jobs/{job}/logs?limit=200")).await["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["message"].as_str().map(str::to_string))
            .collect()
    }

    /// The running job's holder and checkpoint (`locked_by`, `checkpoint`).
    pub async fn lock_and_checkpoint(&self, job: Uuid) -> (Option<String>, Option<Value>, String) {
        sqlx::query_as("SELECT locked_by, checkpoint, status::text FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_one(self.store.system())
            .await
            .unwrap()
    }

    /// What the connector holds, in natural keys (comparable across connectors).
    pub async fn snapshot(
        &self,
        connector: Uuid,
    ) -> (
        Vec<(String, String, String, Value)>,
        Vec<resources::GrantKey>,
    ) {
        snapshot(&self.store, self.org, connector).await
    }

    /// Asserts that `connector` holds what the simulated tenant holds: the users and groups
    /// the simulator's ground truth lists, and exactly the picture of a reference connector
    /// synced now without faults (the sync tests of `latchkey-entra` prove that picture equal
    /// to the ground truth kind by kind).
    pub async fn assert_ground_truth(&self, connector: Uuid) {
        let (res, grants) = self.snapshot(connector).await;
        let count = |t: &str| res.iter().filter(|r| r.0 == t).count();
        let truth = self.sim.truth();
        assert_eq!(count("user"), truth.users, "users");
        assert_eq!(count("group"), truth.groups, "groups");
        let users: std::collections::BTreeSet<String> = self
            .sim
            .truth_users()
            .into_iter()
            .map(|u| u.id.to_string())
            .collect();
        let stored: std::collections::BTreeSet<String> = res
            .iter()
            .filter(|r| r.0 == "user")
            .map(|r| r.1.clone())
            .collect();
        assert_eq!(stored, users, "the same users");
        let reference = self.connector("Reference").await;
        let job = self.first_sync_job(reference).await;
        let j = self.finished_job(job, Duration::from_secs(120)).await;
        assert_eq!(j["status"], "succeeded", "reference sync: {j}");
        let (ref_res, ref_grants) = self.snapshot(reference).await;
        assert_eq!(res, ref_res, "resources equal a clean sync's");
        assert_eq!(grants.len(), ref_grants.len(), "grant count");
        assert_eq!(grants, ref_grants, "grants equal a clean sync's");
    }

    /// `(entitlement id, principal id, group, user)`: membership of a plain security group
    /// for a user who is not in it.
    pub async fn membership_to_grant(&self, connector: Uuid) -> (Uuid, Uuid, Uuid, Uuid) {
        membership_to_grant(&self.sim, &self.store, connector).await
    }

    /// Waits for a provisioning task to end; returns it as the API shows it.
    pub async fn task(&self, id: &str) -> Value {
        eventually(
            "the task to finish",
            Duration::from_secs(90),
            || async move {
                let t = self.get(&format!("tasks/{id}")).await;
                matches!(t["status"].as_str(), Some("succeeded" | "failed")).then_some(t)
            },
        )
        .await
    }

    /// Rows of `table` matching `filter` (SQL), through the owner connection.
    pub async fn count(&self, table: &str, filter: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE {filter}"
        )))
        .fetch_one(self.store.system())
        .await
        .unwrap()
    }
}
