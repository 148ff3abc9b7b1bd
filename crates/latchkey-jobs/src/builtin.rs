//! Handlers every worker can run: `noop` (benchmarks, smoke tests) and `housekeeping`.

use crate::{JobContext, JobError, JobHandler};
use latchkey_store::Store;
use latchkey_store::jobs::schedules::{self, NewSchedule, Schedule};
use latchkey_store::jobs::{JobClass, LogLevel, worker};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// Does nothing and succeeds: measures the queue itself.
pub struct NoopHandler;

impl JobHandler for NoopHandler {
    fn kind(&self) -> &str {
        "noop"
    }
    async fn run(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// Deletes finished jobs (and their logs) older than the retention, in batches, so the queue
/// table stays small. Payload: `{"retain_days": 30}` (optional).
pub struct HousekeepingHandler {
    pub default_retention: Duration,
}

impl Default for HousekeepingHandler {
    fn default() -> Self {
        Self {
            default_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Deserialize)]
struct HousekeepingPayload {
    retain_days: Option<f64>,
}

impl HousekeepingHandler {
    pub const KIND: &'static str = "housekeeping";

    /// Installs (or updates) the hourly system schedule that runs this handler.
    pub async fn install_schedule(store: &Store) -> Result<Schedule, latchkey_store::StoreError> {
        schedules::upsert_system(
            store,
            &NewSchedule::new("housekeeping", Self::KIND, Duration::from_secs(3600))
                .class(JobClass::Other),
        )
        .await
    }
}

impl JobHandler for HousekeepingHandler {
    fn kind(&self) -> &str {
        Self::KIND
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let p: HousekeepingPayload = ctx.payload_as()?;
        let retention = p
            .retain_days
            .map(|d| Duration::from_secs_f64(d.max(0.0) * 86400.0))
            .unwrap_or(self.default_retention);
        let mut deleted = 0u64;
        loop {
            let n = worker::prune_finished(ctx.store(), retention, 1000).await?;
            deleted += n;
            ctx.checkpoint(json!({"deleted": deleted})).await?;
            if n < 1000 {
                break;
            }
        }
        ctx.log(
            LogLevel::Info,
            "deleted finished jobs past their retention",
            json!({"deleted": deleted, "retention_secs": retention.as_secs()}),
        )
        .await
    }
}
