//! The OpenAPI document and the router describe the same API.

use crate::support::TestApp;
use std::collections::BTreeSet;

/// The API routes as the router declares them (read from its source: axum cannot list routes).
fn routed() -> BTreeSet<(String, String)> {
    let src = include_str!("../../src/router.rs");
    let start = src.find("let api = Router::new()").expect("API block");
    let end = start + src[start..].find(".fallback(").expect("API block end");
    let block: String = src[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = BTreeSet::new();
    for part in block.split(".route(").skip(1) {
        let path = part.split('"').nth(1).unwrap().to_string();
        for method in ["get", "post", "patch", "delete", "put"] {
            if part.contains(&format!("{method}(api::"))
                || part.contains(&format!(".{method}(api::"))
            {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
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
