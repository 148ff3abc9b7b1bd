//! Retries: exponential backoff with jitter, `Retry-After`, dead-lettering, permanent errors.

use crate::support::*;
use latchkey_jobs::queue;
use latchkey_jobs::testkit::FailHandler;
use latchkey_jobs::{JobContext, JobError, JobHandler, JobStatus, NewJob, Outcome, Registry};
use latchkey_store::testing::TestDb;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Fails transiently (with an optional hint) on the first `fail_times` attempts and records
/// when each attempt started.
struct Flaky {
    starts: Arc<Mutex<Vec<Instant>>>,
    fail_times: i32,
    hint: Option<Duration>,
}

impl JobHandler for Flaky {
    fn kind(&self) -> &str {
        "flaky"
    }
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        self.starts.lock().unwrap().push(Instant::now());
        if ctx.attempt() <= self.fail_times {
            return Err(match self.hint {
                Some(h) => JobError::retry_after("429 Too Many Requests", h),
                None => JobError::transient("503 Service Unavailable"),
            });
        }
        Ok(())
    }
}

fn gaps(starts: &[Instant]) -> Vec<Duration> {
    starts.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn transient_errors_back_off_exponentially_with_jitter() {
    let db = TestDb::new().await;
    let store = store(&db, 10).await;
    let a = org(&store, "alpha").await;
    let starts = Arc::new(Mutex::new(vec![]));
    let mut cfg = config("w1");
    cfg.backoff.base = Duration::from_millis(200);
    cfg.poll_interval = Duration::from_millis(20);
    let pool = spawn_pool(
        &store,
        cfg,
        Registry::new().with(Flaky {
            starts: starts.clone(),
            fail_times: 3,
            hint: None,
        }),
    );
    let mut tx = store.org_tx(a).await.unwrap();
    let id = queue::enqueue(&mut tx, &NewJob::new("flaky", json!({})).max_attempts(5))
        .await
        .unwrap()
        .job
        .id;
    tx.commit().await.unwrap();
    let job = wait_status(&store, id, JobStatus::Succeeded, Duration::from_secs(10)).await;
    pool.stop().await;
    assert_eq!(job.attempts, 4);
    assert_eq!(job.last_error.as_deref(), Some("503 Service Unavailable"));
    let gaps = gaps(&starts.lock().unwrap());
    assert_eq!(gaps.len(), 3);
    for (i, gap) in gaps.iter().enumerate() {
        let ceiling = Duration::from_millis(200 << i);
        // Equal jitter: at least half the exponential delay; at most all of it plus pickup.
        assert!(
            *gap >= ceiling / 2,
            "retry {} came after {gap:?}, before {:?}",
            i + 1,
            ceiling / 2
        );
        assert!(
            *gap <= ceiling + Duration::from_millis(400),
            "retry {} came after {gap:?}, ceiling {ceiling:?}",
            i + 1
        );
    }
    // The failures were logged for the UI.
    let logs = queue::logs_any(&store, id, None, None).await.unwrap();
    assert_eq!(logs.len(), 3);
    assert!(
        logs.iter()
            .all(|l| l.message == "503 Service Unavailable" && l.fields["retry_in_ms"].is_u64())
    );
}

#[tokio::test]
async fn a_retry_after_hint_is_honoured() {
    let db = TestDb::new().await;
    let store = store(&db, 10).await;
    let a = org(&store, "alpha").await;
    let starts = Arc::new(Mutex::new(vec![]));
    let mut cfg = config("w1");
    cfg.backoff.base = Duration::from_millis(10);
    cfg.poll_interval = Duration::from_millis(20);
    let hint = Duration::from_millis(800);
    let pool = spawn_pool(
        &store,
        cfg,
        Registry::new().with(Flaky {
            starts: starts.clone(),
            fail_times: 1,
            hint: Some(hint),
        }),
    );
    let mut tx = store.org_tx(a).await.unwrap();
    let id = queue::enqueue(&mut tx, &NewJob::new("flaky", json!({})))
        .await
        .unwrap()
        .job
        .id;
    tx.commit().await.unwrap();
    wait_status(&store, id, JobStatus::Succeeded, Duration::from_secs(10)).await;
    pool.stop().await;
    let gaps = gaps(&starts.lock().unwrap());
    assert!(
        gaps[0] >= hint,
        "retried after {:?}, before the {hint:?} asked for",
        gaps[0]
    );
    assert!(
        gaps[0] <= hint.mul_f64(1.1) + Duration::from_millis(500),
        "{:?}",
        gaps[0]
    );
}

#[tokio::test]
async fn out_of_attempts_is_dead_and_permanent_errors_fail_at_once() {
    let db = TestDb::new().await;
    let store = store(&db, 10).await;
    let a = org(&store, "alpha").await;
    let file = record_file();
    let mut cfg = config("w1");
    cfg.backoff.base = Duration::from_millis(20);
    cfg.poll_interval = Duration::from_millis(20);
    let pool_registry = Registry::new().with(FailHandler);
    let pool = latchkey_jobs::WorkerPool::new(store.clone(), cfg, pool_registry);
    let metrics = pool.metrics();
    let stop = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(pool.run(stop.clone()));

    let mut tx = store.org_tx(a).await.unwrap();
    let doomed = queue::enqueue(
        &mut tx,
        &NewJob::new("test.fail", json!({"file": file, "transient_times": 100})).max_attempts(3),
    )
    .await
    .unwrap()
    .job
    .id;
    let refused = queue::enqueue(
        &mut tx,
        &NewJob::new("test.fail", json!({"file": file, "permanent": true})).max_attempts(5),
    )
    .await
    .unwrap()
    .job
    .id;
    tx.commit().await.unwrap();

    let dead = wait_status(&store, doomed, JobStatus::Dead, Duration::from_secs(10)).await;
    assert_eq!(dead.attempts, 3);
    assert_eq!(
        dead.last_error.as_deref(),
        Some("the remote system answered 503")
    );
    assert!(dead.finished_at.is_some() && dead.locked_by.is_none());
    let failed = wait_status(&store, refused, JobStatus::Failed, Duration::from_secs(10)).await;
    assert_eq!(failed.attempts, 1);
    assert_eq!(
        failed.last_error.as_deref(),
        Some("The remote system refused the operation for good.")
    );

    // Nothing runs again once final.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recs = records(&file);
    assert_eq!(
        recs.iter().filter(|r| r.job == doomed.to_string()).count(),
        3
    );
    assert_eq!(
        recs.iter().filter(|r| r.job == refused.to_string()).count(),
        1
    );
    assert_eq!(metrics.count(Outcome::Dead), 1);
    assert_eq!(metrics.count(Outcome::Retried), 2);
    assert_eq!(metrics.count(Outcome::Failed), 1);
    let mut out = String::new();
    metrics.render(&mut out);
    assert!(
        out.contains("latchkey_worker_jobs_dead_total{kind=\"test.fail\"} 1\n"),
        "{out}"
    );
    stop.cancel();
    handle.await.unwrap().unwrap();
}

struct Panics;

impl JobHandler for Panics {
    fn kind(&self) -> &str {
        "panics"
    }
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        if ctx.attempt() == 1 {
            panic!("index out of bounds");
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_panicking_handler_is_retried_not_lost() {
    let db = TestDb::new().await;
    let store = store(&db, 10).await;
    let a = org(&store, "alpha").await;
    let mut cfg = config("w1");
    cfg.poll_interval = Duration::from_millis(20);
    let pool = spawn_pool(&store, cfg, Registry::new().with(Panics));
    let mut tx = store.org_tx(a).await.unwrap();
    let id = queue::enqueue(&mut tx, &NewJob::new("panics", json!({})))
        .await
        .unwrap()
        .job
        .id;
    tx.commit().await.unwrap();
    let job = wait_status(&store, id, JobStatus::Succeeded, Duration::from_secs(10)).await;
    pool.stop().await;
    assert_eq!(job.attempts, 2);
    assert_eq!(
        job.last_error.as_deref(),
        Some("the job handler panicked: index out of bounds")
    );
}
