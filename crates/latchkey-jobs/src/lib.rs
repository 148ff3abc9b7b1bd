//! Postgres job queue and the worker pool that runs it: leases, retries, fairness, logs,
//! schedules. Many worker processes on many machines share one Postgres; nothing else
//! coordinates them.
//!
//! # Enqueueing and reading (web handlers, other jobs)
//!
//! The queue's SQL lives in [`latchkey_store::jobs`]; this crate re-exports it as [`queue`].
//! Enqueue inside the organization's transaction, so the job commits (or not) with the change
//! that caused it:
//!
//! ```ignore
//! let mut tx = store.org_tx(org).await?;
//! let job = queue::enqueue(&mut tx, &NewJob::new("entra.provision", json!({...}))
//!     .class(JobClass::Provision).connector(connector_id).dedupe_key(format!("grant:{grant_id}"))).await?;
//! tx.commit().await?;
//! ```
//!
//! Also in [`queue`]: `get`, `list` (cursor pages), `cancel`, `logs` (tail with `after`),
//! `schedules::{upsert, delete, list}` (e.g. `sync:<connector>` every N minutes), and
//! system variants (`enqueue_system`, `get_any`, `logs_any`, `schedules::upsert_system`).
//!
//! # Running jobs (the `worker` and `demo` commands)
//!
//! Implement [`JobHandler`] per kind, put the handlers in a [`Registry`], and run a
//! [`WorkerPool`]:
//!
//! ```ignore
//! let config = WorkerConfig::from_environment()?;          // LATCHKEY_WORKER_*
//! let mut db = DbConfig::new(database_url);
//! db.max_connections = config.connections_needed();       // a pool of its own (rust-stack §3.5)
//! let store = Store::connect(&db).await?;
//! HousekeepingHandler::install_schedule(&store).await?;    // hourly pruning of old jobs
//! let registry = Registry::new().with(NoopHandler).with(HousekeepingHandler::default())
//!     .with(EntraSyncHandler::new(..));                    // each crate's handlers
//! WorkerPool::new(store, config, registry).run(cancel_on_shutdown_signal()).await?;
//! ```
//!
//! `demo` and tests can use [`WorkerPool::run_until_idle`] to run everything due to
//! completion. The web's `/metrics` appends [`render_prometheus`] (queue figures from the
//! database); a worker that serves metrics also appends [`Metrics::render`]
//! (`pool.metrics()`).
//!
//! # How it holds together
//!
//! - **Claiming** is one short transaction (`latchkey_claim_jobs`, `FOR UPDATE SKIP LOCKED`);
//!   the handler then runs outside any transaction and holds no connection between writes.
//! - **Leases**: a claim sets `locked_by`, `locked_until` and a fresh `lease_token`;
//!   heartbeats extend it; any worker's reaper requeues jobs whose lease expired (the attempt
//!   counts, so a job that kills its worker ends `dead`). Every write a job makes (logs,
//!   progress, checkpoint, outcome) is fenced by the token: a worker that lost the lease gets
//!   [`JobError::LeaseLost`] and changes nothing.
//! - **Wake-ups**: `LISTEN latchkey_jobs` wakes idle workers when a job is enqueued; polling
//!   every `poll_interval` remains as the fallback.
//! - **Retries**: [`JobError::Transient`] retries after [`Backoff`] (exponential, equal
//!   jitter) or the `retry_after` hint; [`JobError::Permanent`] fails at once; after
//!   `max_attempts` a job is `dead`.
//! - **Fairness and exclusion**: [`JobClass::Provision`] jobs are claimed first; syncs last,
//!   never in a worker's last free slot, and at most one running per connector (a unique
//!   partial index, not only the claim query); an organization never has more than
//!   `org_running_cap` jobs running (claims are serialised per organization).
//! - **Schedules**: each worker's maintenance task enqueues due schedules; the schedule row
//!   lock and a unique `(schedule_id, scheduled_for)` index make each period happen once.
//! - **Cancellation**: queued jobs are cancelled at once; running ones at their next
//!   [`JobContext::checkpoint`] (told by `NOTIFY` and by heartbeats).
//! - **Shutdown**: stop claiming, signal running jobs ([`JobError::Interrupted`] at their
//!   next checkpoint), wait up to `shutdown_deadline`, release the rest to the queue at once.
//! - **Metrics**: [`render_prometheus`] (from the database, for the web's `/metrics`) and
//!   [`Metrics::render`] (this process's counters).

mod backoff;
mod builtin;
mod config;
mod context;
mod error;
mod handler;
pub mod memory;
mod metrics;
mod pool;
mod signal;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use backoff::Backoff;
pub use builtin::{HousekeepingHandler, NoopHandler};
pub use config::WorkerConfig;
pub use context::JobContext;
pub use error::{JobError, WorkerError};
pub use handler::{JobHandler, Registry};
pub use metrics::{Metrics, Outcome, RECENT_WINDOW, render_prometheus};
pub use pool::WorkerPool;
pub use signal::cancel_on_shutdown_signal;

/// The queue's storage functions and types (`enqueue`, `get`, `list`, `cancel`, `logs`,
/// `schedules`, ...), from `latchkey-store`.
pub use latchkey_store::jobs as queue;
pub use latchkey_store::jobs::{
    Enqueued, Job, JobClass, JobFilter, JobId, JobLog, JobStatus, LogLevel, NewJob,
};
