//! The job handlers a worker process runs, wired from each domain crate.

mod email;

pub use email::{EmailDeliveryHandler, Mailer};

use latchkey_crypto::KeyRing;
use latchkey_entra::OutboundPolicy;
use latchkey_entra::onboarding::{ConnectionTestHandler, LatchkeyApp};
use latchkey_jobs::{HousekeepingHandler, NoopHandler, Registry};
use std::sync::Arc;

pub struct Wiring {
    pub keys: Arc<KeyRing>,
    pub entra_app: Option<LatchkeyApp>,
    pub outbound: OutboundPolicy,
    pub mailer: Mailer,
    pub access: latchkey_access::AccessConfig,
}

pub fn registry(w: Wiring) -> Registry {
    Registry::new()
        .with(NoopHandler)
        .with(HousekeepingHandler::default())
        .with(latchkey_entra::sync::SyncHandler::new(
            w.keys.clone(),
            w.entra_app.clone(),
            w.outbound,
        ))
        .with(latchkey_entra::sync::agent_finish::AgentSyncFinishHandler)
        .with(latchkey_entra::provision::ProvisionHandler::new(
            w.keys.clone(),
            w.entra_app.clone(),
            w.outbound,
        ))
        .with(latchkey_access::AdvanceHandler::new(w.access.clone()))
        .with(latchkey_access::SweepHandler::new(w.access.clone()))
        .with(ConnectionTestHandler::new(w.keys, w.entra_app, w.outbound))
        .with(EmailDeliveryHandler::new(w.mailer))
        .with(latchkey_reviews::jobs::DeadlineHandler)
        .with(latchkey_reviews::jobs::ReminderHandler)
        .with(latchkey_reviews::jobs::TemplateHandler)
}
