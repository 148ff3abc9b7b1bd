//! `latchkey sim`: flags and the run loop of the standalone simulator.

use clap::{Args, ValueEnum};
use uuid::Uuid;

use crate::config::{
    ConsentOutcome, Faults, PROVISIONING_PERMISSIONS, SYNC_PERMISSIONS, SimConfig, Throttle,
    default_permissions,
};
use crate::server::SimServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// A few dozen users, every group kind: for demos and tests.
    Small,
    /// 100k users, 10k groups, 1M memberships, 500 apps.
    Large,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PermissionSet {
    /// Sync and provisioning permissions (the default).
    Full,
    Sync,
    Provisioning,
    /// Consented but without any application permission: every Graph call is 403.
    None,
}

/// Flags of `latchkey sim`.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, env = "LATCHKEY_SIM_PORT", default_value_t = 0)]
    pub port: u16,
    /// Seed of the generated tenant; the same seed gives the same tenant.
    #[arg(long, env = "LATCHKEY_SIM_SEED", default_value_t = 1)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "small")]
    pub profile: Profile,
    #[arg(long)]
    pub users: Option<usize>,
    #[arg(long)]
    pub groups: Option<usize>,
    #[arg(long)]
    pub memberships: Option<usize>,
    /// Enterprise applications.
    #[arg(long)]
    pub apps: Option<usize>,
    #[arg(long)]
    pub managed_identities: Option<usize>,
    #[arg(long)]
    pub tenant_id: Option<Uuid>,
    #[arg(long, default_value = "Contoso")]
    pub org_name: String,
    /// Added latency per request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Answer every Nth Graph request with 429.
    #[arg(long)]
    pub throttle_every: Option<u64>,
    /// Throttle with Graph's per-app token bucket, limits scaled by this factor (1.0 = documented limits).
    #[arg(long)]
    pub throttle_bucket: Option<f64>,
    /// `Retry-After` seconds sent with 429 and 503 (may be fractional).
    #[arg(long, default_value_t = 1.0)]
    pub retry_after: f64,
    /// Fraction of Graph requests answered 503/504 (seeded, deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub transient_rate: f64,
    #[arg(long, default_value_t = 3599)]
    pub token_lifetime_secs: u64,
    /// The customer app's client secret is expired (AADSTS7000222).
    #[arg(long)]
    pub expired_secret: bool,
    /// No Entra ID P1/P2: sign-in activity and PIM are refused.
    #[arg(long)]
    pub no_premium: bool,
    /// P1 but no P2: PIM is refused.
    #[arg(long)]
    pub no_p2: bool,
    /// `auditLogs/directoryAudits` is unavailable.
    #[arg(long)]
    pub audit_unavailable: bool,
    /// Preset of application permissions granted to the customer app.
    #[arg(long, value_enum, default_value = "full")]
    pub permission_set: PermissionSet,
    /// Explicit application permissions (comma-separated); overrides --permission-set.
    #[arg(long, value_delimiter = ',')]
    pub permissions: Option<Vec<String>>,
    /// What admin consent and authorize do.
    #[arg(long, value_enum, default_value = "grant")]
    pub consent: ConsentOutcome,
    /// Redirect URIs registered on Latchkey's multi-tenant app (repeatable).
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    #[arg(long)]
    pub latchkey_client_id: Option<Uuid>,
    #[arg(long)]
    pub latchkey_client_secret: Option<String>,
}

impl SimArgs {
    pub fn to_config(&self) -> SimConfig {
        let mut cfg = match self.profile {
            Profile::Small => SimConfig::small(self.seed),
            Profile::Large => SimConfig::large(self.seed),
        };
        cfg.port = self.port;
        cfg.tenant_id = self.tenant_id;
        cfg.org_name = self.org_name.clone();
        let s = &mut cfg.sizes;
        if let Some(n) = self.users {
            s.users = n;
        }
        if let Some(n) = self.groups {
            s.groups = n;
        }
        if let Some(n) = self.memberships {
            s.memberships = n;
        }
        if let Some(n) = self.apps {
            s.apps = n;
        }
        if let Some(n) = self.managed_identities {
            s.managed_identities = n;
        }
        cfg.faults = Faults {
            latency_ms: self.latency_ms,
            throttle: match (self.throttle_every, self.throttle_bucket) {
                (Some(n), _) => Throttle::EveryN { n },
                (None, Some(scale)) => Throttle::TokenBucket { scale },
                (None, None) => Throttle::Off,
            },
            retry_after_secs: self.retry_after,
            transient_rate: self.transient_rate.clamp(0.0, 1.0),
            token_lifetime_secs: self.token_lifetime_secs,
            expired_secret: self.expired_secret,
            premium_p1: !self.no_premium,
            premium_p2: !self.no_premium && !self.no_p2,
            audit_unavailable: self.audit_unavailable,
        };
        cfg.granted_permissions = match &self.permissions {
            Some(p) => p
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            None => match self.permission_set {
                PermissionSet::Full => default_permissions(),
                PermissionSet::Sync => SYNC_PERMISSIONS.iter().map(|s| s.to_string()).collect(),
                PermissionSet::Provisioning => PROVISIONING_PERMISSIONS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                PermissionSet::None => vec![],
            },
        };
        cfg.consent = self.consent;
        if !self.redirect_uris.is_empty() {
            cfg.latchkey_app.redirect_uris = self.redirect_uris.clone();
        }
        if let Some(id) = self.latchkey_client_id {
            cfg.latchkey_app.client_id = id;
        }
        if let Some(s) = &self.latchkey_client_secret {
            cfg.latchkey_app.client_secret = s.clone();
        }
        cfg
    }
}

/// Starts the simulator, prints where it listens and the credentials, and runs until Ctrl-C or SIGTERM.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    run_until(args, shutdown_signal(), &mut stdout).await
}

/// Like [`run`], writing the banner to `out` and stopping when `stop` completes.
pub async fn run_until(
    args: SimArgs,
    stop: impl std::future::Future<Output = ()>,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let handle = SimServer::start(args.to_config()).await?;
    let app = handle.customer_app();
    let lk = handle.latchkey_app();
    writeln!(out, "listening on {}", handle.base_url())?;
    writeln!(out, "tenant id: {}", handle.tenant_id())?;
    writeln!(out, "client id: {}", app.client_id)?;
    writeln!(out, "client secret: {}", app.client_secret)?;
    writeln!(out, "latchkey app client id: {}", lk.client_id)?;
    writeln!(out, "introspection: {}/_sim/info", handle.base_url())?;
    out.flush()?;
    stop.await;
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[tokio::test]
    async fn run_prints_the_listening_line_and_credentials() {
        let cli = Cli::parse_from(["sim", "--seed", "3"]);
        let mut out = Vec::new();
        run_until(cli.sim, async {}, &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        let first = lines.next().unwrap();
        assert!(
            first.starts_with("listening on http://127.0.0.1:"),
            "{first}"
        );
        assert!(
            first["listening on http://127.0.0.1:".len()..]
                .parse::<u16>()
                .is_ok()
        );
        assert!(lines.next().unwrap().starts_with("tenant id: "));
        assert!(lines.next().unwrap().starts_with("client id: "));
        assert!(lines.next().unwrap().starts_with("client secret: "));
    }

    #[test]
    fn flags_map_to_config() {
        let cli = Cli::parse_from([
            "sim",
            "--port",
            "0",
            "--seed",
            "9",
            "--users",
            "10",
            "--throttle-every",
            "3",
            "--no-premium",
            "--permissions",
            "User.Read.All,Group.Read.All",
            "--consent",
            "wrong-tenant",
            "--expired-secret",
            "--redirect-uri",
            "http://localhost:1/cb",
        ]);
        let cfg = cli.sim.to_config();
        assert_eq!(cfg.seed, 9);
        assert_eq!(cfg.sizes.users, 10);
        assert_eq!(cfg.faults.throttle, Throttle::EveryN { n: 3 });
        assert!(!cfg.faults.premium_p1 && !cfg.faults.premium_p2);
        assert!(cfg.faults.expired_secret);
        assert_eq!(
            cfg.granted_permissions,
            vec!["User.Read.All", "Group.Read.All"]
        );
        assert_eq!(cfg.consent, ConsentOutcome::WrongTenant);
        assert_eq!(
            cfg.latchkey_app.redirect_uris,
            vec!["http://localhost:1/cb"]
        );
    }
}
