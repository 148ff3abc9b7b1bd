//! Two workers never run the same job.

use crate::support::*;
use latchkey_jobs::queue::{self, worker};
use latchkey_jobs::{JobFilter, JobStatus, NewJob};
use latchkey_store::testing::TestDb;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[tokio::test]
async fn concurrent_claimers_never_get_the_same_job() {
    let db = TestDb::new().await;
    let store = store(&db, 12).await;
    let a = org(&store, "alpha").await;
    let mut tx = store.org_tx(a).await.unwrap();
    let jobs: Vec<NewJob> = (0..300)
        .map(|i| NewJob::new("noop", json!({"i": i})))
        .collect();
    assert_eq!(queue::enqueue_batch(&mut tx, &jobs).await.unwrap(), 300);
    tx.commit().await.unwrap();

    let mut tasks = vec![];
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let kinds = vec!["noop".to_string()];
            let id = format!("w{w}");
            let mut got = vec![];
            loop {
                let req = worker::ClaimRequest {
                    worker: &id,
                    kinds: &kinds,
                    limit: 7,
                    sync_limit: 0,
                    org_cap: 1000,
                    lease: Duration::from_secs(30),
                };
                let claimed = worker::claim(&store, &req).await.unwrap();
                if claimed.is_empty() {
                    break got;
                }
                let leases: Vec<_> = claimed.iter().map(|j| j.lease().unwrap()).collect();
                assert_eq!(
                    worker::complete(&store, &leases).await.unwrap().len(),
                    leases.len()
                );
                got.extend(claimed.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut all = vec![];
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 300, "every job claimed once");
    assert_eq!(unique.len(), 300, "no job claimed twice");
}

#[tokio::test]
async fn two_worker_processes_run_each_job_exactly_once() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let file = record_file();
    let _w1 = Worker::spawn(&db, "w1", &[]).await;
    let _w2 = Worker::spawn(&db, "w2", &[]).await;
    let mut tx = db.store.org_tx(a).await.unwrap();
    let jobs: Vec<NewJob> = (0..200)
        .map(|_| NewJob::new("test.sleep", json!({"file": file, "ms": 5, "step_ms": 5})))
        .collect();
    queue::enqueue_batch(&mut tx, &jobs).await.unwrap();
    tx.commit().await.unwrap();

    eventually(Duration::from_secs(30), "all jobs to succeed", || async {
        let mut tx = db.store.org_tx(a).await.unwrap();
        let f = JobFilter {
            status: Some(JobStatus::Succeeded),
            ..Default::default()
        };
        let mut n = 0;
        let mut cursor = None;
        loop {
            let page = queue::list(&mut tx, &f, cursor, Some(200)).await.unwrap();
            n += page.items.len();
            match page.next_cursor {
                Some(c) => cursor = Some(latchkey_store::Cursor::parse(&c).unwrap()),
                None => break,
            }
        }
        (n == 200).then_some(())
    })
    .await;

    let recs = records(&file);
    let mut starts: HashMap<&str, usize> = HashMap::new();
    let mut ends: HashMap<&str, usize> = HashMap::new();
    let mut by_worker: HashMap<&str, usize> = HashMap::new();
    for r in &recs {
        match r.event.as_str() {
            e if e.starts_with("start") => *starts.entry(&r.job).or_default() += 1,
            "end" => {
                *ends.entry(&r.job).or_default() += 1;
                *by_worker.entry(&r.worker).or_default() += 1;
            }
            other => panic!("unexpected record {other}"),
        }
    }
    assert_eq!(starts.len(), 200);
    assert!(starts.values().all(|n| *n == 1), "a job started twice");
    assert!(ends.values().all(|n| *n == 1), "a job ran twice");
    assert_eq!(by_worker.len(), 2, "both workers took part: {by_worker:?}");
}

#[tokio::test]
async fn an_idle_worker_is_woken_by_notify_not_by_polling() {
    let db = TestDb::new().await;
    let store = store(&db, 10).await;
    let a = org(&store, "alpha").await;
    let mut cfg = config("w1");
    cfg.poll_interval = Duration::from_secs(30);
    cfg.maintenance_interval = Duration::from_secs(30);
    let pool = spawn_pool(
        &store,
        cfg,
        latchkey_jobs::Registry::new().with(latchkey_jobs::NoopHandler),
    );
    // Let the first (empty) claim pass and LISTEN start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        let enqueued = std::time::Instant::now();
        let mut tx = store.org_tx(a).await.unwrap();
        let id = queue::enqueue(&mut tx, &NewJob::new("noop", json!({})))
            .await
            .unwrap()
            .job
            .id;
        tx.commit().await.unwrap();
        wait_status(&store, id, JobStatus::Succeeded, Duration::from_secs(5)).await;
        assert!(
            enqueued.elapsed() < Duration::from_secs(1),
            "took {:?}: not woken by NOTIFY",
            enqueued.elapsed()
        );
    }
    pool.stop().await;
}
