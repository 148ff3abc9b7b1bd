//! CSRF: forms without the right token, and cross-site posts, are refused.

use crate::support::{PASSWORD, TestApp};
use reqwest::StatusCode;

#[tokio::test]
async fn forms_without_a_valid_token_are_refused() {
    let app = TestApp::spawn().await;
    app.org("acme").await;
    let b = app.browser();
    // Pre-session form without its token.
    let resp = b
        .post(
            "/login",
            &[("email", "admin@acme.example"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.unwrap().contains("This form has expired"));

    b.login("admin@acme.example", PASSWORD).await;
    // Session form: missing and wrong tokens.
    let resp = b
        .post(
            "/settings/people/invite",
            &[
                ("email", "x@acme.example"),
                ("display_name", "X"),
                ("role", "member"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = b
        .post(
            "/settings/people/invite",
            &[
                ("email", "x@acme.example"),
                ("display_name", "X"),
                ("role", "member"),
                ("csrf_token", "guess"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(app.store().system())
        .await
        .unwrap();
    assert_eq!(n, 1, "nothing was created");

    // Another session's token does not work either.
    let other = app.browser();
    other.login("admin@acme.example", PASSWORD).await;
    let (_, html) = other.get_text("/settings/people").await;
    let foreign = crate::support::csrf_token(&html).unwrap();
    let resp = b
        .post(
            "/settings/people/invite",
            &[
                ("email", "x@acme.example"),
                ("display_name", "X"),
                ("role", "member"),
                ("csrf_token", &foreign),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn cross_site_posts_are_refused_even_with_a_token() {
    let app = TestApp::spawn().await;
    app.org("acme").await;
    let b = app.browser();
    b.login("admin@acme.example", PASSWORD).await;
    let (_, html) = b.get_text("/settings/people").await;
    let token = crate::support::csrf_token(&html).unwrap();
    let resp = b
        .client
        .post(app.url("/settings/people/invite"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .form(&[
            ("email", "x@acme.example"),
            ("display_name", "X"),
            ("role", "member"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}
