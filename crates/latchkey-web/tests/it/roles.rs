//! Role checks on pages and API endpoints.

use crate::support::{PASSWORD, TestApp};
use latchkey_core::Role;
use reqwest::StatusCode;

#[tokio::test]
async fn only_super_admins_manage_people_and_api_clients() {
    let app = TestApp::spawn().await;
    let (org, admin) = app.org("acme").await;
    app.person(org, "ca@acme.example", Role::ConnectorAdmin)
        .await;
    app.person(org, "m@acme.example", Role::Member).await;
    for email in ["ca@acme.example", "m@acme.example"] {
        let b = app.browser();
        b.login(email, PASSWORD).await;
        for page in ["/settings/people", "/settings/api-clients"] {
            let (status, html) = b.get_text(page).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{email} {page}");
            assert!(html.contains("Only Super Administrators"));
        }
        let (_, dash) = b.get_text("/dashboard").await;
        assert!(
            !dash.contains("href=\"/settings/people\""),
            "nav hides what the role cannot use"
        );
        let resp = b
            .submit(
                "/dashboard",
                &format!("/settings/people/{admin}/role"),
                &[("role", "member")],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let resp = b
            .submit(
                "/dashboard",
                "/settings/api-clients",
                &[("name", "x"), ("role", "super_admin")],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_clients")
        .fetch_one(app.store().system())
        .await
        .unwrap();
    assert_eq!(n, 0);
    let role: String = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(admin.0)
        .fetch_one(app.store().system())
        .await
        .unwrap();
    assert_eq!(role, "super_admin");
}

#[tokio::test]
async fn api_roles_are_enforced() {
    let app = TestApp::spawn().await;
    let (org, _) = app.org("acme").await;
    let (_, _, member) = app.api_token(org, Role::Member).await;
    let (_, _, admin) = app.api_token(org, Role::SuperAdmin).await;
    let api = app.api();
    let r = api
        .get(app.url("/api/v1/users"))
        .bearer_auth(&member)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = api
        .get(app.url("/api/v1/api-clients"))
        .bearer_auth(&member)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    let r = api
        .post(app.url("/api/v1/api-clients"))
        .bearer_auth(&member)
        .json(&serde_json::json!({"name": "x", "role": "super_admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let r = api
        .get(app.url("/api/v1/api-clients"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    assert!(
        body["items"][0].get("secret_hash").is_none(),
        "hashes never leave the server"
    );

    // Demoting the client in the database applies to its existing token at once.
    sqlx::query("UPDATE api_clients SET role = 'member'")
        .execute(app.store().system())
        .await
        .unwrap();
    let r = api
        .get(app.url("/api/v1/api-clients"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn api_validation_errors_are_422_with_fields() {
    let app = TestApp::spawn().await;
    let (org, _) = app.org("acme").await;
    let (_, _, admin) = app.api_token(org, Role::SuperAdmin).await;
    let api = app.api();
    let r = api
        .post(app.url("/api/v1/api-clients"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "", "role": "owner"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["name", "role"]);
    let r = api
        .post(app.url("/api/v1/api-clients"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_clients")
        .fetch_one(app.store().system())
        .await
        .unwrap();
    assert_eq!(n, 1, "only the test's own client exists");

    let r = api
        .post(app.url("/api/v1/api-clients"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "CI pipeline", "role": "connector_admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: serde_json::Value = r.json().await.unwrap();
    let secret = body["client_secret"].as_str().unwrap();
    let token = app.token(body["client_id"].as_str().unwrap(), secret).await;
    let me: serde_json::Value = api
        .get(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "connector_admin");
    assert_eq!(me["org_id"], org.to_string());
}
