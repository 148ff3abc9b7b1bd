//! The lifecycle's job handlers: `access.advance` (one request, scheduled for the moment
//! something is due) and `access.sweep` (a system schedule that catches up on anything
//! overdue, e.g. expiries missed while no worker ran).

use crate::config::AccessConfig;
use crate::error::AccessError;
use crate::lifecycle::{self, Advanced};
use latchkey_jobs::{JobContext, JobError, JobHandler, LogLevel};
use latchkey_store::jobs::JobClass;
use latchkey_store::jobs::schedules::{self, NewSchedule, Schedule};
use latchkey_store::{Store, StoreError};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

pub const ADVANCE_JOB: &str = "access.advance";
pub const SWEEP_JOB: &str = "access.sweep";

fn job_error(e: AccessError) -> JobError {
    match e {
        AccessError::Store(e) => JobError::from(e),
        other => JobError::permanent(other.to_string()),
    }
}

#[derive(Deserialize)]
struct AdvancePayload {
    request_id: Uuid,
}

/// Runs `access.advance` jobs.
pub struct AdvanceHandler {
    config: AccessConfig,
}

impl AdvanceHandler {
    pub fn new(config: AccessConfig) -> Self {
        Self { config }
    }
}

impl JobHandler for AdvanceHandler {
    fn kind(&self) -> &str {
        ADVANCE_JOB
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let org = ctx
            .org()
            .ok_or_else(|| JobError::permanent("an access request belongs to an organization"))?;
        let p: AdvancePayload = ctx.payload_as()?;
        let done = lifecycle::advance(ctx.store(), &self.config, org, p.request_id)
            .await
            .map_err(job_error)?;
        if let Advanced::Moved(state) = done {
            ctx.log(
                LogLevel::Info,
                format!("access request is now {state}"),
                json!({"request_id": p.request_id, "state": state}),
            )
            .await?;
        }
        Ok(())
    }
}

/// Runs the `access.sweep` schedule.
pub struct SweepHandler {
    config: AccessConfig,
}

impl SweepHandler {
    pub fn new(config: AccessConfig) -> Self {
        Self { config }
    }

    /// Installs (or updates) the system schedule that runs the sweep.
    pub async fn install_schedule(
        store: &Store,
        config: &AccessConfig,
    ) -> Result<Schedule, StoreError> {
        schedules::upsert_system(
            store,
            &NewSchedule::new(SWEEP_JOB, SWEEP_JOB, config.sweep_every).class(JobClass::Provision),
        )
        .await
    }
}

impl JobHandler for SweepHandler {
    fn kind(&self) -> &str {
        SWEEP_JOB
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let n = lifecycle::sweep(ctx.store(), &self.config)
            .await
            .map_err(job_error)?;
        if n > 0 {
            ctx.log(
                LogLevel::Info,
                "advanced access requests with something due",
                json!({"requests": n}),
            )
            .await?;
        }
        Ok(())
    }
}
