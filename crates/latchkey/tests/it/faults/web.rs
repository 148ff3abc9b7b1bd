//! `kill -9` of the web process in the middle of a request that writes (a grant: the task, its
//! trail, its audit event and its job in one transaction): nothing of it stays, and the
//! client's retry is carried out once.

use super::stack::{Stack, eventually};
use latchkey_entra_sim::SimConfig;
use serde_json::json;
use sqlx::Connection;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_process_killed_mid_request_leaves_nothing_half_written_and_the_retry_works() {
    let mut s = Stack::shared(SimConfig::small(63)).await;
    s.start_worker("w1", &[]);
    let c = s.connector("Contoso").await;
    let job = s.first_sync_job(c).await;
    let j = s.finished_job(job, Duration::from_secs(120)).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    let (entitlement, principal, group, user) = s.membership_to_grant(c).await;
    let before = s.count("audit_events", "true").await;
    // No worker while the table is held: its scheduler's inserts would wait on the lock too.
    s.kill9_worker("w1");

    // Hold the queue table so the request stops inside its transaction, after the task, its
    // trail and its audit event are written and before its job is.
    let mut blocker = sqlx::PgConnection::connect(&s.url).await.unwrap();
    let mut held = blocker.begin().await.unwrap();
    sqlx::query("LOCK TABLE jobs IN SHARE MODE")
        .execute(&mut *held)
        .await
        .unwrap();
    let body = json!({"entitlement_id": entitlement, "principal_id": principal});
    let request = {
        let http = s.http.clone();
        let url = s.url(&format!("api/v1/connectors/{c}/grants"));
        let token = s.token().to_string();
        let body = body.clone();
        tokio::spawn(async move { http.post(url).bearer_auth(token).json(&body).send().await })
    };
    let backend: i32 = eventually(
        "the request to wait inside its transaction",
        Duration::from_secs(30),
        || async {
            sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity
                  WHERE wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO jobs%'",
            )
            .fetch_optional(s.store.system())
            .await
            .unwrap()
        },
    )
    .await;
    s.kill9_serve();
    let answer = request.await.unwrap();
    assert!(answer.is_err(), "the client got no answer: {answer:?}");
    held.rollback().await.unwrap();
    // PostgreSQL rolls the dead client's transaction back when it finds the socket closed.
    eventually(
        "the dead request's backend to go",
        Duration::from_secs(30),
        || async {
            let alive: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                    .bind(backend)
                    .fetch_one(s.store.system())
                    .await
                    .unwrap();
            (!alive).then_some(())
        },
    )
    .await;
    assert_eq!(s.count("provisioning_tasks", "true").await, 0);
    assert_eq!(s.count("provisioning_events", "true").await, 0);
    assert_eq!(
        s.count("jobs", "kind = 'entra.provision'").await,
        0,
        "no job without its task"
    );
    assert_eq!(
        s.count("audit_events", "true").await,
        before,
        "no audit event of a request that did not happen"
    );
    assert!(!s.sim.group_members(group).unwrap().contains(&user));

    // The client retries against the restarted web process: one task, carried out once.
    let restarted = std::time::Instant::now();
    s.start_serve().await;
    s.start_worker("w2", &[]);
    let up = restarted.elapsed();
    let (status, started) = s
        .api(
            reqwest::Method::POST,
            &format!("connectors/{c}/grants"),
            Some(body),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let t = s.task(started["task_id"].as_str().unwrap()).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert!(t["verified_at"].is_string(), "{t}");
    eprintln!(
        "kill -9 of serve mid-request: restarted and answering in {up:?}; the retried grant verified {:?} after the restart",
        restarted.elapsed()
    );
    assert_eq!(s.count("provisioning_tasks", "true").await, 1);
    assert_eq!(
        s.count("audit_events", "action = 'provisioning.grant_requested'")
            .await,
        1
    );
    let members = s.sim.group_members(group).unwrap();
    assert_eq!(members.iter().filter(|m| **m == user).count(), 1);
    assert_eq!(
        s.count(
            "grants",
            &format!(
                "entitlement_id = '{entitlement}' AND principal_id = '{principal}' AND source = 'direct' AND deleted_at IS NULL"
            )
        )
        .await,
        1
    );
}
