//! A simulated Entra tenant: the identity platform (tokens, consent, OpenID) and Microsoft Graph
//! (v1.0 and beta) over a seeded in-memory directory, with faults and test introspection.
//!
//! Start one in a test with [`SimServer::start`]; run it standalone with [`cli::run`] (`latchkey sim`).

pub mod cli;
mod config;
mod error;
mod graph;
mod identity;
mod introspect;
mod json;
mod jwt;
mod model;
mod odata;
mod rng;
mod server;
mod tenant;
mod truth;

pub use config::{
    ConsentOutcome, Faults, LatchkeyAppConfig, PROVISIONING_PERMISSIONS, SYNC_PERMISSIONS,
    SimConfig, Sizes, Throttle, default_permissions,
};
pub use error::SimError;
pub use identity::MICROSOFT_SERVICES_TENANT;
pub use model::{GroupKind, ProvisionOnDemandCall};
pub use server::{AppCredentials, RequestLogEntry, SimHandle, SimServer};
pub use truth::{Change, ChangeOutcome, GroundTruth, TruthGroup, TruthRef, TruthUser, now_iso};

/// Generates a tenant without serving it and reports its counts (used by the scale benchmark).
pub fn generate_only(config: &SimConfig) -> GroundTruth {
    let g = tenant::generate(config);
    truth::summarize(&g.dir)
}
