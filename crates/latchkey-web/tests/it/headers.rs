//! Security headers on every response; secure cookies over https.

use crate::support::{PASSWORD, TestApp};
use reqwest::StatusCode;

#[tokio::test]
async fn every_response_carries_security_headers() {
    let app = TestApp::spawn().await;
    let b = app.browser();
    for path in ["/login", "/signup", "/nowhere", "/api/v1/me", "/healthz"] {
        let r = b.get(path).await;
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(h.contains_key("x-request-id"));
    }
    let (status, html) = b.get_text("/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("Not found"));
    let r = b.get("/api/v1/nothing-here").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
}

#[tokio::test]
async fn https_deployments_get_host_prefixed_secure_cookies() {
    let app = TestApp::spawn_with(
        |c| c.public_url = url::Url::parse("https://latchkey.example.com/").unwrap(),
        latchkey_crypto::generate_key_entry("k1"),
    )
    .await;
    app.org("acme").await;
    let b = app.browser();
    let r = b.get("/login").await;
    let csrf = r
        .cookies()
        .find(|c| c.name() == "__Host-latchkey_csrf")
        .expect("csrf cookie");
    assert!(csrf.secure() && csrf.http_only());
    let csrf_value = csrf.value().to_string();
    // Posting as the public origin.
    let html = r.text().await.unwrap();
    let token = crate::support::csrf_token(&html).unwrap();
    let resp = b
        .client
        .post(app.url("/login"))
        .header("origin", "https://latchkey.example.com")
        .header("cookie", format!("__Host-latchkey_csrf={csrf_value}"))
        .form(&[
            ("email", "admin@acme.example"),
            ("password", PASSWORD),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let session = resp
        .cookies()
        .find(|c| c.name() == "__Host-latchkey_session")
        .expect("session cookie");
    assert!(session.secure() && session.http_only());
    assert_eq!(session.path(), Some("/"));
    assert!(session.same_site_lax());
}
