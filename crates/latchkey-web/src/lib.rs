//! The HTTP layer of Latchkey: server-rendered pages (askama), the JSON REST API under
//! `/api/v1`, sign-in sessions, API tokens, CSRF protection, security headers, health and
//! metrics. It knows nothing of Microsoft Graph; it calls the store and the job queue.

pub mod api;
pub mod auth;
mod config;
pub mod connector_agent;
pub mod connectors;
mod csrf;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod headers;
mod input_guard;
mod metrics;
mod ops;
pub mod provisioning;
mod router;
pub mod routes;
mod state;
pub mod views;

pub use config::WebConfig;
pub use error::{ApiError, WebError};
pub use metrics::Metrics;
pub use router::router;
pub use state::{AppState, ExtraMetrics};

use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
