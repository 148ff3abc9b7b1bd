//! `latchkey worker`: runs jobs from the shared queue until SIGTERM, then hands back what
//! it could not finish.

use crate::cli::{EntraArgs, GlobalArgs, MailArgs, WorkerArgs};
use crate::handlers::{self, Mailer, Wiring};
use crate::{config, shutdown};
use latchkey_crypto::KeyRing;
use latchkey_jobs::{HousekeepingHandler, WorkerConfig, WorkerPool};
use latchkey_store::{Store, login_throttle, oauth_states, sessions};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn run(global: &GlobalArgs, args: WorkerArgs) -> anyhow::Result<()> {
    let keys = Arc::new(config::master_keys(args.keys.master_keys.clone())?);
    let public_url = config::public_url(args.public_url.clone(), config::listen(None)?)?;
    let wiring = wiring(
        keys,
        &args.entra,
        &args.mail,
        config::access(public_url, &args.access)?,
    )?;
    let mut worker_config = WorkerConfig::from_environment().map_err(|e| config::ConfigError {
        var: "LATCHKEY_WORKER_*",
        problem: e,
        expected: "numbers".into(),
    })?;
    worker_config = worker_config.concurrency(args.concurrency.max(1));
    // Listen for SIGTERM before migrating: a stop asked for during migrations (which grow with
    // every release) must still end with a clean "worker stopped", not the default signal death.
    let stop = shutdown::on_signal();
    let store = super::connect_and_migrate_with(config::db_config(global)?).await?;
    run_until(store, wiring, worker_config, stop).await?;
    tracing::info!("worker stopped");
    Ok(())
}

/// Reads the handlers' configuration (shared with `demo`).
pub fn wiring(
    keys: Arc<KeyRing>,
    entra: &EntraArgs,
    mail: &MailArgs,
    access: latchkey_access::AccessConfig,
) -> anyhow::Result<Wiring> {
    Ok(Wiring {
        keys,
        entra_app: config::entra_app(
            entra.entra_app_client_id.clone(),
            entra.entra_app_client_secret.clone(),
        )?,
        outbound: config::outbound_policy(entra.allow_insecure_connector_urls.clone())?,
        mailer: Mailer::from_args(mail)?,
        access,
    })
}

pub async fn run_until(
    store: Store,
    wiring: Wiring,
    config: WorkerConfig,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    HousekeepingHandler::install_schedule(&store).await?;
    latchkey_access::SweepHandler::install_schedule(&store, &wiring.access).await?;
    if !wiring.mailer.is_configured() {
        tracing::info!("no SMTP server configured (LATCHKEY_SMTP_URL): emails stay in the outbox");
    }
    tracing::info!(worker_id = %config.worker_id, concurrency = config.concurrency, "worker started");
    let housekeeping = tokio::spawn(session_housekeeping(store.clone(), stop.clone()));
    let pool = WorkerPool::new(store, config, handlers::registry(wiring));
    let result = pool.run(stop.clone()).await;
    stop.cancel();
    let _ = housekeeping.await;
    result.map_err(Into::into)
}

/// Expired sessions, old sign-in attempts and consent states: small, frequent, idempotent.
async fn session_housekeeping(store: Store, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                match sessions::purge_expired(&store).await {
                    Ok(n) if n > 0 => tracing::info!(removed = n, "expired sessions removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "session housekeeping failed"),
                }
                if let Err(e) = login_throttle::purge_old(&store).await {
                    tracing::warn!(error = %e, "sign-in attempt housekeeping failed");
                }
                if let Err(e) = oauth_states::purge_old(&store).await {
                    tracing::warn!(error = %e, "consent state housekeeping failed");
                }
                if let Err(e) = latchkey_store::signin::purge_old(&store).await {
                    tracing::warn!(error = %e, "sign-in state housekeeping failed");
                }
            }
        }
    }
}
