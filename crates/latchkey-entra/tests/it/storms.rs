//! The tenant misbehaving for longer than one attempt of a sync may wait: a storm of 429s, then
//! of 503/504s, then requests that time out, with tokens expiring every two seconds throughout.
//! Each storm ends an attempt (the connector says the sync will resume), the queue retries the
//! job from its checkpoint, and once the tenant behaves the sync stores the ground truth.
//! Shorter bursts that one attempt rides out are `sync::faults_throttling_...`.

use crate::sync::{Env, Tweaks, assert_same};
use latchkey_entra::OutboundPolicy;
use latchkey_entra::RetryPolicy;
use latchkey_entra::sync::{SyncHandler, SyncKind, SyncOptions, request_sync};
use latchkey_entra_sim::{Faults, SimConfig, Throttle};
use latchkey_jobs::{Backoff, Registry, WorkerConfig, WorkerPool};
use latchkey_store::jobs::{self, JobId};
use latchkey_store::sync_runs;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One attempt gives up quickly: three tries per request, a 1.5 s waiting budget, 300 ms
/// per request.
fn impatient() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        max_throttled_attempts: 3,
        retry_budget: Duration::from_millis(1500),
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        attempt_timeout: Duration::from_millis(300),
    }
}

async fn logs(env: &Env, job: Uuid) -> Vec<String> {
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let l = jobs::logs(&mut tx, JobId(job), None, Some(1000))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    l.into_iter().map(|l| l.message).collect()
}

async fn job(env: &Env, id: Uuid) -> jobs::Job {
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let j = jobs::get(&mut tx, JobId(id)).await.unwrap();
    tx.commit().await.unwrap();
    j
}

/// Waits until the job's log has a line containing `text` (a storm ended an attempt).
async fn attempt_ended_by(env: &Env, id: Uuid, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = logs(env, id).await;
        if l.iter().any(|m| m.contains(text)) {
            return;
        }
        let j = job(env, id).await;
        assert!(
            Instant::now() < deadline
                && matches!(j.status, jobs::JobStatus::Running | jobs::JobStatus::Queued),
            "no attempt ended with {text:?}; job {:?}, log {l:?}",
            j.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_of_429_503_and_timeouts_end_attempts_and_the_sync_still_stores_the_ground_truth() {
    let mut cfg = SimConfig::small(21);
    cfg.faults = Faults {
        token_lifetime_secs: 2,
        latency_ms: 15,
        ..Faults::default()
    };
    let env = Env::new(cfg).await;
    let c = env.connector(&Tweaks::default()).await;
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let (id, _) = request_sync(&mut tx, c, SyncKind::Full, "test")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Room for every storm to cost an attempt or two.
    sqlx::query("UPDATE jobs SET max_attempts = 12 WHERE id = $1")
        .bind(id)
        .execute(env.store().system())
        .await
        .unwrap();

    let handler = SyncHandler::new(env.keys.clone(), None, OutboundPolicy::INSECURE_DEV)
        .with_options(SyncOptions {
            concurrency: 3,
            delta_page: 4,
            retry: impatient(),
            ..SyncOptions::default()
        });
    let mut wc = WorkerConfig::new("stormy");
    wc.poll_interval = Duration::from_millis(50);
    wc.backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_millis(300),
    };
    let stop = CancellationToken::new();
    let pool = WorkerPool::new(env.store().clone(), wc, Registry::new().with(handler));
    let worker = tokio::spawn(pool.run(stop.clone()));

    // The sync gets going, then the storms come one after the other.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let cp = job(&env, id).await.checkpoint.unwrap_or(Value::Null);
        if cp["done"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the sync never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    env.sim.update_faults(|f| {
        f.throttle = Throttle::EveryN { n: 1 };
        f.retry_after_secs = 0.1;
    });
    attempt_ended_by(&env, id, "kept throttling").await;
    let reason = env.connector_row(c).await.status_reason.unwrap_or_default();
    assert!(
        reason.starts_with("The sync hit a temporary problem and will resume"),
        "{reason}"
    );
    env.sim.update_faults(|f| {
        f.throttle = Throttle::Off;
        f.transient_rate = 1.0;
        f.retry_after_secs = 0.02;
    });
    attempt_ended_by(&env, id, "temporarily unavailable (HTTP 50").await;
    env.sim.update_faults(|f| {
        f.transient_rate = 0.0;
        f.latency_ms = 1000;
    });
    attempt_ended_by(&env, id, "timed out").await;
    let stormy = started.elapsed();
    env.sim.update_faults(|f| f.latency_ms = 15);

    let deadline = Instant::now() + Duration::from_secs(90);
    let run = loop {
        let mut tx = env.store().org_tx(env.org).await.unwrap();
        let run = sync_runs::get(&mut tx, id).await.unwrap();
        tx.commit().await.unwrap();
        if run.status != "running" {
            break run;
        }
        assert!(Instant::now() < deadline, "the sync never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let total = started.elapsed();
    stop.cancel();
    worker.await.unwrap().unwrap();
    let j = job(&env, id).await;
    let l = logs(&env, id).await;
    assert_eq!(run.status, "succeeded", "{run:?} {l:?}");
    assert_eq!(j.status, jobs::JobStatus::Succeeded);
    assert!(
        j.attempts >= 4,
        "three storms, three attempts ended: {}",
        j.attempts
    );
    let resumed = l
        .iter()
        .filter(|m| m.starts_with("Resuming the full sync with") && !m.contains("with 0 of"))
        .count();
    assert!(
        resumed >= 3,
        "each retry resumed from the checkpoint: {l:?}"
    );
    assert_same(&env.stored(c).await, &env.expected(false).await);
    assert_eq!(env.connector_row(c).await.status, "connected");
    eprintln!(
        "storms: {} attempts; storms over after {stormy:?}, sync done {total:?} after the first",
        j.attempts
    );
}
