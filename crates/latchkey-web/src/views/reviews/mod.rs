//! Access review pages: the reviewer's inbox and an item's evidence (everyone), creating
//! campaigns, their progress with a chart, manual tasks, the report and the recurring
//! reviews (administrators).

pub mod campaigns;
pub mod chart;
pub mod inbox;
pub mod item;
pub mod progress;
pub mod report;
pub mod templates;

use crate::auth::SignedIn;
use crate::error::WebError;
use latchkey_reviews::report::{GroupNames, provisioning_result};
use latchkey_reviews::{ReviewError, Who};
use latchkey_store::audit::Actor;
use latchkey_store::reviews::Item;
use latchkey_store::{OrgTx, StoreError};
use time::OffsetDateTime;

pub const ONLY_ADMINS: &str =
    "Only Super Administrators and Connector Administrators run access reviews.";

/// A person as a reviews actor.
pub fn who_of(s: &SignedIn) -> Who {
    Who {
        actor: Actor::user(s.user_id.0, s.email.clone()),
        user: Some(s.user_id.0),
        admin: s.role.can_manage_connectors(),
        person: Some(s.user_id.0),
    }
}

/// Review errors on pages (field problems are handled by the form that shows them).
pub fn web_error(e: ReviewError) -> WebError {
    match e {
        ReviewError::Store(s) => s.into(),
        ReviewError::Invalid(p) => WebError::BadRequest(
            p.into_iter()
                .map(|p| p.message)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        ReviewError::Forbidden(_) => WebError::Forbidden(
            "Only the item's reviewer or an administrator can do this, and nobody reviews their own access.",
        ),
        ReviewError::Conflict(m) => WebError::BadRequest(m),
    }
}

pub fn when(t: OffsetDateTime) -> String {
    format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())
}

pub fn day(t: OffsetDateTime) -> String {
    t.date().to_string()
}

/// An item as the pages show it: every value already in words.
pub struct ItemRow {
    pub id: String,
    pub campaign_id: String,
    pub campaign_name: String,
    pub principal: String,
    pub upn: String,
    pub principal_type: String,
    pub guest: bool,
    pub enabled: String,
    pub what: String,
    pub resource: String,
    pub entitlement: String,
    pub how: String,
    pub since: String,
    pub last_sign_in: String,
    pub from_latchkey: String,
    pub recommendation: String,
    /// `revoke`, `keep` or empty.
    pub recommendation_kind: String,
    pub reviewer: String,
    pub reviewer_source: String,
    pub decision: String,
    pub decided_at: String,
    pub decided_by: String,
    pub comment: String,
    pub revocation: String,
    pub revocation_detail: String,
    pub evidence_viewed: bool,
    pub subject_is_me: bool,
}

fn type_label(t: &str) -> &'static str {
    match t {
        "group" => "group",
        "enterprise_application" => "application",
        "role" => "directory role",
        "license" => "licence",
        "managed_identity" => "managed identity",
        _ => "user",
    }
}

fn result_label(r: &str) -> &'static str {
    match r {
        "verified" => "Revoked — verified in the tenant",
        "pending" => "Revoke in progress",
        "failed" => "Revoke failed",
        "manual_task_open" => "Manual task open",
        "manual_task_done" => "Removed by hand",
        "not_needed" => "Already gone",
        _ => "",
    }
}

/// Rows for `items`, with group names resolved for inherited grants.
pub async fn rows(
    tx: &mut OrgTx,
    items: &[Item],
    me: Option<uuid::Uuid>,
) -> Result<Vec<ItemRow>, StoreError> {
    let names = GroupNames::load(tx, items).await?;
    Ok(items.iter().map(|i| row(i, &names, me)).collect())
}

pub fn row(i: &Item, names: &GroupNames, me: Option<uuid::Uuid>) -> ItemRow {
    let prov = provisioning_result(i);
    ItemRow {
        id: i.id.to_string(),
        campaign_id: i.campaign_id.to_string(),
        campaign_name: i.campaign_name.clone(),
        principal: i.principal_name.clone(),
        upn: i.principal_upn.clone().unwrap_or_default(),
        principal_type: type_label(&i.principal_type).to_string(),
        guest: i.principal_guest,
        enabled: match i.principal_enabled {
            Some(true) => "Enabled".into(),
            Some(false) => "Disabled".into(),
            None => "—".into(),
        },
        what: format!(
            "{} of {} ({})",
            i.entitlement_name,
            i.resource_name,
            type_label(&i.resource_type)
        ),
        resource: i.resource_name.clone(),
        entitlement: i.entitlement_name.clone(),
        how: names.how(i),
        since: format!("first seen {}", day(i.granted_since)),
        last_sign_in: if !i.sign_in_known {
            "Not reported by the tenant".into()
        } else {
            match i.last_sign_in {
                Some(t) => when(t),
                None => "Never".into(),
            }
        },
        from_latchkey: match (&i.access_request_id, &i.granted_by_task_id, &i.granted_by) {
            (Some(r), _, _) => format!(
                "Yes: just-in-time request {r}{}",
                i.access_request_expires_at
                    .map(|t| format!(", ends {}", when(t)))
                    .unwrap_or_default()
            ),
            (None, Some(t), Some(by)) => {
                format!("Granted through Latchkey (task {t}, asked by {by}), not a request")
            }
            _ => "No: granted outside Latchkey".into(),
        },
        recommendation: match (&i.recommendation, &i.recommendation_reason) {
            (Some(r), Some(why)) => {
                format!("{}: {why}", if r == "revoke" { "Revoke" } else { "Keep" })
            }
            _ => "No recommendation".into(),
        },
        recommendation_kind: i.recommendation.clone().unwrap_or_default(),
        reviewer: i
            .reviewer_name
            .clone()
            .map(|n| format!("{n} ({})", i.reviewer_email.clone().unwrap_or_default()))
            .unwrap_or_else(|| "Nobody yet".into()),
        reviewer_source: i.reviewer_source.clone().unwrap_or_default(),
        decision: match i.decision.as_deref() {
            Some("keep") => "Kept".into(),
            Some("revoke") => "Revoked".into(),
            _ => "Undecided".into(),
        },
        decided_at: i.decided_at.map(when).unwrap_or_default(),
        decided_by: i.decided_by.clone().unwrap_or_default(),
        comment: i.decision_comment.clone().unwrap_or_default(),
        revocation: prov
            .as_ref()
            .map(|p| result_label(p.0).to_string())
            .unwrap_or_default(),
        revocation_detail: prov.map(|p| p.1).unwrap_or_default(),
        evidence_viewed: i.evidence_viewed_at.is_some(),
        subject_is_me: me.is_some() && i.subject_user_id == me,
    }
}
