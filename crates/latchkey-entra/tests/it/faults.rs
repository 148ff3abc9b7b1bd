//! The simulated tenant misbehaving: throttling, transient failures, latency, token expiry,
//! missing permissions and licences.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use latchkey_entra::{GraphError, Query, RetryPolicy};
use latchkey_entra_sim::{Faults, SYNC_PERMISSIONS, SimConfig, SimServer, Throttle};
use serde_json::Value;

use crate::{T, connect_with, fast_retries, settings};

async fn all_users(t: &T, top: u32) -> Result<Vec<Value>, GraphError> {
    t.conn
        .graph
        .items::<Value>(Query::v1("users").select(&["id"]).top(top))
        .try_collect()
        .await
}

#[tokio::test]
async fn throttling_with_fractional_retry_after_is_honoured() {
    let faults = Faults {
        throttle: Throttle::EveryN { n: 3 },
        retry_after_secs: 0.25,
        ..Faults::default()
    };
    let t = T::with(SimConfig::small(7).with_faults(faults)).await;
    let started = Instant::now();
    let users = all_users(&t, 4).await.expect("throttling is survived");
    assert_eq!(users.len(), t.sim.truth().users);
    let s = t.conn.graph.stats();
    assert!(s.throttled >= 3, "{s:?}");
    assert_eq!(s.retries, s.throttled);
    assert_eq!(s.requests, t.graph_requests().len() as u64);
    assert_eq!(
        t.graph_requests()
            .iter()
            .filter(|r| r.status == 429)
            .count() as u64,
        s.throttled
    );
    // Each 429 asked for 0.25 s and got it (not the 20 ms backoff).
    assert!(
        started.elapsed() >= Duration::from_millis(250) * s.throttled as u32,
        "{:?}",
        started.elapsed()
    );
    // The pause is Retry-After plus up to 10 % jitter.
    assert!(
        s.retry_wait_ms >= 250 * s.throttled && s.retry_wait_ms <= 276 * s.throttled,
        "{s:?}"
    );
}

#[tokio::test]
async fn transient_503_and_504_are_retried() {
    let faults = Faults {
        transient_rate: 0.3,
        retry_after_secs: 0.05,
        ..Faults::default()
    };
    let t = T::with(SimConfig::small(11).with_faults(faults)).await;
    let users = all_users(&t, 3)
        .await
        .expect("transient failures are survived");
    assert_eq!(users.len(), t.sim.truth().users);
    let s = t.conn.graph.stats();
    let failed = t
        .graph_requests()
        .iter()
        .filter(|r| r.status == 503 || r.status == 504)
        .count() as u64;
    assert!(failed > 0, "the fault fired");
    assert_eq!(s.transient_failures, failed);
    assert_eq!(s.retries, failed);
}

#[tokio::test]
async fn latency_does_not_break_paging() {
    let t = T::with(SimConfig::small(7).with_faults(Faults {
        latency_ms: 40,
        ..Faults::default()
    }))
    .await;
    let started = Instant::now();
    let users = all_users(&t, 10).await.unwrap();
    assert_eq!(users.len(), t.sim.truth().users);
    assert!(started.elapsed() >= Duration::from_millis(40) * t.graph_requests().len() as u32);
}

#[tokio::test]
async fn the_retry_budget_bounds_total_waiting() {
    let faults = Faults {
        throttle: Throttle::EveryN { n: 1 },
        retry_after_secs: 0.4,
        ..Faults::default()
    };
    let retry = RetryPolicy {
        max_attempts: 50,
        retry_budget: Duration::from_millis(1000),
        ..fast_retries()
    };
    let t = T::with_retry(SimConfig::small(7).with_faults(faults.clone()), retry).await;
    let started = Instant::now();
    let err = all_users(&t, 10).await.unwrap_err();
    assert!(
        matches!(
            err,
            GraphError::Throttled {
                attempts: 3,
                retry_after: Some(_)
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(err.to_string().contains("retried later"), "{err}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_millis(4000),
        "{waited:?}"
    );
    // The budget is per client: the next request gives up at once.
    let waited_before = t.conn.graph.stats().retry_wait_ms;
    assert!((800..=1000).contains(&waited_before), "{waited_before}");
    let err = all_users(&t, 10).await.unwrap_err();
    assert!(
        matches!(err, GraphError::Throttled { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(
        t.conn.graph.stats().retry_wait_ms,
        waited_before,
        "no more waiting"
    );

    // And the attempt limit bounds one request when the budget would allow more.
    let retry = RetryPolicy {
        max_throttled_attempts: 2,
        ..fast_retries()
    };
    let t = T::with_retry(SimConfig::small(7).with_faults(faults), retry).await;
    let err = all_users(&t, 10).await.unwrap_err();
    assert!(
        matches!(err, GraphError::Throttled { attempts: 2, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_token_rejected_mid_run_is_replaced_once() {
    // The tenant forgets every token it issued (as when a token expires early or is revoked):
    // restart the simulator on the same port with the same seed between two pages.
    let cfg = SimConfig::small(7);
    let sim = SimServer::start(cfg.clone()).await.unwrap();
    let port = sim.addr().port();
    let s = settings(&sim);
    let conn = connect_with(&s, fast_retries());
    let graph = &conn.graph;
    let first = graph
        .page::<Value>(
            &graph
                .cursor(&Query::v1("users").select(&["id"]).top(5))
                .unwrap(),
        )
        .await
        .unwrap();
    sim.shutdown().await;
    let sim = SimServer::start(SimConfig { port, ..cfg })
        .await
        .expect("same port again");
    let second = graph
        .page::<Value>(first.next.as_ref().unwrap())
        .await
        .expect("a fresh token is used");
    assert_eq!(second.items.len(), 5);
    let s = graph.stats();
    assert_eq!(s.token_refreshes, 1);
    assert_eq!(conn.tokens.tokens_acquired(), 2);
    let log = sim.requests();
    let statuses: Vec<(String, u16)> = log.iter().map(|r| (r.path.clone(), r.status)).collect();
    assert_eq!(
        statuses.iter().filter(|(_, st)| *st == 401).count(),
        1,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn short_token_lifetimes_across_a_long_run() {
    // Tokens live 2 s; the run takes longer than that: tokens are renewed as they age.
    let faults = Faults {
        token_lifetime_secs: 2,
        latency_ms: 120,
        ..Faults::default()
    };
    let t = T::with(SimConfig::small(7).with_faults(faults)).await;
    let users = all_users(&t, 2)
        .await
        .expect("no failure when tokens expire mid-run");
    assert_eq!(users.len(), t.sim.truth().users);
    assert!(
        t.conn.tokens.tokens_acquired() >= 2,
        "renewed: {}",
        t.conn.tokens.tokens_acquired()
    );
}

#[tokio::test]
async fn tokens_that_are_always_expired_fail_with_a_clear_error() {
    let t = T::with(SimConfig::small(7).with_faults(Faults {
        token_lifetime_secs: 0,
        ..Faults::default()
    }))
    .await;
    let err = all_users(&t, 10).await.unwrap_err();
    assert!(
        matches!(&err, GraphError::TokenRejected { message } if message.contains("expired")),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(
        t.conn.graph.stats().token_refreshes,
        1,
        "one refresh, no loop"
    );
    assert_eq!(t.graph_requests().len(), 2);
}

#[tokio::test]
async fn missing_permission_names_the_permission() {
    let t = T::with(SimConfig::small(7).with_permissions(SYNC_PERMISSIONS.iter().copied())).await;
    let graph = &t.conn.graph;
    let groups: Vec<Value> = graph
        .items(Query::v1("groups").select(&["id"]).top(1))
        .try_collect()
        .await
        .unwrap();
    let gid = groups[0]["id"].as_str().unwrap();
    let users: Vec<Value> = graph
        .items(Query::v1("users").select(&["id"]).top(999))
        .try_collect()
        .await
        .unwrap();
    let uid = users[0]["id"].as_str().unwrap();
    let body = serde_json::json!({"@odata.id": format!("{}/v1.0/directoryObjects/{uid}", t.sim.base_url())});
    let err = graph
        .send(
            http::Method::POST,
            &Query::v1(format!("groups/{gid}/members/$ref")),
            Some(&body),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GraphError::PermissionMissing { permission: Some(p), .. } if p == "GroupMember.ReadWrite.All"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "Missing permission GroupMember.ReadWrite.All needed to POST groups/{gid}/members/$ref: add it in Entra > App registrations > API permissions and grant admin consent."
        )
    );

    // With only User.Read.All, groups are refused and a caller-supplied permission name wins.
    t.sim.set_granted_permissions(["User.Read.All"]);
    let t2 = crate::connect_with(&settings(&t.sim), fast_retries());
    let err = t2
        .graph
        .get::<Value>(&Query::v1("groups").needs_permission("Group.Read.All"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GraphError::PermissionMissing { permission: Some(p), .. } if p == "Group.Read.All"),
        "{err:?}"
    );
}

#[tokio::test]
async fn premium_features_fail_with_not_premium() {
    let faults = Faults {
        premium_p1: false,
        premium_p2: false,
        ..Faults::default()
    };
    let t = T::with(SimConfig::small(7).with_faults(faults)).await;
    let graph = &t.conn.graph;
    let err = graph
        .get::<Value>(&Query::v1("users").select(&["id", "signInActivity"]).top(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GraphError::NotPremium { code, .. } if code == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"),
        "{err:?}"
    );
    assert!(err.to_string().contains("P1 or P2"), "{err}");
    let err = graph
        .get::<Value>(&Query::v1(
            "roleManagement/directory/roleEligibilitySchedules",
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GraphError::NotPremium { code, .. } if code == "AadPremiumLicenseRequired"),
        "{err:?}"
    );
    assert!(err.to_string().contains("P2"), "{err}");
    assert!(!err.is_transient());
    // Not retried: one request each.
    assert_eq!(t.graph_requests().len(), 2);
}
