//! `latchkey serve`: the web server.

use crate::cli::{EntraArgs, GlobalArgs, ServeArgs, WebArgs};
use crate::{config, shutdown};
use latchkey_crypto::KeyRing;
use latchkey_store::Store;
use latchkey_web::{AppState, WebConfig};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let listen = config::listen(args.web.listen.clone())?;
    let public_url = config::public_url(args.web.public_url.clone(), listen)?;
    let keys = config::master_keys(args.keys.master_keys.clone())?;
    let mut web_config = web_config(public_url.clone(), &args.entra)?;
    web_config.access = config::access(public_url, &args.access)?;
    let store = super::connect_and_migrate_with(config::db_config(global)?).await?;
    serve_until(
        store,
        Arc::new(keys),
        &args.web,
        web_config,
        shutdown::on_signal(),
    )
    .await
}

/// The web layer's settings from the connector-related arguments (shared with `demo`).
pub fn web_config(public_url: url::Url, entra: &EntraArgs) -> anyhow::Result<WebConfig> {
    let mut c = WebConfig::new(public_url);
    c.entra_app = config::entra_app(
        entra.entra_app_client_id.clone(),
        entra.entra_app_client_secret.clone(),
    )?;
    c.outbound_policy = config::outbound_policy(entra.allow_insecure_connector_urls.clone())?;
    c.entra_login_authority = config::login_authority(entra.entra_login_authority.clone())?;
    if let Some(secs) = entra.connector_rotation_grace_secs {
        c.agent_rotation_grace = std::time::Duration::from_secs(secs);
    }
    Ok(c)
}

/// Binds and serves until `stop` is cancelled.
pub async fn serve_until(
    store: Store,
    keys: Arc<KeyRing>,
    web: &WebArgs,
    config: WebConfig,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listen = config::listen(web.listen.clone())?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {listen}: {e} (set LATCHKEY_LISTEN to another address)")
    })?;
    let public_url = config.public_url.clone();
    let state = AppState::new(store, keys, config).with_extra_metrics(Arc::new(|store| {
        Box::pin(async move {
            let mut out = String::new();
            if let Err(e) = latchkey_jobs::render_prometheus(&store, &mut out).await {
                tracing::warn!(error = %e, "job queue metrics unavailable");
            }
            out
        })
    }));
    tracing::info!(%listen, %public_url, "web server listening");
    latchkey_web::serve(listener, state, async move { stop.cancelled().await }).await?;
    tracing::info!("web server stopped");
    Ok(())
}
