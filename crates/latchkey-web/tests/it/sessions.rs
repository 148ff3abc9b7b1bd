//! Sign-up, sign-in, sign-out, expiry and throttling over real HTTP with a cookie jar.

use crate::support::{PASSWORD, TestApp, location};
use reqwest::StatusCode;
use std::time::Duration;

#[tokio::test]
async fn sign_up_creates_org_and_signs_in_as_super_admin() {
    let app = TestApp::spawn().await;
    let b = app.browser();
    let resp = b
        .submit(
            "/signup",
            "/signup",
            &[
                ("org_name", "Acme Corp"),
                ("display_name", "Ada Lovelace"),
                ("email", "Ada@Acme.example"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/dashboard");
    let (status, html) = b.get_text("/dashboard").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Acme Corp")
            && html.contains("Ada Lovelace")
            && html.contains("Super Administrator"),
        "{html}"
    );
    // Super admins see People.
    let (status, html) = b.get_text("/settings/people").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("ada@acme.example"));
}

#[tokio::test]
async fn sign_up_rejects_bad_input_and_keeps_what_was_typed() {
    let app = TestApp::spawn().await;
    let b = app.browser();
    let resp = b
        .submit(
            "/signup",
            "/signup",
            &[
                ("org_name", "Acme"),
                ("display_name", "Ada"),
                ("email", "not-an-email"),
                ("password", "short"),
                ("password_confirm", "short"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = resp.text().await.unwrap();
    assert!(html.contains("enter an email address"), "{html}");
    assert!(html.contains("at least 12 characters"));
    assert!(html.contains("value=\"Acme\""), "org name kept");
    assert!(
        !html.contains("value=\"short\""),
        "passwords are never echoed"
    );
    let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM orgs")
        .fetch_one(app.store().system())
        .await
        .unwrap();
    assert_eq!(orgs, 0, "nothing stored from a rejected sign-up");

    // Duplicate email.
    app.org("acme").await;
    let resp = b
        .submit(
            "/signup",
            "/signup",
            &[
                ("org_name", "Other"),
                ("display_name", "X"),
                ("email", "admin@acme.example"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(resp.text().await.unwrap().contains("already exists"));
}

#[tokio::test]
async fn login_logout_and_fresh_session_each_time() {
    let app = TestApp::spawn().await;
    app.org("acme").await;
    let b = app.browser();

    // Pages need sign-in and come back to where you were going.
    let resp = b.get("/settings/people").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/login?next=%2Fsettings%2Fpeople");

    let resp = b.login("admin@acme.example", "wrong password!!").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("The email or password is not right.")
    );

    let resp = b
        .submit(
            "/login?next=/settings/people",
            "/login",
            &[
                ("email", "admin@acme.example"),
                ("password", PASSWORD),
                ("next", "/settings/people"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/settings/people");
    let first_cookie = resp
        .cookies()
        .find(|c| c.name() == "latchkey_session")
        .expect("session cookie");
    assert!(first_cookie.http_only());
    assert!(
        !first_cookie.secure(),
        "plain-http deployment: no Secure flag"
    );
    let first = first_cookie.value().to_string();

    // Session fixation: a session id planted before sign-in is never adopted; sign-in
    // always issues a fresh token.
    let fresh = app.browser();
    let (_, html) = fresh.get_text("/login").await;
    let token = crate::support::csrf_token(&html).unwrap();
    let resp = fresh
        .client
        .post(app.url("/login"))
        .header(
            "cookie",
            format!("latchkey_csrf={token}; latchkey_session=planted-by-attacker"),
        )
        .form(&[
            ("email", "admin@acme.example"),
            ("password", PASSWORD),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let second = resp
        .cookies()
        .find(|c| c.name() == "latchkey_session")
        .unwrap()
        .value()
        .to_string();
    assert!(second != first && second != "planted-by-attacker");
    let b = fresh;
    let resp = b
        .client
        .get(app.url("/dashboard"))
        .header("cookie", format!("latchkey_session={second}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Sign out: the session is gone server-side, so replaying the cookie fails too.
    let cookie = format!("latchkey_session={second}");
    let html = b
        .client
        .get(app.url("/dashboard"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = crate::support::csrf_token(&html).unwrap();
    let resp = b
        .client
        .post(app.url("/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cleared = resp
        .cookies()
        .find(|c| c.name() == "latchkey_session")
        .expect("removal cookie");
    assert_eq!(cleared.value(), "");
    let replay = app
        .api()
        .get(app.url("/dashboard"))
        .header("cookie", format!("latchkey_session={second}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        replay.status(),
        StatusCode::SEE_OTHER,
        "a signed-out session cannot be replayed"
    );
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(app.store().system())
        .await
        .unwrap();
    assert_eq!(
        sessions, 1,
        "only the first (never signed out) session remains"
    );
    let stored: String = sqlx::query_scalar("SELECT token_hash FROM sessions")
        .fetch_one(app.store().system())
        .await
        .unwrap();
    assert_ne!(stored, first, "tokens are stored hashed");
}

#[tokio::test]
async fn sessions_expire_when_idle() {
    let app = TestApp::spawn_with(
        |c| c.session_idle = Duration::from_secs(1),
        latchkey_crypto::generate_key_entry("k1"),
    )
    .await;
    app.org("acme").await;
    let b = app.browser();
    b.login("admin@acme.example", PASSWORD).await;
    assert_eq!(b.get("/dashboard").await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(b.get("/dashboard").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn sessions_end_at_absolute_expiry() {
    let app = TestApp::spawn_with(
        |c| c.session_absolute = Duration::from_secs(1),
        latchkey_crypto::generate_key_entry("k1"),
    )
    .await;
    app.org("acme").await;
    let b = app.browser();
    b.login("admin@acme.example", PASSWORD).await;
    assert_eq!(b.get("/dashboard").await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(b.get("/dashboard").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_a_clear_message() {
    let app = TestApp::spawn().await;
    app.org("acme").await;
    let b = app.browser();
    for _ in 0..5 {
        assert_eq!(
            b.login("admin@acme.example", "wrong password!!")
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right password is refused while throttled.
    let resp = b.login("admin@acme.example", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_some());
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("Too many failed sign-in attempts. Wait 15 minutes"),
        "{html}"
    );
    // Another account from elsewhere is unaffected.
    app.person(
        app.org("beta").await.0,
        "other@beta.example",
        latchkey_core::Role::Member,
    )
    .await;
    assert_eq!(
        b.login("other@beta.example", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn disabled_people_cannot_sign_in_and_lose_their_sessions() {
    let app = TestApp::spawn().await;
    let (org, _) = app.org("acme").await;
    let member = app
        .person(org, "m@acme.example", latchkey_core::Role::Member)
        .await;
    let m = app.browser();
    m.login("m@acme.example", PASSWORD).await;
    assert_eq!(m.get("/dashboard").await.status(), StatusCode::OK);

    let admin = app.browser();
    admin.login("admin@acme.example", PASSWORD).await;
    let resp = admin
        .submit(
            "/settings/people",
            &format!("/settings/people/{member}/disable"),
            &[],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);

    assert_eq!(
        m.get("/dashboard").await.status(),
        StatusCode::SEE_OTHER,
        "session ended"
    );
    let resp = m.login("m@acme.example", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("This account is disabled")
    );
}

#[tokio::test]
async fn open_redirects_after_sign_in_are_refused() {
    let app = TestApp::spawn().await;
    app.org("acme").await;
    let b = app.browser();
    let resp = b
        .submit(
            "/login",
            "/login",
            &[
                ("email", "admin@acme.example"),
                ("password", PASSWORD),
                ("next", "//evil.example/x"),
            ],
        )
        .await;
    assert_eq!(location(&resp), "/dashboard");
}
