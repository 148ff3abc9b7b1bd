//! `latchkey demo`: web and worker in one process on local PostgreSQL, with nothing to
//! configure. It finds or starts a database, makes a development master key if none is
//! set, and says what it did.

use crate::cli::{DemoArgs, EntraArgs, GlobalArgs, MailArgs};
use crate::local_postgres::{self, LocalPostgres};
use crate::{config, shutdown};
use anyhow::Context;
use latchkey_crypto::KeyRing;
use latchkey_entra_sim::{SimConfig, SimServer};
use latchkey_jobs::WorkerConfig;
use latchkey_store::{DbConfig, Store};
use std::sync::Arc;

const HOW_TO_GET_POSTGRES: &str = "Latchkey needs PostgreSQL. Any one of these works:
  - start the local server:   sudo service postgresql start   (or: pg_ctlcluster <version> main start)
  - install it (Debian/Ubuntu): sudo apt-get install -y postgresql   — then run the demo again
  - with Docker:               docker compose up -d postgres
  - or point DATABASE_URL at a server you have: DATABASE_URL=postgres://user@host:5432/latchkey";

pub async fn run(global: &GlobalArgs, args: DemoArgs) -> anyhow::Result<()> {
    let listen = config::listen(args.web.listen.clone())?;
    let public_url = config::public_url(args.web.public_url.clone(), listen)?;
    let url = config::database_url(global.database_url.clone())?;
    let dir = config::local_dir();

    let (store, _private_cluster) = match Store::connect(&demo_db(&url)).await {
        Ok(store) => (store, None),
        Err(e) if e.is_unreachable() && local_postgres::find_binaries().is_some() => {
            eprintln!("PostgreSQL is not reachable at {url}; starting a private one instead.");
            let cluster = tokio::task::spawn_blocking({
                let dir = dir.clone();
                move || LocalPostgres::start(&dir)
            })
            .await??;
            let store = Store::connect(&DbConfig::new(&cluster.url))
                .await
                .context("connecting to the private PostgreSQL")?;
            (store, Some(cluster))
        }
        Err(e) if e.is_unreachable() => {
            eprintln!("Cannot reach PostgreSQL at {url}: {e}\n\n{HOW_TO_GET_POSTGRES}");
            anyhow::bail!("no database available");
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot connect to the database at {url}: {e}"
            ));
        }
    };
    store.migrate().await.context("applying migrations")?;
    let keys = Arc::new(demo_keys(args.keys.master_keys.clone(), &dir)?);

    // The simulated tenant stands in for Microsoft: a small directory, the customer's app
    // registration, and Latchkey's own multi-tenant app for the OAuth path.
    let mut sim_config = SimConfig::small(7);
    sim_config.port = args.sim_port.unwrap_or(0);
    sim_config.latchkey_app.redirect_uris = vec![
        format!("{public_url}connectors/oauth/callback"),
        format!("{public_url}auth/microsoft/callback"),
    ];
    let sim = SimServer::start(sim_config)
        .await
        .context("starting the simulated Entra tenant")?;
    let entra = EntraArgs {
        entra_app_client_id: Some(sim.latchkey_app().client_id.to_string()),
        entra_app_client_secret: Some(sim.latchkey_app().client_secret.clone()),
        // "Sign in with Microsoft" goes to the simulated tenant too (connectors that name the
        // simulated tenant as their Graph domain follow it anyway).
        entra_login_authority: Some(sim.base_url().to_string()),
        allow_insecure_connector_urls: Some("true".into()),
        connector_rotation_grace_secs: None,
    };
    let mut web_config = super::serve::web_config(public_url.clone(), &entra)?;
    web_config.show_outbox = true;
    web_config.default_graph_domain = Some(sim.base_url().to_string());
    web_config.access = config::access(public_url.clone(), &args.access)?;
    let wiring = super::worker::wiring(
        keys.clone(),
        &entra,
        &MailArgs {
            smtp_url: None,
            email_from: None,
        },
        web_config.access.clone(),
    )?;
    let worker_config = WorkerConfig::new(WorkerConfig::default_worker_id()).concurrency(4);

    let stop = shutdown::on_signal();
    let worker = tokio::spawn(super::worker::run_until(
        store.clone(),
        wiring,
        worker_config,
        stop.clone(),
    ));
    let customer = sim.customer_app();
    println!("Latchkey demo is running at {public_url}");
    println!("  1. Create your organization: {public_url}signup");
    println!("  2. Connectors > Add connector > Microsoft Entra ID, then in Settings paste:");
    println!("       Entra tenant ID:        {}", sim.tenant_id());
    println!("       Entra client ID:        {}", customer.client_id);
    println!("       Entra client secret:    {}", customer.client_secret);
    println!(
        "       Microsoft Graph domain: {}   (the simulated tenant; prefilled)",
        sim.base_url()
    );
    println!("     or choose OAuth with the same tenant ID and click Login with Microsoft.");
    println!(
        "  3. Once the connector is connected, people of the simulated tenant can use Sign in with Microsoft"
    );
    println!(
        "     on {public_url}login (for example {}).",
        sim.truth_users()
            .iter()
            .find(|u| u.account_enabled && u.user_type == "Member")
            .map(|u| u.user_principal_name.as_str())
            .unwrap_or("any enabled user of the tenant")
    );
    println!("  Emails Latchkey would send: {public_url}outbox");
    println!("  Stop with Ctrl-C.");
    let served = super::serve::serve_until(store, keys, &args.web, web_config, stop.clone()).await;
    stop.cancel();
    if let Ok(Err(e)) = worker.await {
        tracing::warn!(error = %e, "worker stopped with an error");
    }
    sim.shutdown().await;
    served
}

/// Web and worker share one pool in the demo.
fn demo_db(url: &str) -> DbConfig {
    let mut c = DbConfig::new(url);
    c.max_connections = 20;
    c
}

/// The configured key ring, or a development key kept in `.latchkey/master.key`.
fn demo_keys(configured: Option<String>, dir: &std::path::Path) -> anyhow::Result<KeyRing> {
    if configured.is_some() {
        return Ok(config::master_keys(configured)?);
    }
    let path = dir.join("master.key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return KeyRing::parse(existing.trim())
            .with_context(|| format!("{} is not a valid key entry", path.display()));
    }
    std::fs::create_dir_all(dir)?;
    let entry = latchkey_crypto::generate_key_entry("dev1");
    write_private(&path, &entry)?;
    eprintln!(
        "No LATCHKEY_MASTER_KEYS set: generated a development master key in {} (for this machine's demo only; production sets LATCHKEY_MASTER_KEYS).",
        path.display()
    );
    Ok(KeyRing::parse(&entry)?)
}

fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
