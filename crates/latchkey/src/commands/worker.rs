//! `latchkey worker`: background work. Until the job queue lands this runs the periodic
//! housekeeping (expired sessions, old sign-in attempts) and stops cleanly on SIGTERM.

use crate::cli::{GlobalArgs, WorkerArgs};
use crate::{config, shutdown};
use latchkey_store::{Store, login_throttle, sessions};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn run(global: &GlobalArgs, args: WorkerArgs) -> anyhow::Result<()> {
    let _keys = config::master_keys(args.keys.master_keys.clone())?;
    let store =
        super::connect_and_migrate(&config::database_url(global.database_url.clone())?).await?;
    tracing::info!(concurrency = args.concurrency, "worker started");
    run_until(store, shutdown::on_signal()).await;
    tracing::info!("worker stopped");
    Ok(())
}

pub async fn run_until(store: Store, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => housekeeping(&store).await,
        }
    }
}

async fn housekeeping(store: &Store) {
    match sessions::purge_expired(store).await {
        Ok(n) if n > 0 => tracing::info!(removed = n, "expired sessions removed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "session housekeeping failed"),
    }
    if let Err(e) = login_throttle::purge_old(store).await {
        tracing::warn!(error = %e, "sign-in attempt housekeeping failed");
    }
}
