//! Shutdown on SIGTERM (what orchestrators send) or Ctrl-C.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or Ctrl-C, for [`crate::WorkerPool::run`]: the
/// pool then stops claiming and hands unfinished jobs back within its shutdown deadline.
/// Call it inside the Tokio runtime.
pub fn cancel_on_shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let on_signal = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::terminate(),
            ) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the worker gracefully");
                    let _ = tokio::signal::ctrl_c().await;
                    on_signal.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
        on_signal.cancel();
    });
    token
}
