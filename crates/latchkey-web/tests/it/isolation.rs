//! Organization A never sees or touches organization B, in pages or the API.

use crate::support::{PASSWORD, TestApp};
use latchkey_core::Role;
use reqwest::StatusCode;

#[tokio::test]
async fn pages_cannot_reach_another_orgs_people() {
    let app = TestApp::spawn().await;
    app.org("alpha").await;
    let (beta, beta_admin) = app.org("beta").await;
    let beta_member = app.person(beta, "m@beta.example", Role::Member).await;
    let a = app.browser();
    a.login("admin@alpha.example", PASSWORD).await;
    let (_, html) = a.get_text("/settings/people").await;
    assert!(html.contains("admin@alpha.example"));
    assert!(
        !html.contains("beta.example"),
        "another org's people are invisible"
    );
    for action in [
        format!("/settings/people/{beta_admin}/role"),
        format!("/settings/people/{beta_member}/disable"),
        format!("/settings/people/{beta_member}/enable"),
    ] {
        let resp = a
            .submit("/settings/people", &action, &[("role", "member")])
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{action}");
    }
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(beta_admin.0)
        .fetch_one(app.store().system())
        .await
        .unwrap();
    assert_eq!(role, "super_admin");
    let disabled: bool =
        sqlx::query_scalar("SELECT disabled_at IS NOT NULL FROM users WHERE id = $1")
            .bind(beta_member.0)
            .fetch_one(app.store().system())
            .await
            .unwrap();
    assert!(!disabled);

    // Another org's API client cannot be rotated or revoked from here either.
    let (beta_client, _, _) = app.api_token(beta, Role::Member).await;
    let beta_client_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM api_clients WHERE client_id = $1")
            .bind(&beta_client)
            .fetch_one(app.store().system())
            .await
            .unwrap();
    for action in [
        format!("/settings/api-clients/{beta_client_id}/rotate"),
        format!("/settings/api-clients/{beta_client_id}/revoke"),
    ] {
        let resp = a.submit("/settings/api-clients", &action, &[]).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{action}");
    }
    let revoked: bool =
        sqlx::query_scalar("SELECT revoked_at IS NOT NULL FROM api_clients WHERE id = $1")
            .bind(beta_client_id)
            .fetch_one(app.store().system())
            .await
            .unwrap();
    assert!(!revoked);
}

#[tokio::test]
async fn api_answers_404_for_another_orgs_objects() {
    let app = TestApp::spawn().await;
    let (alpha, _) = app.org("alpha").await;
    let (beta, beta_admin) = app.org("beta").await;
    let (_, _, alpha_token) = app.api_token(alpha, Role::SuperAdmin).await;
    let (beta_client, _, _) = app.api_token(beta, Role::SuperAdmin).await;
    let beta_client_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM api_clients WHERE client_id = $1")
            .bind(&beta_client)
            .fetch_one(app.store().system())
            .await
            .unwrap();
    let api = app.api();
    let list: serde_json::Value = api
        .get(app.url("/api/v1/users"))
        .bearer_auth(&alpha_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let emails: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, vec!["admin@alpha.example"]);

    for (method, path) in [
        ("GET", format!("/api/v1/users/{beta_admin}")),
        ("GET", format!("/api/v1/api-clients/{beta_client_id}")),
        (
            "POST",
            format!("/api/v1/api-clients/{beta_client_id}/revoke"),
        ),
        ("GET", "/api/v1/users/not-a-uuid".to_string()),
    ] {
        let r = api
            .request(method.parse().unwrap(), app.url(&path))
            .bearer_auth(&alpha_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn pagination_uses_cursors() {
    let app = TestApp::spawn().await;
    let (org, _) = app.org("alpha").await;
    for i in 0..4 {
        app.person(org, &format!("p{i}@alpha.example"), Role::Member)
            .await;
    }
    let (_, _, token) = app.api_token(org, Role::Member).await;
    let api = app.api();
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let mut url = app.url("/api/v1/users?limit=2");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = api
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["email"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    let r = api
        .get(app.url("/api/v1/users?cursor=garbage"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
