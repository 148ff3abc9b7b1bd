//! The worker delivers the email outbox over SMTP (a minimal SMTP sink stands in for the
//! mail server), marking each message sent exactly once.

use crate::support::latchkey;
use latchkey_core::{DisplayName, Email};
use latchkey_store::jobs::{self as queue, NewJob};
use latchkey_store::testing::TestDb;
use latchkey_store::{orgs, outbox};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Accepts SMTP sessions and keeps each message's DATA.
async fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        w.write_all(b"250-sink\r\n250 8BITMIME\r\n").await.unwrap();
                    } else if upper.starts_with("DATA") {
                        w.write_all(b"354 go ahead\r\n").await.unwrap();
                        let mut body = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            body.push_str(&l);
                            body.push('\n');
                        }
                        store.lock().unwrap().push(body);
                        w.write_all(b"250 queued\r\n").await.unwrap();
                    } else if upper.starts_with("QUIT") {
                        w.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    } else {
                        w.write_all(b"250 ok\r\n").await.unwrap();
                    }
                }
            });
        }
    });
    (port, received)
}

#[tokio::test]
async fn the_worker_delivers_the_outbox_over_smtp() {
    let db = TestDb::new().await;
    let (org, _) = orgs::create_with_admin(
        &db.store,
        &DisplayName::parse("Acme").unwrap(),
        &Email::parse("ops@acme.example").unwrap(),
        &DisplayName::parse("Ops").unwrap(),
        "h",
    )
    .await
    .unwrap();
    let mut tx = db.store.org_tx(org).await.unwrap();
    outbox::enqueue(
        &mut tx,
        "grace@acme.example",
        "Your help is needed",
        "Please finish the setup.",
    )
    .await
    .unwrap();
    outbox::enqueue(&mut tx, "not an address", "Broken", "x")
        .await
        .unwrap();
    queue::enqueue(
        &mut tx,
        &NewJob::new("email.deliver", serde_json::json!({})).max_attempts(1),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let (port, received) = smtp_sink().await;
    let mut worker = latchkey()
        .arg("worker")
        .env("DATABASE_URL", &db.url)
        .env(
            "LATCHKEY_MASTER_KEYS",
            latchkey_crypto::generate_key_entry("k1"),
        )
        .env("LATCHKEY_SMTP_URL", format!("smtp://127.0.0.1:{port}"))
        .env("LATCHKEY_EMAIL_FROM", "Latchkey <latchkey@acme.example>")
        .env("LATCHKEY_WORKER_POLL_MS", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let sent = loop {
        let rows: Vec<(String, bool, i32)> = sqlx::query_as(
            "SELECT subject, sent_at IS NOT NULL, attempts FROM email_outbox ORDER BY subject",
        )
        .fetch_all(db.store.system())
        .await
        .unwrap();
        if rows.iter().all(|(_, _, attempts)| *attempts > 0) {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox was not processed: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    let _ = worker.wait();

    assert_eq!(
        sent,
        vec![
            ("Broken".to_string(), false, 1),
            ("Your help is needed".to_string(), true, 1)
        ]
    );
    let messages = received.lock().unwrap().clone();
    assert_eq!(messages.len(), 1, "sent exactly once");
    assert!(
        messages[0].contains("Subject: Your help is needed"),
        "{}",
        messages[0]
    );
    assert!(messages[0].contains("To: grace@acme.example"));
    assert!(messages[0].contains("Please finish the setup."));
    let error: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM email_outbox WHERE subject = 'Broken'")
            .fetch_one(db.store.system())
            .await
            .unwrap();
    assert!(error.is_some(), "the failure is recorded with its reason");
}
