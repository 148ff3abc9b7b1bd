//! The OpenAPI document and the router describe the same API.

use crate::support::TestApp;
use std::collections::BTreeSet;

/// The API routes as the router is built (latchkey_web::routes::route_table).
fn routed() -> BTreeSet<(String, String)> {
    latchkey_web::routes::route_table()
        .into_iter()
        .filter_map(|r| {
            let path = r.path.strip_prefix("/api/v1")?.to_string();
            Some((r.method.as_str().to_ascii_lowercase(), path))
        })
        .collect()
}

#[test]
fn every_routed_endpoint_is_documented_and_nothing_else() {
    let documented: BTreeSet<(String, String)> = latchkey_web::api::openapi::documented()
        .into_iter()
        .collect();
    let routed = routed();
    assert!(routed.len() >= 15, "{routed:?}");
    assert_eq!(routed, documented);
}

#[tokio::test]
async fn the_document_is_served_and_well_formed() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = reqwest::get(app.url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/connectors"]["post"]["requestBody"].is_object());
    // Every $ref resolves.
    let text = doc.to_string();
    for piece in text.split("#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
}
