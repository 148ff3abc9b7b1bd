//! A worker process for this crate's tests and benchmark: runs the test handlers and the
//! built-ins until SIGTERM (graceful) or SIGKILL.

use clap::Parser;
use latchkey_jobs::{WorkerConfig, WorkerPool, testkit};
use latchkey_store::{DbConfig, Store};
use std::time::Duration;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    database_url: String,
    #[arg(long)]
    worker_id: String,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value_t = 2000)]
    lease_ms: u64,
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    #[arg(long, default_value_t = 1000)]
    org_cap: u32,
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    #[arg(long, default_value_t = 200)]
    maintenance_ms: u64,
    #[arg(long, default_value_t = 5000)]
    shutdown_ms: u64,
    #[arg(long, default_value_t = 100)]
    backoff_base_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
    let mut cfg = WorkerConfig::new(a.worker_id)
        .concurrency(a.concurrency)
        .lease(Duration::from_millis(a.lease_ms));
    if let Some(h) = a.heartbeat_ms {
        cfg.heartbeat_interval = Duration::from_millis(h);
    }
    cfg.org_running_cap = a.org_cap;
    cfg.poll_interval = Duration::from_millis(a.poll_ms);
    cfg.maintenance_interval = Duration::from_millis(a.maintenance_ms);
    cfg.shutdown_deadline = Duration::from_millis(a.shutdown_ms);
    cfg.backoff.base = Duration::from_millis(a.backoff_base_ms);
    let mut db = DbConfig::new(a.database_url);
    // Four of these share one Postgres (max_connections 100) in the benchmark.
    db.max_connections = cfg.connections_needed().min(20);
    let store = Store::connect(&db).await?;
    let stop = latchkey_jobs::cancel_on_shutdown_signal();
    // Tests wait for this line before they rely on the worker listening.
    println!("ready");
    WorkerPool::new(store, cfg, testkit::registry())
        .run(stop)
        .await?;
    Ok(())
}
