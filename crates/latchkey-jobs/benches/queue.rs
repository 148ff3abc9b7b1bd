//! Queue benchmark: throughput of no-op jobs with 1, 2 and 4 worker processes, and the idle
//! claim latency (enqueue to start, woken by NOTIFY).
//!
//! `cargo bench -p latchkey-jobs --bench queue` (needs PostgreSQL, like the tests).
//! Environment: `BENCH_JOBS` (default 20000), `BENCH_CONCURRENCY` per process (default 64),
//! `BENCH_ORGS` the jobs are spread over (default 8).

use latchkey_core::{DisplayName, Email, OrgId};
use latchkey_jobs::queue::{self, stats};
use latchkey_jobs::{JobStatus, NewJob};
use latchkey_store::testing::TestDb;
use latchkey_store::{DbConfig, Store, orgs};
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn org(store: &Store, i: usize) -> OrgId {
    orgs::create_with_admin(
        store,
        &DisplayName::parse(&format!("bench{i}")).unwrap(),
        &Email::parse(&format!("admin@bench{i}.example")).unwrap(),
        &DisplayName::parse("Admin").unwrap(),
        "not-a-real-hash",
    )
    .await
    .unwrap()
    .0
}

async fn spawn_worker(db: &TestDb, id: &str, concurrency: usize, poll_ms: u64) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey-jobs-testworker"))
        .args(["--database-url", &db.url, "--worker-id", id])
        .args([
            "--concurrency",
            &concurrency.to_string(),
            "--lease-ms",
            "30000",
            "--org-cap",
            "100000",
        ])
        .args([
            "--poll-ms",
            &poll_ms.to_string(),
            "--maintenance-ms",
            "1000",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the test worker");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));
    child
}

async fn throughput(processes: usize, jobs: usize, concurrency: usize, n_orgs: usize) -> f64 {
    let db = TestDb::new().await;
    let mut orgs = vec![];
    for i in 0..n_orgs {
        orgs.push(org(&db.store, i).await);
    }
    let mut workers = vec![];
    for p in 0..processes {
        workers.push(spawn_worker(&db, &format!("bench{p}"), concurrency, 200).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Enqueue everything first (workers see it only at commit), then time the drain.
    let per_org = jobs / n_orgs;
    let mut cfg = DbConfig::new(db.url.clone());
    cfg.max_connections = n_orgs as u32 + 2;
    let store = Store::connect(&cfg).await.unwrap();
    let mut txs = vec![];
    for o in &orgs {
        let mut tx = store.org_tx(*o).await.unwrap();
        let batch: Vec<NewJob> = (0..per_org)
            .map(|_| NewJob::new("noop", json!({})))
            .collect();
        queue::enqueue_batch(&mut tx, &batch).await.unwrap();
        txs.push(tx);
    }
    let total = (per_org * n_orgs) as i64;
    let start = Instant::now();
    for tx in txs {
        tx.commit().await.unwrap();
    }
    loop {
        let pending = stats::pending(&db.store).await.unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "stuck with {pending} of {total} left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let s = stats::queue_stats(&db.store, Duration::from_secs(3600))
        .await
        .unwrap();
    let succeeded: i64 = s
        .recent
        .iter()
        .filter(|r| r.status == JobStatus::Succeeded.as_str())
        .map(|r| r.jobs)
        .sum();
    assert_eq!(succeeded, total, "every job succeeded once");
    for mut w in workers {
        w.start_kill().ok();
        w.wait().await.ok();
    }
    total as f64 / secs
}

async fn idle_latency(samples: usize) -> Vec<Duration> {
    let db = TestDb::new().await;
    let o = org(&db.store, 0).await;
    // Polling every 10 s: a start within milliseconds can only come from NOTIFY.
    let mut w = spawn_worker(&db, "idle", 4, 10_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut out = vec![];
    for _ in 0..samples {
        let mut tx = db.store.org_tx(o).await.unwrap();
        let id = queue::enqueue(&mut tx, &NewJob::new("noop", json!({})))
            .await
            .unwrap()
            .job
            .id;
        tx.commit().await.unwrap();
        let committed = Instant::now();
        let job = loop {
            let j = queue::get_any(&db.store, id).await.unwrap();
            if j.status == JobStatus::Succeeded {
                break j;
            }
            assert!(
                committed.elapsed() < Duration::from_secs(5),
                "job not started: NOTIFY did not wake the worker"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        // Both timestamps come from the database clock: enqueue transaction start to claim.
        let d = job.started_at.unwrap() - job.created_at;
        out.push(Duration::from_secs_f64(d.as_seconds_f64().max(0.0)));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.start_kill().ok();
    w.wait().await.ok();
    out.sort();
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let jobs = env_or("BENCH_JOBS", 20_000);
    let concurrency = env_or("BENCH_CONCURRENCY", 64);
    let n_orgs = env_or("BENCH_ORGS", 8);
    rt.block_on(async {
        println!("no-op throughput: {jobs} jobs over {n_orgs} organizations, concurrency {concurrency} per process");
        for processes in [1, 2, 4] {
            let rate = throughput(processes, jobs, concurrency, n_orgs).await;
            println!("  {processes} process(es): {rate:>8.0} jobs/s");
        }
        let lat = idle_latency(50).await;
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
        println!(
            "idle claim latency (enqueue -> start, NOTIFY): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.95).as_secs_f64() * 1e3,
            lat[lat.len() - 1].as_secs_f64() * 1e3
        );
    });
}
