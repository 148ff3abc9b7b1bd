//! A simulated Entra tenant: the identity platform (tokens, consent, OpenID) and Microsoft Graph
//! (v1.0 and beta) over a seeded in-memory directory, with faults and test introspection.
//!
//! Start one in a test with [`SimServer::start`]; run it standalone with [`cli::run`] (`latchkey sim`).

pub mod cli;
mod config;
mod error;
mod graph;
mod hold;
mod identity;
mod introspect;
mod json;
mod jwt;
mod model;
mod odata;
mod rng;
mod server;
mod signin;
mod tenant;
mod truth;

pub use config::{
    ConsentOutcome, Faults, LatchkeyAppConfig, PROVISIONING_PERMISSIONS, SYNC_PERMISSIONS,
    SimConfig, Sizes, Throttle, default_permissions,
};
pub use error::SimError;
pub use hold::ResponseHold;
pub use identity::MICROSOFT_SERVICES_TENANT;
pub use model::{GroupKind, ProvisionOnDemandCall};
pub use server::{AppCredentials, RequestLogEntry, SimHandle, SimServer};
pub use signin::{IdTokenTamper, SignAlg};
pub use truth::{Change, ChangeOutcome, GroundTruth, TruthGroup, TruthRef, TruthUser, now_iso};

/// Generates a tenant without serving it and reports its counts (used by the scale benchmark).
pub fn generate_only(config: &SimConfig) -> GroundTruth {
    let g = tenant::generate(config);
    truth::summarize(&g.dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_only_matches_the_requested_sizes() {
        let cfg = SimConfig::small(9);
        let t = generate_only(&cfg);
        assert_eq!(t.users, cfg.sizes.users);
        assert_eq!(t.groups, cfg.sizes.groups);
        assert_eq!(
            t.enterprise_apps,
            cfg.sizes.apps + 1,
            "the customer's own app registration counts too"
        );
        assert_eq!(t.managed_identities, cfg.sizes.managed_identities);
        assert!(
            t.memberships >= cfg.sizes.memberships * 9 / 10,
            "{}",
            t.memberships
        );
        assert_eq!(generate_only(&cfg), t);
    }
}
