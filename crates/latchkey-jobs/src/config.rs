//! Worker pool settings.

use crate::Backoff;
use std::time::Duration;

/// How one worker process behaves. All workers sharing a database should use the same
/// `org_running_cap` and `lease`; the rest may differ per process.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Shown as `locked_by` on the jobs it runs. Unique per process.
    pub worker_id: String,
    /// Jobs this process runs at once.
    pub concurrency: usize,
    /// At most this many of them syncs, so provisioning always finds a free slot.
    /// Default: `concurrency - 1` (at least 1).
    pub sync_slots: usize,
    /// How long a claim holds without a heartbeat. A killed worker's jobs are picked up by
    /// others after at most this long.
    pub lease: Duration,
    /// How often running jobs' leases are renewed; well under `lease`.
    pub heartbeat_interval: Duration,
    /// An organization never has more jobs running than this, across all workers.
    pub org_running_cap: u32,
    /// Fallback when no `NOTIFY` arrives (a missed notification, a job that became due).
    pub poll_interval: Duration,
    /// How often this worker reaps expired leases and enqueues due schedules.
    pub maintenance_interval: Duration,
    /// On shutdown, how long running jobs get to reach a checkpoint before they are
    /// abandoned and handed back to the queue.
    pub shutdown_deadline: Duration,
    pub backoff: Backoff,
    /// Successful completions are written in batches of up to this many (one statement);
    /// 1 writes each on its own.
    pub completion_batch: usize,
}

impl WorkerConfig {
    pub fn new(worker_id: impl Into<String>) -> Self {
        let concurrency = 8;
        Self {
            worker_id: worker_id.into(),
            concurrency,
            sync_slots: concurrency - 1,
            lease: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            org_running_cap: 4,
            poll_interval: Duration::from_secs(1),
            maintenance_interval: Duration::from_secs(2),
            shutdown_deadline: Duration::from_secs(20),
            backoff: Backoff::default(),
            completion_batch: 64,
        }
    }

    /// Sets `concurrency` and the default `sync_slots` that goes with it.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self.sync_slots = (self.concurrency - 1).max(1);
        self
    }

    /// Sets the lease, with heartbeats every third of it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.heartbeat_interval = lease / 3;
        self
    }

    /// A worker id for this process: host name and process id.
    pub fn default_worker_id() -> String {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "worker".to_string());
        format!("{host}-{}", std::process::id())
    }

    /// Settings from `LATCHKEY_WORKER_*` variables, defaults for the rest:
    /// `_ID`, `_CONCURRENCY`, `_SYNC_SLOTS`, `_LEASE_SECS`, `_HEARTBEAT_SECS`, `_ORG_CAP`,
    /// `_POLL_MS`, `_SHUTDOWN_SECS`, `_BACKOFF_BASE_SECS`, `_BACKOFF_MAX_SECS`.
    pub fn from_environment() -> Result<Self, String> {
        fn var<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name} must be a number, not {v:?}")),
                Err(_) => Ok(None),
            }
        }
        let id = std::env::var("LATCHKEY_WORKER_ID").unwrap_or_else(|_| Self::default_worker_id());
        let mut c = Self::new(id);
        if let Some(n) = var::<usize>("LATCHKEY_WORKER_CONCURRENCY")? {
            c = c.concurrency(n);
        }
        if let Some(n) = var::<usize>("LATCHKEY_WORKER_SYNC_SLOTS")? {
            c.sync_slots = n.clamp(1, c.concurrency);
        }
        if let Some(s) = var::<f64>("LATCHKEY_WORKER_LEASE_SECS")? {
            c = c.lease(Duration::from_secs_f64(s.max(1.0)));
        }
        if let Some(s) = var::<f64>("LATCHKEY_WORKER_HEARTBEAT_SECS")? {
            c.heartbeat_interval = Duration::from_secs_f64(s.max(0.1));
        }
        if let Some(n) = var::<u32>("LATCHKEY_WORKER_ORG_CAP")? {
            c.org_running_cap = n.max(1);
        }
        if let Some(ms) = var::<u64>("LATCHKEY_WORKER_POLL_MS")? {
            c.poll_interval = Duration::from_millis(ms.max(10));
        }
        if let Some(s) = var::<f64>("LATCHKEY_WORKER_SHUTDOWN_SECS")? {
            c.shutdown_deadline = Duration::from_secs_f64(s.max(0.0));
        }
        if let Some(s) = var::<f64>("LATCHKEY_WORKER_BACKOFF_BASE_SECS")? {
            c.backoff.base = Duration::from_secs_f64(s.max(0.0));
        }
        if let Some(s) = var::<f64>("LATCHKEY_WORKER_BACKOFF_MAX_SECS")? {
            c.backoff.max = Duration::from_secs_f64(s.max(0.0));
        }
        if c.heartbeat_interval >= c.lease {
            return Err("LATCHKEY_WORKER_HEARTBEAT_SECS must be shorter than the lease".into());
        }
        Ok(c)
    }

    /// Database connections this pool needs at most: one per running job's write, the
    /// listener, the heartbeat and the maintenance task. Size the store's pool with it.
    pub fn connections_needed(&self) -> u32 {
        (self.concurrency as u32).div_ceil(2) + 3
    }
}
