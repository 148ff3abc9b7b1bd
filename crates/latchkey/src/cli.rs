//! Command-line interface. Every option can also come from the environment variable
//! named in its help; flags win over the environment.

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "latchkey",
    version,
    about = "Just-in-time access for Microsoft Entra ID",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// PostgreSQL URL; the database is created if it does not exist
    /// [default: postgres://postgres@127.0.0.1:5432/latchkey]
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Longest a database statement may run before PostgreSQL cancels it, in seconds (`serve`
    /// and `worker`) [default: 30]
    #[arg(long, env = "LATCHKEY_DB_STATEMENT_TIMEOUT_SECS", global = true)]
    pub db_statement_timeout_secs: Option<String>,
    /// Log format: `pretty` or `json` [default: pretty]
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the web server (pages and REST API)
    Serve(ServeArgs),
    /// Run job workers (sync, provisioning, expiry, housekeeping)
    Worker(WorkerArgs),
    /// Apply database migrations and exit
    Migrate,
    /// Run everything in one process for a first look: web, worker and a simulated Entra tenant,
    /// on local PostgreSQL (a private cluster is started under ./.latchkey/ if needed)
    Demo(DemoArgs),
    /// Run a simulated Entra tenant (identity platform + Microsoft Graph) for tests and demos
    Sim(latchkey_entra_sim::cli::SimArgs),
    /// Manage the master encryption keys
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage organizations
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// Manage API clients (OAuth2 client credentials)
    #[command(subcommand, name = "api-clients")]
    ApiClients(ApiClientsCommand),
    /// Check the audit trail
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The self-hosted Entra connector: runs in your environment and connects out to Latchkey.
    /// Without a subcommand it runs as a service (heartbeats, tasks, syncs at intervals).
    Connector(crate::commands::connector::ConnectorArgs),
}

#[derive(Args, Debug, Clone)]
pub struct WebArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "LATCHKEY_LISTEN")]
    pub listen: Option<String>,
    /// URL people use to reach Latchkey (cookies are Secure when it is https) [default: http://LISTEN/]
    #[arg(long, env = "LATCHKEY_PUBLIC_URL")]
    pub public_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Master keys: `id:base64key[,id:base64key...]`, the first active
    #[arg(long, env = "LATCHKEY_MASTER_KEYS", hide_env_values = true)]
    pub master_keys: Option<String>,
}

/// How Latchkey reaches Microsoft Entra for connectors.
#[derive(Args, Debug, Clone)]
pub struct EntraArgs {
    /// Client ID of Latchkey's own multi-tenant Entra app (OAuth onboarding; optional)
    #[arg(long, env = "LATCHKEY_ENTRA_APP_CLIENT_ID")]
    pub entra_app_client_id: Option<String>,
    /// Client secret of Latchkey's own Entra app
    #[arg(long, env = "LATCHKEY_ENTRA_APP_CLIENT_SECRET", hide_env_values = true)]
    pub entra_app_client_secret: Option<String>,
    /// Login authority for Latchkey's own app [default: https://login.microsoftonline.com]
    #[arg(long, env = "LATCHKEY_ENTRA_LOGIN_AUTHORITY")]
    pub entra_login_authority: Option<String>,
    /// Development only: also allow http://127.0.0.1:PORT / localhost connector URLs (the simulated tenant)
    #[arg(long, env = "LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS")]
    pub allow_insecure_connector_urls: Option<String>,
    /// Self-hosted connectors: seconds a rotated-out client secret keeps working [default: 600]
    #[arg(long, env = "LATCHKEY_CONNECTOR_ROTATION_GRACE_SECS")]
    pub connector_rotation_grace_secs: Option<u64>,
}

/// JIT access requests.
#[derive(Args, Debug, Clone)]
pub struct AccessArgs {
    /// Shortest duration (and decision timeout), in seconds, an access policy may set [default: 300]
    #[arg(long, env = "LATCHKEY_ACCESS_MIN_DURATION_SECS")]
    pub access_min_duration_secs: Option<String>,
    /// How often, in seconds, workers look for overdue expiries, timeouts and reminders [default: 30]
    #[arg(long, env = "LATCHKEY_ACCESS_SWEEP_SECS")]
    pub access_sweep_secs: Option<String>,
}

/// Outgoing email.
#[derive(Args, Debug, Clone)]
pub struct MailArgs {
    /// SMTP server, e.g. smtps://user:password@smtp.example.com or smtp://relay:25 (without it mail stays in the outbox)
    #[arg(long, env = "LATCHKEY_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address [default: Latchkey <latchkey@localhost>]
    #[arg(long, env = "LATCHKEY_EMAIL_FROM")]
    pub email_from: Option<String>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub web: WebArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub entra: EntraArgs,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub entra: EntraArgs,
    #[command(flatten)]
    pub mail: MailArgs,
    /// Jobs this process runs at once
    #[arg(long, env = "LATCHKEY_WORKER_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    #[command(flatten)]
    pub access: AccessArgs,
    /// URL people use to reach Latchkey, for links in emails [default: http://127.0.0.1:8080/]
    #[arg(long, env = "LATCHKEY_PUBLIC_URL")]
    pub public_url: Option<String>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(flatten)]
    pub web: WebArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Port of the simulated Entra tenant [default: a free port]
    #[arg(long, env = "LATCHKEY_DEMO_SIM_PORT")]
    pub sim_port: Option<u16>,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Print a new master key entry (`id:base64key`) to add to LATCHKEY_MASTER_KEYS
    Generate {
        /// Id of the new key [default: k<YYYYMMDD>]
        #[arg(long)]
        id: Option<String>,
    },
    /// Re-encrypt every stored secret under the active (first) key; safe to re-run
    Rotate {
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Show how many stored secrets each key protects
    Status,
}

#[derive(Subcommand, Debug)]
pub enum OrgsCommand {
    /// Create an organization and its first Super Administrator; prints {"org_id", "user_id"}
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_email: String,
        #[arg(long)]
        admin_password: String,
        /// Name of the administrator [default: the part of the email before @]
        #[arg(long)]
        admin_name: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiClientsCommand {
    /// Create an API client; prints {"client_id", "client_secret"} (the secret is shown only now)
    Create {
        /// Organization id
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        /// super_admin, connector_admin or member
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute an organization's audit hash chain; prints {"org_id", "events", "intact",
    /// "broken_at"} and exits with 1 when a row was changed, removed or reordered
    Verify {
        /// Organization id
        #[arg(long)]
        org: String,
    },
}
