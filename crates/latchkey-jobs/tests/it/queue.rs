//! Enqueue, read, list, dedupe, logs with a cursor, organization isolation, metrics.

use crate::support::*;
use latchkey_jobs::queue::{self, worker};
use latchkey_jobs::{JobClass, JobFilter, JobStatus, LogLevel, NewJob, render_prometheus};
use latchkey_store::StoreError;
use latchkey_store::testing::TestDb;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn enqueue_dedupes_while_active_and_isolates_organizations() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let b = org(&db.store, "beta").await;
    let new = NewJob::new("noop", json!({"n": 1})).dedupe_key("k1");

    let mut tx = db.store.org_tx(a).await.unwrap();
    let first = queue::enqueue(&mut tx, &new).await.unwrap();
    let again = queue::enqueue(&mut tx, &new).await.unwrap();
    // Rows in every queue table for the row-level security check below.
    queue::enqueue(&mut tx, &NewJob::new("logger", json!({})))
        .await
        .unwrap();
    queue::schedules::upsert(
        &mut tx,
        &queue::schedules::NewSchedule::new("tick", "noop", Duration::from_secs(60)),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let kinds = vec!["logger".to_string()];
    let req = worker::ClaimRequest {
        worker: "w1",
        kinds: &kinds,
        limit: 1,
        sync_limit: 0,
        org_cap: 10,
        lease: Duration::from_secs(30),
    };
    let lease = worker::claim(&db.store, &req).await.unwrap()[0]
        .lease()
        .unwrap();
    assert!(
        worker::append_log(&db.store, &lease, LogLevel::Info, "alpha only", &json!({}))
            .await
            .unwrap()
    );
    assert!(first.created && !again.created);
    assert_eq!(first.job.id, again.job.id);
    assert_eq!(first.job.status, JobStatus::Queued);
    assert_eq!(first.job.org_id, Some(a));

    // Another organization's identical key is its own job, and cannot see the first one.
    let mut tx = db.store.org_tx(b).await.unwrap();
    let other = queue::enqueue(&mut tx, &new).await.unwrap();
    assert!(other.created);
    assert!(matches!(
        queue::get(&mut tx, first.job.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        queue::cancel(&mut tx, first.job.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        queue::logs(&mut tx, first.job.id, None, None).await,
        Err(StoreError::NotFound)
    ));
    // Row-level security is the second wall: even unfiltered queries see only this org's rows.
    for table in ["jobs", "job_logs", "job_schedules"] {
        let seen: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(tx.conn())
                .await
                .unwrap();
        assert_eq!(seen, i64::from(table == "jobs"), "{table}");
    }
    let listed = queue::list(&mut tx, &JobFilter::default(), None, None)
        .await
        .unwrap();
    assert_eq!(
        listed.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![other.job.id]
    );
    tx.commit().await.unwrap();

    // Once the first job is finished, the key is free again.
    let mut tx = db.store.org_tx(a).await.unwrap();
    let cancelled = queue::cancel(&mut tx, first.job.id).await.unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    let third = queue::enqueue(&mut tx, &new).await.unwrap();
    assert!(third.created);
    assert_ne!(third.job.id, first.job.id);
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn list_filters_and_pages_newest_first() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let conn = uuid::Uuid::now_v7();
    let mut tx = db.store.org_tx(a).await.unwrap();
    let mut ids = vec![];
    for i in 0..5 {
        let mut n = NewJob::new(if i % 2 == 0 { "noop" } else { "entra.sync" }, json!({}));
        if i % 2 == 1 {
            n = n.class(JobClass::Sync).connector(conn);
        }
        ids.push(queue::enqueue(&mut tx, &n).await.unwrap().job.id);
    }
    let p1 = queue::list(&mut tx, &JobFilter::default(), None, Some(2))
        .await
        .unwrap();
    assert_eq!(
        p1.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let cursor = latchkey_store::Cursor::parse(p1.next_cursor.as_deref().unwrap()).unwrap();
    let p2 = queue::list(&mut tx, &JobFilter::default(), Some(cursor), Some(2))
        .await
        .unwrap();
    assert_eq!(
        p2.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    let syncs = queue::list(
        &mut tx,
        &JobFilter {
            connector_id: Some(conn),
            ..Default::default()
        },
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(syncs.items.len(), 2);
    let noops = queue::list(
        &mut tx,
        &JobFilter {
            kind: Some("noop".into()),
            status: Some(JobStatus::Queued),
            ..Default::default()
        },
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(noops.items.len(), 3);
    // A sync without a connector is refused before it reaches the database.
    assert!(
        queue::enqueue(
            &mut tx,
            &NewJob::new("entra.sync", json!({})).class(JobClass::Sync)
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn logs_tail_with_a_cursor_and_progress_is_visible() {
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
    let req = worker::ClaimRequest {
        worker: "w1",
        kinds: &kinds,
        limit: 1,
        sync_limit: 0,
        org_cap: 10,
        lease: Duration::from_secs(30),
    };
    let claimed = worker::claim(&db.store, &req).await.unwrap();
    let lease = claimed[0].lease().unwrap();
    for i in 0..3 {
        assert!(
            worker::append_log(
                &db.store,
                &lease,
                LogLevel::Info,
                &format!("page {i}"),
                &json!({"page": i})
            )
            .await
            .unwrap()
        );
    }
    assert!(
        worker::set_progress(&db.store, &lease, &json!({"users": 5000}))
            .await
            .unwrap()
    );

    let mut tx = db.store.org_tx(a).await.unwrap();
    let all = queue::logs(&mut tx, id, None, None).await.unwrap();
    assert_eq!(
        all.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["page 0", "page 1", "page 2"]
    );
    assert_eq!(all[1].fields, json!({"page": 1}));
    assert_eq!(all[0].attempt, 1);
    let newer = queue::logs(&mut tx, id, Some(all[0].id), None)
        .await
        .unwrap();
    assert_eq!(newer.len(), 2);
    assert!(
        queue::logs(&mut tx, id, Some(all[2].id), None)
            .await
            .unwrap()
            .is_empty()
    );
    let job = queue::get(&mut tx, id).await.unwrap();
    assert_eq!(job.progress, Some(json!({"users": 5000})));
    assert_eq!(job.status, JobStatus::Running);
    assert_eq!(job.locked_by.as_deref(), Some("w1"));
    // The lease token is a capability: never serialised for the UI or API.
    assert!(
        serde_json::to_value(&job)
            .unwrap()
            .get("lease_token")
            .is_none()
    );
}

#[tokio::test]
async fn metrics_report_depth_by_kind_and_status_and_dead_jobs() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let mut tx = db.store.org_tx(a).await.unwrap();
    for _ in 0..3 {
        queue::enqueue(&mut tx, &NewJob::new("noop", json!({})))
            .await
            .unwrap();
    }
    queue::enqueue(&mut tx, &NewJob::new("mail", json!({})).max_attempts(1))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let kinds = vec!["mail".to_string()];
    let req = worker::ClaimRequest {
        worker: "w1",
        kinds: &kinds,
        limit: 1,
        sync_limit: 0,
        org_cap: 10,
        lease: Duration::from_secs(30),
    };
    let lease = worker::claim(&db.store, &req).await.unwrap()[0]
        .lease()
        .unwrap();
    assert_eq!(
        worker::retry_later(&db.store, &lease, Duration::ZERO, "SMTP 421")
            .await
            .unwrap(),
        Some(JobStatus::Dead)
    );

    let mut out = String::new();
    render_prometheus(&db.store, &mut out).await.unwrap();
    assert!(
        out.contains("latchkey_jobs{kind=\"noop\",status=\"queued\"} 3\n"),
        "{out}"
    );
    assert!(
        out.contains("latchkey_jobs{kind=\"mail\",status=\"dead\"} 1\n"),
        "{out}"
    );
    assert!(
        out.contains("latchkey_jobs_dead{kind=\"mail\"} 1\n"),
        "{out}"
    );
    assert!(
        out.contains("latchkey_jobs_recent_finished{kind=\"mail\",status=\"dead\"} 1\n"),
        "{out}"
    );
    assert!(out.contains("# TYPE latchkey_jobs gauge\n"));
}

#[tokio::test]
async fn housekeeping_deletes_finished_jobs_past_retention_with_their_logs() {
    let db = TestDb::new().await;
    let store = store(&db, 10).await;
    let a = org(&store, "alpha").await;
    let mut tx = store.org_tx(a).await.unwrap();
    let old = queue::enqueue(&mut tx, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    let queued = queue::enqueue(&mut tx, &NewJob::new("mail", json!({})))
        .await
        .unwrap()
        .job
        .id;
    tx.commit().await.unwrap();
    let pool = spawn_pool(&store, config("w1"), latchkey_jobs::testkit::registry());
    wait_status(&store, old, JobStatus::Succeeded, Duration::from_secs(5)).await;
    sqlx::query("UPDATE jobs SET finished_at = now() - interval '40 days' WHERE id = $1")
        .bind(old.0)
        .execute(store.system())
        .await
        .unwrap();
    let recent = queue::enqueue_system(&store, &NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    wait_status(&store, recent, JobStatus::Succeeded, Duration::from_secs(5)).await;
    let hk = queue::enqueue_system(
        &store,
        &NewJob::new("housekeeping", json!({"retain_days": 30})),
    )
    .await
    .unwrap()
    .job
    .id;
    wait_status(&store, hk, JobStatus::Succeeded, Duration::from_secs(5)).await;
    pool.stop().await;
    assert!(matches!(
        queue::get_any(&store, old).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(job(&store, recent).await.status, JobStatus::Succeeded);
    assert_eq!(job(&store, queued).await.status, JobStatus::Queued);
    let logs = queue::logs_any(&store, hk, None, None).await.unwrap();
    assert_eq!(logs.last().unwrap().fields["deleted"], json!(1));
    // The hourly schedule installs once and updates in place.
    let s1 = latchkey_jobs::HousekeepingHandler::install_schedule(&store)
        .await
        .unwrap();
    let s2 = latchkey_jobs::HousekeepingHandler::install_schedule(&store)
        .await
        .unwrap();
    assert_eq!(s1.id, s2.id);
    assert_eq!(s1.org_id, None);
}

/// Enqueues a follow-up job in its own organization, as a sync enqueues provisioning.
struct Chain;

impl latchkey_jobs::JobHandler for Chain {
    fn kind(&self) -> &str {
        "chain"
    }
    async fn run(&self, ctx: &latchkey_jobs::JobContext) -> Result<(), latchkey_jobs::JobError> {
        let left = ctx.payload()["left"].as_u64().unwrap_or(0);
        if left > 0 {
            let mut tx = ctx.store().org_tx(ctx.org().unwrap()).await?;
            queue::enqueue(&mut tx, &NewJob::new("chain", json!({"left": left - 1}))).await?;
            tx.commit().await?;
        }
        ctx.info(format!("{left} to go")).await
    }
}

#[tokio::test]
async fn run_until_idle_runs_jobs_and_their_follow_ups_to_completion() {
    let db = TestDb::new().await;
    let store = store(&db, 10).await;
    let a = org(&store, "alpha").await;
    let mut tx = store.org_tx(a).await.unwrap();
    queue::enqueue(&mut tx, &NewJob::new("chain", json!({"left": 4})))
        .await
        .unwrap();
    let later = queue::enqueue(
        &mut tx,
        &NewJob::new("chain", json!({}))
            .run_at(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
    )
    .await
    .unwrap()
    .job
    .id;
    tx.commit().await.unwrap();
    let pool = latchkey_jobs::WorkerPool::new(
        store.clone(),
        config("w1"),
        latchkey_jobs::Registry::new().with(Chain),
    );
    tokio::time::timeout(
        Duration::from_secs(10),
        pool.run_until_idle(tokio_util::sync::CancellationToken::new()),
    )
    .await
    .expect("returns once idle")
    .unwrap();
    let mut tx = store.org_tx(a).await.unwrap();
    let all = queue::list(&mut tx, &JobFilter::default(), None, None)
        .await
        .unwrap();
    assert_eq!(all.items.len(), 6);
    for j in &all.items {
        let expected = if j.id == later {
            JobStatus::Queued
        } else {
            JobStatus::Succeeded
        };
        assert_eq!(j.status, expected, "{j:?}");
    }
}
