//! Leases: a killed worker's job is re-run by another after the lease expires and completes
//! once; a stale worker's writes are rejected.

use crate::support::*;
use latchkey_jobs::queue::{self, worker};
use latchkey_jobs::{JobStatus, LogLevel, NewJob};
use latchkey_store::testing::TestDb;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn killed_worker_job_is_rerun_elsewhere_after_lease_expiry_and_completes_once() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let file = record_file();
    let mut w1 = Worker::spawn(&db, "w1", &["--lease-ms", "1500"]).await;
    let mut tx = db.store.org_tx(a).await.unwrap();
    let id = queue::enqueue(
        &mut tx,
        &NewJob::new(
            "test.sleep",
            json!({"file": file, "ms": 2500, "step_ms": 100}),
        ),
    )
    .await
    .unwrap()
    .job
    .id;
    tx.commit().await.unwrap();
    eventually(Duration::from_secs(10), "w1 to start the job", || async {
        records(&file)
            .iter()
            .any(|r| r.event.starts_with("start") && r.worker == "w1")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _w2 = Worker::spawn(&db, "w2", &["--lease-ms", "1500"]).await;
    let killed = Instant::now();
    w1.kill9().await;

    eventually(
        Duration::from_secs(10),
        "w2 to take the job over",
        || async {
            records(&file)
                .iter()
                .any(|r| r.event.starts_with("start") && r.worker == "w2")
                .then_some(())
        },
    )
    .await;
    let took_over_after = killed.elapsed();
    // The last heartbeat was at most a third of the lease before the kill.
    assert!(
        took_over_after >= Duration::from_millis(900),
        "taken over before the lease expired: {took_over_after:?}"
    );
    let job = wait_status(&db.store, id, JobStatus::Succeeded, Duration::from_secs(15)).await;
    assert_eq!(job.attempts, 2);

    let recs = records(&file);
    let ends: Vec<_> = recs.iter().filter(|r| r.event == "end").collect();
    assert_eq!(ends.len(), 1, "completed exactly once: {recs:?}");
    assert_eq!((ends[0].worker.as_str(), ends[0].attempt), ("w2", 2));
    // The second attempt resumed from the first one's checkpoint.
    let resumed = recs
        .iter()
        .find(|r| r.worker == "w2" && r.event.starts_with("start@"))
        .unwrap();
    assert_ne!(resumed.event, "start@0", "{recs:?}");
}

#[tokio::test]
async fn writes_with_a_lost_lease_change_nothing() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let mut tx = db.store.org_tx(a).await.unwrap();
    let id = queue::enqueue(&mut tx, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    tx.commit().await.unwrap();
    let kinds = vec!["noop".to_string()];
    let claim = |w: &'static str| {
        let store = db.store.clone();
        let kinds = kinds.clone();
        async move {
            let req = worker::ClaimRequest {
                worker: w,
                kinds: &kinds,
                limit: 1,
                sync_limit: 0,
                org_cap: 10,
                lease: Duration::from_millis(300),
            };
            worker::claim(&store, &req).await.unwrap()
        }
    };
    let stale = claim("w1").await[0].lease().unwrap();
    assert!(
        worker::append_log(&db.store, &stale, LogLevel::Info, "w1 was here", &json!({}))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reaped = worker::reap_expired(&db.store, 10).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].status, JobStatus::Queued);
    let fresh = claim("w2").await[0].lease().unwrap();
    assert_eq!(fresh.attempt, 2);

    assert!(
        !worker::append_log(&db.store, &stale, LogLevel::Info, "stale", &json!({}))
            .await
            .unwrap()
    );
    assert!(
        !worker::set_progress(&db.store, &stale, &json!({"users": 1}))
            .await
            .unwrap()
    );
    assert_eq!(
        worker::checkpoint(&db.store, &stale, Some(&json!({"page": 9})))
            .await
            .unwrap(),
        None
    );
    assert!(
        worker::heartbeat(&db.store, &[stale], Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        worker::complete(&db.store, &[stale])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        worker::retry_later(&db.store, &stale, Duration::ZERO, "stale")
            .await
            .unwrap(),
        None
    );
    assert!(
        !worker::finish(&db.store, &stale, JobStatus::Failed, Some("stale"))
            .await
            .unwrap()
    );
    assert_eq!(worker::release(&db.store, &[stale]).await.unwrap(), 0);

    let job = job(&db.store, id).await;
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(job.locked_by.as_deref(), Some("w2"));
    assert_eq!(job.progress, None);
    assert_eq!(job.checkpoint, None);
    assert!(
        worker::set_progress(&db.store, &fresh, &json!({"users": 2}))
            .await
            .unwrap()
    );
    assert_eq!(
        worker::complete(&db.store, &[fresh]).await.unwrap(),
        vec![id]
    );
    let logs = queue::logs_any(&db.store, id, None, None).await.unwrap();
    assert_eq!(
        logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["w1 was here"]
    );
}

#[tokio::test]
async fn a_paused_worker_resuming_after_losing_its_lease_cannot_overwrite_the_new_owner() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let file = record_file();
    let w1 = Worker::spawn(&db, "w1", &["--lease-ms", "1000"]).await;
    let mut tx = db.store.org_tx(a).await.unwrap();
    let id = queue::enqueue(
        &mut tx,
        &NewJob::new(
            "test.sleep",
            json!({"file": file, "ms": 2500, "step_ms": 100}),
        ),
    )
    .await
    .unwrap()
    .job
    .id;
    tx.commit().await.unwrap();
    eventually(Duration::from_secs(10), "w1 to start", || async {
        records(&file)
            .iter()
            .any(|r| r.worker == "w1")
            .then_some(())
    })
    .await;
    // A stop-the-world pause (GC, VM migration, network partition) longer than the lease.
    w1.signal("-STOP");
    let _w2 = Worker::spawn(&db, "w2", &["--lease-ms", "1000"]).await;
    eventually(Duration::from_secs(10), "w2 to take over", || async {
        records(&file)
            .iter()
            .any(|r| r.worker == "w2")
            .then_some(())
    })
    .await;
    w1.signal("-CONT");
    let job = wait_status(&db.store, id, JobStatus::Succeeded, Duration::from_secs(15)).await;
    eventually(
        Duration::from_secs(5),
        "w1 to notice it lost the lease",
        || async {
            records(&file)
                .iter()
                .any(|r| r.worker == "w1" && r.event.starts_with("stop:"))
                .then_some(())
        },
    )
    .await;
    let recs = records(&file);
    assert!(
        !recs.iter().any(|r| r.worker == "w1" && r.event == "end"),
        "{recs:?}"
    );
    assert_eq!(recs.iter().filter(|r| r.event == "end").count(), 1);
    assert!(
        recs.iter()
            .any(|r| r.worker == "w1" && r.event == "stop:lease_lost"),
        "{recs:?}"
    );
    // The record is the new owner's.
    assert_eq!(job.progress, Some(json!({"done_ms": 2500})));
    assert_eq!(job.checkpoint, Some(json!({"done_ms": 2500})));
}

#[tokio::test]
async fn heartbeats_keep_a_job_longer_than_its_lease_with_its_worker() {
    let db = TestDb::new().await;
    let store = store(&db, 10).await;
    let a = org(&store, "alpha").await;
    let file = record_file();
    // Two pools: if heartbeats failed, the other pool's reaper would hand the job over.
    let pools = [
        spawn_pool(
            &store,
            config("w1").lease(Duration::from_millis(600)),
            latchkey_jobs::testkit::registry(),
        ),
        spawn_pool(
            &store,
            config("w2").lease(Duration::from_millis(600)),
            latchkey_jobs::testkit::registry(),
        ),
    ];
    let mut tx = store.org_tx(a).await.unwrap();
    let id = queue::enqueue(
        &mut tx,
        &NewJob::new(
            "test.sleep",
            json!({"file": file, "ms": 2400, "step_ms": 100}),
        ),
    )
    .await
    .unwrap()
    .job
    .id;
    tx.commit().await.unwrap();
    let job = wait_status(&store, id, JobStatus::Succeeded, Duration::from_secs(10)).await;
    for p in pools {
        p.stop().await;
    }
    assert_eq!(
        job.attempts, 1,
        "the job was reaped while its worker was alive"
    );
    let recs = records(&file);
    assert_eq!(recs.len(), 2, "{recs:?}");
}
