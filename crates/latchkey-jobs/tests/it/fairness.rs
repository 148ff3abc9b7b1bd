//! Fairness and exclusion: one running sync per connector, the per-organization cap,
//! provisioning before (and never starved by) syncs.

use crate::support::*;
use latchkey_jobs::queue::{self, worker};
use latchkey_jobs::{JobClass, JobContext, JobError, JobHandler, JobStatus, NewJob, Registry};
use latchkey_store::testing::TestDb;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Tracks how many jobs run at once per group (connector or organization) and the order
/// jobs started in.
#[derive(Default)]
struct Tracker {
    running: HashMap<String, usize>,
    max: HashMap<String, usize>,
    started: Vec<(String, Instant)>,
}

struct Tracked {
    kind: &'static str,
    tracker: Arc<Mutex<Tracker>>,
    group_by_org: bool,
}

impl JobHandler for Tracked {
    fn kind(&self) -> &str {
        self.kind
    }
    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let group = if self.group_by_org {
            ctx.org().unwrap().to_string()
        } else {
            ctx.connector_id()
                .map(|c| c.to_string())
                .unwrap_or_default()
        };
        let label = ctx.payload()["label"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        {
            let mut t = self.tracker.lock().unwrap();
            let n = t.running.entry(group.clone()).or_default();
            *n += 1;
            let n = *n;
            let m = t.max.entry(group.clone()).or_default();
            *m = (*m).max(n);
            t.started.push((label, Instant::now()));
        }
        let ms = ctx.payload()["ms"].as_u64().unwrap_or(100);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        *self
            .tracker
            .lock()
            .unwrap()
            .running
            .get_mut(&group)
            .unwrap() -= 1;
        Ok(())
    }
}

#[tokio::test]
async fn many_claimers_racing_start_one_sync_per_connector_and_the_index_forbids_two() {
    let db = TestDb::new().await;
    let store = store(&db, 16).await;
    let a = org(&store, "alpha").await;
    let (c1, c2) = (Uuid::now_v7(), Uuid::now_v7());
    let mut tx = store.org_tx(a).await.unwrap();
    let jobs: Vec<NewJob> = (0..20)
        .map(|i| {
            NewJob::new("entra.sync", json!({}))
                .class(JobClass::Sync)
                .connector(if i % 2 == 0 { c1 } else { c2 })
        })
        .collect();
    queue::enqueue_batch(&mut tx, &jobs).await.unwrap();
    tx.commit().await.unwrap();

    for round in 0..3 {
        let barrier = Arc::new(tokio::sync::Barrier::new(12));
        let mut tasks = vec![];
        for w in 0..12 {
            let (store, barrier) = (store.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let kinds = vec!["entra.sync".to_string()];
                let id = format!("w{w}");
                barrier.wait().await;
                let req = worker::ClaimRequest {
                    worker: &id,
                    kinds: &kinds,
                    limit: 3,
                    sync_limit: 3,
                    org_cap: 100,
                    lease: Duration::from_secs(30),
                };
                worker::claim(&store, &req).await.unwrap()
            }));
        }
        let mut claimed = vec![];
        for t in tasks {
            claimed.extend(t.await.unwrap());
        }
        let mut per_connector: HashMap<Uuid, usize> = HashMap::new();
        for j in &claimed {
            *per_connector.entry(j.connector_id.unwrap()).or_default() += 1;
        }
        assert_eq!(
            per_connector.get(&c1),
            Some(&1),
            "round {round}: {per_connector:?}"
        );
        assert_eq!(
            per_connector.get(&c2),
            Some(&1),
            "round {round}: {per_connector:?}"
        );

        if round == 0 {
            // Even a write that skips the claim query cannot start a second sync.
            let err = sqlx::query(
                "UPDATE jobs SET status = 'running', lease_token = gen_random_uuid(), locked_until = now() + interval '1 minute'
                 WHERE id = (SELECT id FROM jobs WHERE connector_id = $1 AND status = 'queued' LIMIT 1)",
            )
            .bind(c1)
            .execute(store.system())
            .await
            .unwrap_err();
            assert!(
                matches!(&err, sqlx::Error::Database(d) if d.constraint() == Some("jobs_one_running_sync_per_connector")),
                "{err}"
            );
        }
        let leases: Vec<_> = claimed.iter().map(|j| j.lease().unwrap()).collect();
        worker::complete(&store, &leases).await.unwrap();
    }
}

#[tokio::test]
async fn worker_pools_never_run_two_syncs_of_one_connector_at_once() {
    let db = TestDb::new().await;
    let store = store(&db, 30).await;
    let a = org(&store, "alpha").await;
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let pools: Vec<_> = (0..5)
        .map(|i| {
            let mut cfg = config(&format!("w{i}")).concurrency(3);
            cfg.poll_interval = Duration::from_millis(20);
            spawn_pool(
                &store,
                cfg,
                Registry::new().with(Tracked {
                    kind: "entra.sync",
                    tracker: tracker.clone(),
                    group_by_org: false,
                }),
            )
        })
        .collect();
    let (c1, c2) = (Uuid::now_v7(), Uuid::now_v7());
    let mut tx = store.org_tx(a).await.unwrap();
    let mut ids = vec![];
    for i in 0..12 {
        let c = if i % 3 == 0 { c2 } else { c1 };
        let n = NewJob::new("entra.sync", json!({"ms": 60}))
            .class(JobClass::Sync)
            .connector(c);
        ids.push(queue::enqueue(&mut tx, &n).await.unwrap().job.id);
    }
    tx.commit().await.unwrap();
    for id in ids {
        wait_status(&store, id, JobStatus::Succeeded, Duration::from_secs(20)).await;
    }
    for p in pools {
        p.stop().await;
    }
    let t = tracker.lock().unwrap();
    assert_eq!(t.max.get(&c1.to_string()), Some(&1), "{:?}", t.max);
    assert_eq!(t.max.get(&c2.to_string()), Some(&1), "{:?}", t.max);
    assert_eq!(t.started.len(), 12);
}

#[tokio::test]
async fn an_organization_never_exceeds_its_running_cap_and_cannot_starve_others() {
    let db = TestDb::new().await;
    let store = store(&db, 30).await;
    let big = org(&store, "big").await;
    let small = org(&store, "small").await;
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let pools: Vec<_> = (0..3)
        .map(|i| {
            let mut cfg = config(&format!("w{i}")).concurrency(4);
            cfg.org_running_cap = 2;
            cfg.poll_interval = Duration::from_millis(20);
            spawn_pool(
                &store,
                cfg,
                Registry::new().with(Tracked {
                    kind: "work",
                    tracker: tracker.clone(),
                    group_by_org: true,
                }),
            )
        })
        .collect();
    let mut tx = store.org_tx(big).await.unwrap();
    let jobs: Vec<NewJob> = (0..16)
        .map(|_| NewJob::new("work", json!({"ms": 300, "label": "big"})))
        .collect();
    queue::enqueue_batch(&mut tx, &jobs).await.unwrap();
    tx.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let small_enqueued = Instant::now();
    let mut tx = store.org_tx(small).await.unwrap();
    let jobs: Vec<NewJob> = (0..2)
        .map(|_| NewJob::new("work", json!({"ms": 150, "label": "small"})))
        .collect();
    queue::enqueue_batch(&mut tx, &jobs).await.unwrap();
    tx.commit().await.unwrap();

    eventually(Duration::from_secs(20), "all jobs to run", || async {
        (tracker.lock().unwrap().started.len() == 18
            && tracker.lock().unwrap().running.values().all(|n| *n == 0))
        .then_some(())
    })
    .await;
    for p in pools {
        p.stop().await;
    }
    let t = tracker.lock().unwrap();
    assert_eq!(t.max.get(&big.to_string()), Some(&2), "{:?}", t.max);
    assert_eq!(t.max.get(&small.to_string()), Some(&2), "{:?}", t.max);
    // The small organization's jobs started while the big one still had plenty queued.
    let small_started: Vec<Instant> = t
        .started
        .iter()
        .filter(|(l, _)| l == "small")
        .map(|(_, at)| *at)
        .collect();
    let last_big = t
        .started
        .iter()
        .filter(|(l, _)| l == "big")
        .map(|(_, at)| *at)
        .max()
        .unwrap();
    for at in small_started {
        assert!(
            at - small_enqueued < Duration::from_millis(1500),
            "small org waited {:?}",
            at - small_enqueued
        );
        assert!(at < last_big);
    }
}

#[tokio::test]
async fn provisioning_runs_first_and_always_finds_a_slot_beside_syncs() {
    let db = TestDb::new().await;
    let store = store(&db, 10).await;
    let a = org(&store, "alpha").await;
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let registry = || {
        Registry::new()
            .with(Tracked {
                kind: "entra.sync",
                tracker: tracker.clone(),
                group_by_org: false,
            })
            .with(Tracked {
                kind: "entra.provision",
                tracker: tracker.clone(),
                group_by_org: false,
            })
            .with(Tracked {
                kind: "notify",
                tracker: tracker.clone(),
                group_by_org: false,
            })
    };
    // Enqueued syncs first, provisioning last: provisioning still starts first.
    let mut tx = store.org_tx(a).await.unwrap();
    for i in 0..3 {
        queue::enqueue(
            &mut tx,
            &NewJob::new("entra.sync", json!({"ms": 30, "label": format!("sync{i}")}))
                .class(JobClass::Sync)
                .connector(Uuid::now_v7()),
        )
        .await
        .unwrap();
        queue::enqueue(
            &mut tx,
            &NewJob::new("notify", json!({"ms": 30, "label": format!("other{i}")})),
        )
        .await
        .unwrap();
    }
    for i in 0..2 {
        queue::enqueue(
            &mut tx,
            &NewJob::new(
                "entra.provision",
                json!({"ms": 30, "label": format!("prov{i}")}),
            )
            .class(JobClass::Provision),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let pool = spawn_pool(&store, config("w1").concurrency(1), registry());
    eventually(Duration::from_secs(10), "all eight jobs", || async {
        (tracker.lock().unwrap().started.len() == 8).then_some(())
    })
    .await;
    pool.stop().await;
    let order: Vec<String> = tracker
        .lock()
        .unwrap()
        .started
        .iter()
        .map(|(l, _)| l.clone())
        .collect();
    assert_eq!(
        order,
        [
            "prov0", "prov1", "other0", "other1", "other2", "sync0", "sync1", "sync2"
        ]
    );

    // Long syncs fill what they may; a provisioning job enqueued later still starts at once,
    // because syncs never take a worker's last free slot.
    tracker.lock().unwrap().started.clear();
    let mut cfg = config("w2").concurrency(2);
    cfg.poll_interval = Duration::from_millis(20);
    let pool = spawn_pool(&store, cfg, registry());
    let mut tx = store.org_tx(a).await.unwrap();
    for i in 0..4 {
        queue::enqueue(
            &mut tx,
            &NewJob::new(
                "entra.sync",
                json!({"ms": 1500, "label": format!("long{i}")}),
            )
            .class(JobClass::Sync)
            .connector(Uuid::now_v7()),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    eventually(Duration::from_secs(5), "a sync to start", || async {
        (!tracker.lock().unwrap().started.is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        tracker.lock().unwrap().started.len(),
        1,
        "syncs took the reserved slot"
    );
    let enqueued = Instant::now();
    let mut tx = store.org_tx(a).await.unwrap();
    queue::enqueue(
        &mut tx,
        &NewJob::new("entra.provision", json!({"ms": 10, "label": "urgent"}))
            .class(JobClass::Provision),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let started = eventually(
        Duration::from_secs(5),
        "the provisioning job to start",
        || async {
            tracker
                .lock()
                .unwrap()
                .started
                .iter()
                .find(|(l, _)| l == "urgent")
                .map(|(_, at)| *at)
        },
    )
    .await;
    assert!(
        started - enqueued < Duration::from_millis(1000),
        "provisioning waited {:?}",
        started - enqueued
    );
    pool.stop().await;
}

#[tokio::test]
async fn racing_claimers_never_push_an_organization_past_its_cap() {
    let db = TestDb::new().await;
    let store = store(&db, 16).await;
    let orgs = [org(&store, "alpha").await, org(&store, "beta").await];
    for o in orgs {
        let mut tx = store.org_tx(o).await.unwrap();
        let jobs: Vec<NewJob> = (0..40).map(|_| NewJob::new("work", json!({}))).collect();
        queue::enqueue_batch(&mut tx, &jobs).await.unwrap();
        tx.commit().await.unwrap();
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(12));
    let mut tasks = vec![];
    for w in 0..12 {
        let (store, barrier) = (store.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let kinds = vec!["work".to_string()];
            let id = format!("w{w}");
            barrier.wait().await;
            let req = worker::ClaimRequest {
                worker: &id,
                kinds: &kinds,
                limit: 4,
                sync_limit: 0,
                org_cap: 3,
                lease: Duration::from_secs(30),
            };
            worker::claim(&store, &req).await.unwrap()
        }));
    }
    let mut per_org: HashMap<_, usize> = HashMap::new();
    for t in tasks {
        for j in t.await.unwrap() {
            *per_org.entry(j.org_id.unwrap()).or_default() += 1;
        }
    }
    assert_eq!(per_org.get(&orgs[0]), Some(&3), "{per_org:?}");
    assert_eq!(per_org.get(&orgs[1]), Some(&3), "{per_org:?}");
}
