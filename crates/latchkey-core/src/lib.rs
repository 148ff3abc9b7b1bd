//! Domain types shared by every Latchkey crate: typed ids, roles and parsed values.
//!
//! Nothing here does I/O. Values are parsed once at the edge (`Email::parse`,
//! `Role::from_str`), so a value of one of these types is valid by construction.

pub mod ids;
pub mod role;
pub mod values;

pub use ids::{ApiClientId, OrgId, SessionId, UserId};
pub use role::Role;
pub use values::{DisplayName, Email, Password, ValueError};
