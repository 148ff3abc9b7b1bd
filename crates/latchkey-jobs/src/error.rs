//! What a job handler can return, and what can stop a worker pool.

use latchkey_store::StoreError;
use std::time::Duration;
use thiserror::Error;

/// How a job attempt ended, when it did not succeed. The variant decides what the queue does.
#[derive(Debug, Error)]
pub enum JobError {
    /// Worth retrying (network, 5xx, throttling): the job is queued again after an
    /// exponential backoff with jitter, or after `retry_after` when the remote system said
    /// how long to wait. After `max_attempts` the job is `dead`.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (bad credentials, a refused operation): the job is `failed` at
    /// once, with `message` as its reason. Write it for the person who will read it.
    #[error("{message}")]
    Permanent { message: String },
    /// The job was cancelled and the handler stopped at a checkpoint.
    #[error("the job was cancelled")]
    Cancelled,
    /// The worker is shutting down: the job goes back to the queue, without using up an
    /// attempt, for another worker to resume from its last checkpoint.
    #[error("the worker is shutting down; the job was handed back to the queue")]
    Interrupted,
    /// This worker no longer holds the job's lease (it was too slow to renew it and another
    /// worker took over). Nothing more may be written; stop.
    #[error("this worker lost the job's lease; another worker owns the job now")]
    LeaseLost,
}

impl JobError {
    pub fn transient(message: impl Into<String>) -> Self {
        JobError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A transient error with the remote system's `Retry-After` (honoured, never shortened).
    pub fn retry_after(message: impl Into<String>, after: Duration) -> Self {
        JobError::Transient {
            message: message.into(),
            retry_after: Some(after),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        JobError::Permanent {
            message: message.into(),
        }
    }

    /// True for the errors that mean "stop now" rather than "this attempt failed".
    pub fn is_stop(&self) -> bool {
        matches!(
            self,
            JobError::Cancelled | JobError::Interrupted | JobError::LeaseLost
        )
    }
}

/// Database trouble is usually passing (a restart, a failover), so it is retried; data that
/// cannot be read will not get better.
impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(_) => JobError::transient(e.operator_message()),
            other => JobError::permanent(other.to_string()),
        }
    }
}

/// A payload that does not parse will not parse next time either.
impl From<serde_json::Error> for JobError {
    fn from(e: serde_json::Error) -> Self {
        JobError::permanent(format!("the job's payload is invalid: {e}"))
    }
}

/// Why [`crate::WorkerPool::run`] could not start or finish cleanly.
#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("the worker pool has no job handlers registered")]
    NoHandlers,
    #[error(transparent)]
    Store(#[from] StoreError),
}
