//! Shared application state, built once and cloned cheaply into handlers.

use crate::auth::token::TokenKeys;
use crate::{Metrics, WebConfig};
use latchkey_crypto::KeyRing;
use latchkey_store::Store;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Other components' Prometheus lines (e.g. the job queue), appended to `/metrics`.
pub type ExtraMetrics =
    Arc<dyn Fn(Store) -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub keys: Arc<KeyRing>,
    pub config: WebConfig,
    pub tokens: TokenKeys,
    pub metrics: Metrics,
    pub extra_metrics: Vec<ExtraMetrics>,
    /// "Sign in with Microsoft" through Latchkey's Entra app (`None` without the app). Shared:
    /// it caches the identity platform's signing keys.
    pub signin: Option<Arc<latchkey_entra::signin::SignInClient>>,
}

impl AppState {
    pub fn new(store: Store, keys: Arc<KeyRing>, config: WebConfig) -> Self {
        let tokens = TokenKeys::derive(&keys);
        let signin = signin_client(&config);
        Self(Arc::new(Inner {
            store,
            keys,
            config,
            tokens,
            metrics: Metrics::new(),
            extra_metrics: vec![],
            signin,
        }))
    }

    /// Adds a source of extra `/metrics` lines. Call before the state is shared.
    pub fn with_extra_metrics(mut self, source: ExtraMetrics) -> Self {
        Arc::get_mut(&mut self.0)
            .expect("state not shared yet")
            .extra_metrics
            .push(source);
        self
    }
}

impl AppState {
    /// The access request commands, with this deployment's settings.
    pub fn access(&self) -> latchkey_access::Access {
        latchkey_access::Access::new(self.store.clone(), self.config.access.clone())
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The sign-in client for the configured app and login authority (the connector cloud's
/// `login.microsoftonline.com` unless `LATCHKEY_ENTRA_LOGIN_AUTHORITY` says otherwise).
fn signin_client(config: &WebConfig) -> Option<Arc<latchkey_entra::signin::SignInClient>> {
    let app = config.entra_app.clone()?;
    let endpoints = latchkey_entra::Endpoints::from_settings(
        None,
        config.entra_login_authority.as_ref().map(url::Url::as_str),
        config.outbound_policy,
    );
    match endpoints.map(|e| latchkey_entra::signin::SignInClient::new(e, app)) {
        Ok(Ok(client)) => Some(Arc::new(client)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "Sign in with Microsoft is off: the HTTP client could not be built");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "Sign in with Microsoft is off: the login authority is not allowed");
            None
        }
    }
}
