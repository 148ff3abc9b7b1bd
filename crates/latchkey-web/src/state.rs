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
}

impl AppState {
    pub fn new(store: Store, keys: Arc<KeyRing>, config: WebConfig) -> Self {
        let tokens = TokenKeys::derive(&keys);
        Self(Arc::new(Inner {
            store,
            keys,
            config,
            tokens,
            metrics: Metrics::new(),
            extra_metrics: vec![],
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

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
