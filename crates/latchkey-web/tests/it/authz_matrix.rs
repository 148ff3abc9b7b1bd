//! The authorization matrix, generated from the router: every route of
//! `latchkey_web::routes::route_table()` (the list router.rs is built from, so a new route
//! is in this test the moment it exists) × every role × own and other organization × no,
//! expired, revoked, rotated, forged and wrong-kind credentials. Expectations come from the
//! route's `Access`: pages without a valid session redirect to /login, the API without a
//! valid token is 401, a role below the route's minimum is 403 (or 404), another
//! organization's ids are 404, nothing is ever a 5xx, and every answer carries the security
//! headers (CSP, nosniff, frame and referrer policy, request id).

use crate::fixtures::{Fixture, csrf_of};
use crate::support::{PASSWORD, location};
use latchkey_core::{ApiClientId, DisplayName, Role};
use latchkey_web::auth::token::TokenKeys;
use latchkey_web::routes::{Access, Route, rank, route_table};
use reqwest::{Client, Method, StatusCode};
use std::time::Instant;

/// Routes with a rule about the object on top of the role: a vault item's password is
/// revealed only to the API client that asked for the account (and the connector's owners;
/// tests/it/accounts_api.rs). Here the Super Administrator's client asked, so every other
/// caller is refused with 403 and the Super Administrator's session too.
const OWNER_ONLY: &[&str] = &["/vault/{id}/reveal", "/api/v1/vault/{id}/reveal"];

/// How a request authenticates.
enum Cred<'a> {
    None,
    /// A browser's cookie session and the CSRF token its forms carry.
    Session(&'a Client, &'a str),
    Bearer(&'a str),
}

struct Outcome {
    status: StatusCode,
    location: String,
    body: String,
    /// What is missing of the security headers every answer carries (tests/it/headers.rs
    /// checks their values on a few paths; here: on every answer of every route).
    missing_headers: Vec<&'static str>,
}

fn missing_headers(h: &reqwest::header::HeaderMap) -> Vec<&'static str> {
    let csp = h
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut out = Vec::new();
    if !csp.contains("frame-ancestors 'none'") || csp.contains("unsafe-inline") {
        out.push("content-security-policy");
    }
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        if h.get(name).is_none_or(|v| v != value) {
            out.push(name);
        }
    }
    if h.get("x-request-id").is_none() {
        out.push("x-request-id");
    }
    out
}

async fn send(f: &Fixture, route: &Route, path: &str, cred: &Cred<'_>) -> Outcome {
    let app = f.app();
    let anonymous = app.api();
    let client = match cred {
        Cred::Session(c, _) => *c,
        _ => &anonymous,
    };
    let mut req = client
        .request(route.method.clone(), app.url(path))
        .header("origin", &app.base)
        .header("sec-fetch-site", "same-origin");
    if let Cred::Bearer(t) = cred {
        req = req.bearer_auth(t);
    }
    if route.method != Method::GET {
        req = if route.path.starts_with("/api/") {
            req.json(&serde_json::json!({}))
        } else {
            let csrf = match cred {
                Cred::Session(_, t) => t.to_string(),
                _ => "not-a-token".into(),
            };
            req.form(&[("csrf_token", csrf)])
        };
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let location = location(&resp);
    let missing_headers = missing_headers(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    Outcome {
        status,
        location,
        body,
        missing_headers,
    }
}

/// `path` with every parameter an id that exists nowhere.
fn nowhere(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.starts_with('{') {
                uuid::Uuid::new_v4().to_string()
            } else {
                s.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn min_role(access: Access) -> Option<Role> {
    match access {
        Access::Session(r) | Access::Api(r) => Some(r),
        Access::Public | Access::Agent => None,
    }
}

/// The answer to a caller without valid credentials of the route's kind.
fn refused(route: &Route, o: &Outcome) -> Result<(), String> {
    match route.access {
        Access::Session(_) => {
            if o.status == StatusCode::SEE_OTHER && o.location.starts_with("/login?next=") {
                Ok(())
            } else {
                Err(format!(
                    "{} to {:?}, not a redirect to /login",
                    o.status, o.location
                ))
            }
        }
        Access::Api(_) | Access::Agent => {
            let v: serde_json::Value = serde_json::from_str(&o.body).unwrap_or_default();
            if o.status == StatusCode::UNAUTHORIZED && v["error"]["code"] == "unauthorized" {
                Ok(())
            } else {
                Err(format!("{} {:.150}, not a JSON 401", o.status, o.body))
            }
        }
        Access::Public => Ok(()),
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_route_table_says() {
    let started = Instant::now();
    let f = Fixture::build().await;
    let built = started.elapsed();
    let app = f.app();
    let routes = route_table();
    assert!(routes.len() > 100, "{} routes", routes.len());
    let mut problems: Vec<String> = Vec::new();
    let mut checks = 0usize;
    let mut check = |route: &Route, who: &str, verdict: Result<(), String>, o: &Outcome| {
        checks += 1;
        let verdict = if o.status.is_server_error() {
            Err(format!("{} {:.150}", o.status, o.body))
        } else if !o.missing_headers.is_empty() {
            Err(format!("{} without {:?}", o.status, o.missing_headers))
        } else {
            verdict
        };
        if let Err(e) = verdict {
            problems.push(format!("{} {} as {who}: {e}", route.method, route.path));
        }
    };

    // Stale credentials of a Super Administrator of the organization that owns everything.
    let stale = async |email: &str| {
        app.person(f.own.id, email, Role::SuperAdmin).await;
        let b = app.browser();
        assert_eq!(
            b.login(email, PASSWORD).await.status(),
            StatusCode::SEE_OTHER
        );
        let csrf = csrf_of(app, email).await;
        (b, csrf)
    };
    let (expired, expired_csrf) = stale("expired@acme.example").await;
    sqlx::query(
        "UPDATE sessions SET idle_expires_at = now() - interval '1 minute'
         WHERE user_id = (SELECT id FROM users WHERE email = 'expired@acme.example')",
    )
    .execute(app.store().system())
    .await
    .unwrap();
    let (signed_out, signed_out_csrf) = stale("signed-out@acme.example").await;
    let r = signed_out
        .submit("/dashboard", "/logout", &[])
        .await
        .status();
    assert_eq!(r, StatusCode::SEE_OTHER);
    let make_client = async || {
        latchkey_web::api::api_clients::create_client(
            app.store(),
            f.own.id,
            &DisplayName::parse("stale").unwrap(),
            Role::SuperAdmin,
            None,
        )
        .await
        .unwrap()
    };
    let (client, _) = make_client().await;
    let expired_token = TokenKeys::derive(&app.keys).issue(&TokenKeys::new_claims(
        f.own.id,
        ApiClientId(client.id),
        Role::SuperAdmin,
        client.generation,
        -3600,
    ));
    let (client, creds) = make_client().await;
    let revoked_token = app.token(&creds.client_id, &creds.client_secret).await;
    let r = app
        .api()
        .post(app.url(&format!("/api/v1/api-clients/{}/revoke", client.id)))
        .bearer_auth(&f.own.caller(Role::SuperAdmin).token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (client, creds) = make_client().await;
    let rotated_token = app.token(&creds.client_id, &creds.client_secret).await;
    latchkey_web::api::api_clients::rotate_client(app.store(), f.own.id, ApiClientId(client.id))
        .await
        .unwrap();
    let valid = &f.own.caller(Role::SuperAdmin).token;
    let forged_token = format!("{}x", &valid[..valid.len() - 1]);
    let admin_session = &f.own.caller(Role::SuperAdmin).browser.client;

    let stale_creds: Vec<(&str, Cred)> = vec![
        ("nobody", Cred::None),
        (
            "an expired session",
            Cred::Session(&expired.client, &expired_csrf),
        ),
        (
            "a signed-out session",
            Cred::Session(&signed_out.client, &signed_out_csrf),
        ),
        ("an expired token", Cred::Bearer(&expired_token)),
        ("a revoked client's token", Cred::Bearer(&revoked_token)),
        ("a rotated client's token", Cred::Bearer(&rotated_token)),
        ("a forged token", Cred::Bearer(&forged_token)),
    ];
    for route in &routes {
        let path = f.fill(&route.path);
        for (who, cred) in &stale_creds {
            let o = send(&f, route, &path, cred).await;
            check(route, who, refused(route, &o), &o);
        }
        // The other kind's valid credentials: a session on the API, a token on pages, a
        // person's API token on the self-hosted connector endpoints.
        let wrong = match route.access {
            Access::Session(_) => Cred::Bearer(valid),
            Access::Api(_) => Cred::Session(admin_session, ""),
            Access::Agent => Cred::Bearer(valid),
            Access::Public => continue,
        };
        let o = send(&f, route, &path, &wrong).await;
        check(
            route,
            "the other kind's credentials",
            refused(route, &o),
            &o,
        );
    }

    // Another organization's Super Administrator: ids of the first are 404, and lists of
    // its own never show them.
    let intruder = f.other.caller(Role::SuperAdmin);
    for route in routes
        .iter()
        .filter(|r| min_role(r.access).is_some() && r.path != "/logout")
    {
        let path = f.fill(&route.path);
        let cred = match route.access {
            Access::Session(_) => Cred::Session(&intruder.browser.client, &intruder.csrf),
            _ => Cred::Bearer(&intruder.token),
        };
        let o = send(&f, route, &path, &cred).await;
        let verdict = if !route.path.contains('{') {
            match f.ids.values().find(|id| o.body.contains(id.as_str())) {
                Some(id) => Err(format!("shows the other organization's {id}")),
                None => Ok(()),
            }
        } else if route.method == Method::GET {
            if o.status == StatusCode::NOT_FOUND {
                Ok(())
            } else {
                Err(format!("{} {}, not 404", o.status, o.location))
            }
        } else {
            // A write may reject its (empty) body first; either way the answer must be
            // the one an id that exists nowhere gets.
            let nowhere = send(&f, route, &nowhere(&route.path), &cred).await;
            if o.status.is_success() || o.status != nowhere.status {
                Err(format!(
                    "{}, while an id that exists nowhere gets {}",
                    o.status, nowhere.status
                ))
            } else {
                Ok(())
            }
        };
        check(route, "another organization", verdict, &o);
    }

    // Roles below the route's minimum first (refused, nothing changes), then the roles
    // allowed, reads before writes and signing out last.
    for route in &routes {
        let Some(min) = min_role(route.access) else {
            continue;
        };
        let path = f.fill(&route.path);
        for c in f.own.callers.iter().filter(|c| rank(c.role) < rank(min)) {
            let cred = match route.access {
                Access::Session(_) => Cred::Session(&c.browser.client, &c.csrf),
                _ => Cred::Bearer(&c.token),
            };
            let o = send(&f, route, &path, &cred).await;
            let verdict = if [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&o.status)
                || (route.method != Method::GET
                    && o.status.is_client_error()
                    && o.status != StatusCode::UNAUTHORIZED)
            {
                // Some writes reject a malformed body (400/422) before the role check.
                Ok(())
            } else {
                Err(format!("{}, not refused for a {}", o.status, c.role))
            };
            check(route, c.role.as_str(), verdict, &o);
        }
    }
    let mut allowed: Vec<&Route> = routes
        .iter()
        .filter(|r| min_role(r.access).is_some())
        .collect();
    allowed.sort_by_key(|r| (r.path == "/logout", r.method != Method::GET));
    for route in allowed {
        let min = min_role(route.access).unwrap();
        let path = f.fill(&route.path);
        for c in f.own.callers.iter().filter(|c| rank(c.role) >= rank(min)) {
            let cred = match route.access {
                Access::Session(_) => Cred::Session(&c.browser.client, &c.csrf),
                _ => Cred::Bearer(&c.token),
            };
            let o = send(&f, route, &path, &cred).await;
            let object_rule = OWNER_ONLY.contains(&route.path.as_str())
                && o.status == StatusCode::FORBIDDEN
                && !(route.path.starts_with("/api/") && c.role == Role::SuperAdmin);
            let verdict = if object_rule {
                Ok(())
            } else if [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&o.status)
                || o.location.starts_with("/login?next=")
            {
                Err(format!(
                    "{} {:.150}: a {} is allowed",
                    o.status, o.body, c.role
                ))
            } else {
                Ok(())
            };
            check(route, c.role.as_str(), verdict, &o);
        }
    }

    let elapsed = started.elapsed();
    println!(
        "authorization matrix: {} routes, {checks} requests checked in {elapsed:?} (fixtures {built:?})",
        routes.len()
    );
    assert!(
        problems.is_empty(),
        "{} of {checks} checks failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
