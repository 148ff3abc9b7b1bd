//! `latchkey demo`: web and worker in one process on local PostgreSQL, with nothing to
//! configure. It finds or starts a database, makes a development master key if none is
//! set, and says what it did.

use crate::cli::{DemoArgs, GlobalArgs};
use crate::local_postgres::{self, LocalPostgres};
use crate::{config, shutdown};
use anyhow::Context;
use latchkey_crypto::KeyRing;
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

    let (store, _private_cluster) = match Store::connect(&DbConfig::new(&url)).await {
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

    let stop = shutdown::on_signal();
    let worker = tokio::spawn(super::worker::run_until(store.clone(), stop.clone()));
    println!("Latchkey demo is running at {public_url}");
    println!("  Create your organization: {}signup", public_url);
    println!("  Stop with Ctrl-C.");
    let served = super::serve::serve_until(store, keys, &args.web, public_url, stop.clone()).await;
    stop.cancel();
    let _ = worker.await;
    served
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
