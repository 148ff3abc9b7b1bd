//! Integration tests against the simulated tenant (`latchkey-entra-sim`) and, for wire cases the
//! simulator does not produce, a small scripted stand-in (`fake`).

mod auth;
mod batch;
mod consent;
mod fake;
mod faults;
mod logs;
mod paging;
mod probe;
mod provision;
mod provision_jobs;
mod signin;
mod storms;
mod sync;

use std::time::Duration;

use latchkey_entra::{Connection, ConnectionSettings, OutboundPolicy, RetryPolicy};
use latchkey_entra_sim::{SimConfig, SimHandle, SimServer};
use secrecy::SecretString;

/// A simulated tenant and a connection to it, as a connector would configure it.
pub struct T {
    pub sim: SimHandle,
    pub conn: Connection,
}

pub fn settings(sim: &SimHandle) -> ConnectionSettings {
    let app = sim.customer_app();
    ConnectionSettings {
        tenant_id: sim.tenant_id().to_string(),
        client_id: app.client_id.to_string(),
        client_secret: SecretString::from(app.client_secret),
        graph_domain: Some(sim.base_url().to_string()),
        login_authority: None,
    }
}

/// Short waits so that retry tests run in seconds.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 8,
        max_throttled_attempts: 50,
        retry_budget: Duration::from_secs(60),
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        attempt_timeout: Duration::from_secs(100),
    }
}

pub fn connect_with(s: &ConnectionSettings, retry: RetryPolicy) -> Connection {
    let (endpoints, creds) =
        Connection::validate(s, OutboundPolicy::INSECURE_DEV).expect("valid settings");
    Connection::new(endpoints, creds, retry).expect("client")
}

impl T {
    pub async fn new() -> T {
        Self::with(SimConfig::small(7)).await
    }

    pub async fn with(cfg: SimConfig) -> T {
        Self::with_retry(cfg, fast_retries()).await
    }

    pub async fn with_retry(cfg: SimConfig, retry: RetryPolicy) -> T {
        let sim = SimServer::start(cfg).await.expect("sim starts");
        let conn = connect_with(&settings(&sim), retry);
        T { sim, conn }
    }

    /// Token requests the simulator received.
    pub fn token_requests(&self) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
            .count()
    }

    /// Graph requests the simulator received (outside `$batch`).
    pub fn graph_requests(&self) -> Vec<latchkey_entra_sim::RequestLogEntry> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| {
                !r.in_batch && (r.path.starts_with("/v1.0/") || r.path.starts_with("/beta/"))
            })
            .collect()
    }
}
