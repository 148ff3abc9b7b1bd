//! Paging collections to the end against the simulated tenant.

use std::collections::HashSet;

use futures::TryStreamExt;
use latchkey_entra::{ApiVersion, GraphError, PageCursor, Query};
use serde::Deserialize;
use serde_json::Value;

use crate::T;

#[derive(Debug, Deserialize)]
struct User {
    id: String,
    #[serde(rename = "userPrincipalName")]
    upn: String,
}

#[tokio::test]
async fn users_are_paged_to_the_end_across_many_pages() {
    let t = T::new().await;
    let truth = t.sim.truth();
    let mut pages = std::pin::pin!(
        t.conn.graph.pages::<User>(
            Query::v1("users")
                .select(&["id", "userPrincipalName"])
                .top(3)
        )
    );
    let mut ids = HashSet::new();
    let mut n_pages = 0;
    while let Some(page) = pages.try_next().await.unwrap() {
        n_pages += 1;
        assert!(page.items.len() <= 3);
        for u in page.items {
            assert!(u.upn.contains('@'));
            assert!(ids.insert(u.id), "no user twice");
        }
    }
    assert_eq!(ids.len(), truth.users, "every user, none twice");
    assert_eq!(n_pages, truth.users.div_ceil(3));
    let log = t.graph_requests();
    assert_eq!(log.len(), n_pages, "one request per page");
    // Every page after the first followed Graph's nextLink (all original options plus $skiptoken).
    for r in &log[1..] {
        let q = r.query.as_deref().unwrap_or("");
        assert!(q.contains("skiptoken"), "{q}");
        assert!(q.contains("select") && q.contains("top=3"), "{q}");
    }
    let stats = t.conn.graph.stats();
    assert_eq!(stats.requests, n_pages as u64);
    assert_eq!((stats.throttled, stats.retries), (0, 0));
}

#[tokio::test]
async fn advanced_queries_resend_consistency_level_on_every_page() {
    let t = T::new().await;
    let truth = t.sim.truth();
    let q = Query::v1("groups")
        .select(&["id", "displayName", "onPremisesSyncEnabled"])
        .filter("onPremisesSyncEnabled ne true")
        .advanced()
        .top(2);
    let first = t
        .conn
        .graph
        .page::<Value>(&t.conn.graph.cursor(&q).unwrap())
        .await
        .unwrap();
    let count = first.count.expect("@odata.count on the first page");
    let rest: Vec<Value> = t
        .conn
        .graph
        .items::<Value>(q.clone())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rest.len() as u64, count);
    assert!(
        rest.iter()
            .all(|g| g["onPremisesSyncEnabled"] != Value::Bool(true))
    );
    assert!(
        count > 0 && (count as usize) < truth.groups,
        "the filter filtered: {count} of {}",
        truth.groups
    );
    let log = t.graph_requests();
    assert!(log.len() > 2);
    for r in &log {
        assert_eq!(
            r.headers.get("consistencylevel").map(String::as_str),
            Some("eventual"),
            "{:?}",
            r.query
        );
        assert!(r.query.as_deref().unwrap_or("").contains("count=true"));
        assert_eq!(r.status, 200);
    }
    // The same filter without the advanced-query parameters is refused with Graph's words.
    let err = t
        .conn
        .graph
        .get::<Value>(&Query::v1("groups").filter("onPremisesSyncEnabled ne true"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GraphError::Refused { status: 400, code, .. } if code == "Request_UnsupportedQuery"),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_checkpointed_cursor_resumes_where_it_stopped() {
    let t = T::new().await;
    let q = Query::beta("users").select(&["id"]).top(10);
    let graph = &t.conn.graph;
    let first = graph
        .page::<Value>(&graph.cursor(&q).unwrap())
        .await
        .unwrap();
    let saved = serde_json::to_string(first.next.as_ref().unwrap()).unwrap();
    // Debug output of a cursor hides the skiptoken.
    assert!(format!("{:?}", first.next.as_ref().unwrap()).contains("skiptoken=***"));
    let cursor: PageCursor = serde_json::from_str(&saved).unwrap();
    let rest: Vec<Value> = graph
        .pages_from::<Value>(Ok(cursor))
        .map_ok(|p| p.items)
        .try_concat()
        .await
        .unwrap();
    assert_eq!(first.items.len() + rest.len(), t.sim.truth().users);
    assert!(t.graph_requests().iter().all(|r| r.path == "/beta/users"));
}

#[tokio::test]
async fn single_resources_writes_and_not_found() {
    let t = T::new().await;
    let graph = &t.conn.graph;
    let users: Vec<Value> = graph
        .items(Query::v1("users").select(&["id"]).top(999))
        .try_collect()
        .await
        .unwrap();
    let groups: Vec<Value> = graph
        .items(
            Query::v1("groups")
                .select(&[
                    "id",
                    "groupTypes",
                    "mailEnabled",
                    "securityEnabled",
                    "onPremisesSyncEnabled",
                    "membershipRule",
                ])
                .top(999),
        )
        .try_collect()
        .await
        .unwrap();
    let group = groups
        .iter()
        .find(|g| {
            g["mailEnabled"] == false
                && g["securityEnabled"] == true
                && g["onPremisesSyncEnabled"] != true
                && g["membershipRule"].is_null()
        })
        .expect("a cloud security group");
    let gid = group["id"].as_str().unwrap();
    let members: Vec<Value> = graph
        .items(Query::v1(format!("groups/{gid}/members")).select(&["id"]))
        .try_collect()
        .await
        .unwrap();
    let outsider = users
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .find(|id| !members.iter().any(|m| m["id"] == id.as_str()))
        .unwrap();
    let body = graph.directory_object_ref(&outsider.parse().unwrap());
    assert_eq!(
        body["@odata.id"],
        format!("{}/v1.0/directoryObjects/{outsider}", t.sim.base_url())
    );
    let r = graph
        .send(
            http::Method::POST,
            &Query::v1(format!("groups/{gid}/members/$ref")),
            Some(&body),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert!(
        t.sim
            .group_members(gid.parse().unwrap())
            .unwrap()
            .contains(&outsider.parse().unwrap()),
        "in Entra's ground truth"
    );
    // Adding again: Graph's "already exist" refusal, recognisable by callers.
    let again = graph
        .send(
            http::Method::POST,
            &Query::v1(format!("groups/{gid}/members/$ref")),
            Some(&body),
        )
        .await
        .unwrap_err();
    assert!(again.is_already_exists(), "{again:?}");
    assert_eq!(t.conn.graph.stats().retries, 0, "a 400 is not retried");
    let remove = Query::v1(format!("groups/{gid}/members/{outsider}/$ref"));
    let r = graph
        .send(http::Method::DELETE, &remove, None)
        .await
        .unwrap();
    assert_eq!((r.status, r.body), (204, None));
    assert!(
        !t.sim
            .group_members(gid.parse().unwrap())
            .unwrap()
            .contains(&outsider.parse().unwrap())
    );
    // Removing again: already gone, which a revoke treats as done.
    let gone = graph
        .send(http::Method::DELETE, &remove, None)
        .await
        .unwrap_err();
    assert!(gone.is_already_absent(), "{gone:?}");

    let missing = graph
        .get::<Value>(&Query::new(
            ApiVersion::V1,
            "users/00000000-0000-0000-0000-00000000abcd",
        ))
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
    assert_eq!(missing.code(), Some("Request_ResourceNotFound"));
}

#[tokio::test]
async fn delta_rounds_end_with_a_delta_link_that_resumes_later() {
    use futures::StreamExt;
    let t = T::new().await;
    let graph = &t.conn.graph;
    let q = Query::v1("users/delta")
        .select(&["id", "displayName"])
        .top(7);
    let mut pages = graph.pages::<Value>(q);
    let mut seen = 0;
    let mut delta = None;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        seen += page.items.len();
        if page.next.is_none() {
            delta = page.delta_link;
        }
    }
    assert_eq!(seen, t.sim.truth().users);
    let delta = delta.expect("the last page of a delta round carries @odata.deltaLink");
    // Nothing changed: an empty round.
    let again: Vec<Value> = graph
        .pages_from::<Value>(Ok(delta.clone()))
        .map_ok(|p| p.items)
        .try_concat()
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    // A change out of band shows up in the next round.
    let id: uuid::Uuid = graph
        .items::<Value>(Query::v1("users").select(&["id"]).top(1))
        .try_next()
        .await
        .unwrap()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    t.sim
        .apply(latchkey_entra_sim::Change::UpdateUser {
            id,
            display_name: Some("Renamed Person".into()),
            job_title: None,
            account_enabled: None,
        })
        .unwrap();
    let changed: Vec<Value> = graph
        .pages_from::<Value>(Ok(delta))
        .map_ok(|p| p.items)
        .try_concat()
        .await
        .unwrap();
    assert!(
        changed
            .iter()
            .any(|u| u["id"] == id.to_string().as_str() && u["displayName"] == "Renamed Person"),
        "{changed:?}"
    );
}

#[tokio::test]
async fn concurrent_streams_share_the_client_under_token_bucket_throttling() {
    use latchkey_entra_sim::{Faults, SimConfig, Throttle};
    let t = T::with(SimConfig::small(7).with_faults(Faults {
        throttle: Throttle::TokenBucket { scale: 0.015 },
        ..Faults::default()
    }))
    .await;
    let users = t.sim.truth().users;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let graph = t.conn.graph.clone();
            tokio::spawn(async move {
                graph
                    .items::<Value>(Query::v1("users").select(&["id"]).top(5))
                    .try_collect::<Vec<_>>()
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap().expect("completes despite 429s").len(),
            users
        );
    }
    let s = t.conn.graph.stats();
    assert!(s.throttled > 0, "the bucket ran dry: {s:?}");
    assert_eq!(s.requests, 8 * users.div_ceil(5) as u64 + s.throttled);
    assert_eq!(t.token_requests(), 1, "one token for all tasks");
}
