//! The end of a self-hosted connector's sync, run by Latchkey's worker: once every uploaded
//! batch has arrived, the result endpoint enqueues an `entra.agent_sync_finish` job (one per
//! run, by its dedupe key) and answers at once; this job runs the same sweep and expansion as
//! a hosted sync ([`super::finish_full`], with the long statement timeout of a background job,
//! not a web request's) and records the run's success. Idempotent: a run already recorded as
//! succeeded is left alone, and a retried attempt repeats only idempotent writes.

use super::{finish_full, record_success};
use latchkey_jobs::{JobClass, JobContext, JobError, JobHandler, LogLevel, NewJob};
use latchkey_store::jobs::worker;
use latchkey_store::sync_runs;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

pub const AGENT_SYNC_FINISH_JOB: &str = "entra.agent_sync_finish";

/// What the connector reported about its finished sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinishPayload {
    /// The sync run (the connector's sync task's job id).
    pub run: Uuid,
    pub stats: Value,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Grant kinds the connector could not read (not swept).
    #[serde(default)]
    pub unread: Vec<String>,
}

/// The job finishing run `p.run` of `connector`.
pub fn finish_job(connector: Uuid, p: &FinishPayload) -> NewJob {
    NewJob::new(AGENT_SYNC_FINISH_JOB, json!(p))
        .class(JobClass::Sync)
        .connector(connector)
        .dedupe_key(format!("agent-sync-finish:{}", p.run))
}

/// Runs `entra.agent_sync_finish` jobs.
#[derive(Debug, Default, Clone, Copy)]
pub struct AgentSyncFinishHandler;

impl JobHandler for AgentSyncFinishHandler {
    fn kind(&self) -> &str {
        AGENT_SYNC_FINISH_JOB
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let org = ctx
            .org()
            .ok_or_else(|| JobError::permanent("a sync belongs to an organization"))?;
        let connector = ctx
            .connector_id()
            .ok_or_else(|| JobError::permanent("a sync names its connector"))?;
        let p: FinishPayload = ctx.payload_as()?;
        let store = ctx.store();
        let mut tx = store.org_tx(org).await?;
        let run = sync_runs::get(&mut tx, p.run).await?;
        tx.commit().await?;
        if run.status == "succeeded" {
            return Ok(());
        }
        // The sync's own log (its job ended when the upload was complete) says what happens.
        let say = |level: LogLevel, message: String, fields: Value| async move {
            worker::append_log_ended(store, p.run, level, &message, &fields).await
        };
        say(
            LogLevel::Info,
            "Removing what the tenant no longer has".into(),
            json!({}),
        )
        .await?;
        let done = finish_full(store, org, connector, p.run, &p.unread).await?;
        let (message, fields) = done.describe();
        say(LogLevel::Info, message.clone(), fields.clone()).await?;
        ctx.log(LogLevel::Info, message, fields).await?;
        let mut stats = p.stats.clone();
        if let Some(obj) = stats.as_object_mut() {
            let before = obj.get("deleted").and_then(Value::as_u64).unwrap_or(0);
            obj.insert("deleted".into(), json!(before + done.deleted()));
        }
        let mut tx = store.org_tx(org).await?;
        let reason = record_success(&mut tx, connector, p.run, &stats, &p.warnings, None).await?;
        tx.commit().await?;
        say(LogLevel::Info, format!("Sync finished. {reason}"), stats).await?;
        Ok(())
    }
}
