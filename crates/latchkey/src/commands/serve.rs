//! `latchkey serve`: the web server.

use crate::cli::{GlobalArgs, ServeArgs, WebArgs};
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
    let store =
        super::connect_and_migrate(&config::database_url(global.database_url.clone())?).await?;
    serve_until(
        store,
        Arc::new(keys),
        &args.web,
        public_url,
        shutdown::on_signal(),
    )
    .await
}

/// Binds and serves until `stop` is cancelled (shared with `demo`).
pub async fn serve_until(
    store: Store,
    keys: Arc<KeyRing>,
    web: &WebArgs,
    public_url: url::Url,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let listen = config::listen(web.listen.clone())?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {listen}: {e} (set LATCHKEY_LISTEN to another address)")
    })?;
    let state = AppState::new(store, keys, WebConfig::new(public_url.clone()));
    tracing::info!(%listen, %public_url, "web server listening");
    latchkey_web::serve(listener, state, async move { stop.cancelled().await }).await?;
    tracing::info!("web server stopped");
    Ok(())
}
