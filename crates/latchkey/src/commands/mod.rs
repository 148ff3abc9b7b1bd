//! One module per subcommand.

mod api_clients;
mod audit;
pub mod connector;
mod demo;
mod keys;
mod orgs;
mod serve;
mod worker;

use crate::cli::{Cli, Command};
use crate::config;
use anyhow::Context;
use latchkey_store::{DbConfig, Store};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let log_format = config::log_format(cli.global.log_format.clone())?;
    crate::telemetry::init(log_format);
    match cli.command {
        Command::Serve(args) => serve::run(&cli.global, args).await,
        Command::Worker(args) => worker::run(&cli.global, args).await,
        Command::Migrate => {
            let store = connect(&config::database_url(cli.global.database_url.clone())?).await?;
            store.migrate().await.context("applying migrations")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Demo(args) => demo::run(&cli.global, args).await,
        Command::Sim(args) => latchkey_entra_sim::cli::run(args).await,
        Command::Keys(cmd) => keys::run(&cli.global, cmd).await,
        Command::Orgs(cmd) => orgs::run(&cli.global, cmd).await,
        Command::ApiClients(cmd) => api_clients::run(&cli.global, cmd).await,
        Command::Audit(cmd) => audit::run(&cli.global, cmd).await,
        Command::Connector(args) => connector::run(args).await,
    }
}

/// Connects (creating the database if needed) with an error a person can act on.
pub async fn connect(url: &str) -> anyhow::Result<Store> {
    connect_with(DbConfig::new(url)).await
}

pub async fn connect_with(config: DbConfig) -> anyhow::Result<Store> {
    Store::connect(&config).await.map_err(|e| {
        let hint = if e.is_unreachable() {
            " — is PostgreSQL running? Start it, set DATABASE_URL, or run `docker compose up -d postgres`"
        } else {
            ""
        };
        anyhow::anyhow!("cannot connect to the database: {e}{hint}")
    })
}

/// Connects and brings the schema up to date, as every long-running command does on start.
pub async fn connect_and_migrate(url: &str) -> anyhow::Result<Store> {
    connect_and_migrate_with(DbConfig::new(url)).await
}

/// [`connect_and_migrate`] with pool settings (`serve` and `worker`: the statement timeout).
pub async fn connect_and_migrate_with(config: DbConfig) -> anyhow::Result<Store> {
    let store = connect_with(config).await?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}
