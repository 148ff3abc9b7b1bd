//! Periodic jobs: enqueued once per period however many workers run the scheduler.

use crate::support::*;
use latchkey_jobs::queue::schedules::NewSchedule;
use latchkey_jobs::queue::{self, schedules};
use latchkey_jobs::{JobFilter, JobStatus};
use latchkey_store::testing::TestDb;
use serde_json::json;
use std::time::Duration;
use time::OffsetDateTime;

#[tokio::test]
async fn three_workers_enqueue_each_period_exactly_once() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let file = record_file();
    let mut workers = vec![];
    for i in 0..3 {
        workers.push(Worker::spawn(&db, &format!("w{i}"), &["--maintenance-ms", "100"]).await);
    }
    let mut tx = db.store.org_tx(a).await.unwrap();
    let schedule = schedules::upsert(
        &mut tx,
        &NewSchedule::new("tick", "test.sleep", Duration::from_secs(1))
            .payload(json!({"file": file, "ms": 10}))
            .first_run_at(OffsetDateTime::now_utc()),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    for mut w in workers {
        w.kill9().await;
    }

    let mut tx = db.store.org_tx(a).await.unwrap();
    let page = queue::list(
        &mut tx,
        &JobFilter {
            kind: Some("test.sleep".into()),
            ..Default::default()
        },
        None,
        Some(200),
    )
    .await
    .unwrap();
    let mut periods: Vec<OffsetDateTime> = page
        .items
        .iter()
        .map(|j| j.scheduled_for.unwrap())
        .collect();
    assert!(
        page.items
            .iter()
            .all(|j| j.schedule_id == Some(schedule.id))
    );
    periods.sort();
    assert!(
        (4..=5).contains(&periods.len()),
        "{} periods in 4.5 s: {periods:?}",
        periods.len()
    );
    for w in periods.windows(2) {
        assert_eq!(
            w[1] - w[0],
            time::Duration::seconds(1),
            "a period was skipped or repeated: {periods:?}"
        );
    }
    let done = page
        .items
        .iter()
        .filter(|j| j.status == JobStatus::Succeeded)
        .count();
    assert!(done >= periods.len() - 1, "scheduled jobs ran");
    let ends = records(&file)
        .into_iter()
        .filter(|r| r.event == "end")
        .count();
    assert_eq!(ends, done, "each scheduled job ran once");
}

#[tokio::test]
async fn upsert_updates_in_place_and_delete_removes() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let connector = uuid::Uuid::now_v7();
    let mut tx = db.store.org_tx(a).await.unwrap();
    let name = format!("sync:{connector}");
    let s1 = schedules::upsert(
        &mut tx,
        &NewSchedule::new(&name, "entra.sync", Duration::from_secs(900))
            .class(latchkey_jobs::JobClass::Sync)
            .connector(connector),
    )
    .await
    .unwrap();
    let s2 = schedules::upsert(
        &mut tx,
        &NewSchedule::new(&name, "entra.sync", Duration::from_secs(300))
            .class(latchkey_jobs::JobClass::Sync)
            .connector(connector),
    )
    .await
    .unwrap();
    assert_eq!(s1.id, s2.id);
    assert_eq!(s2.every_seconds, 300.0);
    // A shorter period takes effect now, not after the old, longer one.
    assert!(s2.next_run_at <= OffsetDateTime::now_utc() + time::Duration::seconds(301));
    assert_eq!(schedules::list(&mut tx).await.unwrap().len(), 1);
    assert!(schedules::delete(&mut tx, &name).await.unwrap());
    assert!(schedules::list(&mut tx).await.unwrap().is_empty());
    // A sync schedule without a connector is refused.
    assert!(
        schedules::upsert(
            &mut tx,
            &NewSchedule::new("x", "entra.sync", Duration::from_secs(60))
                .class(latchkey_jobs::JobClass::Sync)
        )
        .await
        .is_err()
    );
}
