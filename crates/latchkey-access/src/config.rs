//! The lifecycle's knobs, shared by the web (policy validation, links) and the worker.

use std::time::Duration;
use url::Url;

#[derive(Clone, Debug)]
pub struct AccessConfig {
    /// Where people open Latchkey: links in emails point here.
    pub public_url: Url,
    /// The shortest duration (and decision timeout) a policy may set. Production keeps
    /// minutes; tests lower it to seconds so that an expiry takes seconds.
    pub min_duration_seconds: i64,
    /// How often the catch-up sweep looks for requests with something overdue (expiries
    /// missed while no worker ran, tasks to follow, timeouts, reminders).
    pub sweep_every: Duration,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            public_url: Url::parse("http://127.0.0.1:8080/").expect("a valid URL"),
            min_duration_seconds: 300,
            sweep_every: Duration::from_secs(30),
        }
    }
}

impl AccessConfig {
    /// The page where a request is seen and decided (sign-in required).
    pub fn request_url(&self, id: uuid::Uuid) -> String {
        self.public_url
            .join(&format!("access/requests/{id}"))
            .map(|u| u.to_string())
            .unwrap_or_else(|_| format!("/access/requests/{id}"))
    }

    pub fn url(&self, path: &str) -> String {
        self.public_url
            .join(path)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| path.to_string())
    }
}
