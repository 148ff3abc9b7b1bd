//! Nothing secret reaches the logs: not the client secret, not tokens, not paging tokens.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use latchkey_entra::Query;
use latchkey_entra_sim::{Faults, SimConfig, Throttle};
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::T;

/// Records every event and span field of this crate as text. Installed as the global subscriber:
/// a thread-scoped one misses events whose callsites other test threads registered first, and a
/// global one also checks what every other test in this binary logs.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<String>>);

fn capture() -> &'static Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c = Capture::default();
        tracing::subscriber::set_global_default(c.clone()).expect("no other global subscriber");
        c
    })
}

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target().starts_with("latchkey_entra")
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut s = self.0.lock().unwrap();
        attrs.record(&mut Line(&mut s));
        s.push('\n');
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        values.record(&mut Line(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut s = self.0.lock().unwrap();
        let _ = write!(
            s,
            "{} {}",
            event.metadata().level(),
            event.metadata().target()
        );
        event.record(&mut Line(&mut s));
        s.push('\n');
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test]
async fn logs_carry_no_secrets_tokens_or_skiptokens() {
    let capture = capture();
    let faults = Faults {
        throttle: Throttle::EveryN { n: 2 },
        transient_rate: 0.2,
        retry_after_secs: 0.01,
        ..Faults::default()
    };
    let t = T::with(SimConfig::small(7).with_faults(faults)).await;
    let token = t.conn.tokens.token().await.unwrap();
    let users: Vec<Value> = t
        .conn
        .graph
        .items(Query::v1("users").select(&["id"]).top(4))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(users.len(), t.sim.truth().users);
    let _ = t
        .conn
        .graph
        .get::<Value>(&Query::v1("users/00000000-0000-0000-0000-00000000abcd"))
        .await;

    let logs = capture.0.lock().unwrap().clone();
    assert!(
        logs.contains("Graph asked to retry"),
        "retries were logged:\n{logs}"
    );
    let secret = t.sim.customer_app().client_secret;
    assert!(!logs.contains(&secret), "client secret in logs");
    assert!(!logs.contains("eyJ"), "a JWT in logs:\n{logs}");
    let _ = token;
    assert!(
        logs.contains("skiptoken=***"),
        "later pages were logged, redacted:\n{logs}"
    );
    for line in logs.lines().filter(|l| l.contains("skiptoken")) {
        assert!(
            line.contains("skiptoken=***"),
            "skiptoken value in logs: {line}"
        );
    }
}
