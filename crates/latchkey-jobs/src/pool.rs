//! The worker pool: claims jobs, runs them outside any transaction, renews their leases,
//! records outcomes, reaps other workers' expired leases, enqueues due schedules, and shuts
//! down by handing unfinished work back to the queue.

use crate::context::Signals;
use crate::handler::Registry;
use crate::metrics::{Metrics, Outcome};
use crate::{JobContext, JobError, WorkerConfig, WorkerError};
use futures::FutureExt;
use latchkey_store::Store;
use latchkey_store::jobs::{
    CANCEL_CHANNEL, Job, JobClass, JobId, JobStatus, Lease, LogLevel, NOTIFY_CHANNEL, schedules,
    worker,
};
use serde_json::json;
use sqlx::postgres::PgListener;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Runs jobs from the shared queue until cancelled. Build one per process:
///
/// ```ignore
/// let registry = Registry::new().with(NoopHandler).with(HousekeepingHandler::default());
/// let pool = WorkerPool::new(store, WorkerConfig::from_environment()?, registry);
/// let metrics = pool.metrics();           // render into /metrics if this process serves it
/// pool.run(cancel_on_shutdown_signal()).await?;
/// ```
pub struct WorkerPool {
    store: Store,
    config: WorkerConfig,
    registry: Registry,
    metrics: Arc<Metrics>,
}

struct Active {
    lease: Lease,
    class: JobClass,
    signals: Arc<Signals>,
}

struct Shared {
    store: Store,
    config: WorkerConfig,
    registry: Registry,
    metrics: Arc<Metrics>,
    active: Mutex<HashMap<JobId, Active>>,
    /// Woken by NOTIFY, by the reaper and by the scheduler: there is new work.
    wake: Notify,
    /// Woken when a job finishes: a slot is free.
    finished: Notify,
    completions: mpsc::Sender<(Lease, oneshot::Sender<bool>)>,
}

impl WorkerPool {
    pub fn new(store: Store, config: WorkerConfig, registry: Registry) -> Self {
        Self {
            store,
            config,
            registry,
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// This process's counters (jobs started, outcomes, retries, durations).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` is cancelled, then stops claiming, signals running jobs to stop
    /// at their next checkpoint, waits up to `shutdown_deadline`, and releases what is still
    /// running so another worker picks it up at once.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        self.run_inner(shutdown, false).await
    }

    /// Runs until nothing is due and nothing is running, then stops as [`WorkerPool::run`]
    /// does. Due schedules and expired leases are handled before deciding; jobs due later
    /// (retries waiting out their backoff, future `run_at`) are left queued. For tests
    /// ("run the jobs to completion") and one-shot commands such as `demo`.
    pub async fn run_until_idle(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        self.run_inner(shutdown, true).await
    }

    async fn run_inner(
        self,
        shutdown: CancellationToken,
        until_idle: bool,
    ) -> Result<(), WorkerError> {
        if self.registry.handlers.is_empty() {
            return Err(WorkerError::NoHandlers);
        }
        let (tx, rx) = mpsc::channel(self.config.concurrency.max(1) * 2);
        let shared = Arc::new(Shared {
            store: self.store,
            config: self.config,
            registry: self.registry,
            metrics: self.metrics,
            active: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            finished: Notify::new(),
            completions: tx,
        });
        let kinds = shared.registry.kinds();
        tracing::info!(worker = %shared.config.worker_id, concurrency = shared.config.concurrency, ?kinds, "worker pool started");

        let background = CancellationToken::new();
        let mut helpers = JoinSet::new();
        helpers.spawn(listen(shared.clone(), background.clone()));
        helpers.spawn(heartbeat(shared.clone(), background.clone()));
        helpers.spawn(maintain(shared.clone(), background.clone()));
        helpers.spawn(complete_batches(shared.clone(), rx));

        let mut jobs = JoinSet::new();
        let mut claim_errors = 0u32;
        // Under a backlog, claiming for every single freed slot costs one claim transaction
        // per job; waiting for a quarter of the slots batches claims. Idle, NOTIFY and poll
        // wake-ups always claim, so a free slot waits at most `poll_interval`.
        let batch_threshold = (shared.config.concurrency / 4).max(1);
        let mut backlog = false;
        let mut woken_by_finish = false;
        while !shutdown.is_cancelled() {
            while jobs.try_join_next().is_some() {}
            let (running, syncs) = {
                let active = shared.active.lock().unwrap();
                (
                    active.len(),
                    active
                        .values()
                        .filter(|a| a.class == JobClass::Sync)
                        .count(),
                )
            };
            let free = shared.config.concurrency.saturating_sub(running);
            let batch_up = woken_by_finish && backlog && running > 0 && free < batch_threshold;
            if free > 0 && !batch_up {
                let req = worker::ClaimRequest {
                    worker: &shared.config.worker_id,
                    kinds: &kinds,
                    limit: free as u32,
                    sync_limit: shared.config.sync_slots.saturating_sub(syncs) as u32,
                    org_cap: shared.config.org_running_cap,
                    lease: shared.config.lease,
                };
                match worker::claim(&shared.store, &req).await {
                    Ok(claimed) => {
                        claim_errors = 0;
                        backlog = claimed.len() == free;
                        if until_idle
                            && claimed.is_empty()
                            && running == 0
                            && maintain_once(&shared).await == 0
                        {
                            break;
                        }
                        for job in claimed {
                            spawn_job(&shared, &mut jobs, job);
                        }
                    }
                    Err(e) => {
                        claim_errors += 1;
                        tracing::warn!(error = %e, "claiming jobs failed; retrying");
                    }
                }
            }
            let pause = if claim_errors > 0 {
                shared.config.poll_interval * claim_errors.min(10)
            } else {
                shared.config.poll_interval
            };
            woken_by_finish = false;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = shared.wake.notified() => {}
                _ = shared.finished.notified() => woken_by_finish = true,
                _ = tokio::time::sleep(pause) => {}
            }
        }

        tracing::info!(worker = %shared.config.worker_id, "worker pool stopping: no more claims");
        for a in shared.active.lock().unwrap().values() {
            a.signals.shutdown();
        }
        let deadline = tokio::time::sleep(shared.config.shutdown_deadline);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = jobs.join_next() => if next.is_none() { break },
                _ = &mut deadline => break,
            }
        }
        // Snapshot before aborting: an aborted task's guard removes its entry. Releasing is
        // fenced, so a job that finished meanwhile is left as it is.
        let leftovers: Vec<Lease> = shared
            .active
            .lock()
            .unwrap()
            .values()
            .map(|a| a.lease)
            .collect();
        jobs.abort_all();
        while jobs.join_next().await.is_some() {}
        if !leftovers.is_empty() {
            match worker::release(&shared.store, &leftovers).await {
                Ok(n) => tracing::info!(released = n, "handed unfinished jobs back to the queue"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not release jobs; their leases will expire")
                }
            }
            shared.metrics.released(leftovers.len() as u64);
        }
        background.cancel();
        // The completion task ends when the last sender goes: ours is in `shared`.
        drop(shared);
        while helpers.join_next().await.is_some() {}
        Ok(())
    }
}

fn spawn_job(shared: &Arc<Shared>, jobs: &mut JoinSet<()>, job: Job) {
    let Some(lease) = job.lease() else { return };
    let signals = Arc::new(Signals::default());
    shared.active.lock().unwrap().insert(
        job.id,
        Active {
            lease,
            class: job.class,
            signals: signals.clone(),
        },
    );
    let guard = ActiveGuard {
        shared: shared.clone(),
        id: job.id,
    };
    jobs.spawn(async move {
        run_job(&guard.shared, job, lease, signals).await;
        drop(guard);
    });
}

/// Frees the job's slot however its task ends (done, panicked, aborted), so a slot is never
/// leaked and a dead task's lease is not renewed forever.
struct ActiveGuard {
    shared: Arc<Shared>,
    id: JobId,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Ok(mut active) = self.shared.active.lock() {
            active.remove(&self.id);
        }
        self.shared.finished.notify_one();
    }
}

async fn run_job(shared: &Arc<Shared>, job: Job, lease: Lease, signals: Arc<Signals>) {
    let kind = job.kind.clone();
    let Some(handler) = shared.registry.get(&kind) else {
        return;
    };
    shared.metrics.started(&kind);
    let ctx = JobContext::new(
        shared.store.clone(),
        job,
        lease,
        shared.config.worker_id.clone(),
        signals.clone(),
    );
    let started = Instant::now();
    let result = match AssertUnwindSafe(handler.run(&ctx)).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(JobError::transient(format!(
                "the job handler panicked: {what}"
            )))
        }
    };
    let elapsed = started.elapsed();
    signals.finishing();
    let outcome = match record_outcome(shared, &ctx, &signals, result).await {
        Ok(o) => o,
        Err(e) => {
            // The lease will expire and the reaper hands the job to another worker.
            tracing::warn!(job = %ctx.id(), error = %e, "could not record the job's outcome");
            Outcome::Lost
        }
    };
    shared.metrics.finished(&kind, outcome, elapsed);
}

async fn record_outcome(
    shared: &Arc<Shared>,
    ctx: &JobContext,
    signals: &Signals,
    result: Result<(), JobError>,
) -> Result<Outcome, latchkey_store::StoreError> {
    let store = &shared.store;
    let lease = ctx.lease();
    if signals.is_lost() {
        return Ok(Outcome::Lost);
    }
    Ok(match result {
        Ok(()) => {
            let (tx, rx) = oneshot::channel();
            let ours = if shared.completions.send((lease, tx)).await.is_ok() {
                rx.await.unwrap_or(false)
            } else {
                !worker::complete(store, &[lease]).await?.is_empty()
            };
            if ours {
                Outcome::Succeeded
            } else {
                Outcome::Lost
            }
        }
        Err(JobError::Transient {
            message,
            retry_after,
        }) => {
            let delay = shared.config.backoff.delay(ctx.attempt(), retry_after);
            let fields = json!({"attempt": ctx.attempt(), "retry_in_ms": delay.as_millis() as u64});
            worker::append_log(store, &lease, LogLevel::Warn, &message, &fields).await?;
            match worker::retry_later(store, &lease, delay, &message).await? {
                Some(JobStatus::Queued) => Outcome::Retried,
                Some(JobStatus::Dead) => {
                    tracing::warn!(job = %ctx.id(), kind = ctx.kind(), error = %message, "job is dead: out of attempts");
                    Outcome::Dead
                }
                Some(_) => Outcome::Cancelled,
                None => Outcome::Lost,
            }
        }
        Err(JobError::Permanent { message }) => {
            worker::append_log(
                store,
                &lease,
                LogLevel::Error,
                &message,
                &json!({"attempt": ctx.attempt()}),
            )
            .await?;
            if worker::finish(store, &lease, JobStatus::Failed, Some(&message)).await? {
                Outcome::Failed
            } else {
                Outcome::Lost
            }
        }
        Err(JobError::Cancelled) => {
            if worker::finish(store, &lease, JobStatus::Cancelled, None).await? {
                Outcome::Cancelled
            } else {
                Outcome::Lost
            }
        }
        Err(JobError::Interrupted) => {
            if worker::release(store, &[lease]).await? == 1 {
                Outcome::Released
            } else {
                Outcome::Lost
            }
        }
        Err(JobError::LeaseLost) => Outcome::Lost,
    })
}

/// Writes successful completions in batches: one statement for every job that finished
/// while the previous batch was being written.
async fn complete_batches(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<(Lease, oneshot::Sender<bool>)>,
) {
    let store = shared.store.clone();
    let max = shared.config.completion_batch.max(1);
    // Hold no strong reference: the pool drops `shared` to close the channel.
    drop(shared);
    let mut batch = Vec::with_capacity(max);
    while rx.recv_many(&mut batch, max).await > 0 {
        let leases: Vec<Lease> = batch.iter().map(|(l, _)| *l).collect();
        let mut attempt = 0;
        let done = loop {
            match worker::complete(&store, &leases).await {
                Ok(done) => break Some(done),
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(error = %e, "recording completed jobs failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not record completed jobs; their leases will expire");
                    break None;
                }
            }
        };
        for (lease, reply) in batch.drain(..) {
            let ours = done.as_ref().is_some_and(|d| d.contains(&lease.job_id));
            let _ = reply.send(ours);
        }
    }
}

/// LISTEN for due jobs (wake the claim loop) and cancellations (stop the job if it is ours).
async fn listen(shared: Arc<Shared>, stop: CancellationToken) {
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        let mut listener = match PgListener::connect_with(shared.store.system()).await {
            Ok(l) => l,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "cannot LISTEN for jobs; polling meanwhile");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(failures.min(30) as u64)) => continue,
                }
            }
        };
        if let Err(e) = listener.listen_all([NOTIFY_CHANNEL, CANCEL_CHANNEL]).await {
            tracing::warn!(error = %e, "cannot LISTEN for jobs; polling meanwhile");
            failures += 1;
            continue;
        }
        failures = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.try_recv() => match n {
                    Ok(Some(n)) if n.channel() == CANCEL_CHANNEL => {
                        if let Ok(id) = n.payload().parse::<JobId>()
                            && let Some(a) = shared.active.lock().unwrap().get(&id)
                        {
                            a.signals.cancel();
                        }
                    }
                    Ok(Some(_)) => shared.wake.notify_one(),
                    // Reconnected: notifications may have been missed, so look now.
                    Ok(None) => shared.wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

/// Renews the leases of running jobs; tells a job when its lease is gone or it was cancelled.
async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(shared.config.heartbeat_interval) => {}
        }
        let leases: Vec<Lease> = shared
            .active
            .lock()
            .unwrap()
            .values()
            .map(|a| a.lease)
            .collect();
        if leases.is_empty() {
            last_ok = Instant::now();
            continue;
        }
        match worker::heartbeat(&shared.store, &leases, shared.config.lease).await {
            Ok(renewed) => {
                last_ok = Instant::now();
                let renewed: HashMap<JobId, bool> = renewed
                    .into_iter()
                    .map(|r| (r.job_id, r.cancel_requested))
                    .collect();
                let active = shared.active.lock().unwrap();
                for lease in &leases {
                    let Some(a) = active.get(&lease.job_id).filter(|a| a.lease == *lease) else {
                        continue;
                    };
                    match renewed.get(&lease.job_id) {
                        None if a.signals.is_finishing() => {}
                        None => {
                            tracing::warn!(job = %lease.job_id, "lost the lease of a running job; stopping it");
                            a.signals.lose();
                        }
                        Some(true) if !a.signals.is_cancelled() => a.signals.cancel(),
                        Some(_) => {}
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing leases failed");
                // Past the lease, another worker may own these jobs: stop writing.
                if last_ok.elapsed() >= shared.config.lease {
                    for a in shared.active.lock().unwrap().values() {
                        a.signals.lose();
                    }
                }
            }
        }
    }
}

/// Reaps expired leases and enqueues due schedules. Every worker does it; both are safe to
/// run concurrently.
async fn maintain(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        // Jitter so that many workers started together do not all arrive at once.
        let jitter = shared
            .config
            .maintenance_interval
            .mul_f64(rand::random_range(0.0..0.25));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(shared.config.maintenance_interval + jitter) => {}
        }
        maintain_once(&shared).await;
    }
}

/// Reaps expired leases and enqueues due schedules once; returns how many jobs that made due.
async fn maintain_once(shared: &Shared) -> usize {
    let mut due = 0;
    match worker::reap_expired(&shared.store, 500).await {
        Ok(reaped) => {
            for r in &reaped {
                tracing::warn!(job = %r.job_id, kind = %r.kind, status = %r.status, "reaped a job whose lease expired");
                match r.status {
                    JobStatus::Dead => shared.metrics.dead(&r.kind),
                    JobStatus::Queued => due += 1,
                    _ => {}
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "reaping expired leases failed"),
    }
    match schedules::enqueue_due(&shared.store, 500).await {
        Ok(created) => due += created.len(),
        Err(e) => tracing::warn!(error = %e, "enqueueing scheduled jobs failed"),
    }
    if due > 0 {
        shared.wake.notify_one();
    }
    due
}
