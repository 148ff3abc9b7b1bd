//! The long-running commands start, answer, and stop cleanly on SIGTERM.

use crate::support::{free_port, latchkey};
use latchkey_store::testing::TestDb;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn sigterm(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn wait_ready(url: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never became ready");
}

#[tokio::test]
async fn serve_creates_the_database_migrates_and_shuts_down_gracefully() {
    let db = TestDb::new().await;
    // A database that does not exist yet: serve creates and migrates it.
    let fresh_url = db.url.replace(&db.name, &format!("{}_fresh", db.name));
    let port = free_port();
    let mut child = latchkey()
        .args(["serve"])
        .env("DATABASE_URL", &fresh_url)
        .env("LATCHKEY_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "LATCHKEY_MASTER_KEYS",
            latchkey_crypto::generate_key_entry("k1"),
        )
        .env("LATCHKEY_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&format!("http://127.0.0.1:{port}/readyz")).await;
    let r = reqwest::get(format!("http://127.0.0.1:{port}/login"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    let mut logs = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("JSON log line expected: {line}"));
    }
    assert!(
        logs.contains("request_id"),
        "request ids are in the logs: {logs}"
    );
    assert!(logs.contains("web server stopped"));
}

#[tokio::test]
async fn worker_starts_and_stops_cleanly() {
    let db = TestDb::new().await;
    let mut child = latchkey()
        .args(["worker"])
        .env("DATABASE_URL", &db.url)
        .env(
            "LATCHKEY_MASTER_KEYS",
            latchkey_crypto::generate_key_entry("k1"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Give it time to connect and start.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut started = false;
    let mut buf = String::new();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut buf);
        buf
    });
    while Instant::now() < deadline {
        let applied: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(db.store.system())
            .await
            .ok();
        if applied.unwrap_or(0) > 0 {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started);
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    let logs = reader.join().unwrap();
    assert!(logs.contains("worker stopped"), "{logs}");
}

#[test]
fn migrate_reports_an_unreachable_database_clearly() {
    let o = latchkey()
        .args(["migrate"])
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{}/x", free_port()),
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot connect to the database") && err.contains("is PostgreSQL running?"),
        "{err}"
    );
}

fn postgres_server_programs_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten().any(|v| {
                v.path().join("bin/initdb").is_file() && v.path().join("bin/pg_ctl").is_file()
            })
        })
        .unwrap_or(false)
}

/// `latchkey demo` on a machine where nothing answers at DATABASE_URL: with the PostgreSQL
/// server programs installed it starts a private cluster under ./.latchkey/ (and stops it
/// again); without them it explains how to get PostgreSQL.
#[tokio::test]
async fn demo_without_a_database_starts_its_own_or_says_how_to_get_one() {
    let dir = std::env::temp_dir().join(format!("latchkey-demo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let mut child = latchkey()
        .arg("demo")
        .current_dir(&dir)
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{}/latchkey", free_port()),
        )
        .env("LATCHKEY_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if postgres_server_programs_installed() {
        wait_ready(&format!("http://127.0.0.1:{port}/readyz")).await;
        assert!(
            dir.join(".latchkey/postgres/PG_VERSION").exists(),
            "the private cluster lives under ./.latchkey/"
        );
        assert!(
            dir.join(".latchkey/master.key").exists(),
            "a development master key was generated"
        );
        sigterm(&child);
        let status = wait_exit(&mut child, Duration::from_secs(30));
        assert!(status.success(), "{status:?}");
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(err.contains("starting a private one instead"), "{err}");
        assert!(err.contains("generated a development master key"), "{err}");
        // The cluster was stopped with the demo: its postmaster.pid is gone.
        assert!(
            !dir.join(".latchkey/postgres/postmaster.pid").exists(),
            "the private PostgreSQL was stopped"
        );
    } else {
        let status = wait_exit(&mut child, Duration::from_secs(30));
        assert!(!status.success());
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(
            err.contains("docker compose up -d postgres") && err.contains("apt-get install"),
            "{err}"
        );
    }
    let _ = std::process::Command::new("rm")
        .arg("-rf")
        .arg(&dir)
        .status();
}
