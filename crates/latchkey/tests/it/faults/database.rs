//! The database failing under a running sync: a PostgreSQL restart (a private cluster), a
//! statement running past the statement timeout, a full disk. The job survives what passes and
//! fails visibly, with a reason a person can act on, on what does not; it succeeds afterwards.

use super::private_pg::PrivatePg;
use super::stack::{Stack, eventually};
use latchkey_entra_sim::SimConfig;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_during_a_sync_is_survived_and_the_sync_completes() {
    let pg = PrivatePg::start();
    let mut sim = SimConfig::small(64);
    sim.faults.latency_ms = 60;
    let mut s = Stack::on(&pg.url("latchkey"), sim).await;
    s.start_worker("w1", &[]);
    let c = s.connector("Contoso").await;
    let job = s.first_sync_job(c).await;
    eventually("the sync to be half way", Duration::from_secs(90), || {
        let s = &s;
        async move {
            let (_, cp, status) = s.lock_and_checkpoint(job).await;
            let done = cp
                .as_ref()
                .and_then(|c| c["done"].as_array().map(Vec::len))
                .unwrap_or(0);
            (status == "running" && done >= 1).then_some(())
        }
    })
    .await;
    // Between two writes the job holds no connection, and the pools replace dead
    // connections unseen: slow the writes down so that one is cut by the restart.
    sqlx::raw_sql(
        "CREATE FUNCTION fault_slow() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
         CREATE TRIGGER fault_slow BEFORE INSERT OR UPDATE ON resources
           FOR EACH STATEMENT EXECUTE FUNCTION fault_slow();",
    )
    .execute(s.store.system())
    .await
    .unwrap();
    eventually(
        "a write of the sync in progress",
        Duration::from_secs(60),
        || {
            let s = &s;
            async move {
                sqlx::query_scalar::<_, i32>(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' LIMIT 1",
                )
                .fetch_optional(s.store.system())
                .await
                .unwrap()
            }
        },
    )
    .await;
    let started = Instant::now();
    tokio::task::block_in_place(|| pg.restart());
    let restart = started.elapsed();
    s.sim.update_faults(|f| f.latency_ms = 0);
    sqlx::raw_sql("DROP TRIGGER fault_slow ON resources")
        .execute(s.store.system())
        .await
        .unwrap();

    let j = s.finished_job(job, Duration::from_secs(120)).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    let recovered = started.elapsed();
    let runs = s.syncs(c).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "succeeded");
    let conn = s.get(&format!("connectors/{c}")).await;
    assert_eq!(conn["status"], "connected", "{conn}");
    let ready = s.http.get(s.url("readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "the web process is ready again");
    assert!(
        j["attempts"].as_i64().unwrap() >= 2,
        "the cut attempt and the one that finished: {j}"
    );
    let logs = s.job_logs(job).await;
    assert!(
        logs.iter()
            .any(|l| l.starts_with("Resuming the full sync with") && !l.contains("with 0 of")),
        "resumed from the checkpoint: {logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("The database server restarted")
                || l.starts_with("The database could not be reached")),
        "the cut attempt says why: {logs:?}"
    );
    s.assert_ground_truth(c).await;
    eprintln!(
        "PostgreSQL restart mid-sync: pg_ctl restart took {restart:?}, the job succeeded {recovered:?} after it began, attempts {}",
        j["attempts"]
    );
}

/// Starts a full sync through the API; returns its job.
async fn sync_now(s: &Stack, c: Uuid) -> Uuid {
    let (status, started) = s
        .api(
            reqwest::Method::POST,
            &format!("connectors/{c}/syncs"),
            Some(json!({"kind": "full"})),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    Uuid::parse_str(started["id"].as_str().unwrap()).unwrap()
}

/// The job gave up with `advice` in its reason, and the connector says so too.
async fn failed_visibly(s: &Stack, c: Uuid, job: Uuid, advice: &str) -> Value {
    let j = s.finished_job(job, Duration::from_secs(120)).await;
    assert!(
        matches!(j["status"].as_str(), Some("dead" | "failed")),
        "{j}"
    );
    let reason = j["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains(advice), "job reason: {reason}");
    let conn = s.get(&format!("connectors/{c}")).await;
    assert_eq!(conn["status"], "error", "{conn}");
    let said = conn["status_reason"].as_str().unwrap_or_default();
    assert!(
        said.starts_with("The sync failed: ") && said.contains(advice),
        "connector reason: {said}"
    );
    let runs = s.syncs(c).await;
    let run = runs
        .iter()
        .find(|r| r["id"] == json!(job))
        .expect("the run");
    assert_eq!(run["status"], "failed", "{run}");
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_or_a_full_disk_fails_the_sync_with_the_reason_then_it_succeeds() {
    let mut s = Stack::shared(SimConfig::small(65)).await;
    // Writing resources becomes slow: every statement waits 2 s, past the worker's 0.5 s
    // statement timeout (LATCHKEY_DB_STATEMENT_TIMEOUT_SECS), so PostgreSQL cancels it.
    sqlx::raw_sql(
        "CREATE FUNCTION fault_slow() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$;
         CREATE TRIGGER fault_slow BEFORE INSERT OR UPDATE ON resources
           FOR EACH STATEMENT EXECUTE FUNCTION fault_slow();",
    )
    .execute(s.store.system())
    .await
    .unwrap();
    s.start_worker("w1", &[("LATCHKEY_DB_STATEMENT_TIMEOUT_SECS", "0.5")]);
    let c = s.connector("Contoso").await;
    let job = s.first_sync_job(c).await;
    let started = Instant::now();
    let j = failed_visibly(&s, c, job, "LATCHKEY_DB_STATEMENT_TIMEOUT_SECS").await;
    let timeout_failed = started.elapsed();
    assert!(
        j["last_error"]
            .as_str()
            .unwrap()
            .contains("canceling statement due to statement timeout"),
        "{j}"
    );
    sqlx::raw_sql("DROP TRIGGER fault_slow ON resources")
        .execute(s.store.system())
        .await
        .unwrap();
    let job = sync_now(&s, c).await;
    let j = s.finished_job(job, Duration::from_secs(120)).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(
        s.get(&format!("connectors/{c}")).await["status"],
        "connected"
    );

    // A full disk: PostgreSQL's own error for it (SQLSTATE 53100, its message), raised where
    // the sync writes; filling a real disk of a shared machine is not a test.
    sqlx::raw_sql(
        r#"CREATE FUNCTION fault_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION USING ERRCODE = 'disk_full',
             MESSAGE = 'could not extend file "base/16384/16543": No space left on device',
             HINT = 'Check free disk space.'; END $$;
         CREATE TRIGGER fault_disk_full BEFORE INSERT OR UPDATE ON resources
           FOR EACH STATEMENT EXECUTE FUNCTION fault_disk_full();"#,
    )
    .execute(s.store.system())
    .await
    .unwrap();
    let job = sync_now(&s, c).await;
    let started = Instant::now();
    failed_visibly(&s, c, job, "out of disk space").await;
    let disk_failed = started.elapsed();
    sqlx::raw_sql("DROP TRIGGER fault_disk_full ON resources")
        .execute(s.store.system())
        .await
        .unwrap();
    let job = sync_now(&s, c).await;
    let j = s.finished_job(job, Duration::from_secs(120)).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    let conn = s.get(&format!("connectors/{c}")).await;
    assert_eq!(conn["status"], "connected", "{conn}");
    s.assert_ground_truth(c).await;
    eprintln!(
        "statement timeout: failed visibly after {timeout_failed:?}; disk full: after {disk_failed:?}"
    );
}
