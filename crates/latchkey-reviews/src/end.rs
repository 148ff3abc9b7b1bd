//! Ending a campaign, at its deadline or when someone closes it: every undecided item follows
//! the end rule chosen at creation (kept, or revoked like any revoke decision), then the
//! campaign is closed and no decision changes any more.

use crate::revoke::carry_out;
use crate::{ReviewError, Who};
use latchkey_store::OrgTx;
use latchkey_store::audit::{self, NewEvent};
use latchkey_store::reviews::{self, Campaign, DecisionBy};
use serde_json::json;
use uuid::Uuid;

/// Why a campaign ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Deadline,
    Closed,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Deadline => "deadline",
            EndReason::Closed => "closed",
        }
    }
}

/// Applies the end rule and closes the campaign. A campaign closed already is a conflict.
pub async fn end_campaign(
    tx: &mut OrgTx,
    campaign: Uuid,
    reason: EndReason,
    who: &Who,
) -> Result<Campaign, ReviewError> {
    if reason == EndReason::Closed && !who.admin {
        return Err(ReviewError::Forbidden(
            "Only administrators close access reviews.".into(),
        ));
    }
    let c = reviews::lock_campaign(tx, campaign).await?;
    if !c.is_active() {
        return Err(ReviewError::Conflict(
            "The campaign is closed already.".into(),
        ));
    }
    let rule = c.end_rule.as_str();
    let comment = format!(
        "Undecided when the campaign {}: its end rule is to {rule}.",
        match reason {
            EndReason::Deadline => "reached its deadline",
            EndReason::Closed => "was closed",
        }
    );
    let requested_by = format!("review_campaign:{campaign}");
    let undecided = reviews::undecided(tx, campaign).await?;
    for id in &undecided {
        let decided = reviews::record_decision(
            tx,
            *id,
            rule,
            Some(&comment),
            &DecisionBy {
                actor: "end_rule",
                user: None,
                bulk: false,
            },
        )
        .await?;
        if decided && rule == "revoke" {
            let item = reviews::get_item(tx, *id).await?;
            carry_out(tx, &item, &requested_by).await?;
        }
    }
    reviews::close_campaign(tx, campaign, reason.as_str(), &who.tag()).await?;
    audit::append(
        tx,
        &NewEvent {
            actor: &who.actor,
            action: "review_campaign.closed",
            target_kind: "review_campaign",
            target_id: Some(campaign.to_string()),
            details: json!({
                "reason": reason.as_str(),
                "end_rule": rule,
                "undecided_items": undecided.len() as i64,
            }),
        },
    )
    .await?;
    tracing::info!(org_id = %tx.org(), campaign_id = %campaign, reason = reason.as_str(),
        undecided = undecided.len(), "access review closed");
    Ok(reviews::get_campaign(tx, campaign).await?)
}
