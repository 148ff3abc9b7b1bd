//! Sync benchmark against the simulated tenant at 100,000 users / 10,000 groups / 1,000,000
//! memberships / 500 enterprise apps (`cargo bench -p latchkey-entra --bench sync`):
//!
//! 1. full sync at zero latency, in a worker process of its own as production runs it (the
//!    simulated tenant stays in this one): wall time, requests, the worker's peak RSS; and the
//!    floor: the same rows `COPY`ed into the same tables (same indexes) in the same run;
//! 2. full sync at 50 ms per request with Graph's throttling model: wall time against
//!    requests ÷ concurrency × latency;
//! 3. incremental sync after 1 % of the directory changed: requests and time against the full sync.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) a small tenant keeps it quick.
//! `LATCHKEY_BENCH_SKIP=floor,incremental,latency` leaves parts out (the full sync always runs).
//! Needs PostgreSQL like the tests (`LATCHKEY_TEST_DATABASE_URL`).

use futures::TryStreamExt;
use latchkey_core::{DisplayName, Email, OrgId};
use latchkey_crypto::KeyRing;
use latchkey_entra::OutboundPolicy;
use latchkey_entra::onboarding::connection_test::secret_ref;
use latchkey_entra::onboarding::{AuthMode, AuthSettings, EntraSettings};
use latchkey_entra::sync::{SyncHandler, SyncKind, SyncOptions, request_sync};
use latchkey_entra_sim::{Change, SimConfig, SimHandle, SimServer, Throttle};
use latchkey_jobs::{Registry, WorkerConfig, WorkerPool};
use latchkey_store::{Store, apps, connectors, orgs, resources, secrets, sync_runs};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn proc_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A database of its own, named so that test runs' clean-up of `lk_test_*` leaves it alone
/// while the benchmark runs; dropped at the end.
struct BenchDb {
    name: String,
    url: String,
    store: Store,
}

impl BenchDb {
    async fn new() -> BenchDb {
        use sqlx::Connection;
        let name = format!("lk_bench_{}", Uuid::new_v4().simple());
        let mut admin_url = url::Url::parse(&latchkey_store::testing::server_url()).unwrap();
        admin_url.set_path("/postgres");
        let mut admin = sqlx::PgConnection::connect(admin_url.as_str())
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let mut url = admin_url.clone();
        url.set_path(&format!("/{name}"));
        // The worker's pool as production sizes it by default.
        let store = connect(url.as_str()).await;
        latchkey_store::MIGRATOR.run(store.system()).await.unwrap();
        BenchDb {
            name,
            url: url.to_string(),
            store,
        }
    }

    async fn drop_it(self) {
        use sqlx::Connection;
        self.store.system().close().await;
        let mut admin_url = url::Url::parse(&latchkey_store::testing::server_url()).unwrap();
        admin_url.set_path("/postgres");
        let mut admin = sqlx::PgConnection::connect(admin_url.as_str())
            .await
            .unwrap();
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await;
    }
}

/// The worker's pool as production sizes it by default.
async fn connect(url: &str) -> Store {
    let mut cfg = latchkey_store::DbConfig::new(url.to_string());
    cfg.max_connections = 10;
    Store::connect(&cfg).await.unwrap()
}

/// The worker pool that runs the bench's sync jobs, as a worker process configures it.
fn worker_pool(store: Store, keys: Arc<KeyRing>) -> WorkerPool {
    let mut cfg = WorkerConfig::new("bench");
    cfg.concurrency = 2;
    cfg.sync_slots = 1;
    cfg.poll_interval = Duration::from_millis(20);
    let handler = SyncHandler::new(keys, None, OutboundPolicy::INSECURE_DEV)
        .with_options(SyncOptions::default());
    WorkerPool::new(store, cfg, Registry::new().with(handler))
}

/// Set in the child process that [`Bench::sync_in_worker_process`] starts.
const WORKER_ENV: &str = "LATCHKEY_BENCH_WORKER";

/// The child: runs the queued jobs of the database in `LATCHKEY_BENCH_WORKER` (keys in
/// `LATCHKEY_BENCH_KEYS`) until none is left, then prints its time and peak RSS.
fn worker_process_main(url: String) {
    let keys = Arc::new(KeyRing::parse(&std::env::var("LATCHKEY_BENCH_KEYS").unwrap()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = connect(&url).await;
        let started = Instant::now();
        worker_pool(store.clone(), keys)
            .run_until_idle(CancellationToken::new())
            .await
            .unwrap();
        let took = started.elapsed();
        store.system().close().await;
        println!(
            "took_us={} peak_rss_kb={}",
            took.as_micros(),
            proc_kb("VmHWM:")
        );
    });
}

struct Bench {
    db: BenchDb,
    sim: SimHandle,
    org: OrgId,
    keys: Arc<KeyRing>,
    /// `keys` as its configuration entry, for the worker process.
    keys_entry: String,
    app: Option<Uuid>,
}

impl Bench {
    fn store(&self) -> &Store {
        &self.db.store
    }

    async fn connector(&mut self) -> Uuid {
        let app = self.sim.customer_app();
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        let app_id = match self.app {
            Some(a) => a,
            None => apps::create_managed(&mut tx, "Entra ID").await.unwrap().id,
        };
        self.app = Some(app_id);
        let c = connectors::create(
            &mut tx,
            connectors::NewConnector {
                app_id,
                kind: "entra",
                display_name: "Bench tenant",
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

    async fn request(&self, connector: Uuid, kind: SyncKind) -> Uuid {
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        let (job, _) = request_sync(&mut tx, connector, kind, "bench")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        job
    }

    /// Runs a sync in this process's worker pool.
    async fn sync(&self, connector: Uuid, kind: SyncKind) -> (sync_runs::SyncRun, Duration) {
        let job = self.request(connector, kind).await;
        let started = Instant::now();
        worker_pool(self.store().clone(), self.keys.clone())
            .run_until_idle(CancellationToken::new())
            .await
            .unwrap();
        let took = started.elapsed();
        (self.finished(job).await, took)
    }

    /// Runs a sync in a worker process of its own (this executable again), as production does:
    /// its peak RSS (kB) is the sync's whole memory, without the simulated tenant this process
    /// hosts.
    async fn sync_in_worker_process(
        &self,
        connector: Uuid,
        kind: SyncKind,
    ) -> (sync_runs::SyncRun, Duration, u64) {
        let job = self.request(connector, kind).await;
        let out = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env(WORKER_ENV, &self.db.url)
            .env("LATCHKEY_BENCH_KEYS", &self.keys_entry)
            .stderr(std::process::Stdio::inherit())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "the worker process failed: {stdout}");
        let field = |name: &str| -> u64 {
            stdout
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in the worker process's output: {stdout}"))
        };
        let took = Duration::from_micros(field("took_us"));
        (self.finished(job).await, took, field("peak_rss_kb"))
    }

    /// The run of sync `job`, which must have succeeded.
    async fn finished(&self, job: Uuid) -> sync_runs::SyncRun {
        let mut tx = self.store().org_tx(self.org).await.unwrap();
        let run = sync_runs::get(&mut tx, job).await.unwrap();
        if run.status != "succeeded" {
            let job = latchkey_store::jobs::get(&mut tx, latchkey_store::jobs::JobId(job))
                .await
                .unwrap();
            panic!(
                "the sync did not succeed: {run:?}; job: {:?} {:?}",
                job.status, job.last_error
            );
        }
        tx.commit().await.unwrap();
        run
    }

    /// The floor: the rows connector `from` holds, `COPY`ed as new rows of another connector
    /// into the same tables (same indexes, same constraints). Returns (rows, time).
    async fn copy_floor(&mut self, from: Uuid) -> (u64, Duration) {
        let to = self.connector().await;
        let mut conn = self.store().system().acquire().await.unwrap();
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut *conn)
            .await
            .unwrap();
        let mut payloads = Vec::new();
        for (table, cols, select) in [
            (
                "resources",
                "id, org_id, connector_id, type, external_id, display_name, profile, last_seen_run",
                "md5(id::text || 'x')::uuid, org_id, $TO, type, external_id, display_name, profile, last_seen_run",
            ),
            (
                "entitlements",
                "id, org_id, connector_id, resource_id, slug, display_name, last_seen_run",
                "md5(id::text || 'x')::uuid, org_id, $TO, md5(resource_id::text || 'x')::uuid, slug, display_name, last_seen_run",
            ),
            (
                "grants",
                "id, org_id, connector_id, entitlement_id, principal_id, kind, source, expanded, external_id, details, last_seen_run",
                "md5(id::text || 'x')::uuid, org_id, $TO, md5(entitlement_id::text || 'x')::uuid, md5(principal_id::text || 'x')::uuid, kind, source, expanded, external_id, details, last_seen_run",
            ),
        ] {
            let q = format!(
                "COPY (SELECT {} FROM {table} WHERE connector_id = '{from}') TO STDOUT",
                select.replace("$TO", &format!("'{to}'::uuid"))
            );
            let mut data = Vec::new();
            let mut out = conn.copy_out_raw(&q).await.unwrap();
            while let Some(chunk) = out.try_next().await.unwrap() {
                data.extend_from_slice(&chunk);
            }
            drop(out);
            payloads.push((table, cols, data));
        }
        let started = Instant::now();
        let mut rows = 0;
        for (table, cols, data) in payloads {
            let mut copy = conn
                .copy_in_raw(&format!("COPY {table} ({cols}) FROM STDIN"))
                .await
                .unwrap();
            for chunk in data.chunks(1 << 20) {
                copy.send(chunk).await.unwrap();
            }
            rows += copy.finish().await.unwrap();
        }
        let took = started.elapsed();
        // Settle the database before the next measurement (untimed): the copy is another
        // connector's full load, which the product follows with ANALYZE as a full sync does,
        // and its dirty pages would otherwise be written during the incremental sync.
        for settle in ["ANALYZE resources, entitlements, grants", "CHECKPOINT"] {
            sqlx::query(settle).execute(&mut *conn).await.unwrap();
        }
        (rows, took)
    }
}

/// About 1 % of the directory, changed out of band as admins would: users edited, memberships
/// added and removed, a few app role and directory role assignments.
fn change_one_percent(sim: &SimHandle) -> usize {
    let users = sim.truth_users();
    let groups = sim.truth_groups();
    let n_users = users.len() / 100;
    let n_groups = (groups.len() / 100).max(1);
    let mut changes = 0;
    for u in users.iter().step_by(100).take(n_users) {
        sim.apply(Change::UpdateUser {
            id: u.id,
            display_name: None,
            job_title: Some("Changed".into()),
            account_enabled: None,
        })
        .unwrap();
        changes += 1;
    }
    for (k, g) in groups.iter().step_by(100).take(n_groups).enumerate() {
        let members = sim.group_members(g.id).unwrap();
        if let Some(m) = members.first() {
            sim.apply(Change::RemoveMember {
                group_id: g.id,
                member_id: *m,
            })
            .unwrap();
            changes += 1;
        }
        let newcomer = users[(k * 7919) % users.len()].id;
        if !members.contains(&newcomer) {
            sim.apply(Change::AddMember {
                group_id: g.id,
                member_id: newcomer,
            })
            .unwrap();
            changes += 1;
        }
    }
    changes
}

fn main() {
    // As the product's processes do.
    latchkey_jobs::memory::limit_malloc_arenas();
    if let Ok(url) = std::env::var(WORKER_ENV) {
        return worker_process_main(url);
    }
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(full));
}

/// Whether `LATCHKEY_BENCH_SKIP` leaves out `part`.
fn skip(part: &str) -> bool {
    std::env::var("LATCHKEY_BENCH_SKIP")
        .unwrap_or_default()
        .split(',')
        .any(|p| p.trim() == part)
}

/// The full sync's Graph requests by endpoint (object ids replaced by `{id}`), most first: the
/// requests inside `$batch` envelopes each count, and the envelopes are counted apart.
fn print_requests_by_endpoint(log: &[latchkey_entra_sim::RequestLogEntry]) {
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    let mut envelopes = 0;
    for r in log {
        let path = r
            .path
            .trim_start_matches("/v1.0")
            .trim_start_matches("/beta");
        if path == "/$batch" {
            envelopes += 1;
            continue;
        }
        if path.len() == r.path.len() && !r.in_batch {
            continue; // not Graph (token endpoint)
        }
        let path: Vec<String> = r
            .path
            .split('/')
            .map(|s| {
                if Uuid::parse_str(s).is_ok() {
                    "{id}".to_string()
                } else {
                    s.to_string()
                }
            })
            .collect();
        *by.entry(format!("{} {}", r.method, path.join("/")))
            .or_default() += 1;
    }
    let mut by: Vec<(String, u64)> = by.into_iter().collect();
    by.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    println!("requests by endpoint ({envelopes} $batch envelopes carried them):");
    for (endpoint, n) in by {
        println!("  {n:>5}  {endpoint}");
    }
}

/// The organization that owns the bench's connectors.
async fn bench_org(store: &Store) -> OrgId {
    orgs::create_with_admin(
        store,
        &DisplayName::parse("Bench").unwrap(),
        &Email::parse("admin@bench.test").unwrap(),
        &DisplayName::parse("Admin").unwrap(),
        "x",
    )
    .await
    .unwrap()
    .0
}

async fn run(full: bool) {
    let cfg = if full {
        SimConfig::large(1)
    } else {
        SimConfig::small(1)
    };
    let db = BenchDb::new().await;
    let started = Instant::now();
    let sim = SimServer::start(cfg).await.unwrap();
    let truth = sim.truth();
    println!(
        "tenant: {} users, {} groups, {} memberships, {} service principals ({} managed identities); generated in {:.1} s",
        truth.users,
        truth.groups,
        truth.memberships,
        truth.service_principals,
        truth.managed_identities,
        started.elapsed().as_secs_f64()
    );
    let org = bench_org(&db.store).await;
    let keys_entry = latchkey_crypto::generate_key_entry("k1");
    let keys = Arc::new(KeyRing::parse(&keys_entry).unwrap());
    let mut b = Bench {
        db,
        sim,
        org,
        keys,
        keys_entry,
        app: None,
    };

    // 1. Zero latency: the sync against the COPY floor, and memory.
    // The sync runs in a worker process of its own: its peak RSS is the sync's memory.
    let a = b.connector().await;
    b.sim.clear_requests();
    let (run, took, peak) = b.sync_in_worker_process(a, SyncKind::Full).await;
    print_requests_by_endpoint(&b.sim.requests());
    let requests = run.stats["requests"].as_u64().unwrap_or(0);
    let mut tx = b.store().org_tx(b.org).await.unwrap();
    let summary = resources::summary(&mut tx, a).await.unwrap();
    tx.commit().await.unwrap();
    println!(
        "full sync (0 ms latency): {:.1} s, {requests} requests, {} pages; stored {:?} / {:?}",
        took.as_secs_f64(),
        run.stats["pages"],
        summary.resources,
        summary.grants
    );
    println!(
        "memory: peak RSS of the worker process that ran the sync: {} MB",
        peak / 1024
    );
    print_timeline(&b, run.id).await;
    if !skip("floor") {
        let (rows, floor) = b.copy_floor(a).await;
        println!(
            "floor: COPY of the same {rows} rows into the same tables: {:.1} s; sync / floor = {:.2}×",
            floor.as_secs_f64(),
            took.as_secs_f64() / floor.as_secs_f64()
        );
    }

    // 3. Incremental after 1 % changed (zero latency), against the full sync above.
    if !skip("incremental") {
        incremental(&b, a, requests, took).await;
    }
    if !skip("latency") {
        latency(&mut b, took).await;
    }
    // LATCHKEY_BENCH_KEEP_DB=1 keeps the database (its name is printed) for EXPLAIN ANALYZE.
    if std::env::var("LATCHKEY_BENCH_KEEP_DB").is_ok_and(|v| v == "1") {
        println!("kept database {}", b.db.name);
    } else {
        b.db.drop_it().await;
    }
}

async fn incremental(b: &Bench, a: Uuid, requests: u64, took: Duration) {
    let changed = change_one_percent(&b.sim);
    let (inc, inc_took) = b.sync(a, SyncKind::Incremental).await;
    let inc_requests = inc.stats["requests"].as_u64().unwrap_or(0);
    println!(
        "incremental after {changed} changes: {:.2} s, {inc_requests} requests = {:.1} % of the full sync's requests, {:.1} % of its time",
        inc_took.as_secs_f64(),
        100.0 * inc_requests as f64 / requests.max(1) as f64,
        100.0 * inc_took.as_secs_f64() / took.as_secs_f64()
    );
    print_timeline(b, inc.id).await;
}

/// Where the time of the sync `job` went: every log line of the run, seconds after the first.
async fn print_timeline(b: &Bench, job: Uuid) {
    let mut tx = b.store().org_tx(b.org).await.unwrap();
    let logs =
        latchkey_store::jobs::logs(&mut tx, latchkey_store::jobs::JobId(job), None, Some(1000))
            .await
            .unwrap();
    tx.commit().await.unwrap();
    let start = logs.first().map(|l| l.at);
    for l in &logs {
        let after = start.map(|s| (l.at - s).as_seconds_f64()).unwrap_or(0.0);
        println!("  +{after:6.2} s  {}", l.message);
    }
}

async fn latency(b: &mut Bench, zero_latency: Duration) {
    // 2. 50 ms per request and Graph's throttling model, in the conditions of the zero-latency
    // run: a database of its own (the earlier runs' rows in the same tables would slow every
    // write, and that is not latency) and a worker process of its own.
    let earlier = std::mem::replace(&mut b.db, BenchDb::new().await);
    if std::env::var("LATCHKEY_BENCH_KEEP_DB").is_ok_and(|v| v == "1") {
        println!("kept database {}", earlier.name);
    } else {
        earlier.drop_it().await;
    }
    b.org = bench_org(b.store()).await;
    b.app = None;
    b.sim.update_faults(|f| {
        f.latency_ms = 50;
        f.throttle = Throttle::TokenBucket { scale: 1.0 };
    });
    let c = b.connector().await;
    let (slow, slow_took, _) = b.sync_in_worker_process(c, SyncKind::Full).await;
    let slow_requests = slow.stats["requests"].as_u64().unwrap_or(0);
    let concurrency = SyncOptions::default().concurrency as f64;
    let ideal = slow_requests as f64 / concurrency * 0.05;
    println!(
        "full sync (50 ms latency, throttling): {:.1} s, {slow_requests} requests, {} throttled, {} retries; requests ÷ concurrency ({concurrency}) × latency = {ideal:.1} s; ratio {:.2}×; sequential bound (requests × latency) = {:.1} s",
        slow_took.as_secs_f64(),
        slow.stats["throttled"],
        slow.stats["retries"],
        slow_took.as_secs_f64() / ideal,
        slow_requests as f64 * 0.05
    );
    let added = slow_took.as_secs_f64() - zero_latency.as_secs_f64();
    println!(
        "latency added to the zero-latency sync ({:.1} s, same conditions): {added:.1} s = {:.1} % ({:.1} request round trips of 50 ms)",
        zero_latency.as_secs_f64(),
        100.0 * added / zero_latency.as_secs_f64(),
        added / 0.05
    );
    print_timeline(b, slow.id).await;
}
