//! Token issuance, expiry, revocation, secret rotation and signing-key rotation.

use crate::support::TestApp;
use latchkey_core::{ApiClientId, Role};
use latchkey_web::auth::token::TokenKeys;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

async fn me(app: &TestApp, token: &str) -> (StatusCode, Value) {
    let r = app
        .api()
        .get(app.url("/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn issued_by_form_json_and_basic_auth() {
    let app = TestApp::spawn().await;
    let (org, _) = app.org("acme").await;
    let (id, secret, form_token) = app.api_token(org, Role::ConnectorAdmin).await;
    let (status, body) = me(&app, &form_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["role"], "connector_admin");

    let r = app
        .api()
        .post(app.url("/api/v1/auth/token"))
        .json(
            &json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(
        me(&app, body["access_token"].as_str().unwrap()).await.0,
        StatusCode::OK
    );

    let r = app
        .api()
        .post(app.url("/api/v1/auth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_requests_get_oauth2_error_bodies() {
    let app = TestApp::spawn().await;
    let (org, _) = app.org("acme").await;
    let (id, _, _) = app.api_token(org, Role::Member).await;
    let post = |form: Vec<(&'static str, String)>| {
        let app_url = app.url("/api/v1/auth/token");
        let client = app.api();
        async move { client.post(app_url).form(&form).send().await.unwrap() }
    };
    let r = post(vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", id.clone()),
        ("client_secret", "lks_wrong".into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"].is_string());

    let r = post(vec![
        ("grant_type", "client_credentials".into()),
        ("client_id", "lkc_unknown".into()),
        ("client_secret", "x".into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = post(vec![
        ("grant_type", "password".into()),
        ("client_id", id.clone()),
        ("client_secret", "x".into()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );

    let r = post(vec![("client_id", id.clone())]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
}

#[tokio::test]
async fn missing_malformed_tampered_and_expired_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let (org, _) = app.org("acme").await;
    let (_, _, token) = app.api_token(org, Role::Member).await;

    let r = app.api().get(app.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );

    assert_eq!(me(&app, "not-a-jwt").await.0, StatusCode::UNAUTHORIZED);
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(me(&app, &tampered).await.0, StatusCode::UNAUTHORIZED);

    // A token whose lifetime has passed.
    let client_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_clients")
        .fetch_one(app.store().system())
        .await
        .unwrap();
    let keys = TokenKeys::derive(&app.keys);
    let expired = keys.issue(&TokenKeys::new_claims(
        org,
        ApiClientId(client_id),
        Role::Member,
        1,
        -120,
    ));
    let (status, body) = me(&app, &expired).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // A well-signed token naming another organization does not let the client in there.
    let (other, _) = app.org("other").await;
    let forged = keys.issue(&TokenKeys::new_claims(
        other,
        ApiClientId(client_id),
        Role::SuperAdmin,
        1,
        300,
    ));
    assert_eq!(me(&app, &forged).await.0, StatusCode::UNAUTHORIZED);

    // Signed with a key this deployment does not have.
    let foreign = TokenKeys::derive(
        &latchkey_crypto::KeyRing::parse(&latchkey_crypto::generate_key_entry("k1")).unwrap(),
    );
    let alien = foreign.issue(&TokenKeys::new_claims(
        org,
        ApiClientId(client_id),
        Role::Member,
        1,
        300,
    ));
    assert_eq!(me(&app, &alien).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revocation_and_rotation_apply_immediately() {
    let app = TestApp::spawn().await;
    let (org, _) = app.org("acme").await;
    let (_, _, admin) = app.api_token(org, Role::SuperAdmin).await;
    let (victim_id, victim_secret, victim_token) = app.api_token(org, Role::Member).await;
    let victim_uuid: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM api_clients WHERE client_id = $1")
            .bind(&victim_id)
            .fetch_one(app.store().system())
            .await
            .unwrap();

    // Rotation: the old secret and the token issued with it stop working; the new secret works.
    let new =
        latchkey_web::api::api_clients::rotate_client(app.store(), org, ApiClientId(victim_uuid))
            .await
            .unwrap();
    assert_eq!(new.client_id, victim_id);
    assert_eq!(me(&app, &victim_token).await.0, StatusCode::UNAUTHORIZED);
    let r = app
        .api()
        .post(app.url("/api/v1/auth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &victim_id),
            ("client_secret", &victim_secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let fresh = app.token(&victim_id, &new.client_secret).await;
    assert_eq!(me(&app, &fresh).await.0, StatusCode::OK);

    // Revocation through the API: the live token dies at once, and no new one is issued.
    let r = app
        .api()
        .post(app.url(&format!("/api/v1/api-clients/{victim_uuid}/revoke")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.json::<Value>().await.unwrap()["revoked_at"].is_string());
    assert_eq!(me(&app, &fresh).await.0, StatusCode::UNAUTHORIZED);
    let r = app
        .api()
        .post(app.url("/api/v1/auth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &victim_id),
            ("client_secret", &new.client_secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signing_keys_rotate_with_the_master_key_ring() {
    let old_entry = latchkey_crypto::generate_key_entry("old");
    let app = TestApp::spawn_with(|_| {}, old_entry.clone()).await;
    let (org, _) = app.org("acme").await;
    let (id, secret, old_token) = app.api_token(org, Role::Member).await;
    assert_eq!(header_kid(&old_token), "old");

    // A new deployment with a new active key and the old one kept: old tokens still verify,
    // new tokens are signed with the new key.
    let ring = Arc::new(
        latchkey_crypto::KeyRing::parse(&format!(
            "{},{old_entry}",
            latchkey_crypto::generate_key_entry("new")
        ))
        .unwrap(),
    );
    let TestApp { db, .. } = app;
    let app2 = TestApp::serve(db, ring, |_| {}).await;
    assert_eq!(me(&app2, &old_token).await.0, StatusCode::OK);
    let new_token = app2.token(&id, &secret).await;
    assert_eq!(header_kid(&new_token), "new");
    assert_eq!(me(&app2, &new_token).await.0, StatusCode::OK);

    // Once the old key leaves the ring, its tokens stop verifying.
    let only_new = Arc::new(
        latchkey_crypto::KeyRing::parse(&format!("new:{}", b64(app2.keys.active().bytes())))
            .unwrap(),
    );
    let TestApp { db, .. } = app2;
    let app3 = TestApp::serve(db, only_new, |_| {}).await;
    assert_eq!(me(&app3, &old_token).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&app3, &new_token).await.0, StatusCode::OK);
}

fn header_kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
