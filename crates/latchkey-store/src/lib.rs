//! Postgres storage for Latchkey. All SQL lives in this crate; handlers and jobs call its
//! functions.
//!
//! Two ways in:
//! - [`Store::org_tx`] opens a transaction for one organization. It runs as the role
//!   `latchkey_app` with `app.org_id` set, so row-level security hides every other
//!   organization's rows even if a query forgets its own `org_id` filter.
//! - [`Store::system`] is the owner connection, for work that is not one organization's:
//!   migrations, pre-authentication lookups (by email, session token, client id), key
//!   rotation and the job queue's cross-organization claim. Functions that use it say so.

mod db;
mod error;
pub mod page;
mod trouble;

pub mod access_policies;
pub mod access_requests;
pub mod api_clients;
pub mod apps;
pub mod audit;
pub mod connector_agents;
pub mod connectors;
pub mod expansion;
pub mod identities;
pub mod invitations;
pub mod jobs;
pub mod login_throttle;
pub mod oauth_states;
pub mod orgs;
pub mod outbox;
pub mod provisioning;
pub mod resources;
pub mod reviews;
pub mod secrets;
pub mod sessions;
pub mod signin;
pub mod sync_runs;
pub mod users;
pub mod vault;

#[cfg(feature = "testing")]
pub mod testing;

pub use db::{DbConfig, MIGRATOR, OrgTx, Store};
pub use error::StoreError;
pub use page::{Cursor, Page};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
