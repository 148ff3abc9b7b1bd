//! Cancellation: queued jobs never run; running jobs stop at their next checkpoint.

use crate::support::*;
use latchkey_jobs::queue;
use latchkey_jobs::testkit;
use latchkey_jobs::{JobStatus, NewJob};
use latchkey_store::testing::TestDb;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_cancelled_queued_job_never_runs() {
    let db = TestDb::new().await;
    let store = store(&db, 10).await;
    let a = org(&store, "alpha").await;
    let file = record_file();
    let mut tx = store.org_tx(a).await.unwrap();
    let id = queue::enqueue(
        &mut tx,
        &NewJob::new("test.sleep", json!({"file": file, "ms": 10})),
    )
    .await
    .unwrap()
    .job
    .id;
    let other = queue::enqueue(
        &mut tx,
        &NewJob::new("test.sleep", json!({"file": file, "ms": 10})),
    )
    .await
    .unwrap()
    .job
    .id;
    let job = queue::cancel(&mut tx, id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(job.finished_at.is_some());
    let pool = spawn_pool(&store, config("w1"), testkit::registry());
    wait_status(&store, other, JobStatus::Succeeded, Duration::from_secs(10)).await;
    pool.stop().await;
    assert_eq!(job_status(&store, id).await, JobStatus::Cancelled);
    assert!(records(&file).iter().all(|r| r.job != id.to_string()));
}

async fn job_status(store: &latchkey_store::Store, id: latchkey_jobs::JobId) -> JobStatus {
    job(store, id).await.status
}

#[tokio::test]
async fn a_running_job_stops_at_its_next_checkpoint() {
    let db = TestDb::new().await;
    let store = store(&db, 10).await;
    let a = org(&store, "alpha").await;
    let file = record_file();
    // A long lease and heartbeat: the cancellation must arrive through NOTIFY or the checkpoint.
    let mut cfg = config("w1").lease(Duration::from_secs(30));
    cfg.heartbeat_interval = Duration::from_secs(10);
    let pool = spawn_pool(&store, cfg, testkit::registry());
    let mut tx = store.org_tx(a).await.unwrap();
    let id = queue::enqueue(
        &mut tx,
        &NewJob::new(
            "test.sleep",
            json!({"file": file, "ms": 10000, "step_ms": 100}),
        ),
    )
    .await
    .unwrap()
    .job
    .id;
    tx.commit().await.unwrap();
    eventually(Duration::from_secs(10), "the job to start", || async {
        (!records(&file).is_empty()).then_some(())
    })
    .await;

    let asked = Instant::now();
    let mut tx = store.org_tx(a).await.unwrap();
    let running = queue::cancel(&mut tx, id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(running.status, JobStatus::Running);
    assert!(running.cancel_requested_at.is_some());
    let job = wait_status(&store, id, JobStatus::Cancelled, Duration::from_secs(5)).await;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "took {:?} to stop",
        asked.elapsed()
    );
    pool.stop().await;
    assert!(job.finished_at.is_some() && job.locked_by.is_none());
    let recs = records(&file);
    assert!(recs.iter().any(|r| r.event == "stop:cancelled"), "{recs:?}");
    assert!(!recs.iter().any(|r| r.event == "end"));
}
