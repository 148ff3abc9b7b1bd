//! The authorization matrix, generated from the router: every route of
//! `latchkey_web::routes::route_table()` (the list router.rs is built from, so a new route
//! is in this test the moment it exists) × every role × own and other organization × no,
//! expired, revoked, rotated, forged and wrong-kind credentials. Expectations come from the
//! route's `Access`: pages without a valid session redirect to /login, the API without a
//! valid token is 401, a role below the route's minimum is 403 (a page may say 404), another
//! organization's ids are 404, nothing is ever a 5xx, and every answer carries the security
//! headers (CSP, nosniff, frame and referrer policy, request id).

use crate::fixtures::{Caller, Fixture, csrf_of};
use crate::support::{PASSWORD, location};
use futures::StreamExt;
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
#[derive(Clone)]
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
    took: std::time::Duration,
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
    let sent = Instant::now();
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
        took: sent.elapsed(),
    }
}

/// Requests in flight at once (the order of answers is kept).
const PARALLEL: usize = 8;

/// What a case's answer must be.
enum Expect {
    /// No valid credentials of the route's kind: a redirect to /login, or a JSON 401.
    Refused,
    /// Another organization's id: 404.
    NotFound,
    /// Another organization's list: none of the first organization's ids in it.
    NoOwnIds,
    /// Another organization's id in a write: refused as an id that exists nowhere is.
    AsNowhere,
    /// A role below the route's minimum: 403 from the API; 403/404 from a page (a page's
    /// write may reject its form first: 4xx).
    Below,
    /// A role allowed: not refused (whatever the empty form or body then gets).
    Allowed(Role),
}

/// One request of the matrix.
struct Case<'a> {
    route: &'a Route,
    who: String,
    path: String,
    cred: Cred<'a>,
    expect: Expect,
}

impl<'a> Case<'a> {
    fn new(route: &'a Route, who: &str, path: &str, cred: Cred<'a>, expect: Expect) -> Self {
        Case {
            route,
            who: who.to_string(),
            path: path.to_string(),
            cred,
            expect,
        }
    }
}

impl Caller {
    fn cred(&self, route: &Route) -> Cred<'_> {
        match route.access {
            Access::Session(_) => Cred::Session(&self.browser.client, &self.csrf),
            _ => Cred::Bearer(&self.token),
        }
    }
}

/// Sends every case, `parallel` at a time; answers in the cases' order (with, for
/// `AsNowhere`, the answer to the same request with ids that exist nowhere).
async fn run<'a>(
    f: &'a Fixture,
    cases: Vec<Case<'a>>,
    parallel: usize,
) -> Vec<(Case<'a>, Outcome, Option<Outcome>)> {
    futures::stream::iter(cases)
        .map(|c| async move {
            let o = send(f, c.route, &c.path, &c.cred).await;
            let nowhere = match c.expect {
                Expect::AsNowhere => Some(send(f, c.route, &nowhere(&c.route.path), &c.cred).await),
                _ => None,
            };
            (c, o, nowhere)
        })
        .buffered(parallel)
        .collect()
        .await
}

fn verdict(f: &Fixture, c: &Case, o: &Outcome, nowhere: Option<&Outcome>) -> Result<(), String> {
    let route = c.route;
    match c.expect {
        Expect::Refused => refused(route, o),
        Expect::NotFound if o.status == StatusCode::NOT_FOUND => Ok(()),
        Expect::NotFound => Err(format!("{} {}, not 404", o.status, o.location)),
        Expect::NoOwnIds => match f.ids.values().find(|id| o.body.contains(id.as_str())) {
            Some(id) => Err(format!("shows the other organization's {id}")),
            None => Ok(()),
        },
        Expect::AsNowhere => {
            let nowhere = nowhere.expect("sent");
            if o.status.is_success() || o.status != nowhere.status {
                Err(format!(
                    "{}, while an id that exists nowhere gets {}",
                    o.status, nowhere.status
                ))
            } else {
                Ok(())
            }
        }
        Expect::Below => {
            // The API checks the role before anything else of the request (routes.rs gate);
            // a page's write may read its form first.
            let refused = match route.access {
                Access::Api(_) => o.status == StatusCode::FORBIDDEN,
                _ => {
                    [StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&o.status)
                        || (route.method != Method::GET
                            && o.status.is_client_error()
                            && o.status != StatusCode::UNAUTHORIZED)
                }
            };
            if refused {
                Ok(())
            } else {
                Err(format!("{}, not refused for a {}", o.status, c.who))
            }
        }
        Expect::Allowed(role) => {
            let object_rule = OWNER_ONLY.contains(&route.path.as_str())
                && o.status == StatusCode::FORBIDDEN
                && !(route.path.starts_with("/api/") && role == Role::SuperAdmin);
            if object_rule {
                Ok(())
            } else if [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&o.status)
                || o.location.starts_with("/login?next=")
            {
                Err(format!(
                    "{} {:.150}: {} is allowed",
                    o.status, o.body, c.who
                ))
            } else {
                Ok(())
            }
        }
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

// Both cores: server and client share the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let forged_agent = format!("{}x", &f.own.agent[..f.own.agent.len() - 1]);
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
        ("a forged connector token", Cred::Bearer(&forged_agent)),
    ];
    let mut phases: Vec<Vec<Case>> = Vec::new();
    let mut stale_cases = Vec::new();
    for route in &routes {
        let path = f.fill(&route.path);
        // Stale credentials of the route's own kind (the other kind's come next).
        for (who, cred) in &stale_creds {
            let relevant = matches!(
                (cred, route.access),
                (Cred::None, _)
                    | (Cred::Session(..), Access::Session(_))
                    | (Cred::Bearer(_), Access::Api(_) | Access::Agent)
            );
            if relevant {
                stale_cases.push(Case::new(route, who, &path, cred.clone(), Expect::Refused));
            }
        }
        // The other kind's valid credentials: a session on the API, a token on pages, a
        // person's API token on the self-hosted connector endpoints.
        let wrong = match route.access {
            Access::Session(_) => Cred::Bearer(valid),
            Access::Api(_) => Cred::Session(admin_session, ""),
            Access::Agent => Cred::Bearer(valid),
            Access::Public => continue,
        };
        stale_cases.push(Case::new(
            route,
            "the other kind's credentials",
            &path,
            wrong,
            Expect::Refused,
        ));
    }
    phases.push(stale_cases);

    // Another organization's Super Administrator: ids of the first are 404 (a write may
    // reject its empty body first: then it must answer as for an id that exists nowhere),
    // and lists of its own never show them.
    let intruder = f.other.caller(Role::SuperAdmin);
    let mut cross = Vec::new();
    for route in routes
        .iter()
        .filter(|r| min_role(r.access).is_some() && r.path != "/logout")
    {
        let cred = match route.access {
            Access::Session(_) => Cred::Session(&intruder.browser.client, &intruder.csrf),
            _ => Cred::Bearer(&intruder.token),
        };
        let expect = if !route.path.contains('{') {
            Expect::NoOwnIds
        } else if route.method == Method::GET {
            Expect::NotFound
        } else {
            Expect::AsNowhere
        };
        cross.push(Case::new(
            route,
            "another organization",
            &f.fill(&route.path),
            cred,
            expect,
        ));
    }
    // Another organization's self-hosted connector: the first one's task is 404, and what
    // it is answered never shows the first organization's ids.
    for route in routes.iter().filter(|r| r.access == Access::Agent) {
        let expect = if route.path.contains('{') {
            Expect::NotFound
        } else {
            Expect::NoOwnIds
        };
        cross.push(Case::new(
            route,
            "another organization's connector",
            &f.fill(&route.path),
            Cred::Bearer(&f.other.agent),
            expect,
        ));
    }
    phases.push(cross);

    // Roles below the route's minimum (refused, nothing changes).
    let mut below = Vec::new();
    for route in &routes {
        let Some(min) = min_role(route.access) else {
            continue;
        };
        for c in f.own.callers.iter().filter(|c| rank(c.role) < rank(min)) {
            below.push(Case::new(
                route,
                c.role.as_str(),
                &f.fill(&route.path),
                c.cred(route),
                Expect::Below,
            ));
        }
    }
    phases.push(below);

    // The roles allowed: reads (at once), then writes one by one, signing out last.
    let mut allowed: Vec<&Route> = routes
        .iter()
        .filter(|r| min_role(r.access).is_some())
        .collect();
    allowed.sort_by_key(|r| (r.path == "/logout", r.method != Method::GET));
    let (mut reads, mut writes) = (Vec::new(), Vec::new());
    for route in allowed {
        let min = min_role(route.access).unwrap();
        for c in f.own.callers.iter().filter(|c| rank(c.role) >= rank(min)) {
            let case = Case::new(
                route,
                c.role.as_str(),
                &f.fill(&route.path),
                c.cred(route),
                Expect::Allowed(c.role),
            );
            if route.method == Method::GET {
                reads.push(case);
            } else {
                writes.push(case);
            }
        }
    }
    // The self-hosted connector on its own task: not refused (a missing lease is its 4xx).
    for route in routes.iter().filter(|r| r.access == Access::Agent) {
        writes.push(Case::new(
            route,
            "its connector",
            &f.fill(&route.path),
            Cred::Bearer(&f.own.agent),
            Expect::Allowed(Role::Member),
        ));
    }
    phases.push(reads);
    let mut outcomes = Vec::new();
    for phase in phases {
        outcomes.extend(run(&f, phase, PARALLEL).await);
    }
    outcomes.extend(run(&f, writes, 1).await);
    for (case, o, nowhere) in &outcomes {
        check(
            case.route,
            &case.who,
            verdict(&f, case, o, nowhere.as_ref()),
            o,
        );
    }

    let elapsed = started.elapsed();
    let mut slowest: Vec<(std::time::Duration, String)> = outcomes
        .iter()
        .map(|(c, o, _)| (o.took, format!("{} {}", c.route.method, c.route.path)))
        .collect();
    slowest.sort();
    slowest.reverse();
    println!("slowest answers: {:?}", &slowest[..5]);
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
