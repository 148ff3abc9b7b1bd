//! `kill -9` of a worker process in the middle of a sync and in the middle of a grant: another
//! worker process takes the job over once the lease expires and finishes it, once.

use super::stack::{Stack, eventually};
use latchkey_entra_sim::SimConfig;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_sync_leaves_the_job_to_another_which_completes_it_once() {
    let mut sim = SimConfig::small(61);
    // Every request waits: the sync lasts long enough to be cut half way.
    sim.faults.latency_ms = 60;
    let mut s = Stack::shared(sim).await;
    s.start_worker("w1", &[]);
    s.start_worker("w2", &[]);
    let c = s.connector("Contoso").await;
    let job = s.first_sync_job(c).await;

    // Some steps done, the holder killed without a word.
    let holder = eventually("the sync to be half way", Duration::from_secs(90), || {
        let s = &s;
        async move {
            let (holder, cp, status) = s.lock_and_checkpoint(job).await;
            let done = cp
                .as_ref()
                .and_then(|c| c["done"].as_array().map(Vec::len))
                .unwrap_or(0);
            (status == "running" && done >= 1)
                .then_some(holder)
                .flatten()
        }
    })
    .await;
    s.kill9_worker(&holder);
    let killed_at = std::time::Instant::now();
    s.sim.update_faults(|f| f.latency_ms = 0);

    let j = s.finished_job(job, Duration::from_secs(120)).await;
    let took_over = killed_at.elapsed();
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(
        j["attempts"], 2,
        "the killed attempt and the one that finished: {j}"
    );
    let logs = s.job_logs(job).await;
    assert!(
        logs.iter()
            .any(|l| l.starts_with("Resuming the full sync with") && !l.contains("with 0 of")),
        "resumed from the checkpoint: {logs:?}"
    );
    assert_eq!(
        logs.iter()
            .filter(|l| l.starts_with("Sync finished."))
            .count(),
        1,
        "{logs:?}"
    );
    // One run, succeeded; no second sync job.
    let runs = s.syncs(c).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(
        s.count(
            "jobs",
            &format!("connector_id = '{c}' AND kind = 'entra.sync'")
        )
        .await,
        1
    );
    let conn = s.get(&format!("connectors/{c}")).await;
    assert_eq!(conn["status"], "connected", "{conn}");
    s.assert_ground_truth(c).await;
    eprintln!("kill -9 mid-sync: the other worker finished the job {took_over:?} after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_grant_leaves_the_grant_in_the_tenant_exactly_once() {
    let mut s = Stack::shared(SimConfig::small(62)).await;
    s.start_worker("w1", &[]);
    s.start_worker("w2", &[]);
    let c = s.connector("Contoso").await;
    let job = s.first_sync_job(c).await;
    let j = s.finished_job(job, Duration::from_secs(120)).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    let (entitlement, principal, group, user) = s.membership_to_grant(c).await;

    // Slow answers: the worker is still reading the change back when it is killed.
    s.sim.update_faults(|f| f.latency_ms = 700);
    s.sim.clear_requests();
    let (status, started) = s
        .api(
            reqwest::Method::POST,
            &format!("connectors/{c}/grants"),
            Some(json!({"entitlement_id": entitlement, "principal_id": principal})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let task = started["task_id"].as_str().unwrap().to_string();
    let task_id = Uuid::parse_str(&task).unwrap();
    let job: Uuid = sqlx::query_scalar("SELECT job_id FROM provisioning_tasks WHERE id = $1")
        .bind(task_id)
        .fetch_one(s.store.system())
        .await
        .unwrap();
    let write = format!("/v1.0/groups/{group}/members/$ref");
    let writes = |s: &Stack| {
        s.sim
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == write)
            .map(|r| r.status)
            .collect::<Vec<u16>>()
    };
    eventually(
        "the write to reach the tenant",
        Duration::from_secs(60),
        || {
            let done = !writes(&s).is_empty();
            async move { done.then_some(()) }
        },
    )
    .await;
    let (holder, _, status) = s.lock_and_checkpoint(job).await;
    assert_eq!(status, "running", "killed before it could record anything");
    s.kill9_worker(&holder.expect("a worker holds the job"));
    let killed_at = std::time::Instant::now();
    assert!(
        s.sim.group_members(group).unwrap().contains(&user),
        "the tenant has the membership"
    );
    s.sim.update_faults(|f| f.latency_ms = 0);

    let t = s.task(&task).await;
    let took_over = killed_at.elapsed();
    assert_eq!(t["status"], "succeeded", "{t}");
    assert!(t["verified_at"].is_string(), "{t}");
    let j = s.get(&format!("jobs/{job}")).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(j["attempts"], 2, "{j}");

    // In the tenant: the membership once; only one write ever added it.
    let members = s.sim.group_members(group).unwrap();
    assert_eq!(members.iter().filter(|m| **m == user).count(), 1);
    let statuses = writes(&s);
    assert_eq!(
        statuses
            .iter()
            .filter(|st| (200..300).contains(*st))
            .count(),
        1,
        "one write added it; the retry found it there: {statuses:?}"
    );
    // In Latchkey: one direct grant, one verification.
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
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event FROM provisioning_events WHERE task_id = $1 ORDER BY id")
            .bind(task_id)
            .fetch_all(s.store.system())
            .await
            .unwrap();
    assert_eq!(
        events.iter().filter(|e| *e == "verified").count(),
        1,
        "{events:?}"
    );
    assert_eq!(events.first().map(String::as_str), Some("requested"));
    assert_eq!(
        events.last().map(String::as_str),
        Some("verified"),
        "{events:?}"
    );
    assert_eq!(
        s.count("audit_events", "action = 'provisioning.grant_verified'")
            .await,
        1
    );
    assert_eq!(s.count("provisioning_tasks", "true").await, 1);
    eprintln!(
        "kill -9 mid-grant: verified {took_over:?} after the kill; writes {statuses:?}; trail {events:?}"
    );
}
