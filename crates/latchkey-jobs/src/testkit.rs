//! Handlers for this crate's tests, test worker and benchmark (feature `testkit`). They
//! record what they do in an append-only file named by the payload, the way an external
//! system would see it, independently of the queue's own tables.

use crate::{JobContext, JobError, JobHandler};
use serde::Deserialize;
use serde_json::json;
use std::io::Write;
use std::time::Duration;

/// Appends `<event> <job id> <worker id> <attempt>` to `file`; one `write` per line, so lines
/// from several processes never interleave.
pub fn record(file: &str, event: &str, ctx: &JobContext) {
    let line = format!(
        "{event} {} {} {}\n",
        ctx.id(),
        ctx.worker_id(),
        ctx.attempt()
    );
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .expect("test record file");
    f.write_all(line.as_bytes()).expect("test record write");
}

#[derive(Deserialize)]
struct SleepPayload {
    file: Option<String>,
    /// Total work time.
    ms: u64,
    /// Work in steps of this long; after each step, checkpoint (unless `ignore_stop`).
    #[serde(default = "default_step")]
    step_ms: u64,
    /// Keep working through cancellation and shutdown (a handler that never checkpoints).
    #[serde(default)]
    ignore_stop: bool,
}

fn default_step() -> u64 {
    50
}

/// `test.sleep`: works for `ms` in steps, checkpointing `{"done_ms": ..}` and resuming from a
/// saved checkpoint. Records `start`, `stop:<reason>` and `end`.
pub struct SleepHandler;

impl JobHandler for SleepHandler {
    fn kind(&self) -> &str {
        "test.sleep"
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let p: SleepPayload = ctx.payload_as()?;
        let rec = |event: &str| {
            if let Some(f) = &p.file {
                record(f, event, ctx);
            }
        };
        let mut done = ctx
            .saved_checkpoint()
            .and_then(|c| c["done_ms"].as_u64())
            .unwrap_or(0);
        rec(&format!("start@{done}"));
        while done < p.ms {
            let step = p.step_ms.min(p.ms - done);
            tokio::time::sleep(Duration::from_millis(step)).await;
            done += step;
            if p.ignore_stop {
                continue;
            }
            if let Err(e) = ctx.checkpoint(json!({"done_ms": done})).await {
                let reason = match &e {
                    JobError::Cancelled => "cancelled",
                    JobError::Interrupted => "interrupted",
                    JobError::LeaseLost => "lease_lost",
                    _ => "error",
                };
                rec(&format!("stop:{reason}"));
                return Err(e);
            }
            if let Err(e) = ctx.progress(json!({"done_ms": done})).await {
                rec("stop:progress_rejected");
                return Err(e);
            }
        }
        rec("end");
        Ok(())
    }
}

#[derive(Deserialize)]
struct FailPayload {
    file: Option<String>,
    /// Fail transiently on the first this-many attempts, then succeed.
    #[serde(default)]
    transient_times: i32,
    retry_after_ms: Option<u64>,
    #[serde(default)]
    permanent: bool,
}

/// `test.fail`: fails as told, recording each attempt as `attempt`.
pub struct FailHandler;

impl JobHandler for FailHandler {
    fn kind(&self) -> &str {
        "test.fail"
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let p: FailPayload = ctx.payload_as()?;
        if let Some(f) = &p.file {
            record(f, "attempt", ctx);
        }
        if p.permanent {
            return Err(JobError::permanent(
                "The remote system refused the operation for good.",
            ));
        }
        if ctx.attempt() <= p.transient_times {
            return Err(match p.retry_after_ms {
                Some(ms) => JobError::retry_after("throttled", Duration::from_millis(ms)),
                None => JobError::transient("the remote system answered 503"),
            });
        }
        Ok(())
    }
}

/// A registry with the test handlers and the built-ins.
pub fn registry() -> crate::Registry {
    crate::Registry::new()
        .with(SleepHandler)
        .with(FailHandler)
        .with(crate::NoopHandler)
        .with(crate::HousekeepingHandler::default())
}
