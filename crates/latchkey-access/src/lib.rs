//! Just-in-time access requests: an employee asks for an entitlement for a while with a
//! reason; the entitlement's policy decides who approves (or approves automatically);
//! provisioning grants it and verifies it in the tenant; the access window starts at that
//! verification and ends with a verified removal.
//!
//! - [`policy`]: the per-entitlement policy document and its validation.
//! - [`state`]: the state machine; every change goes through [`state::next`].
//! - [`approvers`]: who may decide a stage (named people, app owners, connector owners, the
//!   requester's manager from Entra, group members; Super Administrators as a fallback).
//! - [`service`]: the commands (ask, approve, deny, cancel, release, extend, policy edits),
//!   each one transaction on the locked request row, with its transition, audit event and
//!   emails written in that same transaction.
//! - [`lifecycle`]: what time and provisioning move forward (follow the grant's task,
//!   expiry, reminders, decision timeouts), run by the `access.advance` jobs scheduled at
//!   the moment something is due, and by the `access.sweep` schedule that catches up on
//!   anything missed while no worker was running.

pub mod approvers;
pub mod config;
pub mod error;
pub mod jobs;
pub mod lifecycle;
mod notify;
pub mod policy;
pub mod service;
pub mod state;

pub use config::AccessConfig;
pub use error::AccessError;
pub use jobs::{ADVANCE_JOB, AdvanceHandler, SWEEP_JOB, SweepHandler};
pub use policy::Policy;
pub use service::{Access, Caller, NewAsk};
pub use state::State;
