//! User access reviews: campaigns that certify or revoke access, with usage evidence.
//!
//! - [`start`]: a campaign over a scope (connectors or apps, optionally some entitlements,
//!   resource types, guests, inactive users) is a snapshot of the grants in it, taken at once;
//!   each item gets its reviewer (app owner, the user's manager, specific people, a fallback;
//!   never the person whose access it is) and a recommendation from its evidence.
//! - [`decide`]: keep or revoke with a comment, one or many at once, or reassign. A revoke is
//!   carried out at once ([`revoke`]): a provisioning task (verified in the tenant) or, when
//!   the provisioning planner refuses it, a manual task with the reason.
//! - [`end`]: at the deadline (a job) or when closed, undecided items follow the campaign's
//!   end rule (keep or revoke).
//! - [`jobs`]: the deadline, reminder and recurring-template job handlers.
//! - [`templates`]: recurring reviews as an administrator sees them, and stopping one.
//! - [`report`]: every item with decision, reviewer, time, comment and provisioning result
//!   (JSON and CSV), plus approver-quality signals; [`timeline`] the progress over time.

pub mod decide;
pub mod end;
pub mod jobs;
pub mod report;
pub mod revoke;
pub mod spec;
pub mod start;
pub mod templates;
pub mod timeline;

use latchkey_store::StoreError;
use latchkey_store::audit::Actor;
use serde::Serialize;
use uuid::Uuid;

pub use decide::{Action, DecisionInput, decide};
pub use end::end_campaign;
pub use spec::{CampaignSpec, CreateCampaign, EndRule, Reviewers, Scope, Strategy};
pub use start::start_campaign;

/// The job that applies a campaign's end rule at its deadline.
pub const DEADLINE_JOB: &str = "reviews.deadline";
/// The job that reminds reviewers of undecided items before the deadline.
pub const REMIND_JOB: &str = "reviews.remind";
/// The job (run by a schedule) that starts a campaign from a template.
pub const TEMPLATE_JOB: &str = "reviews.template";
/// The email delivery job (`latchkey` registers its handler).
pub const EMAIL_JOB: &str = "email.deliver";

/// Who is acting: a person, an API client, or Latchkey itself.
#[derive(Debug, Clone)]
pub struct Who {
    pub actor: Actor,
    /// The Latchkey user, for people.
    pub user: Option<Uuid>,
    /// May run campaigns and decide or reassign any item (administrators, admin API clients).
    pub admin: bool,
    /// The person behind the actor: the person themself, or the one who created the API
    /// client. Their own access is never theirs to decide, whichever way they come.
    pub person: Option<Uuid>,
}

impl Who {
    /// `user:<id>`, `api_client:<id>`, or `system`, as tasks and decisions record it.
    pub fn tag(&self) -> String {
        match self.actor.id {
            Some(id) => format!("{}:{id}", self.actor.kind.as_str()),
            None => "system".to_string(),
        }
    }
}

/// One field's problem in a rejected request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request has invalid fields; nothing was saved.
    #[error("invalid fields")]
    Invalid(Vec<Problem>),
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// The state does not allow it (closed campaign, decided item).
    #[error("{0}")]
    Conflict(String),
}

impl ReviewError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ReviewError::Invalid(vec![Problem::new(field, message)])
    }
}
