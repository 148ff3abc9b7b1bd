//! The handler trait and the registry of handlers a worker runs.

use crate::{JobContext, JobError};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// Runs jobs of one kind.
///
/// A handler must be idempotent: a job can run more than once (its worker may die after
/// doing the work but before recording it). It should call [`JobContext::checkpoint`] between
/// units of work (a page of a sync, one Graph call of a provisioning plan) so that
/// cancellation, shutdown and lost leases stop it promptly, and return with `?` when a
/// checkpoint says to stop.
///
/// ```ignore
/// struct Notify;
/// impl JobHandler for Notify {
///     fn kind(&self) -> &str { "notify" }
///     async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
///         let msg: Message = ctx.payload_as()?;
///         send(&msg).await.map_err(|e| JobError::transient(e.to_string()))?;
///         ctx.log(LogLevel::Info, "sent", json!({"to": msg.to})).await
///     }
/// }
/// ```
pub trait JobHandler: Send + Sync + 'static {
    /// The job kind this handler runs (`jobs.kind`), e.g. `entra.sync`.
    fn kind(&self) -> &str;

    fn run(&self, ctx: &JobContext) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// Object-safe form of [`JobHandler`], so handlers of different types share a registry.
pub(crate) trait DynHandler: Send + Sync {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>>;
}

impl<H: JobHandler> DynHandler for H {
    fn run<'a>(&'a self, ctx: &'a JobContext) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(JobHandler::run(self, ctx))
    }
}

/// The handlers a worker pool runs, by kind. A worker only claims kinds it has a handler for,
/// so workers with different registries can share one queue.
#[derive(Clone, Default)]
pub struct Registry {
    pub(crate) handlers: HashMap<String, Arc<dyn DynHandler>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a handler.
    ///
    /// # Panics
    /// When a handler for the same kind is already registered: that is a wiring mistake,
    /// and better found at start-up than by a job running the wrong code.
    pub fn register<H: JobHandler>(&mut self, handler: H) -> &mut Self {
        let kind = handler.kind().to_string();
        assert!(
            !self.handlers.contains_key(&kind),
            "two job handlers registered for kind {kind:?}"
        );
        self.handlers.insert(kind, Arc::new(handler));
        self
    }

    /// [`Registry::register`], by value.
    pub fn with<H: JobHandler>(mut self, handler: H) -> Self {
        self.register(handler);
        self
    }

    /// The kinds registered, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self.handlers.keys().cloned().collect();
        k.sort();
        k
    }

    pub(crate) fn get(&self, kind: &str) -> Option<Arc<dyn DynHandler>> {
        self.handlers.get(kind).cloned()
    }
}
