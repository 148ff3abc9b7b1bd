//! Scale benchmark of the simulated tenant: generation time, memory, member pages/s and user-page MB/s.
//!
//! `cargo bench -p latchkey-entra-sim --bench scale`. The server runs on a single-threaded runtime
//! (one core); the load driver runs on another thread and only talks to 127.0.0.1, with a bounded
//! number of requests and a time limit. `LATCHKEY_BENCH_USERS` etc. shrink the tenant for a smoke run.

use std::time::{Duration, Instant};

use futures::StreamExt;
use latchkey_entra_sim::{SimConfig, SimServer};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_status(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds used by one thread (utime + stime from /proc; clock ticks assumed 100 Hz).
fn thread_cpu(stat_path: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string(stat_path) else {
        return 0.0;
    };
    let Some(after) = s.rsplit_once(") ").map(|(_, a)| a) else {
        return 0.0;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

struct Ready {
    /// `/proc/self/task/<tid>/stat` of the server's single runtime thread.
    server_stat: String,
    base: String,
    authority: String,
    client_id: String,
    secret: String,
    generation: Duration,
    memberships: usize,
    users: usize,
    groups: usize,
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it,
    // and then a small smoke run keeps the test suite fast.
    let full = std::env::args().any(|a| a == "--bench");
    let mut cfg = SimConfig::large(1);
    let (users, groups, memberships, member_requests, user_pages) = if full {
        (
            cfg.sizes.users,
            cfg.sizes.groups,
            cfg.sizes.memberships,
            40_000,
            2000,
        )
    } else {
        println!(
            "smoke run (use `cargo bench -p latchkey-entra-sim --bench scale` for the real figures)"
        );
        (2_000, 200, 20_000, 500, 10)
    };
    cfg.sizes.users = env_usize("LATCHKEY_BENCH_USERS", users);
    cfg.sizes.groups = env_usize("LATCHKEY_BENCH_GROUPS", groups);
    cfg.sizes.memberships = env_usize("LATCHKEY_BENCH_MEMBERSHIPS", memberships);
    cfg.request_log_capacity = 10_000;
    let member_requests = env_usize("LATCHKEY_BENCH_MEMBER_REQUESTS", member_requests);
    let user_pages = env_usize("LATCHKEY_BENCH_USER_PAGES", user_pages);
    let time_limit = Duration::from_secs(env_usize("LATCHKEY_BENCH_SECONDS", 20) as u64);
    let concurrency = env_usize("LATCHKEY_BENCH_CONCURRENCY", 32);

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Ready>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let t0 = Instant::now();
            let handle = SimServer::start(cfg).await.expect("start simulator");
            let generation = t0.elapsed();
            let truth = handle.truth();
            let app = handle.customer_app();
            let tid = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().to_string()))
                .unwrap_or_default();
            ready_tx
                .send(Ready {
                    server_stat: format!("/proc/self/task/{tid}/stat"),
                    base: handle.base_url().to_string(),
                    authority: handle.authority(),
                    client_id: app.client_id.to_string(),
                    secret: app.client_secret,
                    generation,
                    memberships: truth.memberships,
                    users: truth.users,
                    groups: truth.groups,
                })
                .expect("report readiness");
            let _ = stop_rx.await;
            handle.shutdown().await;
        });
    });
    let ready = ready_rx.recv().expect("simulator started");
    println!(
        "generation: {:.2} s for {} users, {} groups, {} memberships",
        ready.generation.as_secs_f64(),
        ready.users,
        ready.groups,
        ready.memberships
    );
    let rss = proc_status("VmRSS:").unwrap_or(0);
    let hwm = proc_status("VmHWM:").unwrap_or(0);
    println!(
        "memory: RSS {} MB after generation (peak {} MB)",
        rss / 1024,
        hwm / 1024
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(drive(
        &ready,
        member_requests,
        user_pages,
        time_limit,
        concurrency,
    ));
    let _ = stop_tx.send(());
    let _ = server.join();
}

async fn drive(
    ready: &Ready,
    member_requests: usize,
    user_pages: usize,
    limit: Duration,
    concurrency: usize,
) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let token: serde_json::Value = http
        .post(format!("{}/oauth2/v2.0/token", ready.authority))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", ready.client_id.as_str()),
            ("client_secret", ready.secret.as_str()),
            ("scope", &format!("{}/.default", ready.base)),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token json");
    let token = token["access_token"]
        .as_str()
        .expect("access token")
        .to_string();

    // Groups with at least 100 members, from the ground truth.
    let groups: serde_json::Value = http
        .get(format!("{}/_sim/truth/groups?limit=20000", ready.base))
        .send()
        .await
        .expect("truth")
        .json()
        .await
        .expect("truth json");
    let big: Vec<String> = groups["value"]
        .as_array()
        .expect("groups")
        .iter()
        .filter(|g| g["members"].as_u64().unwrap_or(0) >= 100)
        .map(|g| g["id"].as_str().unwrap_or_default().to_string())
        .collect();
    if big.is_empty() {
        println!("group members: no group with 100 members; skipped");
    } else {
        let cases = [
            ("v1.0, default properties", "v1.0", ""),
            (
                "beta, $select=id,displayName,userPrincipalName",
                "beta",
                "&$select=id,displayName,userPrincipalName",
            ),
            ("beta, default properties (every user property)", "beta", ""),
        ];
        for (label, ver, select) in cases {
            let start = Instant::now();
            let cpu0 = thread_cpu(&ready.server_stat);
            let deadline = start + limit;
            let urls: Vec<String> = (0..member_requests)
                .map(|i| {
                    format!(
                        "{}/{ver}/groups/{}/members?$top=100{}",
                        ready.base,
                        big[i % big.len()],
                        select
                    )
                })
                .collect();
            let results: Vec<(usize, usize)> = futures::stream::iter(urls)
                .map(|u| {
                    let http = http.clone();
                    let token = token.clone();
                    async move {
                        if Instant::now() > deadline {
                            return (0, 0);
                        }
                        match http.get(u).bearer_auth(token).send().await {
                            Ok(r) if r.status().is_success() => {
                                let b = r.bytes().await.map(|b| b.len()).unwrap_or(0);
                                (1, b)
                            }
                            _ => (0, 0),
                        }
                    }
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            let secs = start.elapsed().as_secs_f64();
            let cpu = thread_cpu(&ready.server_stat) - cpu0;
            let ok: usize = results.iter().map(|r| r.0).sum();
            let bytes: usize = results.iter().map(|r| r.1).sum();
            println!(
                "group members, 100 per page ({label}): {ok} requests in {secs:.2} s = {:.0} req/s wall ({:.1} MB/s); server thread used {cpu:.2} CPU s = {:.0} req per CPU-second",
                ok as f64 / secs,
                bytes as f64 / secs / 1e6,
                ok as f64 / cpu.max(0.01)
            );
        }
    }

    // 999-user pages: walk the collection with several concurrent cursors, following nextLink verbatim.
    let start = Instant::now();
    let cpu0 = thread_cpu(&ready.server_stat);
    let deadline = start + limit;
    let walkers = concurrency.min(8);
    let per = user_pages.div_ceil(walkers);
    let results: Vec<(usize, usize)> = futures::stream::iter(0..walkers)
        .map(|_| {
            let http = http.clone();
            let token = token.clone();
            let first = format!("{}/v1.0/users?$top=999", ready.base);
            async move {
                let mut url = first.clone();
                let (mut pages, mut bytes) = (0usize, 0usize);
                while pages < per && Instant::now() < deadline {
                    let Ok(r) = http.get(&url).bearer_auth(&token).send().await else {
                        break;
                    };
                    let Ok(b) = r.bytes().await else { break };
                    bytes += b.len();
                    pages += 1;
                    // Cheap nextLink extraction: it sits before "value" in the body.
                    let head = &b[..b.len().min(2048)];
                    let text = String::from_utf8_lossy(head);
                    url = match text.find("\"@odata.nextLink\":\"") {
                        Some(p) => {
                            let rest = &text[p + 19..];
                            rest[..rest.find('"').unwrap_or(0)].to_string()
                        }
                        None => first.clone(),
                    };
                }
                (pages, bytes)
            }
        })
        .buffer_unordered(walkers)
        .collect()
        .await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = thread_cpu(&ready.server_stat) - cpu0;
    let pages: usize = results.iter().map(|r| r.0).sum();
    let bytes: usize = results.iter().map(|r| r.1).sum();
    println!(
        "users, 999 per page (default properties): {pages} pages, {:.1} MB in {secs:.2} s = {:.0} MB/s wall ({:.0} pages/s); server thread used {cpu:.2} CPU s = {:.0} MB per CPU-second",
        bytes as f64 / 1e6,
        bytes as f64 / secs / 1e6,
        pages as f64 / secs,
        bytes as f64 / cpu.max(0.01) / 1e6
    );
    let rss = proc_status("VmRSS:").unwrap_or(0);
    let hwm = proc_status("VmHWM:").unwrap_or(0);
    println!(
        "memory: RSS {} MB after load (peak {} MB)",
        rss / 1024,
        hwm / 1024
    );
}
