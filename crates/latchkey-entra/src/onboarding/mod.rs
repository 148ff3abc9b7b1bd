//! Entra connector onboarding: the settings a connector stores (never its secret) and their
//! validation, the admin-consent redirect and callback, and the connection test that runs
//! as a job and moves the connector to *Syncing* (or *Error* with a reason).

pub mod connection_test;
pub mod consent;
pub mod settings;

pub use connection_test::{CONNECTION_TEST_JOB, ConnectionTestHandler, SYNC_JOB, connect_for};
pub use consent::{
    ConsentError, ConsentOutcome, LatchkeyApp, admin_consent_url, parse_admin_consent_callback,
    verify_consent,
};
pub use settings::{AuthMode, AuthSettings, EntraSettings, SettingsInput, Validated, validate};
