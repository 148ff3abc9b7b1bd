//! Hostile input, driven by the OpenAPI document (`GET /api/v1/openapi.json`) and the route
//! table: for every API endpoint malformed JSON, bodies of the wrong shape, every string field
//! of its request schema as a huge string, with a NUL byte and as the wrong type, unknown
//! fields, bad query parameters (cursors, enums, negative and non-numeric numbers), path ids
//! that are not ids, methods it does not take and bodies that are not JSON. Every answer is
//! below 500 and, when refused, a JSON error with a message. Every page and form gets bad
//! query strings and hostile form fields (with a valid CSRF token: the session's, or a guest's
//! for the forms before sign-in): never a 5xx.

use crate::fixtures::Fixture;
use latchkey_core::Role;
use latchkey_web::routes::{Access, route_table};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Instant;

const NUL: &str = "a\u{0}b";
const OVER_LIMIT: &str = "over the body limit";

fn huge() -> String {
    "x".repeat(200_000)
}

/// Resolves `$ref`, `allOf` (the last part with properties) and `oneOf` (the first).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return resolve(doc, &doc["components"]["schemas"][name]);
    }
    if let Some(parts) = schema["oneOf"].as_array() {
        return resolve(doc, &parts[0]);
    }
    if let Some(parts) = schema["allOf"].as_array() {
        return resolve(doc, parts.last().unwrap());
    }
    schema
}

/// A plausible value of `schema`: what a careless but well-meaning client would send.
fn example(doc: &Value, schema: &Value) -> Value {
    let s = resolve(doc, schema);
    if let Some(c) = s.get("const") {
        return c.clone();
    }
    if let Some(e) = s["enum"].as_array() {
        return e[0].clone();
    }
    let ty = match &s["type"] {
        Value::Array(t) => t[0].as_str().unwrap_or("string").to_string(),
        Value::String(t) => t.clone(),
        _ if s["properties"].is_object() => "object".into(),
        _ => "string".into(),
    };
    match ty.as_str() {
        "object" => {
            let mut out = serde_json::Map::new();
            if let Some(props) = s["properties"].as_object() {
                for (k, v) in props {
                    out.insert(k.clone(), example(doc, v));
                }
            }
            Value::Object(out)
        }
        "array" => json!([example(doc, &s["items"])]),
        "integer" | "number" => json!(1),
        "boolean" => json!(false),
        _ => match s["format"].as_str() {
            Some("uuid") => json!(uuid::Uuid::new_v4()),
            Some("date-time") => json!("2100-01-01T00:00:00Z"),
            Some("uri") => json!("https://login.microsoftonline.com"),
            _ => json!("hostile"),
        },
    }
}

/// Every leaf of `value` as a JSON pointer, with whether it is a string.
fn leaves(value: &Value, at: String, out: &mut Vec<(String, bool)>) {
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                leaves(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                leaves(v, format!("{at}/{i}"), out);
            }
        }
        v => out.push((at, v.is_string())),
    }
}

fn with(base: &Value, pointer: &str, v: Value) -> Value {
    let mut out = base.clone();
    *out.pointer_mut(pointer).unwrap() = v;
    out
}

/// The bodies sent to an endpoint taking `schema`.
fn hostile_bodies(doc: &Value, schema: &Value) -> Vec<(String, Value)> {
    let base = example(doc, schema);
    let mut out = vec![
        ("the example body".to_string(), base.clone()),
        ("an array".into(), json!([1, 2, 3])),
        ("a string".into(), json!("body")),
        ("null".into(), Value::Null),
        ("an unknown field".into(), {
            let mut b = base.clone();
            if let Some(m) = b.as_object_mut() {
                m.insert("zz_unknown".into(), json!({"deep": [1]}));
            }
            b
        }),
        ("deep nesting".into(), {
            let mut v = json!(1);
            for _ in 0..100 {
                v = json!([v]);
            }
            v
        }),
    ];
    let mut fields = Vec::new();
    leaves(&base, String::new(), &mut fields);
    for (at, is_string) in fields {
        if at.is_empty() {
            continue;
        }
        out.push((
            format!("{at} with a NUL byte"),
            with(&base, &at, json!(NUL)),
        ));
        out.push((format!("{at} huge"), with(&base, &at, json!(huge()))));
        out.push((format!("{at} an object"), with(&base, &at, json!({"a": 1}))));
        out.push((format!("{at} -1"), with(&base, &at, json!(-1))));
        out.push((
            format!("{at} 2^63"),
            with(&base, &at, json!(9_223_372_036_854_775_807i64)),
        ));
        if is_string {
            out.push((format!("{at} empty"), with(&base, &at, json!(""))));
            out.push((
                format!("{at} not a date or id"),
                with(&base, &at, json!("9999-99-99T99:99:99Z")),
            ));
            out.push((format!("{at} true"), with(&base, &at, json!(true))));
        } else {
            out.push((format!("{at} a string"), with(&base, &at, json!("many"))));
        }
    }
    out
}

const BAD_QUERIES: &[&str] = &[
    "limit=abc",
    "limit=-5",
    "limit=0",
    "limit=99999999999999999999",
    "cursor=!!!",
    "cursor=eyJub3QiOiJhIGN1cnNvciJ9",
    "cursor=%00",
    "after=-1",
    "after=not-a-cursor",
    "type=bogus",
    "state=bogus",
    "decision=bogus",
    "format=bogus",
    "include=bogus",
    "emergency=maybe",
    "awaiting_me=2",
    "entitlement_id=not-a-uuid",
    "principal_id=%00",
    "resource_id=1",
    "reviewer_id=x",
    "requester_id=x",
    "connector_id=x",
    "target_id=%00",
    "q=%00",
    "limit=1&limit=2",
    "%zz=%zz",
];

/// A refusal in the API's shape: `{"error": {"code", "message"}}` with a message (the token
/// endpoints: `{"error", "error_description"}`).
fn api_answer(token_endpoint: bool, status: StatusCode, body: &str) -> Result<(), String> {
    if status.is_server_error() {
        return Err(format!("{status}: {body}"));
    }
    if status.is_client_error() {
        let v: Value =
            serde_json::from_str(body).map_err(|_| format!("{status}, not JSON: {body:.200}"))?;
        // The token endpoints answer as OAuth 2.0 says (RFC 6749 section 5.2).
        let oauth = token_endpoint
            && v["error"].is_string()
            && v["error_description"].as_str().is_some_and(|m| m.len() > 5);
        let ok = oauth
            || (v["error"]["code"].is_string()
                && v["error"]["message"].as_str().is_some_and(|m| m.len() > 5));
        if !ok {
            return Err(format!("{status}, not an error body: {body:.200}"));
        }
    }
    Ok(())
}

/// Sends `r`, once more on a fresh connection if it could not be sent: the server closes a
/// connection after refusing a body it did not read (413, or an answer before the body), and
/// the client may already have taken that pooled connection for the next request
/// (`IncompleteMessage`). That is the client's race, not an answer of the server's.
async fn send_retrying_closed(r: reqwest::RequestBuilder) -> reqwest::Result<reqwest::Response> {
    let again = r.try_clone().expect("bodies are bytes");
    match r.send().await {
        Err(e) if e.is_request() => again.send().await,
        other => other,
    }
}

// Both cores: server and client share the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_input_makes_the_api_or_a_page_fail() {
    let started = Instant::now();
    let f = Fixture::build().await;
    let app = f.app();
    let token = f.own.caller(Role::SuperAdmin).token.clone();
    let doc: Value = app
        .api()
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut problems = Vec::new();
    let mut sent = 0usize;
    let client = app.api();
    let paths = doc["paths"].as_object().unwrap().clone();
    let mut endpoints = 0usize;

    for (template, ops) in &paths {
        let filled = f.fill(template);
        let ops = ops.as_object().unwrap();
        // Wrong methods.
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if ops.contains_key(&m.to_ascii_lowercase()) {
                continue;
            }
            let r = send_retrying_closed(
                client
                    .request(Method::from_bytes(m.as_bytes()).unwrap(), app.url(&filled))
                    .bearer_auth(&token),
            )
            .await
            .unwrap();
            let s = r.status();
            let body = r.text().await.unwrap();
            sent += 1;
            let verdict = api_answer(false, s, &body).and_then(|()| {
                if s == StatusCode::METHOD_NOT_ALLOWED {
                    Ok(())
                } else {
                    Err(format!("{s}, not 405"))
                }
            });
            if let Err(e) = verdict {
                problems.push(format!("{m} {template} (not its method): {e}"));
            }
        }
        for (method, op) in ops {
            endpoints += 1;
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let mut cases: Vec<(String, reqwest::RequestBuilder)> = Vec::new();
            // The self-hosted connector's endpoints with its own token, so bodies get parsed.
            let bearer = if template.starts_with("/api/v1/connector-agent/")
                && !template.ends_with("/token")
            {
                &f.own.agent
            } else {
                &token
            };
            // ... and the lease of its task, so that writes about the task get as far as
            // their bodies.
            let req = |path: &str| {
                client
                    .request(method.clone(), app.url(path))
                    .bearer_auth(bearer)
                    .header("latchkey-lease", &f.ids["agent_lease"])
            };
            // Path ids that are not ids.
            if template.contains('{') {
                for bad in ["not-a-uuid", "%00", "..%2F..", "1", &"9".repeat(5000)] {
                    let path = template
                        .split('/')
                        .map(|s| if s.starts_with('{') { bad } else { s })
                        .collect::<Vec<_>>()
                        .join("/");
                    cases.push((format!("path id {bad:.20}"), req(&path)));
                }
            }
            if method == Method::GET {
                for q in BAD_QUERIES {
                    cases.push((format!("?{q}"), req(&format!("{filled}?{q}"))));
                }
            } else {
                cases.push((
                    "malformed JSON".into(),
                    req(&filled)
                        .header("content-type", "application/json")
                        .body("{\"a\": [1,"),
                ));
                cases.push((
                    "invalid UTF-8".into(),
                    req(&filled)
                        .header("content-type", "application/json")
                        .body(vec![b'"', 0xff, 0xfe, b'"']),
                ));
                cases.push((
                    "text/plain".into(),
                    req(&filled).header("content-type", "text/plain").body("hi"),
                ));
                cases.push((
                    OVER_LIMIT.into(),
                    req(&filled)
                        .header("content-type", "application/json")
                        .body(format!("\"{}\"", "x".repeat(1_100_000))),
                ));
                if let Some(schema) = op["requestBody"]["content"]["application/json"].get("schema")
                {
                    for (what, body) in hostile_bodies(&doc, schema) {
                        cases.push((what, req(&filled).json(&body)));
                    }
                }
            }
            for (what, r) in cases {
                // A pooled connection the server closed after an earlier refusal may fail
                // to send: once more on a fresh one.
                let sent_once = if what == OVER_LIMIT {
                    r.send().await
                } else {
                    send_retrying_closed(r).await
                };
                let r = match sent_once {
                    Ok(r) => r,
                    // The server may answer 413 from the Content-Length and close the
                    // connection before the client has written the whole body.
                    Err(e) if what == OVER_LIMIT && e.is_request() => continue,
                    Err(e) => {
                        problems.push(format!("{method} {template} {what}: {e}"));
                        continue;
                    }
                };
                let s = r.status();
                let body = r.text().await.unwrap_or_default();
                sent += 1;
                if let Err(e) = api_answer(template.ends_with("/token"), s, &body) {
                    problems.push(format!("{method} {template} {what}: {e}"));
                }
            }
        }
    }
    let api_elapsed = started.elapsed();

    // Pages and forms: bad query strings and hostile fields, as a Super Administrator.
    let admin = f.own.caller(Role::SuperAdmin);
    let fields = [
        "name",
        "email",
        "role",
        "display_name",
        "tenant_id",
        "client_id",
        "client_secret",
        "graph_domain",
        "login_authority",
        "mode",
        "auth_mode",
        "justification",
        "duration",
        "duration_seconds",
        "comment",
        "decision",
        "deadline",
        "user_principal_name",
        "mail_nickname",
        "principal_id",
        "entitlement_id",
        "expires_at",
        "password",
        "reviewer_id",
        "item_ids",
        "cursor",
        "q",
        "next",
        "end_rule",
        "strategy",
        "user_ids",
        "risk",
    ];
    let guest = app.browser();
    let (_, login) = guest.get_text("/login").await;
    let guest_csrf = crate::support::csrf_token(&login).expect("a pre-session token");
    let mut pages = 0usize;
    for route in route_table()
        .iter()
        .filter(|r| !r.path.starts_with("/api/") && r.path != "/logout")
    {
        let path = f.fill(&route.path);
        let mut bodies: Vec<(String, String)> = Vec::new();
        if route.method == Method::GET {
            for q in [
                "cursor=!!!",
                "q=%00",
                "tab=%00zz",
                "page=-1",
                "limit=abc",
                "next=//evil.example",
                "%zz",
            ] {
                bodies.push((format!("?{q}"), String::new()));
            }
        } else {
            // The session's token, or for the forms before sign-in a guest's double-submit
            // token, so that the fields themselves get read.
            let csrf = match route.access {
                Access::Session(_) => admin.csrf.clone(),
                _ => guest_csrf.clone(),
            };
            // Long values, but the whole form under the 1 MiB body limit (32 fields).
            let long = "x".repeat(30_000);
            for v in [
                NUL.to_string(),
                long,
                "-1".into(),
                "not-a-uuid".into(),
                "".into(),
            ] {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("csrf_token", &csrf);
                for k in fields {
                    form.append_pair(k, &v);
                }
                bodies.push((format!("fields {:.10?}", v), form.finish()));
            }
            bodies.push((
                "malformed form".into(),
                format!("csrf_token={csrf}&%zz=%&a"),
            ));
        }
        pages += 1;
        for (what, body) in bodies {
            let client = match route.access {
                Access::Public => &guest.client,
                _ => &admin.browser.client,
            };
            let r = if route.method == Method::GET {
                let q = what.trim_start_matches('?');
                client.get(app.url(&format!("{path}?{q}")))
            } else {
                client
                    .request(route.method.clone(), app.url(&path))
                    .header("origin", &app.base)
                    .header("sec-fetch-site", "same-origin")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
            };
            sent += 1;
            let resp = match send_retrying_closed(r).await {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("{} {} {what}: {e}", route.method, route.path));
                    continue;
                }
            };
            if resp.status().is_server_error() {
                problems.push(format!(
                    "{} {} {what}: {}",
                    route.method,
                    route.path,
                    resp.status()
                ));
            }
        }
    }
    println!(
        "hostile input: {endpoints} API operations and {pages} page routes, {sent} requests in {:?} (API part {api_elapsed:?})",
        started.elapsed()
    );
    assert!(
        problems.is_empty(),
        "{} of {sent} requests answered badly:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
