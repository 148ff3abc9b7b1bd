//! What a running job sees: its ids and payload, fenced writes, and the signals to stop.

use crate::JobError;
use latchkey_core::OrgId;
use latchkey_store::Store;
use latchkey_store::jobs::{Job, JobId, Lease, LogLevel, worker};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use uuid::Uuid;

/// Why a running job should stop; set by the pool, read at checkpoints.
#[derive(Default)]
pub(crate) struct Signals {
    stop: CancellationToken,
    cancelled: AtomicBool,
    shutdown: AtomicBool,
    lost: AtomicBool,
    /// The handler returned and the outcome is being written: a lease that vanishes now was
    /// released by that write, not lost.
    finishing: AtomicBool,
}

impl Signals {
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }
    pub(crate) fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }
    pub(crate) fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }
    pub(crate) fn finishing(&self) {
        self.finishing.store(true, Ordering::SeqCst);
    }
    pub(crate) fn is_finishing(&self) -> bool {
        self.finishing.load(Ordering::SeqCst)
    }
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
    /// The reason to stop, most final first: a lost lease forbids writing at all, a
    /// cancellation ends the job, a shutdown hands it over.
    fn check(&self) -> Result<(), JobError> {
        if self.lost.load(Ordering::SeqCst) {
            Err(JobError::LeaseLost)
        } else if self.cancelled.load(Ordering::SeqCst) {
            Err(JobError::Cancelled)
        } else if self.shutdown.load(Ordering::SeqCst) {
            Err(JobError::Interrupted)
        } else {
            Ok(())
        }
    }
}

/// The running job, handed to [`crate::JobHandler::run`]. Cheap to clone (for sub-tasks).
///
/// Every write through it is fenced by the attempt's lease: once another worker owns the job,
/// writes fail with [`JobError::LeaseLost`] and change nothing.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    job: Job,
    lease: Lease,
    worker_id: String,
    signals: Arc<Signals>,
}

impl JobContext {
    pub(crate) fn new(
        store: Store,
        job: Job,
        lease: Lease,
        worker_id: String,
        signals: Arc<Signals>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                job,
                lease,
                worker_id,
                signals,
            }),
        }
    }

    pub fn id(&self) -> JobId {
        self.inner.job.id
    }
    /// `None` for system jobs.
    pub fn org(&self) -> Option<OrgId> {
        self.inner.job.org_id
    }
    pub fn connector_id(&self) -> Option<Uuid> {
        self.inner.job.connector_id
    }
    pub fn kind(&self) -> &str {
        &self.inner.job.kind
    }
    pub fn payload(&self) -> &Value {
        &self.inner.job.payload
    }
    /// The payload as a typed value; a payload that does not parse is a permanent error.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        Ok(T::deserialize(&self.inner.job.payload)?)
    }
    /// This attempt's number, from 1.
    pub fn attempt(&self) -> i32 {
        self.inner.lease.attempt
    }
    pub fn max_attempts(&self) -> i32 {
        self.inner.job.max_attempts
    }
    /// What an earlier attempt saved with [`JobContext::checkpoint`]: resume from here.
    pub fn saved_checkpoint(&self) -> Option<&Value> {
        self.inner.job.checkpoint.as_ref()
    }
    /// The job as claimed (status `running`).
    pub fn job(&self) -> &Job {
        &self.inner.job
    }
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn lease(&self) -> Lease {
        self.inner.lease
    }

    /// Appends a structured log line, readable by the UI while the job runs.
    pub async fn log(
        &self,
        level: LogLevel,
        message: impl AsRef<str>,
        fields: Value,
    ) -> Result<(), JobError> {
        self.ensure_owned()?;
        let written = worker::append_log(
            &self.inner.store,
            &self.inner.lease,
            level,
            message.as_ref(),
            &fields,
        )
        .await?;
        self.fenced(written)
    }

    /// [`JobContext::log`] at info level without fields.
    pub async fn info(&self, message: impl AsRef<str>) -> Result<(), JobError> {
        self.log(LogLevel::Info, message, Value::Object(Default::default()))
            .await
    }

    /// Replaces the job's progress, e.g. `{"users": 5000}`.
    pub async fn progress(&self, progress: Value) -> Result<(), JobError> {
        self.ensure_owned()?;
        let written = worker::set_progress(&self.inner.store, &self.inner.lease, &progress).await?;
        self.fenced(written)
    }

    /// Saves `state` for a later attempt to resume from, then says whether to go on.
    /// `Err(Cancelled | Interrupted | LeaseLost)` means stop now: return the error.
    pub async fn checkpoint(&self, state: Value) -> Result<(), JobError> {
        self.ensure_owned()?;
        self.checkpoint_inner(Some(&state)).await
    }

    /// Asks the database whether to go on, without saving anything. Catches a cancellation
    /// even before the next heartbeat brings it.
    pub async fn check_in(&self) -> Result<(), JobError> {
        self.ensure_owned()?;
        self.checkpoint_inner(None).await
    }

    /// Whether to go on, from what this worker already knows (no database round trip).
    pub fn check(&self) -> Result<(), JobError> {
        self.inner.signals.check()
    }

    /// Completes when the job should stop (cancelled, shutting down, lease lost). Use it in
    /// `tokio::select!` around long waits, such as sleeping out a `Retry-After`.
    pub fn stopped(&self) -> WaitForCancellationFuture<'_> {
        self.inner.signals.stop.cancelled()
    }

    async fn checkpoint_inner(&self, state: Option<&Value>) -> Result<(), JobError> {
        match worker::checkpoint(&self.inner.store, &self.inner.lease, state).await? {
            None => {
                self.inner.signals.lose();
                Err(JobError::LeaseLost)
            }
            Some(true) => {
                self.inner.signals.cancel();
                Err(JobError::Cancelled)
            }
            Some(false) => self.inner.signals.check(),
        }
    }

    fn ensure_owned(&self) -> Result<(), JobError> {
        if self.inner.signals.is_lost() {
            Err(JobError::LeaseLost)
        } else {
            Ok(())
        }
    }

    fn fenced(&self, written: bool) -> Result<(), JobError> {
        if written {
            Ok(())
        } else {
            self.inner.signals.lose();
            Err(JobError::LeaseLost)
        }
    }
}
