//! Settings of the web layer, already parsed (the binary reads the environment).

use latchkey_entra::OutboundPolicy;
use latchkey_entra::onboarding::LatchkeyApp;
use std::time::Duration;
use url::Url;

#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Where people reach this deployment; decides cookie `Secure` and the trusted origin.
    pub public_url: Url,
    /// A session ends after this much inactivity...
    pub session_idle: Duration,
    /// ...and in any case this long after sign-in.
    pub session_absolute: Duration,
    /// Lifetime of API access tokens.
    pub api_token_lifetime: Duration,
    /// Failed sign-ins allowed per account (and 4x that per address) within `login_window`.
    pub login_max_failures: i64,
    pub login_window: Duration,
    pub invitation_lifetime: Duration,
    /// Latchkey's own multi-tenant Entra app, for OAuth onboarding; `None` hides that path.
    pub entra_app: Option<LatchkeyApp>,
    /// Which outbound URLs connectors may use (development allows the simulated tenant).
    pub outbound_policy: OutboundPolicy,
    /// Login authority for Latchkey's own app, when it is not the connector cloud's default
    /// (`LATCHKEY_ENTRA_LOGIN_AUTHORITY`): used for OAuth consent of connectors that set none.
    pub entra_login_authority: Option<Url>,
    /// Prefilled Microsoft Graph domain in connector settings (the demo's simulated tenant).
    pub default_graph_domain: Option<String>,
    /// Show the email outbox page (the demo has no SMTP server).
    pub show_outbox: bool,
    /// JIT access requests: links in emails, the shortest duration a policy may set.
    pub access: latchkey_access::AccessConfig,
    /// Self-hosted connectors: how long rotated-out credentials keep working.
    pub agent_rotation_grace: Duration,
    /// Self-hosted connectors: how long a claimed task stays theirs without a heartbeat.
    pub agent_lease: Duration,
}

impl WebConfig {
    pub fn new(public_url: Url) -> Self {
        Self {
            public_url: public_url.clone(),
            session_idle: Duration::from_secs(60 * 60),
            session_absolute: Duration::from_secs(12 * 60 * 60),
            api_token_lifetime: Duration::from_secs(15 * 60),
            login_max_failures: 5,
            login_window: Duration::from_secs(15 * 60),
            invitation_lifetime: Duration::from_secs(7 * 24 * 60 * 60),
            entra_app: None,
            outbound_policy: OutboundPolicy::STRICT,
            entra_login_authority: None,
            default_graph_domain: None,
            show_outbox: false,
            access: latchkey_access::AccessConfig {
                public_url: public_url.clone(),
                ..latchkey_access::AccessConfig::default()
            },
            agent_rotation_grace: Duration::from_secs(10 * 60),
            agent_lease: Duration::from_secs(60),
        }
    }

    /// Cookies get `Secure` (and the `__Host-` prefix, which requires it) only over https:
    /// browsers drop Secure cookies set by plain-http local deployments.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    pub fn session_cookie_name(&self) -> &'static str {
        if self.secure_cookies() {
            "__Host-latchkey_session"
        } else {
            "latchkey_session"
        }
    }

    pub fn csrf_cookie_name(&self) -> &'static str {
        if self.secure_cookies() {
            "__Host-latchkey_csrf"
        } else {
            "latchkey_csrf"
        }
    }

    /// The public origin (`scheme://host[:port]`), trusted by the CSRF layer.
    pub fn origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }
}
