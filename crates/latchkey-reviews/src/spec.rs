//! What a campaign is asked to be: its scope, its reviewers, its end rule; parsed and checked
//! before anything is stored.

use crate::Problem;
use latchkey_store::resources::RESOURCE_TYPES;
use latchkey_store::reviews::{ReviewerRule, SnapshotScope};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Which access a campaign reviews.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Connectors to review (with `app_ids`: at least one between them).
    #[serde(default)]
    pub connector_ids: Vec<Uuid>,
    /// Apps, standing for their connectors.
    #[serde(default)]
    pub app_ids: Vec<Uuid>,
    /// Only these entitlements (e.g. a privileged group's `members`).
    #[serde(default)]
    pub entitlement_ids: Vec<Uuid>,
    /// Only entitlements of these resource types: `role`, `group`, `enterprise_application`, `license`.
    #[serde(default)]
    pub resource_types: Vec<String>,
    /// Only grants held by these principal types: `user`, `group`, `enterprise_application`, `managed_identity`.
    #[serde(default)]
    pub principal_types: Vec<String>,
    /// Only guests.
    #[serde(default)]
    pub guests_only: bool,
    /// Only users who have not signed in for this many days (or never).
    #[serde(default)]
    pub inactive_days: Option<i64>,
    /// Also access inherited through groups: nested memberships and group-based licences (default true).
    #[serde(default = "yes")]
    pub include_inherited: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The owners of the app (its connector's owners).
    AppOwner,
    /// The user's manager in Entra.
    Manager,
    /// The people listed in `user_ids`.
    Specific,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::AppOwner => "app_owner",
            Strategy::Manager => "manager",
            Strategy::Specific => "specific",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reviewers {
    pub strategy: Strategy,
    #[serde(default)]
    pub user_ids: Vec<Uuid>,
    /// Reviews what the strategy finds nobody for.
    #[serde(default)]
    pub fallback_user_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndRule {
    Keep,
    Revoke,
}

impl EndRule {
    pub fn as_str(self) -> &'static str {
        match self {
            EndRule::Keep => "keep",
            EndRule::Revoke => "revoke",
        }
    }
}

/// The part of a campaign that a template repeats: everything but its name and dates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    pub scope: Scope,
    pub reviewers: Reviewers,
    pub end_rule: EndRule,
    /// Recommend revoking when a user has not signed in for this many days.
    #[serde(default = "default_inactive")]
    pub recommend_revoke_after_days: i64,
    /// Remind reviewers of undecided items this many hours before the deadline.
    #[serde(default = "default_reminders")]
    pub reminder_hours_before: Vec<i64>,
}

fn default_inactive() -> i64 {
    90
}

fn default_reminders() -> Vec<i64> {
    vec![72, 24]
}

/// `POST /api/v1/review-campaigns` and the New campaign form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    pub name: String,
    pub scope: Scope,
    pub reviewers: Reviewers,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    pub end_rule: EndRule,
    #[serde(default = "default_inactive")]
    pub recommend_revoke_after_days: i64,
    #[serde(default = "default_reminders")]
    pub reminder_hours_before: Vec<i64>,
    /// Start a campaign like this one every so many days (91 for quarterly), from a template.
    #[serde(default)]
    pub repeat_every_days: Option<i32>,
}

impl CreateCampaign {
    pub fn spec(&self) -> CampaignSpec {
        CampaignSpec {
            scope: self.scope.clone(),
            reviewers: self.reviewers.clone(),
            end_rule: self.end_rule,
            recommend_revoke_after_days: self.recommend_revoke_after_days,
            reminder_hours_before: self.reminder_hours_before.clone(),
        }
    }

    /// Checks what can be checked without the database.
    pub fn check(&self, now: OffsetDateTime) -> Vec<Problem> {
        let mut p = self.spec().check();
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            p.push(Problem::new(
                "name",
                "Give the campaign a name (up to 200 characters).",
            ));
        }
        if self.deadline <= now {
            p.push(Problem::new(
                "deadline",
                "The deadline must be in the future.",
            ));
        }
        if let Some(d) = self.repeat_every_days
            && !(1..=3660).contains(&d)
        {
            p.push(Problem::new(
                "repeat_every_days",
                "Repeat every 1 to 3660 days (91 for quarterly).",
            ));
        }
        p
    }
}

const PRINCIPAL_TYPES: &[&str] = &[
    "user",
    "group",
    "enterprise_application",
    "managed_identity",
];

impl CampaignSpec {
    pub fn check(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let s = &self.scope;
        if s.connector_ids.is_empty() && s.app_ids.is_empty() {
            p.push(Problem::new(
                "scope.connector_ids",
                "Choose at least one app or connector to review.",
            ));
        }
        if let Some(t) = s
            .resource_types
            .iter()
            .find(|t| !RESOURCE_TYPES.contains(&t.as_str()))
        {
            p.push(Problem::new(
                "scope.resource_types",
                format!(
                    "{t:?} is not a resource type; use {}.",
                    RESOURCE_TYPES.join(", ")
                ),
            ));
        }
        if let Some(t) = s
            .principal_types
            .iter()
            .find(|t| !PRINCIPAL_TYPES.contains(&t.as_str()))
        {
            p.push(Problem::new(
                "scope.principal_types",
                format!(
                    "{t:?} is not a principal type; use {}.",
                    PRINCIPAL_TYPES.join(", ")
                ),
            ));
        }
        if s.inactive_days.is_some_and(|d| !(0..=36500).contains(&d)) {
            p.push(Problem::new("scope.inactive_days", "Use 0 to 36500 days."));
        }
        if self.reviewers.strategy == Strategy::Specific && self.reviewers.user_ids.is_empty() {
            p.push(Problem::new(
                "reviewers.user_ids",
                "Name at least one reviewer for specific reviewers.",
            ));
        }
        if !(1..=36500).contains(&self.recommend_revoke_after_days) {
            p.push(Problem::new(
                "recommend_revoke_after_days",
                "Use 1 to 36500 days.",
            ));
        }
        if self
            .reminder_hours_before
            .iter()
            .any(|h| !(1..=8760).contains(h))
        {
            p.push(Problem::new(
                "reminder_hours_before",
                "Reminders are 1 to 8760 hours before the deadline.",
            ));
        }
        p
    }

    pub fn rule(&self) -> ReviewerRule {
        match self.reviewers.strategy {
            Strategy::AppOwner => ReviewerRule::AppOwner,
            Strategy::Manager => ReviewerRule::Manager,
            Strategy::Specific => ReviewerRule::Specific(self.reviewers.user_ids.clone()),
        }
    }

    /// The snapshot's scope, with apps already resolved to `connectors`.
    pub fn snapshot_scope(&self, connectors: Vec<Uuid>) -> SnapshotScope {
        SnapshotScope {
            connector_ids: connectors,
            entitlement_ids: self.scope.entitlement_ids.clone(),
            resource_types: self.scope.resource_types.clone(),
            principal_types: self.scope.principal_types.clone(),
            guests_only: self.scope.guests_only,
            inactive_days: self.scope.inactive_days,
            include_inherited: self.scope.include_inherited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> CreateCampaign {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_minimal_campaign_gets_defaults_and_passes() {
        let c = parse(
            json!({"name": "Q3", "scope": {"connector_ids": [Uuid::nil()]},
            "reviewers": {"strategy": "app_owner"}, "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        );
        assert!(c.scope.include_inherited);
        assert_eq!(c.recommend_revoke_after_days, 90);
        assert_eq!(c.reminder_hours_before, vec![72, 24]);
        assert!(c.check(OffsetDateTime::now_utc()).is_empty());
    }

    #[test]
    fn problems_name_their_fields() {
        let c = parse(
            json!({"name": " ", "scope": {"resource_types": ["printer"], "inactive_days": -1},
            "reviewers": {"strategy": "specific"}, "deadline": "2000-01-01T00:00:00Z", "end_rule": "revoke",
            "repeat_every_days": 0, "reminder_hours_before": [0]}),
        );
        let fields: Vec<String> = c
            .check(OffsetDateTime::now_utc())
            .into_iter()
            .map(|p| p.field)
            .collect();
        for f in [
            "name",
            "deadline",
            "scope.connector_ids",
            "scope.resource_types",
            "scope.inactive_days",
            "reviewers.user_ids",
            "repeat_every_days",
            "reminder_hours_before",
        ] {
            assert!(fields.contains(&f.to_string()), "{f} in {fields:?}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<CreateCampaign, _> = serde_json::from_value(
            json!({"name": "x", "scope": {"connectors": []},
            "reviewers": {"strategy": "manager"}, "deadline": "2100-01-01T00:00:00Z", "end_rule": "keep"}),
        );
        assert!(r.is_err());
    }
}
