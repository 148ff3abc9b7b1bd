//! `latchkey connector`: the self-hosted Entra connector. It runs in the customer's
//! environment with the tenant's credentials and reaches Latchkey outbound only.
//!
//! - service mode (no subcommand): token, heartbeats, tasks, syncs at intervals ([`service`]);
//! - `sync --output FILE`: a full sync into a local file, without Latchkey ([`spool`]);
//! - `upload FILE`: sends such a file to Latchkey as a sync of this connector ([`upload`]).

mod client;
mod service;
mod spool;
mod upload;

use crate::config::{self, ConfigError};
use clap::{Args, Subcommand};
use latchkey_crypto::SecretString;
use latchkey_entra::onboarding::EntraSettings;
use latchkey_entra::onboarding::settings::{AuthMode, AuthSettings};
use latchkey_entra::{Connection, ConnectionSettings, OutboundPolicy};
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

#[derive(Args, Debug)]
#[command(
    about = "The self-hosted Entra connector: runs in your environment and connects out to Latchkey",
    long_about = "The self-hosted Entra connector. Configured by environment variables (or the matching flags). \
Without a subcommand it runs as a service: it gets a short-lived token with its Latchkey client ID and secret, \
heartbeats, carries out the tasks Latchkey hands it (syncs, grants, revokes, creating and deprovisioning accounts) with the same code as hosted \
connectors, syncs at LATCHKEY_SYNC_INTERVAL and uploads the results in compressed batches. Outbound HTTPS only."
)]
pub struct ConnectorArgs {
    #[command(flatten)]
    pub settings: ConnectorSettings,
    #[command(subcommand)]
    pub command: Option<ConnectorCommand>,
}

#[derive(Subcommand, Debug)]
pub enum ConnectorCommand {
    /// Write a full sync of the tenant to FILE (JSON lines, docs/connector-sync-format.md)
    /// without contacting Latchkey
    Sync {
        /// Where to write the sync
        #[arg(long)]
        output: PathBuf,
    },
    /// Send a sync file written by `latchkey connector sync` to Latchkey
    Upload {
        /// The sync file
        file: PathBuf,
    },
}

/// Every setting of the connector; each is an environment variable or the matching flag.
#[derive(Args, Debug, Clone)]
pub struct ConnectorSettings {
    /// Latchkey's URL, e.g. https://latchkey.example.com
    #[arg(long, env = "LATCHKEY_URL", global = true)]
    pub latchkey_url: Option<String>,
    /// The connector's client ID (Latchkey > connector > Settings > Rotate)
    #[arg(long, env = "LATCHKEY_CLIENT_ID", global = true)]
    pub latchkey_client_id: Option<String>,
    /// The connector's client secret (shown once at Rotate)
    #[arg(
        long,
        env = "LATCHKEY_CLIENT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub latchkey_client_secret: Option<String>,
    /// Entra directory (tenant) ID
    #[arg(long, env = "ENTRA_TENANT_ID", global = true)]
    pub entra_tenant_id: Option<String>,
    /// Entra application (client) ID of your app registration
    #[arg(long, env = "ENTRA_CLIENT_ID", global = true)]
    pub entra_client_id: Option<String>,
    /// Entra client secret of that app registration
    #[arg(
        long,
        env = "ENTRA_CLIENT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub entra_client_secret: Option<String>,
    /// Microsoft Graph domain [default: graph.microsoft.com]
    #[arg(long, env = "ENTRA_GRAPH_DOMAIN", global = true)]
    pub entra_graph_domain: Option<String>,
    /// Login authority [default: the Graph domain's cloud, e.g. https://login.microsoftonline.com]
    #[arg(long, env = "ENTRA_LOGIN_AUTHORITY", global = true)]
    pub entra_login_authority: Option<String>,
    /// Carry out provisioning tasks (grants, revokes, creating and deprovisioning accounts):
    /// true or false [default: false]
    #[arg(long, env = "LATCHKEY_PROVISIONING", global = true)]
    pub latchkey_provisioning: Option<String>,
    /// Deprovisioning may delete an account when Latchkey asks (needs LATCHKEY_PROVISIONING):
    /// true or false [default: false]
    #[arg(long, env = "LATCHKEY_ALLOW_ACCOUNT_DELETION", global = true)]
    pub latchkey_allow_account_deletion: Option<String>,
    /// Skip groups synchronised from on-premises Active Directory: true or false [default: false]
    #[arg(long, env = "ENTRA_SKIP_AD_GROUPS", global = true)]
    pub entra_skip_ad_groups: Option<String>,
    /// Read users' last sign-in (needs Entra ID P1): true or false [default: false]
    #[arg(long, env = "ENTRA_FETCH_SIGN_IN_ACTIVITY", global = true)]
    pub entra_fetch_sign_in_activity: Option<String>,
    /// Provision app role grants to SCIM apps on demand: true or false [default: false]
    #[arg(long, env = "ENTRA_SCHEDULE_SCIM_PROVISIONING", global = true)]
    pub entra_schedule_scim_provisioning: Option<String>,
    /// Do not read the directory audit feed: true or false [default: false]
    #[arg(long, env = "ENTRA_DISABLE_AUDIT_FEED", global = true)]
    pub entra_disable_audit_feed: Option<String>,
    /// How often to sync on its own: 30s, 15m, 1h, or seconds [default: 1h]
    #[arg(long, env = "LATCHKEY_SYNC_INTERVAL", global = true)]
    pub latchkey_sync_interval: Option<String>,
    /// How often to heartbeat and ask for tasks [default: 10s]
    #[arg(long, env = "LATCHKEY_POLL_INTERVAL", global = true)]
    pub latchkey_poll_interval: Option<String>,
    /// Pause between uploaded batches, to spread an upload's load on Latchkey: 250ms, 1s
    /// [default: 0]
    #[arg(long, env = "LATCHKEY_UPLOAD_PAUSE", global = true)]
    pub latchkey_upload_pause: Option<String>,
    /// Directory for sync files while they upload [default: the system's temporary directory]
    #[arg(long, env = "LATCHKEY_SPOOL_DIR", global = true)]
    pub latchkey_spool_dir: Option<PathBuf>,
    /// Development only: allow http:// Latchkey and localhost Entra URLs (the simulated tenant)
    #[arg(long, env = "LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS", global = true)]
    pub allow_insecure_connector_urls: Option<String>,
}

/// The Entra side, parsed.
pub struct EntraConfig {
    pub settings: EntraSettings,
    pub connection: ConnectionSettings,
    pub policy: OutboundPolicy,
}

/// The Latchkey side, parsed.
pub struct LatchkeyConfig {
    pub url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub provisioning: bool,
    /// Deprovisioning may delete accounts (LATCHKEY_ALLOW_ACCOUNT_DELETION).
    pub allow_account_deletion: bool,
    pub sync_interval: Duration,
    pub poll_interval: Duration,
    pub upload_pause: Duration,
    pub spool_dir: PathBuf,
}

fn required(var: &'static str, v: &Option<String>, expected: &str) -> Result<String, ConfigError> {
    match v.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(ConfigError::missing(var, expected)),
    }
}

/// `250ms`, `30s`, `15m`, `2h`, or a number of seconds; at least 1s unless `zero_ok`.
pub fn duration(
    var: &'static str,
    raw: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    duration_from(var, raw, default, false)
}

fn duration_from(
    var: &'static str,
    raw: Option<&str>,
    default: Duration,
    zero_ok: bool,
) -> Result<Duration, ConfigError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(default);
    };
    if let Some(ms) = raw.strip_suffix("ms") {
        return match ms.parse::<u64>() {
            Ok(n) if n > 0 || zero_ok => Ok(Duration::from_millis(n)),
            _ => Err(ConfigError::invalid(
                var,
                raw,
                "a duration such as 250ms, 30s, 15m or 1h",
            )),
        };
    }
    let (num, unit) = match raw.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| ConfigError::invalid(var, raw, "a duration such as 30s, 15m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => {
            return Err(ConfigError::invalid(
                var,
                raw,
                "a duration such as 30s, 15m or 1h",
            ));
        }
    };
    if secs == 0 && !zero_ok {
        return Err(ConfigError::invalid(var, raw, "a duration of at least 1s"));
    }
    Ok(Duration::from_secs(secs))
}

impl ConnectorSettings {
    pub fn insecure(&self) -> Result<bool, ConfigError> {
        config::flag(
            "LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS",
            self.allow_insecure_connector_urls.clone(),
        )
    }

    /// LATCHKEY_ALLOW_ACCOUNT_DELETION, which only makes sense with LATCHKEY_PROVISIONING.
    pub fn allow_account_deletion(&self) -> Result<bool, ConfigError> {
        let allow = config::flag(
            "LATCHKEY_ALLOW_ACCOUNT_DELETION",
            self.latchkey_allow_account_deletion.clone(),
        )?;
        let provisioning =
            config::flag("LATCHKEY_PROVISIONING", self.latchkey_provisioning.clone())?;
        if allow && !provisioning {
            return Err(ConfigError::invalid(
                "LATCHKEY_ALLOW_ACCOUNT_DELETION",
                "true",
                "false unless LATCHKEY_PROVISIONING is true (deleting accounts is provisioning)",
            ));
        }
        Ok(allow)
    }

    pub fn entra(&self) -> Result<EntraConfig, ConfigError> {
        let tenant_id = required(
            "ENTRA_TENANT_ID",
            &self.entra_tenant_id,
            "the Entra directory (tenant) ID",
        )?;
        let client_id = required(
            "ENTRA_CLIENT_ID",
            &self.entra_client_id,
            "the application (client) ID of your Entra app registration",
        )?;
        let client_secret = required(
            "ENTRA_CLIENT_SECRET",
            &self.entra_client_secret,
            "a client secret of that app registration",
        )?;
        let graph_domain = self
            .entra_graph_domain
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "graph.microsoft.com".into());
        let login_authority = self
            .entra_login_authority
            .clone()
            .filter(|s| !s.trim().is_empty());
        let policy = if self.insecure()? {
            OutboundPolicy::INSECURE_DEV
        } else {
            OutboundPolicy::STRICT
        };
        let settings = EntraSettings {
            auth: AuthSettings {
                mode: AuthMode::ClientSecret,
                tenant_id: tenant_id.clone(),
                client_id: Some(client_id.clone()),
            },
            graph_domain: graph_domain.clone(),
            login_authority: login_authority.clone(),
            provisioning: config::flag(
                "LATCHKEY_PROVISIONING",
                self.latchkey_provisioning.clone(),
            )?,
            skip_ad_groups: config::flag(
                "ENTRA_SKIP_AD_GROUPS",
                self.entra_skip_ad_groups.clone(),
            )?,
            fetch_sign_in_activity: config::flag(
                "ENTRA_FETCH_SIGN_IN_ACTIVITY",
                self.entra_fetch_sign_in_activity.clone(),
            )?,
            schedule_scim_provisioning: config::flag(
                "ENTRA_SCHEDULE_SCIM_PROVISIONING",
                self.entra_schedule_scim_provisioning.clone(),
            )?,
            disable_audit_feed: config::flag(
                "ENTRA_DISABLE_AUDIT_FEED",
                self.entra_disable_audit_feed.clone(),
            )?,
            allow_account_deletion: self.allow_account_deletion()?,
        };
        let connection = ConnectionSettings {
            tenant_id,
            client_id,
            client_secret: SecretString::from(client_secret),
            graph_domain: Some(graph_domain),
            login_authority,
        };
        Ok(EntraConfig {
            settings,
            connection,
            policy,
        })
    }

    pub fn latchkey(&self) -> Result<LatchkeyConfig, ConfigError> {
        let raw = required(
            "LATCHKEY_URL",
            &self.latchkey_url,
            "Latchkey's URL, such as https://latchkey.example.com",
        )?;
        let insecure = self.insecure()?;
        let url = match Url::parse(&raw) {
            Ok(u) if u.scheme() == "https" || (insecure && u.scheme() == "http") => u,
            _ => {
                return Err(ConfigError::invalid(
                    "LATCHKEY_URL",
                    &raw,
                    "an https URL such as https://latchkey.example.com",
                ));
            }
        };
        let url = if url.path().ends_with('/') {
            url
        } else {
            Url::parse(&format!("{url}/")).expect("a valid URL with a slash added")
        };
        Ok(LatchkeyConfig {
            url,
            client_id: required(
                "LATCHKEY_CLIENT_ID",
                &self.latchkey_client_id,
                "the connector's client ID (connector > Settings > Rotate in Latchkey)",
            )?,
            client_secret: SecretString::from(required(
                "LATCHKEY_CLIENT_SECRET",
                &self.latchkey_client_secret,
                "the connector's client secret (shown once at Rotate)",
            )?),
            provisioning: config::flag(
                "LATCHKEY_PROVISIONING",
                self.latchkey_provisioning.clone(),
            )?,
            allow_account_deletion: self.allow_account_deletion()?,
            sync_interval: duration(
                "LATCHKEY_SYNC_INTERVAL",
                self.latchkey_sync_interval.as_deref(),
                Duration::from_secs(3600),
            )?,
            poll_interval: duration(
                "LATCHKEY_POLL_INTERVAL",
                self.latchkey_poll_interval.as_deref(),
                Duration::from_secs(10),
            )?,
            upload_pause: duration_from(
                "LATCHKEY_UPLOAD_PAUSE",
                self.latchkey_upload_pause.as_deref(),
                Duration::ZERO,
                true,
            )?,
            spool_dir: self
                .latchkey_spool_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
        })
    }
}

/// The connector's link to its tenant.
pub async fn connect(entra: &EntraConfig) -> anyhow::Result<Connection> {
    Connection::connect(&entra.connection, entra.policy)
        .await
        .map_err(|e| match e {
            latchkey_entra::SettingsError::Invalid(fields) => anyhow::anyhow!(
                "the Entra settings are not valid: {}",
                fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            other => anyhow::anyhow!("cannot set up the connection to Entra: {other}"),
        })
}

/// The Entra tenant `conn` reads, as its GUID (lower-case), whichever form the settings name it
/// in (the GUID, or a domain such as `contoso.onmicrosoft.com`): the access token's `tid`.
/// Latchkey refuses data from another tenant than the one a connector's earlier syncs came
/// from, comparing these values, so the same tenant must always be named the same way. Without
/// a token (wrong secret, authority down) the settings' value is used; the sync itself then
/// fails with the reason.
pub async fn tenant_guid(conn: &Connection, configured: &str) -> String {
    if let Ok(id) = uuid::Uuid::parse_str(configured.trim()) {
        return id.to_string();
    }
    match conn.graph.tokens().token().await {
        Ok(token) => match token
            .claims()
            .tid
            .as_deref()
            .and_then(|t| uuid::Uuid::parse_str(t).ok())
        {
            Some(id) => id.to_string(),
            None => configured.trim().to_ascii_lowercase(),
        },
        Err(e) => {
            tracing::warn!("could not read the tenant's id from a token: {e}");
            configured.trim().to_ascii_lowercase()
        }
    }
}

pub async fn run(args: ConnectorArgs) -> anyhow::Result<()> {
    match args.command {
        None => {
            let entra = args.settings.entra()?;
            let latchkey = args.settings.latchkey()?;
            service::run(entra, latchkey).await
        }
        Some(ConnectorCommand::Sync { output }) => {
            let entra = args.settings.entra()?;
            let summary = spool::sync_to_file(&entra, &output, |line| {
                tracing::info!(level = ?line.level, "{}", line.message);
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
        Some(ConnectorCommand::Upload { file }) => {
            let latchkey = args.settings.latchkey()?;
            let summary = upload::upload_file(&latchkey, &file).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, Parser};

    /// Every variable the issue names: (variable, the matching flag).
    const ISSUE_VARIABLES: &[(&str, &str)] = &[
        ("LATCHKEY_URL", "latchkey-url"),
        ("LATCHKEY_CLIENT_ID", "latchkey-client-id"),
        ("LATCHKEY_CLIENT_SECRET", "latchkey-client-secret"),
        ("ENTRA_TENANT_ID", "entra-tenant-id"),
        ("ENTRA_CLIENT_ID", "entra-client-id"),
        ("ENTRA_CLIENT_SECRET", "entra-client-secret"),
        ("ENTRA_GRAPH_DOMAIN", "entra-graph-domain"),
        ("ENTRA_LOGIN_AUTHORITY", "entra-login-authority"),
        ("LATCHKEY_PROVISIONING", "latchkey-provisioning"),
        ("ENTRA_SKIP_AD_GROUPS", "entra-skip-ad-groups"),
        (
            "ENTRA_FETCH_SIGN_IN_ACTIVITY",
            "entra-fetch-sign-in-activity",
        ),
        (
            "ENTRA_SCHEDULE_SCIM_PROVISIONING",
            "entra-schedule-scim-provisioning",
        ),
        ("ENTRA_DISABLE_AUDIT_FEED", "entra-disable-audit-feed"),
        ("LATCHKEY_SYNC_INTERVAL", "latchkey-sync-interval"),
    ];

    /// `--help` prints a variable's name even when it is not bound (clap's value name is the
    /// same text), so the binding itself is checked in the definition: each variable is the
    /// `env` of the argument with its flag, and secrets' values are not shown in `--help`.
    #[test]
    fn every_variable_of_the_issue_is_bound_to_the_argument_with_its_flag() {
        let cli = Cli::command();
        let connector = cli
            .find_subcommand("connector")
            .expect("the connector subcommand");
        for (var, flag) in ISSUE_VARIABLES {
            let bound: Vec<_> = connector
                .get_arguments()
                .filter(|a| a.get_env().and_then(|e| e.to_str()) == Some(*var))
                .collect();
            assert_eq!(bound.len(), 1, "{var} is the env of exactly one argument");
            assert_eq!(
                bound[0].get_long(),
                Some(*flag),
                "{var} is bound to --{flag}"
            );
            if var.ends_with("_SECRET") {
                assert!(bound[0].is_hide_env_values_set(), "{var}'s value is hidden");
            }
        }
    }

    fn settings(args: &[&str]) -> ConnectorSettings {
        let cli = Cli::try_parse_from(["latchkey", "connector"].iter().chain(args))
            .unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Connector(c) => c.settings,
            other => panic!("not the connector: {other:?}"),
        }
    }

    /// The flags alone configure the connector (they win over the environment, so what the
    /// environment of the test holds does not matter).
    #[test]
    fn flags_alone_configure_the_connector() {
        let s = settings(&[
            "--latchkey-url",
            "https://latchkey.example.com",
            "--latchkey-client-id",
            "lkac_flag",
            "--latchkey-client-secret",
            "lkas_flag",
            "--entra-tenant-id",
            "00000000-0000-0000-0000-00000000000a",
            "--entra-client-id",
            "00000000-0000-0000-0000-00000000000b",
            "--entra-client-secret",
            "entra-secret",
            "--entra-graph-domain",
            "graph.microsoft.us",
            "--entra-login-authority",
            "https://login.microsoftonline.us",
            "--latchkey-provisioning",
            "true",
            "--entra-skip-ad-groups",
            "true",
            "--entra-fetch-sign-in-activity",
            "yes",
            "--entra-schedule-scim-provisioning",
            "1",
            "--entra-disable-audit-feed",
            "true",
            "--latchkey-sync-interval",
            "15m",
            "--latchkey-poll-interval",
            "5s",
            "--allow-insecure-connector-urls",
            "false",
        ]);
        let l = s.latchkey().unwrap();
        assert_eq!(l.url.as_str(), "https://latchkey.example.com/");
        assert_eq!(l.client_id, "lkac_flag");
        assert!(l.provisioning);
        assert_eq!(l.sync_interval, Duration::from_secs(15 * 60));
        assert_eq!(l.poll_interval, Duration::from_secs(5));
        let e = s.entra().unwrap();
        assert_eq!(
            e.connection.tenant_id,
            "00000000-0000-0000-0000-00000000000a"
        );
        assert_eq!(
            e.connection.client_id,
            "00000000-0000-0000-0000-00000000000b"
        );
        assert_eq!(e.settings.graph_domain, "graph.microsoft.us");
        assert_eq!(
            e.settings.login_authority.as_deref(),
            Some("https://login.microsoftonline.us")
        );
        assert!(e.settings.provisioning);
        assert!(e.settings.skip_ad_groups);
        assert!(e.settings.fetch_sign_in_activity);
        assert!(e.settings.schedule_scim_provisioning);
        assert!(e.settings.disable_audit_feed);

        // And the other way round, with the flags of a subcommand's command line.
        let off = settings(&[
            "--latchkey-provisioning",
            "false",
            "--entra-skip-ad-groups",
            "false",
            "--entra-fetch-sign-in-activity",
            "no",
            "--entra-schedule-scim-provisioning",
            "0",
            "--entra-disable-audit-feed",
            "false",
            "--latchkey-sync-interval",
            "90",
            "--entra-tenant-id",
            "t",
            "--entra-client-id",
            "c",
            "--entra-client-secret",
            "s",
            "--allow-insecure-connector-urls",
            "false",
            "sync",
            "--output",
            "/tmp/x.jsonl",
        ]);
        let e = off.entra().unwrap();
        assert!(!e.settings.provisioning);
        assert!(!e.settings.skip_ad_groups);
        assert!(!e.settings.fetch_sign_in_activity);
        assert!(!e.settings.schedule_scim_provisioning);
        assert!(!e.settings.disable_audit_feed);
        assert_eq!(
            duration(
                "LATCHKEY_SYNC_INTERVAL",
                off.latchkey_sync_interval.as_deref(),
                Duration::from_secs(3600)
            )
            .unwrap(),
            Duration::from_secs(90)
        );
    }
}
