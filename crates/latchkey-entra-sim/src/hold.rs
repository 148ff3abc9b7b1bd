//! Answers held back on purpose: a test makes the simulator compute a Graph answer (from the
//! directory as it is then) and keep it until the test releases it. That is a reader that got
//! its data before a concurrent write and acts on it after, made deterministic.

use std::sync::{Arc, Mutex, Weak};
use tokio::sync::watch;

struct Rule {
    method: String,
    path: String,
    /// How many answers are being held (or were, before the release).
    held: watch::Sender<usize>,
    released: watch::Sender<bool>,
}

/// The simulator's current rules.
#[derive(Default)]
pub(crate) struct Holds {
    rules: Mutex<Vec<Arc<Rule>>>,
}

impl Holds {
    fn rules(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Rule>>> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a rule holding answers to `method path` (exact path, query ignored).
    pub(crate) fn add(self: &Arc<Self>, method: &str, path: &str) -> ResponseHold {
        let rule = Arc::new(Rule {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            held: watch::channel(0).0,
            released: watch::channel(false).0,
        });
        self.rules().push(rule.clone());
        ResponseHold {
            rule,
            holds: Arc::downgrade(self),
        }
    }

    /// Waits, when a rule matches, until the test releases it (the answer is already made).
    pub(crate) async fn wait(&self, method: &str, path: &str) {
        let rule = self
            .rules()
            .iter()
            .find(|r| r.method == method && r.path == path)
            .cloned();
        let Some(rule) = rule else { return };
        let mut released = rule.released.subscribe();
        rule.held.send_modify(|n| *n += 1);
        let _ = released.wait_for(|r| *r).await;
    }
}

/// A rule holding answers back until [`ResponseHold::release`] (or until dropped).
pub struct ResponseHold {
    rule: Arc<Rule>,
    holds: Weak<Holds>,
}

impl ResponseHold {
    /// Waits until at least one answer is being held.
    pub async fn held(&self) {
        let mut rx = self.rule.held.subscribe();
        let _ = rx.wait_for(|n| *n > 0).await;
    }

    /// Lets the held answers (and later ones) go.
    pub fn release(self) {
        drop(self)
    }
}

impl Drop for ResponseHold {
    fn drop(&mut self) {
        if let Some(h) = self.holds.upgrade() {
            h.rules().retain(|r| !Arc::ptr_eq(r, &self.rule));
        }
        self.rule.released.send_replace(true);
    }
}
