//! Super Administrators invite people and manage roles.

use crate::support::{PASSWORD, TestApp, location};
use reqwest::StatusCode;

#[tokio::test]
async fn invite_accept_and_role_change() {
    let app = TestApp::spawn().await;
    app.org("acme").await;
    let admin = app.browser();
    admin.login("admin@acme.example", PASSWORD).await;
    let resp = admin
        .submit(
            "/settings/people",
            "/settings/people/invite",
            &[
                ("email", "Grace@Acme.example"),
                ("display_name", "Grace Hopper"),
                ("role", "connector_admin"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    let start = html
        .find(&format!("{}/invite/", app.base))
        .expect("invite link shown once");
    let link = &html[start..start + html[start..].find('"').unwrap()];
    let path = link.trim_start_matches(&app.base).to_string();
    // The link is not shown again.
    let (_, again) = admin.get_text("/settings/people").await;
    assert!(!again.contains(&path));
    assert!(again.contains("grace@acme.example") && again.contains("Invited"));

    let grace = app.browser();
    let (status, html) = grace.get_text(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("grace@acme.example"));
    let resp = grace
        .submit(
            &path,
            &path,
            &[("password", "short"), ("password_confirm", "short")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let resp = grace
        .submit(
            &path,
            &path,
            &[("password", PASSWORD), ("password_confirm", PASSWORD)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (_, html) = grace.get_text("/dashboard").await;
    assert!(html.contains("Connector Administrator"));
    // Single use.
    let (status, html) = app.browser().get_text(&path).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("already been used or has expired"));

    // Promote Grace to Super Administrator: she then sees People.
    let grace_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'grace@acme.example'")
            .fetch_one(app.store().system())
            .await
            .unwrap();
    assert_eq!(
        grace.get("/settings/people").await.status(),
        StatusCode::FORBIDDEN
    );
    let resp = admin
        .submit(
            "/settings/people",
            &format!("/settings/people/{grace_id}/role"),
            &[("role", "super_admin")],
        )
        .await;
    assert_eq!(location(&resp), "/settings/people?notice=role");
    assert_eq!(grace.get("/settings/people").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn invalid_invitations_are_explained_and_store_nothing() {
    let app = TestApp::spawn().await;
    app.org("acme").await;
    let admin = app.browser();
    admin.login("admin@acme.example", PASSWORD).await;
    let resp = admin
        .submit(
            "/settings/people",
            "/settings/people/invite",
            &[("email", "nope"), ("display_name", ""), ("role", "owner")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("enter an email address")
            && html.contains("enter a name")
            && html.contains("unknown role")
    );
    let resp = admin
        .submit(
            "/settings/people",
            "/settings/people/invite",
            &[
                ("email", "admin@acme.example"),
                ("display_name", "Dup"),
                ("role", "member"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("already has an account")
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(app.store().system())
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn the_last_super_admin_cannot_be_demoted_or_disabled() {
    let app = TestApp::spawn().await;
    let (org, admin_id) = app.org("acme").await;
    let b = app.browser();
    b.login("admin@acme.example", PASSWORD).await;
    for action in [
        format!("/settings/people/{admin_id}/role"),
        format!("/settings/people/{admin_id}/disable"),
    ] {
        let resp = b
            .submit("/settings/people", &action, &[("role", "member")])
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{action}");
        assert!(
            resp.text()
                .await
                .unwrap()
                .contains("at least one active Super Administrator")
        );
    }
    // With a second Super Administrator, the first can step down.
    app.person(org, "second@acme.example", latchkey_core::Role::SuperAdmin)
        .await;
    let resp = b
        .submit(
            "/settings/people",
            &format!("/settings/people/{admin_id}/role"),
            &[("role", "member")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        b.get("/settings/people").await.status(),
        StatusCode::FORBIDDEN,
        "the change applies at once"
    );
}
