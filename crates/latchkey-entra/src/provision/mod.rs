//! Provisioning: changing access in the customer's tenant, one grant or revoke at a time.
//!
//! Three stages, each usable on its own:
//! 1. [`plan`] — from the stored access model (resource, entitlement slug, principal), the
//!    Graph change to make, or a [`Refusal`] with a sentence saying why and what to do
//!    instead. It never calls Graph, so refused requests leave no trace in the tenant.
//! 2. [`apply`] — sends the change. Idempotent: "already exists" on a grant and "not found" on
//!    a revoke are success ([`Applied::already`]), so a retried job never doubles an effect.
//!    Graph refusals the plan could not foresee (the stored model was stale) come back as the
//!    same [`Refusal`]s.
//! 3. [`verify`] — reads the change back (with a bounded wait for Entra's replication delay)
//!    until the grant is there or the revoked one is gone.
//!
//! As a job: [`request`] records a task (`provisioning_tasks`) and enqueues `entra.provision`;
//! [`ProvisionHandler`] runs plan → apply → verify, then stamps `provisioned_at` /
//! `verified_at` (or `verification_failed`), updates the stored grants at once and appends
//! each step to the task's trail (`provisioning_events`).
//!
//! With the connector's *Schedule SCIM provisioning* on, a verified app role grant is followed
//! by [`provision_on_demand`] (or the app's provisioning job is started); an app without a job
//! gets a warning on the task, not a failure.
//!
//! Accounts ([`accounts`], run as tasks by [`request_account`] / [`request_deprovision`]):
//! creating one puts its first password in the vault (`latchkey_store::vault`), readable once;
//! deprovisioning disables sign-in and revokes sessions, deleting only when asked and allowed.
//! Every task's steps are also audit events (`provisioning.<operation>_<result>`).
//!
//! Supported so far: group `members` and `owners`; enterprise application
//! `assignment:<appRoleId>` (the role's allowed member types are read before the write) and
//! `owners`; licence `assigned` (`assignLicense`; the user's usage location and the seats left
//! are read before the write); directory role `assigned` / `eligible` (PIM schedule requests
//! when the last connection test found PIM, else role assignments; eligible without P2 is
//! refused).

mod account_job;
pub mod accounts;
pub mod agent;
pub mod agent_account;
mod job;
mod plan;
mod scim;
mod write;

pub use account_job::{request_account, request_deprovision};
pub use job::{
    Ask, EXPIRY, ProvisionHandler, ProvisionPayload, request, request_expiring, request_until,
};
pub use plan::{GroupRel, Object, Operation, Refusal, Request, Step, plan, refusal_from_graph};
pub use scim::{ScimOutcome, provision_on_demand};
pub use write::{
    Applied, ProvisionError, Verification, VerifyPolicy, apply, apply_until, external_id_after,
    find_role_grant, in_effect, verify,
};

/// The job kind that runs one provisioning task.
pub const PROVISION_JOB: &str = "entra.provision";
