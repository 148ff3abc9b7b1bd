//! `$batch` against the simulated tenant.

use futures::TryStreamExt;
use latchkey_entra::graph::BatchRequest;
use latchkey_entra::{ApiVersion, GraphError, Query};
use latchkey_entra_sim::{Faults, SimConfig, Throttle};
use serde_json::Value;

use crate::T;

#[tokio::test]
async fn batch_items_succeed_or_fail_each_on_their_own() {
    let t = T::new().await;
    let users: Vec<Value> = t
        .conn
        .graph
        .items(Query::v1("users").select(&["id"]).top(5))
        .try_collect()
        .await
        .unwrap();
    let uid = users[0]["id"].as_str().unwrap();
    let reqs = vec![
        BatchRequest::get(
            "1",
            &Query::v1(format!("users/{uid}")).select(&["id", "displayName"]),
        ),
        BatchRequest::get(
            "2",
            &Query::v1("users/00000000-0000-0000-0000-00000000abcd"),
        ),
        BatchRequest::get(
            "3",
            &Query::v1("groups")
                .filter("onPremisesSyncEnabled ne true")
                .advanced()
                .top(1),
        ),
    ];
    let before = t.conn.graph.stats().requests;
    let out = t.conn.graph.batch(ApiVersion::V1, reqs).await.unwrap();
    assert_eq!(
        t.conn.graph.stats().requests - before,
        1,
        "one HTTP request"
    );
    assert_eq!(out.len(), 3);
    let first = out[0].as_ref().unwrap();
    assert_eq!(first.json::<Value>().unwrap()["id"], uid);
    assert!(
        matches!(&out[1], Err(e) if e.is_not_found()),
        "{:?}",
        out[1]
    );
    // The advanced query's header travelled inside the batch.
    let third = out[2].as_ref().unwrap();
    assert!(
        third.value().unwrap()["@odata.count"].as_u64().is_some(),
        "{third:?}"
    );
    let inner: Vec<_> = t
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.in_batch)
        .collect();
    assert_eq!(inner.len(), 3);
    assert_eq!(
        inner[2].headers.get("consistencylevel").map(String::as_str),
        Some("eventual")
    );
}

#[tokio::test]
async fn throttled_batch_items_are_retried() {
    let t = T::with(SimConfig::small(7).with_faults(Faults {
        throttle: Throttle::EveryN { n: 3 },
        retry_after_secs: 0.1,
        ..Faults::default()
    }))
    .await;
    let users: Vec<Value> = t
        .conn
        .graph
        .items(Query::v1("users").select(&["id"]).top(999))
        .try_collect()
        .await
        .unwrap();
    let reqs: Vec<BatchRequest> = users
        .iter()
        .take(20)
        .enumerate()
        .map(|(i, u)| {
            BatchRequest::get(
                i.to_string(),
                &Query::v1(format!("users/{}", u["id"].as_str().unwrap())).select(&["id"]),
            )
        })
        .collect();
    let before = t.conn.graph.stats();
    let out = t.conn.graph.batch(ApiVersion::V1, reqs).await.unwrap();
    for (i, r) in out.iter().enumerate() {
        assert_eq!(
            r.as_ref().unwrap().json::<Value>().unwrap()["id"],
            users[i]["id"]
        );
    }
    let s = t.conn.graph.stats();
    assert!(
        s.throttled > before.throttled,
        "inner 429s were seen: {s:?}"
    );
    assert!(s.retries > before.retries);

    let too_many: Vec<BatchRequest> = (0..21)
        .map(|i| BatchRequest::get(i.to_string(), &Query::v1("users")))
        .collect();
    assert!(matches!(
        t.conn.graph.batch(ApiVersion::V1, too_many).await,
        Err(GraphError::InvalidRequest(_))
    ));
}
