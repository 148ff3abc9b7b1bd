//! Secrets scan: a deployment that has done the secret-handling things (connectors created
//! with client secrets, one with a wrong secret whose connection test fails, syncs and
//! provisioning run by a worker against the simulated tenant, API clients created and
//! tokens issued, an account created and its password revealed, one through a self-hosted
//! connector too), then every place a secret
//! could leak is searched for every secret: every HTTP response this test received (status
//! line, headers and body; then every page and GET endpoint crawled as an administrator),
//! every line logged at debug level by the server, the worker and their libraries, every job
//! log row, and a full `pg_dump` of the database. Only the two answers whose purpose is to
//! show a secret once are left out: the API client creation (its secret) and the token
//! endpoint (its access token), the vault reveals (the password), and the task a self-hosted
//! connector claims to create an account (the password it sends to Graph). No JWT may appear
//! anywhere else either: that covers the Microsoft Graph access tokens the worker was given,
//! which this test cannot know.

use crate::fixtures::Fixture;
use base64::Engine;
use latchkey_core::Role;
use latchkey_web::routes::{Access, route_table};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::cell::Cell;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Everything the tracing subscriber writes.
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSink {
    type Writer = LogSink;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
}
static SINK: OnceLock<LogSink> = OnceLock::new();

/// Everything logged at debug level or above on this thread from now on. The test runs on
/// one thread (a current-thread runtime), so server, worker and simulated tenant all log
/// here; other tests' threads are not recorded. One global subscriber for the test binary
/// (a thread-local one misses events whose callsites other threads registered first, as
/// does a static filter: callsite interest is cached for every thread at once).
fn capture_this_thread() -> LogSink {
    use tracing_subscriber::prelude::*;
    let sink = SINK
        .get_or_init(|| {
            let sink = LogSink::default();
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(sink.clone())
                // Dynamic: decided per event, never cached per callsite.
                .with_filter(tracing_subscriber::filter::dynamic_filter_fn(|m, _| {
                    *m.level() <= tracing::Level::DEBUG && CAPTURING.with(|c| c.get())
                }));
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("no other global subscriber in the test binary");
            sink
        })
        .clone();
    CAPTURING.with(|c| c.set(true));
    sink
}

/// Every HTTP answer this test received, as text, with what it was.
#[derive(Default)]
struct Responses(Vec<(String, String)>);

impl Responses {
    async fn record(&mut self, what: &str, resp: reqwest::Response) -> (StatusCode, String) {
        let status = resp.status();
        let mut text = format!("{status}\n");
        for (k, v) in resp.headers() {
            text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        let body = resp.text().await.unwrap_or_default();
        text.push_str(&body);
        self.0.push((what.to_string(), text));
        (status, body)
    }
}

/// The forms a secret could take in text: as is, base64 (standard and URL-safe, with and
/// without padding) and percent-encoded.
fn forms(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let b = secret.as_bytes();
    let mut out = vec![
        secret.to_string(),
        STANDARD.encode(b),
        STANDARD_NO_PAD.encode(b),
        URL_SAFE.encode(b),
        URL_SAFE_NO_PAD.encode(b),
        url::form_urlencoded::byte_serialize(b).collect(),
    ];
    out.sort();
    out.dedup();
    out
}

/// JWT-shaped strings (`eyJ…`.`eyJ…`.`…`) in `text`.
fn jwts(text: &str) -> Vec<String> {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = Vec::new();
    for (i, _) in text.match_indices("eyJ") {
        let candidate: String = text[i..]
            .chars()
            .take_while(|c| is_b64(*c) || *c == '.')
            .collect();
        let parts: Vec<&str> = candidate.split('.').collect();
        if parts.len() >= 3 && parts[1].starts_with("eyJ") && parts[2].len() >= 16 {
            out.push(candidate);
        }
    }
    out
}

struct Finding {
    place: String,
    what: String,
}

fn scan(place: &str, text: &str, secrets: &[(String, String)], out: &mut Vec<Finding>) {
    for (what, secret) in secrets {
        if forms(secret).iter().any(|f| text.contains(f.as_str())) {
            out.push(Finding {
                place: place.to_string(),
                what: what.clone(),
            });
        }
    }
    if let Some(t) = jwts(text).first() {
        out.push(Finding {
            place: place.to_string(),
            what: format!("a JWT ({:.24}…)", t),
        });
    }
}

async fn wait_for_job(f: &Fixture, token: &str, job: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = f.env.get(token, &format!("/api/v1/jobs/{job}")).await;
        if !["queued", "running"].contains(&v["status"].as_str().unwrap_or("queued")) {
            return v;
        }
        assert!(Instant::now() < deadline, "job never finished: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn no_secret_reaches_a_response_a_log_line_a_job_log_or_the_database() {
    let started = Instant::now();
    let logs = capture_this_thread();
    let f = Fixture::build().await;
    let app = f.app();
    let api = app.api();
    let admin = f.own.caller(Role::SuperAdmin).token.clone();
    let mut seen = Responses::default();
    let mut secrets: Vec<(String, String)> = Vec::new();
    let customer = f.env.sim.customer_app();
    secrets.push((
        "the connector's client secret".into(),
        customer.client_secret.clone(),
    ));
    for org in [&f.own, &f.other] {
        secrets.push((
            "a self-hosted connector's secret".into(),
            org.agent_secret.clone(),
        ));
        secrets.push(("a self-hosted connector's token".into(), org.agent.clone()));
        for c in &org.callers {
            secrets.push((format!("a {} API access token", c.role), c.token.clone()));
        }
    }

    // An API client made over HTTP: its secret, and a token for it.
    let r = api
        .post(app.url("/api/v1/api-clients"))
        .bearer_auth(&admin)
        .json(&json!({"name": "scanner", "role": "super_admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created_text = r.text().await.unwrap();
    let created: Value = serde_json::from_str(&created_text).unwrap();
    let client_secret = created["client_secret"].as_str().unwrap().to_string();
    let client_id = created["client_id"].as_str().unwrap().to_string();
    secrets.push(("an API client secret".into(), client_secret.clone()));
    let scanner = app.token(&client_id, &client_secret).await;
    secrets.push(("an issued API access token".into(), scanner.clone()));

    // Another connector to the same tenant (so the first sync runs again), and one with a
    // wrong secret: its connection test fails and says so.
    let wrong_secret = format!("wrong-{}", Uuid::new_v4().simple());
    secrets.push(("a wrong client secret".into(), wrong_secret.clone()));
    for (name, secret) in [
        ("Second", customer.client_secret.clone()),
        ("Wrong secret", wrong_secret.clone()),
    ] {
        let r = api
            .post(app.url("/api/v1/connectors"))
            .bearer_auth(&scanner)
            .json(&json!({"display_name": name, "app": {"new": {"name": format!("{name} app")}},
                "settings": {"auth": {"mode": "client_secret", "tenant_id": f.env.sim.tenant_id().to_string(),
                "client_id": customer.client_id.to_string(), "client_secret": secret},
                "graph_domain": f.env.sim.base_url(), "provisioning": true}}))
            .send()
            .await
            .unwrap();
        let (s, body) = seen.record("POST /api/v1/connectors", r).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let job = v["connection_test_job_id"].as_str().unwrap().to_string();
        let done = wait_for_job(&f, &scanner, &job).await;
        let expected = if name == "Wrong secret" {
            "failed"
        } else {
            "succeeded"
        };
        assert_eq!(done["status"], expected, "{done}");
    }
    // A sync started over the API, and the first connector's settings changed with a new
    // secret (the same value: the tenant has one).
    let c = f.ids["connector"].clone();
    let r = api
        .post(app.url(&format!("/api/v1/connectors/{c}/syncs")))
        .bearer_auth(&scanner)
        .json(&json!({"kind": "full"}))
        .send()
        .await
        .unwrap();
    let (s, body) = seen.record("POST syncs", r).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    if let Some(job) = v["id"].as_str() {
        wait_for_job(&f, &scanner, job).await;
    }
    let r = api
        .patch(app.url(&format!("/api/v1/connectors/{c}")))
        .bearer_auth(&scanner)
        .json(&json!({"settings": {"auth": {"client_secret": customer.client_secret}}}))
        .send()
        .await
        .unwrap();
    let (s, body) = seen.record("PATCH connector", r).await;
    assert!(s.is_success(), "{s} {body}");

    // An account through the self-hosted connector: its password goes to the connector in the
    // task it claims (that answer is left out, as the reveal is), the connector reports the
    // account it made, and the asker reveals the password once.
    let agent_connector: Uuid =
        sqlx::query_scalar("SELECT id FROM connectors WHERE org_id = $1 AND kind = 'self_hosted'")
            .bind(f.own.id.0)
            .fetch_one(app.store().system())
            .await
            .unwrap();
    let agent_upn = format!("agent.hire@{}", f.env.sim.domain());
    let r = api
        .post(app.url(&format!(
            "/api/v1/connectors/{agent_connector}/accounts"
        )))
        .bearer_auth(&scanner)
        .json(&json!({"user_principal_name": agent_upn, "display_name": "Agent Hire", "mail_nickname": "agent.hire"}))
        .send()
        .await
        .unwrap();
    let (s, body) = seen.record("POST self-hosted account", r).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let agent_task = serde_json::from_str::<Value>(&body).unwrap()["task_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api
        .post(app.url("/api/v1/connector-agent/tasks/next"))
        .bearer_auth(&f.own.agent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let handed_text = r.text().await.unwrap();
    let handed: Value = serde_json::from_str(&handed_text).unwrap();
    assert_eq!(handed["type"], "account", "{handed}");
    let agent_password = handed["account"]["work"]["password"]
        .as_str()
        .expect("the password in the task")
        .to_string();
    secrets.push((
        "a self-hosted connector's account password".into(),
        agent_password.clone(),
    ));
    let account_id = Uuid::new_v4();
    let r = api
        .post(app.url(&format!(
            "/api/v1/connector-agent/tasks/{}/result",
            handed["id"].as_str().unwrap()
        )))
        .bearer_auth(&f.own.agent)
        .header("latchkey-lease", handed["lease"].as_str().unwrap())
        .json(
            &json!({"account": {"outcome": "verified", "done": {"kind": "created",
            "account_id": account_id, "user_principal_name": agent_upn,
            "user": {"id": account_id, "userPrincipalName": agent_upn, "displayName": "Agent Hire",
                     "accountEnabled": true}}}}),
        )
        .send()
        .await
        .unwrap();
    let (s, body) = seen.record("POST self-hosted account result", r).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let r = api
        .get(app.url(&format!("/api/v1/tasks/{agent_task}")))
        .bearer_auth(&scanner)
        .send()
        .await
        .unwrap();
    let (_, body) = seen.record("GET self-hosted account task", r).await;
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["status"], "succeeded", "{t}");
    let r = api
        .post(app.url(&format!(
            "/api/v1/vault/{}/reveal",
            t["vault_item_id"].as_str().unwrap()
        )))
        .bearer_auth(&scanner)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let agent_revealed: Value = r.json().await.unwrap();
    assert_eq!(agent_revealed["password"], agent_password.as_str());

    // The created account's password, revealed once (the answer that shows it is left out).
    let vault = f.ids["vault"].clone();
    let r = api
        .post(app.url(&format!("/api/v1/vault/{vault}/reveal")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let revealed: Value = r.json().await.unwrap();
    let password = revealed["password"].as_str().unwrap().to_string();
    assert!(password.len() >= 12, "{revealed}");
    secrets.push(("a vault password".into(), password));
    let r = api
        .post(app.url(&format!("/api/v1/vault/{vault}/reveal")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let (s, _) = seen.record("second reveal", r).await;
    assert_eq!(s, StatusCode::GONE);

    // Every page and GET endpoint, as the organization's administrator.
    let session = &f.own.caller(Role::SuperAdmin).browser;
    let mut crawled = 0usize;
    for route in route_table().iter().filter(|r| r.method == Method::GET) {
        let path = f.fill(&route.path);
        let req = match route.access {
            Access::Api(_) => api.get(app.url(&path)).bearer_auth(&scanner),
            Access::Session(_) | Access::Public => session.client.get(app.url(&path)),
            Access::Agent => continue,
        };
        let r = req.send().await.unwrap();
        seen.record(&format!("GET {}", route.path), r).await;
        crawled += 1;
    }
    // And every job's log through the API, page by page.
    let jobs: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM jobs WHERE org_id = $1")
        .bind(f.own.id.0)
        .fetch_all(app.store().system())
        .await
        .unwrap();
    for job in &jobs {
        let r = api
            .get(app.url(&format!("/api/v1/jobs/{job}/logs")))
            .bearer_auth(&scanner)
            .send()
            .await
            .unwrap();
        seen.record("GET job logs", r).await;
        let r = session
            .client
            .get(app.url(&format!("/connectors/{c}/jobs/{job}/log")))
            .send()
            .await
            .unwrap();
        seen.record("GET job log page", r).await;
    }

    // The scan finds what it looks for: the answers left out hold their secret.
    let mut control = Vec::new();
    scan("control", &created_text, &secrets, &mut control);
    scan("control", &revealed.to_string(), &secrets, &mut control);
    scan("control", &format!("Bearer {scanner}"), &[], &mut control);
    scan("control", &handed_text, &secrets, &mut control);
    scan(
        "control",
        &agent_revealed.to_string(),
        &secrets,
        &mut control,
    );
    assert_eq!(control.len(), 5, "the scan misses known secrets");

    let mut findings = Vec::new();
    for (what, text) in &seen.0 {
        scan(
            &format!("HTTP answer to {what}"),
            text,
            &secrets,
            &mut findings,
        );
    }
    let job_logs: Vec<String> = sqlx::query_scalar("SELECT row_to_json(l)::text FROM job_logs l")
        .fetch_all(app.store().system())
        .await
        .unwrap();
    assert!(!job_logs.is_empty());
    for row in &job_logs {
        scan("a job log row", row, &secrets, &mut findings);
    }
    let dump = std::process::Command::new(pg_dump())
        .arg("--no-owner")
        .arg(&app.db.url)
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout).to_string();
    assert!(
        dump.contains("COPY public.encrypted_secrets"),
        "a full dump"
    );
    scan("pg_dump", &dump, &secrets, &mut findings);
    CAPTURING.with(|c| c.set(false));
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(
        logs.contains("DEBUG") && logs.lines().count() > 1000,
        "debug logs were captured ({} lines)",
        logs.lines().count()
    );
    for line in logs.lines() {
        scan("a log line", line, &secrets, &mut findings);
    }

    println!(
        "secrets scan: {} secrets in {} forms, {} HTTP answers ({crawled} routes crawled), {} log lines, {} job log rows, pg_dump {} bytes; {:?}",
        secrets.len(),
        secrets.iter().map(|(_, s)| forms(s).len()).sum::<usize>(),
        seen.0.len(),
        logs.lines().count(),
        job_logs.len(),
        dump.len(),
        started.elapsed()
    );
    let report: Vec<String> = findings
        .iter()
        .take(30)
        .map(|f| format!("{} in {}", f.what, f.place))
        .collect();
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        report.join("\n")
    );
}

fn pg_dump() -> &'static str {
    let bundled = "/usr/lib/postgresql/15/bin/pg_dump";
    if std::path::Path::new(bundled).exists() {
        bundled
    } else {
        "pg_dump"
    }
}
