//! Graceful shutdown hands unfinished work to another worker at once.

use crate::support::*;
use latchkey_jobs::queue;
use latchkey_jobs::{JobStatus, NewJob};
use latchkey_store::testing::TestDb;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn sigterm_releases_running_jobs_for_another_worker_to_resume_immediately() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let file = record_file();
    // Leases far longer than the test: only a release can explain a quick hand-over.
    let args = [
        "--lease-ms",
        "30000",
        "--shutdown-ms",
        "1500",
        "--poll-ms",
        "5000",
    ];
    let mut w1 = Worker::spawn(&db, "w1", &args).await;
    let mut tx = db.store.org_tx(a).await.unwrap();
    let polite = queue::enqueue(
        &mut tx,
        &NewJob::new(
            "test.sleep",
            json!({"file": file, "ms": 3000, "step_ms": 100}),
        ),
    )
    .await
    .unwrap()
    .job
    .id;
    let stubborn = queue::enqueue(
        &mut tx,
        &NewJob::new(
            "test.sleep",
            json!({"file": file, "ms": 2500, "step_ms": 100, "ignore_stop": true}),
        ),
    )
    .await
    .unwrap()
    .job
    .id;
    tx.commit().await.unwrap();
    eventually(Duration::from_secs(10), "w1 to start both jobs", || async {
        (records(&file)
            .iter()
            .filter(|r| r.event.starts_with("start"))
            .count()
            == 2)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _w2 = Worker::spawn(&db, "w2", &args).await;

    let term = Instant::now();
    w1.signal("-TERM");
    let status = w1
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("w1 exits within its shutdown deadline");
    assert!(status.success());
    let exited = term.elapsed();
    assert!(
        exited >= Duration::from_millis(1400),
        "w1 did not wait for the stubborn job: {exited:?}"
    );

    // The polite job stopped at a checkpoint and went to w2 without waiting for the lease.
    let polite_job = wait_status(
        &db.store,
        polite,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    let stubborn_job = wait_status(
        &db.store,
        stubborn,
        JobStatus::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    let recs = records(&file);
    let p = polite.to_string();
    let s = stubborn.to_string();
    assert!(
        recs.iter()
            .any(|r| r.job == p && r.worker == "w1" && r.event == "stop:interrupted"),
        "{recs:?}"
    );
    let resumed = recs
        .iter()
        .find(|r| r.job == p && r.worker == "w2")
        .expect("w2 took the polite job");
    assert!(
        resumed.event.starts_with("start@") && resumed.event != "start@0",
        "resumed from the checkpoint: {recs:?}"
    );
    // A hand-over does not use up an attempt.
    assert_eq!(resumed.attempt, 1);
    assert_eq!(polite_job.attempts, 1);
    // The stubborn job was abandoned at the deadline and re-run by w2 from the start.
    assert!(
        !recs
            .iter()
            .any(|r| r.job == s && r.worker == "w1" && r.event == "end")
    );
    assert!(
        recs.iter()
            .any(|r| r.job == s && r.worker == "w2" && r.event == "end")
    );
    assert_eq!(stubborn_job.attempts, 1);
    assert_eq!(stubborn_job.locked_by, None);
    // Both finished long before a 30 s lease could have expired.
    assert!(term.elapsed() < Duration::from_secs(10));
}
