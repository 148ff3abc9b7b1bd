//! Health, readiness and metrics.

use crate::support::TestApp;
use reqwest::StatusCode;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    let api = app.api();
    assert_eq!(
        api.get(app.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let r = api.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    api.get(app.url("/login")).send().await.unwrap();
    let text = api
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "latchkey_http_requests_total{method=\"GET\",route=\"/login\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("latchkey_db_pool_connections{state=\"idle\"}"));
    assert!(text.trim_end().ends_with("# EOF"));

    // A migration missing from the database makes the process not ready.
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(app.store().system())
    .await
    .unwrap();
    let r = api.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().await.unwrap().contains("latchkey migrate"));
}
