//! Wire cases the simulated tenant does not produce, against a scripted stand-in for login and
//! Graph: empty pages that are not the last, links to other hosts, redirects, one-off 401s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use futures::TryStreamExt;
use latchkey_entra::{ConnectionSettings, GraphError, Query};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::{connect_with, fast_retries};

#[derive(Default)]
struct Seen {
    org_domain: String,
    hits: HashMap<String, usize>,
    tokens_issued: usize,
    auth_headers: Vec<String>,
}

type St = Arc<Mutex<Seen>>;

struct Fake {
    base: String,
    seen: St,
    _task: tokio::task::JoinHandle<()>,
}

async fn token(State(st): State<St>) -> Response {
    let n = {
        let mut s = st.lock().unwrap();
        s.tokens_issued += 1;
        s.tokens_issued
    };
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"roles": ["User.Read.All"], "n": n}).to_string());
    axum::Json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": format!("eyJhbGciOiJub25lIn0.{payload}.sig{n}")})).into_response()
}

fn page(items: Value, next: Option<String>) -> Response {
    let mut v = json!({"value": items});
    if let Some(n) = next {
        v["@odata.nextLink"] = json!(n);
    }
    axum::Json(v).into_response()
}

async fn graph(State(st): State<St>, Path(rest): Path<String>, headers: HeaderMap) -> Response {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    let base = format!("http://{host}/v1.0");
    let hit = {
        let mut s = st.lock().unwrap();
        let auth = headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        s.auth_headers.push(auth);
        let h = s.hits.entry(rest.clone()).or_default();
        *h += 1;
        *h
    };
    match rest.as_str() {
        // An empty page and a short page are not the end; only a missing nextLink is.
        "items" => page(json!([]), Some(format!("{base}/items2?$skiptoken=a"))),
        "items2" => page(json!([{"id": "1"}, {"id": "2"}]), Some(format!("{base}/items3?$skiptoken=b"))),
        "items3" => page(json!([{"id": "3"}]), None),
        "metadata" => page(json!([{"id": "1"}]), Some("http://169.254.169.254/latest/meta-data/".into())),
        "otherhost" => page(json!([{"id": "1"}]), Some(format!("http://localhost:{}/v1.0/items3", host.rsplit(':').next().unwrap_or("80")))),
        "redirect" => (StatusCode::FOUND, [("location", format!("{base}/target"))]).into_response(),
        "target" => page(json!([{"id": "leak"}]), None),
        "unauth-once" if hit == 1 => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired or is not yet valid."}})),
        )
            .into_response(),
        "unauth-once" => page(json!([{"id": "ok"}]), None),
        "http-date" if hit == 1 => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
            axum::Json(json!({"error": {"code": "TooManyRequests", "message": "Please retry again later."}})),
        )
            .into_response(),
        "http-date" => page(json!([]), None),
        "no-retry-after" if hit <= 2 => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": {"code": "serviceNotAvailable", "message": "Service unavailable."}})),
        )
            .into_response(),
        "no-retry-after" => page(json!([]), None),
        "garbage" => (StatusCode::OK, "<html>not json</html>").into_response(),
        "truncated" => (StatusCode::OK, r#"{"value":[{"id":"1"},{"id":"#).into_response(),
        // A page larger than any Graph sends, streamed without a length (and with one).
        "huge" | "huge-declared" => {
            let mut body = br#"{"value":[""#.to_vec();
            body.resize(latchkey_entra::graph::MAX_RESPONSE_BYTES + 1024, b'a');
            body.extend_from_slice(br#""]}"#);
            if rest == "huge" {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                    body.chunks(1 << 20).map(|c| Ok(c.to_vec())).collect();
                axum::body::Body::from_stream(futures::stream::iter(chunks)).into_response()
            } else {
                (StatusCode::OK, body).into_response()
            }
        }
        "gateway" => (
            StatusCode::GATEWAY_TIMEOUT,
            axum::Json(json!({"error": {"code": "gatewayTimeout", "message": "The gateway did not receive a timely response."}})),
        )
            .into_response(),
        "organization" => {
            let domain = st.lock().unwrap().org_domain.clone();
            axum::Json(json!({"value": [{
                "id": "aaaaaaaa-0000-4000-8000-000000000001", "displayName": "Fabrikam",
                "verifiedDomains": [{"name": domain, "isDefault": true, "isInitial": true}]
            }]}))
            .into_response()
        }
        app if app.starts_with("applications(appId='11111111-2222-3333-4444-555555555555')") => {
            let soon = time::OffsetDateTime::now_utc() + time::Duration::days(10) + time::Duration::hours(1);
            let later = time::OffsetDateTime::now_utc() + time::Duration::days(400);
            let fmt = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
            axum::Json(json!({"id": "app", "displayName": "Latchkey connector", "passwordCredentials": [
                {"displayName": "old", "hint": "zzz", "endDateTime": fmt(later)},
                {"displayName": "in use", "hint": "abc", "endDateTime": fmt(soon)}
            ]}))
            .into_response()
        }
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"code": "Request_ResourceNotFound", "message": "nope"}}))).into_response(),
    }
}

async fn fake() -> Fake {
    let seen: St = Arc::default();
    seen.lock().unwrap().org_domain = "contoso.onmicrosoft.com".into();
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/v1.0/{*rest}", get(graph).post(graph))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fake {
        base,
        seen,
        _task: task,
    }
}

fn conn(f: &Fake) -> latchkey_entra::Connection {
    connect_with(
        &ConnectionSettings {
            tenant_id: "contoso.onmicrosoft.com".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            client_secret: SecretString::from("abc~secret".to_string()),
            graph_domain: Some(f.base.clone()),
            login_authority: None,
        },
        fast_retries(),
    )
}

#[tokio::test]
async fn empty_and_short_pages_do_not_end_the_collection() {
    let f = fake().await;
    let c = conn(&f);
    let items: Vec<Value> = c
        .graph
        .items(Query::v1("items"))
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<&str> = items.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3"]);
}

#[tokio::test]
async fn links_to_other_hosts_are_not_followed() {
    let f = fake().await;
    let c = conn(&f);
    for path in ["metadata", "otherhost"] {
        let err = c
            .graph
            .items::<Value>(Query::v1(path))
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert!(
            matches!(err, GraphError::UnsafeLink { .. }),
            "{path}: {err:?}"
        );
    }
    assert_eq!(
        f.seen.lock().unwrap().hits.get("items3"),
        None,
        "the token never went to localhost"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let f = fake().await;
    let c = conn(&f);
    let err = c
        .graph
        .get::<Value>(&Query::v1("redirect"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GraphError::Refused { status: 302, .. }),
        "{err:?}"
    );
    assert_eq!(f.seen.lock().unwrap().hits.get("target"), None);
}

#[tokio::test]
async fn a_401_gets_one_new_token() {
    let f = fake().await;
    let c = conn(&f);
    let v: Value = c.graph.get(&Query::v1("unauth-once")).await.unwrap();
    assert_eq!(v["value"][0]["id"], "ok");
    let s = f.seen.lock().unwrap();
    assert_eq!(s.tokens_issued, 2);
    assert_ne!(
        s.auth_headers[0], s.auth_headers[1],
        "the retry carried the new token"
    );
    assert!(s.auth_headers[1].starts_with("Bearer eyJ"));
    assert_eq!(c.graph.stats().token_refreshes, 1);
}

#[tokio::test]
async fn retry_after_as_a_date_and_backoff_without_it() {
    let f = fake().await;
    let c = conn(&f);
    c.graph.get::<Value>(&Query::v1("http-date")).await.unwrap();
    assert_eq!(
        c.graph.stats().retry_wait_ms,
        0,
        "a date in the past means now"
    );
    c.graph
        .get::<Value>(&Query::v1("no-retry-after"))
        .await
        .unwrap();
    let s = c.graph.stats();
    assert_eq!((s.throttled, s.transient_failures, s.retries), (1, 2, 3));
    assert!(s.retry_wait_ms >= 20, "backed off: {s:?}");
}

#[tokio::test]
async fn unreadable_bodies_are_decode_errors() {
    let f = fake().await;
    let c = conn(&f);
    let err = c
        .graph
        .get::<Value>(&Query::v1("garbage"))
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Decode(_)), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn an_ambiguous_failure_of_a_post_is_not_repeated() {
    let f = fake().await;
    let c = conn(&f);
    let err = c
        .graph
        .send(
            http::Method::POST,
            &Query::v1("gateway"),
            Some(&json!({"displayName": "x"})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            GraphError::Transient {
                status: Some(504),
                attempts: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        f.seen.lock().unwrap().hits.get("gateway"),
        Some(&1),
        "sent once: it may have been applied"
    );
    // A GET of the same is retried.
    let err = c
        .graph
        .get::<Value>(&Query::v1("gateway"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GraphError::Transient { attempts: 8, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_probe_reads_the_secret_expiry_and_checks_the_tenant() {
    use latchkey_entra::probe::{FeatureState, Level, ProbeOptions, Verdict, probe};
    let f = fake().await;
    let c = conn(&f);
    let r = probe(&c.graph, &ProbeOptions::default()).await;
    let secret = r.client_secret.as_ref().expect("secret read");
    assert!(
        secret.matched_secret_in_use,
        "matched by the hint 'abc': {secret:?}"
    );
    assert_eq!(secret.days_left, Some(10));
    assert!(
        r.messages.iter().any(|m| m.level == Level::Warning
            && m.text.contains("The client secret expires on")
            && m.text.contains("in 10 days")),
        "{:?}",
        r.messages
    );
    // Features the stand-in does not serve are unknown, not failures.
    assert_eq!(
        r.features.as_ref().unwrap().pim.state,
        FeatureState::Unknown
    );
    // The stand-in's token only grants User.Read.All.
    assert_eq!(r.verdict, Verdict::MissingPermissions);

    // The organization that answers is not the configured tenant.
    f.seen.lock().unwrap().org_domain = "fabrikam.onmicrosoft.com".into();
    let r = probe(&c.graph, &ProbeOptions::default()).await;
    assert_eq!(r.verdict, Verdict::Failed);
    let failure = r.failure.unwrap();
    assert_eq!(failure.field.as_deref(), Some("tenant_id"));
    assert!(
        failure
            .message
            .starts_with("The tenant that answered is Fabrikam"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn delta_links_and_stored_cursors_are_checked_too() {
    let f = fake().await;
    let c = conn(&f);
    let evil = latchkey_entra::PageCursor {
        url: "http://169.254.169.254/v1.0/users".into(),
        eventual: false,
        permission: None,
    };
    let err = c.graph.page::<Value>(&evil).await.unwrap_err();
    assert!(matches!(err, GraphError::UnsafeLink { .. }), "{err:?}");
    assert_eq!(c.graph.stats().requests, 0);
}

#[tokio::test]
async fn huge_and_truncated_pages_are_refused_without_reading_them_whole() {
    let f = fake().await;
    let c = conn(&f);
    for path in ["huge", "huge-declared", "truncated"] {
        let err = c
            .graph
            .pages::<Value>(Query::v1(path))
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert!(matches!(err, GraphError::Decode(_)), "{path}: {err:?}");
        assert!(!err.is_transient(), "{path}: not retried later either");
        assert_eq!(f.seen.lock().unwrap().hits[path], 1, "{path}: asked once");
    }
}
