//! Access policies: the document an entitlement's owners edit (durations, justification,
//! who may ask, approval stages, automatic approval, self-approval, decision timeout,
//! reminders, break-glass) and its validation. Policies are data: stored as JSON, read back
//! with [`Policy::from_value`], snapshotted onto each request.

use crate::config::AccessConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    #[default]
    Medium,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequesterMode {
    #[default]
    Everyone,
    Groups,
}

/// Who may ask: everyone in the organization, or members of given groups (synced group
/// `resources` ids; membership as the last sync saw it, nested groups included).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requesters {
    #[serde(default)]
    pub mode: RequesterMode,
    #[serde(default)]
    pub group_ids: Vec<Uuid>,
}

/// Who may approve one stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ApproverRule {
    /// A named person.
    User { user_id: Uuid },
    /// The owners, in Entra, of the resource the entitlement belongs to (group owners,
    /// application owners) who have signed in to Latchkey.
    AppOwners,
    /// The connector's owners in Latchkey.
    ConnectorOwners,
    /// The requester's manager in Entra (once they have signed in to Latchkey).
    Manager,
    /// Members of a group (a synced group `resources` id) who have signed in to Latchkey.
    Group { group_id: Uuid },
}

impl ApproverRule {
    pub fn label(&self) -> &'static str {
        match self {
            ApproverRule::User { .. } => "named approver",
            ApproverRule::AppOwners => "app owner",
            ApproverRule::ConnectorOwners => "connector owner",
            ApproverRule::Manager => "manager",
            ApproverRule::Group { .. } => "group member",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub approvers: Vec<ApproverRule>,
    /// How many of them must approve ("any one" is 1). Capped at the number of people the
    /// stage resolves to.
    #[serde(default = "one")]
    pub required: u32,
}

fn one() -> u32 {
    1
}

/// Approval without asking anyone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoApprove {
    /// The requester is a member of one of these groups.
    #[serde(default)]
    pub requester_group_ids: Vec<Uuid>,
    /// The entitlement is marked low-risk.
    #[serde(default)]
    pub when_low_risk: bool,
}

/// Break-glass: granted at once without approval, owners alerted, flagged for review.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emergency {
    #[serde(default)]
    pub enabled: bool,
    /// The longest emergency access; at most the policy's maximum.
    #[serde(default)]
    pub max_duration_seconds: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub requestable: bool,
    #[serde(default)]
    pub risk: Risk,
    #[serde(default = "defaults::max_duration")]
    pub max_duration_seconds: i64,
    #[serde(default = "defaults::default_duration")]
    pub default_duration_seconds: i64,
    #[serde(default = "defaults::yes")]
    pub justification_required: bool,
    /// A regular expression the justification must match somewhere (e.g. a ticket id).
    #[serde(default)]
    pub justification_pattern: Option<String>,
    #[serde(default)]
    pub requesters: Requesters,
    #[serde(default)]
    pub approval_stages: Vec<Stage>,
    #[serde(default)]
    pub auto_approve: AutoApprove,
    #[serde(default)]
    pub allow_self_approval: bool,
    #[serde(default = "defaults::decision_timeout")]
    pub decision_timeout_seconds: i64,
    #[serde(default = "defaults::reminder")]
    pub reminder_before_seconds: i64,
    #[serde(default)]
    pub emergency: Emergency,
}

mod defaults {
    pub fn max_duration() -> i64 {
        8 * 3600
    }
    pub fn default_duration() -> i64 {
        3600
    }
    pub fn yes() -> bool {
        true
    }
    pub fn decision_timeout() -> i64 {
        72 * 3600
    }
    pub fn reminder() -> i64 {
        15 * 60
    }
}

impl Default for Policy {
    /// Not requestable; once made requestable, approval by the connector's owners.
    fn default() -> Self {
        Policy {
            requestable: false,
            risk: Risk::Medium,
            max_duration_seconds: defaults::max_duration(),
            default_duration_seconds: defaults::default_duration(),
            justification_required: true,
            justification_pattern: None,
            requesters: Requesters::default(),
            approval_stages: vec![Stage {
                approvers: vec![ApproverRule::ConnectorOwners],
                required: 1,
            }],
            auto_approve: AutoApprove::default(),
            allow_self_approval: false,
            decision_timeout_seconds: defaults::decision_timeout(),
            reminder_before_seconds: defaults::reminder(),
            emergency: Emergency::default(),
        }
    }
}

/// One problem with one field, in words for the person editing the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyProblem {
    pub field: String,
    pub message: String,
}

const MAX_SECONDS: i64 = 90 * 24 * 3600;

impl Policy {
    /// Reads a stored (already validated) document; a document that no longer parses is
    /// treated as not requestable.
    pub fn from_value(v: &Value) -> Policy {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a policy serialises")
    }

    /// Checks what can be checked without the database. References (groups, people) are
    /// checked by the caller against the organization's data.
    pub fn validate(&self, config: &AccessConfig) -> Vec<PolicyProblem> {
        let mut p = Vec::new();
        let mut bad = |field: &str, message: String| {
            p.push(PolicyProblem {
                field: field.to_string(),
                message,
            })
        };
        let min = config.min_duration_seconds;
        let in_range = |v: i64| (min..=MAX_SECONDS).contains(&v);
        if !in_range(self.max_duration_seconds) {
            bad(
                "max_duration_seconds",
                format!("must be between {min} seconds and 90 days"),
            );
        }
        if !in_range(self.default_duration_seconds)
            || self.default_duration_seconds > self.max_duration_seconds
        {
            bad(
                "default_duration_seconds",
                format!("must be between {min} seconds and the maximum duration"),
            );
        }
        if let Some(pattern) = &self.justification_pattern {
            if pattern.trim().is_empty() || pattern.len() > 200 {
                bad(
                    "justification_pattern",
                    "must be 1 to 200 characters (or left out)".into(),
                );
            } else if let Err(e) = regex::RegexBuilder::new(pattern)
                .size_limit(1 << 16)
                .build()
            {
                bad(
                    "justification_pattern",
                    format!("is not a valid regular expression: {e}"),
                );
            }
        }
        if self.requesters.mode == RequesterMode::Groups && self.requesters.group_ids.is_empty() {
            bad(
                "requesters.group_ids",
                "name at least one group, or let everyone request".into(),
            );
        }
        if self.requesters.group_ids.len() > 50 {
            bad("requesters.group_ids", "at most 50 groups".into());
        }
        if self.approval_stages.is_empty() || self.approval_stages.len() > 3 {
            bad("approval_stages", "must have 1 to 3 stages".into());
        }
        for (i, stage) in self.approval_stages.iter().enumerate() {
            if stage.approvers.is_empty() || stage.approvers.len() > 20 {
                bad(
                    &format!("approval_stages[{i}].approvers"),
                    "must name 1 to 20 approvers".into(),
                );
            }
            if !(1..=10).contains(&stage.required) {
                bad(
                    &format!("approval_stages[{i}].required"),
                    "must be between 1 and 10".into(),
                );
            }
        }
        if self.auto_approve.requester_group_ids.len() > 50 {
            bad(
                "auto_approve.requester_group_ids",
                "at most 50 groups".into(),
            );
        }
        if !(min..=30 * 24 * 3600).contains(&self.decision_timeout_seconds) {
            bad(
                "decision_timeout_seconds",
                format!("must be between {min} seconds and 30 days"),
            );
        }
        if !(0..=self.max_duration_seconds.max(0)).contains(&self.reminder_before_seconds) {
            bad(
                "reminder_before_seconds",
                "must be between 0 (no reminder) and the maximum duration".into(),
            );
        }
        if let Some(m) = self.emergency.max_duration_seconds
            && (m < min || m > self.max_duration_seconds)
        {
            bad(
                "emergency.max_duration_seconds",
                format!("must be between {min} seconds and the maximum duration"),
            );
        }
        p
    }

    /// The group ids the policy refers to (checked to be the organization's groups).
    pub fn group_ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self.requesters.group_ids.clone();
        ids.extend(&self.auto_approve.requester_group_ids);
        for s in &self.approval_stages {
            for a in &s.approvers {
                if let ApproverRule::Group { group_id } = a {
                    ids.push(*group_id);
                }
            }
        }
        ids.sort();
        ids.dedup();
        ids
    }

    /// The people the policy names as approvers.
    pub fn user_ids(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .approval_stages
            .iter()
            .flat_map(|s| &s.approvers)
            .filter_map(|a| match a {
                ApproverRule::User { user_id } => Some(*user_id),
                _ => None,
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Whether the justification satisfies the policy; `Err` says what is missing.
    pub fn check_justification(&self, text: &str) -> Result<(), String> {
        let text = text.trim();
        if self.justification_required && text.is_empty() {
            return Err("A justification is required for this access.".into());
        }
        if text.chars().count() > 2000 {
            return Err("The justification must be at most 2000 characters.".into());
        }
        if let Some(pattern) = &self.justification_pattern
            && let Ok(re) = regex::Regex::new(pattern)
            && !re.is_match(text)
        {
            return Err(format!(
                "The justification must match the pattern {pattern} (for example a ticket id)."
            ));
        }
        Ok(())
    }

    /// The longest duration this kind of request may have.
    pub fn max_for(&self, emergency: bool) -> i64 {
        if emergency {
            self.emergency
                .max_duration_seconds
                .unwrap_or(self.max_duration_seconds)
                .min(self.max_duration_seconds)
        } else {
            self.max_duration_seconds
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> AccessConfig {
        AccessConfig::default()
    }

    #[test]
    fn default_policy_is_valid_and_round_trips() {
        let p = Policy::default();
        assert!(p.validate(&cfg()).is_empty());
        assert_eq!(Policy::from_value(&p.to_value()), p);
    }

    #[test]
    fn documents_parse_with_defaults_and_refuse_unknown_fields() {
        let p: Policy = serde_json::from_value(json!({
            "requestable": true, "risk": "low",
            "approval_stages": [{"approvers": [{"type": "manager"}, {"type": "user", "user_id": Uuid::nil()}], "required": 2}]
        }))
        .unwrap();
        assert_eq!(p.risk, Risk::Low);
        assert_eq!(p.approval_stages[0].required, 2);
        assert!(
            serde_json::from_value::<Policy>(json!({"requestable": true, "colour": "red"}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<Policy>(
                json!({"approval_stages": [{"approvers": [{"type": "boss"}]}]})
            )
            .is_err()
        );
    }

    #[test]
    fn validation_names_each_bad_field() {
        let mut p = Policy {
            max_duration_seconds: 10,
            default_duration_seconds: 20,
            justification_pattern: Some("(unclosed".into()),
            requesters: Requesters {
                mode: RequesterMode::Groups,
                group_ids: vec![],
            },
            decision_timeout_seconds: 0,
            ..Policy::default()
        };
        p.approval_stages = vec![];
        let fields: Vec<String> = p.validate(&cfg()).into_iter().map(|x| x.field).collect();
        for f in [
            "max_duration_seconds",
            "default_duration_seconds",
            "justification_pattern",
            "requesters.group_ids",
            "approval_stages",
            "decision_timeout_seconds",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} missing from {fields:?}");
        }
        p.approval_stages = vec![
            Stage {
                approvers: vec![ApproverRule::Manager],
                required: 1
            };
            4
        ];
        assert!(
            p.validate(&cfg())
                .iter()
                .any(|x| x.field == "approval_stages")
        );
    }

    #[test]
    fn justification_rules() {
        let mut p = Policy::default();
        assert!(p.check_justification("  ").is_err());
        assert!(p.check_justification("fixing prod").is_ok());
        p.justification_pattern = Some(r"[A-Z]+-\d+".into());
        assert!(p.check_justification("fixing prod").is_err());
        assert!(p.check_justification("OPS-123 fixing prod").is_ok());
        p.justification_required = false;
        p.justification_pattern = None;
        assert!(p.check_justification("").is_ok());
    }
}
