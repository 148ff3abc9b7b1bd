//! Decisions on items: keep or revoke with a comment (one item or many at once), or reassign
//! to another reviewer. All of one request in one transaction: either every decision is
//! recorded, or none.

use crate::revoke::{Revocation, carry_out};
use crate::{Problem, ReviewError, Who};
use latchkey_core::UserId;
use latchkey_store::audit::{self, NewEvent};
use latchkey_store::reviews::{self, DecisionBy, Item};
use latchkey_store::{OrgTx, StoreError, users};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    Revoke,
    /// Give the item to `reviewer_id`.
    Reassign,
}

/// One decision of a request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    pub item_id: Uuid,
    pub decision: Action,
    #[serde(default)]
    pub comment: Option<String>,
    /// For `reassign`: the new reviewer.
    #[serde(default)]
    pub reviewer_id: Option<Uuid>,
}

const MAX_COMMENT: usize = 2000;
const MAX_BATCH: usize = 500;

/// What one decision did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub item_id: Uuid,
    pub revocation: Option<Revocation>,
}

fn may_act(who: &Who, item: &Item) -> Result<(), ReviewError> {
    if who.person.is_some() && item.subject_user_id == who.person {
        return Err(ReviewError::Forbidden(format!(
            "Nobody reviews their own access: {} is yours. Reassign it to someone else or ask an administrator.",
            item.entitlement_name
        )));
    }
    if who.admin || (who.user.is_some() && item.reviewer_id == who.user) {
        Ok(())
    } else {
        Err(ReviewError::Forbidden(
            "Only the item's reviewer (or an administrator) can decide it.".into(),
        ))
    }
}

/// Records `inputs` on items of `campaign`. Items of other campaigns (or organizations) are
/// not found; decided items and closed campaigns are conflicts.
pub async fn decide(
    tx: &mut OrgTx,
    campaign: Uuid,
    inputs: &[DecisionInput],
    who: &Who,
) -> Result<Vec<Outcome>, ReviewError> {
    if inputs.is_empty() {
        return Err(ReviewError::invalid(
            "decisions",
            "Send at least one decision.",
        ));
    }
    if inputs.len() > MAX_BATCH {
        return Err(ReviewError::invalid(
            "decisions",
            format!("Send at most {MAX_BATCH} decisions at once."),
        ));
    }
    let mut problems = Vec::new();
    for (n, d) in inputs.iter().enumerate() {
        if d.comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > MAX_COMMENT)
        {
            problems.push(Problem::new(
                format!("decisions[{n}].comment"),
                format!("Comments are at most {MAX_COMMENT} characters."),
            ));
        }
        if (d.decision == Action::Reassign) != d.reviewer_id.is_some() {
            problems.push(Problem::new(
                format!("decisions[{n}].reviewer_id"),
                "Name the new reviewer for a reassignment (and only then).",
            ));
        }
    }
    if !problems.is_empty() {
        return Err(ReviewError::Invalid(problems));
    }
    let c = reviews::lock_campaign(tx, campaign).await?;
    if !c.is_active() {
        return Err(ReviewError::Conflict(
            "The campaign is closed; its decisions can no longer change.".into(),
        ));
    }
    let decisions = inputs
        .iter()
        .filter(|d| d.decision != Action::Reassign)
        .count();
    let bulk = decisions > 1;
    let tag = who.tag();
    let mut out = Vec::with_capacity(inputs.len());
    for d in inputs {
        let item = reviews::get_item(tx, d.item_id).await?;
        if item.campaign_id != campaign {
            return Err(StoreError::NotFound.into());
        }
        may_act(who, &item)?;
        if item.decision.is_some() {
            return Err(ReviewError::Conflict(format!(
                "{} of {} was decided already.",
                item.entitlement_name, item.principal_name
            )));
        }
        let comment = d
            .comment
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty());
        match d.decision {
            Action::Reassign => {
                let to = d.reviewer_id.expect("checked");
                reassign(tx, &item, to, comment, who).await?;
                out.push(Outcome {
                    item_id: item.id,
                    revocation: None,
                });
            }
            Action::Keep | Action::Revoke => {
                let decision = if d.decision == Action::Keep {
                    "keep"
                } else {
                    "revoke"
                };
                let recorded = reviews::record_decision(
                    tx,
                    item.id,
                    decision,
                    comment,
                    &DecisionBy {
                        actor: &tag,
                        user: who.user,
                        bulk,
                    },
                )
                .await?;
                if !recorded {
                    return Err(ReviewError::Conflict(
                        "The item was decided already.".into(),
                    ));
                }
                let revocation = if d.decision == Action::Revoke {
                    Some(carry_out(tx, &item, &tag).await?)
                } else {
                    None
                };
                audit::append(
                    tx,
                    &NewEvent {
                        actor: &who.actor,
                        action: "review_item.decided",
                        target_kind: "review_item",
                        target_id: Some(item.id.to_string()),
                        details: json!({
                            "campaign_id": campaign.to_string(),
                            "decision": decision,
                            "comment": comment.unwrap_or(""),
                            "bulk": bulk,
                            "principal": item.principal_name,
                            "entitlement": item.entitlement_name,
                            "resource": item.resource_name,
                            "revocation": match &revocation {
                                Some(Revocation::Task(t)) => format!("provisioning_task:{t}"),
                                Some(Revocation::Manual(m)) => format!("manual_task:{m}"),
                                Some(Revocation::NotNeeded) => "not_needed".to_string(),
                                None => String::new(),
                            },
                        }),
                    },
                )
                .await?;
                out.push(Outcome {
                    item_id: item.id,
                    revocation,
                });
            }
        }
    }
    Ok(out)
}

async fn reassign(
    tx: &mut OrgTx,
    item: &Item,
    to: Uuid,
    comment: Option<&str>,
    who: &Who,
) -> Result<(), ReviewError> {
    let target = match users::get(tx, UserId(to)).await {
        Ok(u) if u.disabled_at.is_none() => u,
        Ok(_) | Err(StoreError::NotFound) => {
            return Err(ReviewError::invalid(
                "reviewer_id",
                "The new reviewer is not an active person of this organization.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if item.subject_user_id == Some(to) {
        return Err(ReviewError::invalid(
            "reviewer_id",
            format!(
                "{} cannot review their own access; choose someone else.",
                target.display_name
            ),
        ));
    }
    if !reviews::reassign(tx, item.id, to).await? {
        return Err(ReviewError::Conflict(
            "The item was decided already.".into(),
        ));
    }
    audit::append(
        tx,
        &NewEvent {
            actor: &who.actor,
            action: "review_item.reassigned",
            target_kind: "review_item",
            target_id: Some(item.id.to_string()),
            details: json!({
                "campaign_id": item.campaign_id.to_string(),
                "from": item.reviewer_id.map(|u| u.to_string()).unwrap_or_default(),
                "to": to.to_string(),
                "comment": comment.unwrap_or(""),
            }),
        },
    )
    .await?;
    Ok(())
}

/// Marks a manual task done (an administrator removed the access by hand).
pub async fn complete_manual(
    tx: &mut OrgTx,
    task: Uuid,
    note: Option<&str>,
    who: &Who,
) -> Result<(), ReviewError> {
    if !who.admin {
        return Err(ReviewError::Forbidden(
            "Only administrators complete manual tasks.".into(),
        ));
    }
    let t = reviews::get_manual_task(tx, task).await?;
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if !reviews::complete_manual_task(tx, task, &who.tag(), note).await? {
        return Err(ReviewError::Conflict(
            "The manual task is done already.".into(),
        ));
    }
    audit::append(
        tx,
        &NewEvent {
            actor: &who.actor,
            action: "review_manual_task.completed",
            target_kind: "review_manual_task",
            target_id: Some(task.to_string()),
            details: json!({"campaign_id": t.campaign_id.to_string(), "item_id": t.item_id.to_string(), "note": note.unwrap_or("")}),
        },
    )
    .await?;
    Ok(())
}

/// The item, for its evidence page; when its reviewer opens it, the view is recorded (the
/// approver-quality signals count keeps made without it). Only the reviewer and
/// administrators see an item.
pub async fn open_evidence(tx: &mut OrgTx, item: Uuid, who: &Who) -> Result<Item, ReviewError> {
    let it = reviews::get_item(tx, item).await?;
    let reviewer = who.user.is_some() && it.reviewer_id == who.user;
    if !reviewer && !who.admin {
        // Someone else's item is as good as missing.
        return Err(StoreError::NotFound.into());
    }
    if reviewer && it.decision.is_none() {
        reviews::mark_evidence_viewed(tx, item).await?;
        return Ok(reviews::get_item(tx, item).await?);
    }
    Ok(it)
}
