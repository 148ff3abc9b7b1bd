//! Test helpers: organizations, worker processes, in-process pools, the record file.

use latchkey_core::{DisplayName, Email, OrgId};
use latchkey_jobs::{Job, JobId, JobStatus, Registry, WorkerConfig, WorkerPool};
use latchkey_store::testing::TestDb;
use latchkey_store::{DbConfig, Store, orgs};
use std::future::Future;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub async fn org(store: &Store, name: &str) -> OrgId {
    let (org, _) = orgs::create_with_admin(
        store,
        &DisplayName::parse(name).unwrap(),
        &Email::parse(&format!("admin@{name}.example")).unwrap(),
        &DisplayName::parse("Admin").unwrap(),
        "not-a-real-hash",
    )
    .await
    .unwrap();
    org
}

/// A store with room for in-process pools (the test database's own has 5 connections).
pub async fn store(db: &TestDb, connections: u32) -> Store {
    let mut cfg = DbConfig::new(db.url.clone());
    cfg.max_connections = connections;
    Store::connect(&cfg).await.unwrap()
}

/// Settings for in-process pools: short leases and polls so tests stay quick.
pub fn config(id: &str) -> WorkerConfig {
    let mut c = WorkerConfig::new(id)
        .concurrency(4)
        .lease(Duration::from_millis(1500));
    c.poll_interval = Duration::from_millis(200);
    c.maintenance_interval = Duration::from_millis(200);
    c.shutdown_deadline = Duration::from_secs(2);
    c.backoff.base = Duration::from_millis(100);
    c.org_running_cap = 100;
    c
}

pub struct RunningPool {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

pub fn spawn_pool(store: &Store, config: WorkerConfig, registry: Registry) -> RunningPool {
    let stop = CancellationToken::new();
    let pool = WorkerPool::new(store.clone(), config, registry);
    let s = stop.clone();
    let handle = tokio::spawn(async move { pool.run(s).await.unwrap() });
    RunningPool { stop, handle }
}

impl RunningPool {
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("pool stops")
            .unwrap();
    }
}

/// Polls `f` until it yields `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub async fn job(store: &Store, id: JobId) -> Job {
    latchkey_jobs::queue::get_any(store, id).await.unwrap()
}

pub async fn wait_status(store: &Store, id: JobId, status: JobStatus, timeout: Duration) -> Job {
    eventually(timeout, &format!("job {id} to be {status}"), || async {
        let j = job(store, id).await;
        (j.status == status).then_some(j)
    })
    .await
}

/// A fresh path for a record file (see `latchkey_jobs::testkit::record`).
pub fn record_file() -> String {
    let dir = std::env::temp_dir().join("latchkey-jobs-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}.log", uuid::Uuid::new_v4()))
        .to_string_lossy()
        .into_owned()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub event: String,
    pub job: String,
    pub worker: String,
    pub attempt: i32,
}

pub fn records(file: &str) -> Vec<Record> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return vec![];
    };
    text.lines()
        .map(|l| {
            let p: Vec<&str> = l.split(' ').collect();
            Record {
                event: p[0].into(),
                job: p[1].into(),
                worker: p[2].into(),
                attempt: p[3].parse().unwrap(),
            }
        })
        .collect()
}

/// A `latchkey-jobs-testworker` process.
pub struct Worker {
    child: Child,
}

impl Worker {
    /// Starts a worker and waits until it is up. `args` override the binary's defaults
    /// (lease 2 s, poll 500 ms, maintenance 200 ms, shutdown 5 s, concurrency 8).
    pub async fn spawn(db: &TestDb, id: &str, args: &[&str]) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey-jobs-testworker"))
            .args(["--database-url", &db.url, "--worker-id", id])
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the test worker");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        assert!(
            matches!(ready, Ok(Ok(Some(ref l))) if l == "ready"),
            "worker {id} did not start: {ready:?}"
        );
        // LISTEN is set up right after start; give it a moment.
        tokio::time::sleep(Duration::from_millis(150)).await;
        Worker { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("worker still running")
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    pub async fn kill9(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()
            .map(|r| r.unwrap())
    }
}
