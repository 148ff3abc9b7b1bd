//! Emails about requests, written to the outbox in the transaction of the change that
//! causes them: approvers when a decision needs them, the requester at every decision and
//! before expiry, owners when break-glass access is used.

use crate::config::AccessConfig;
use latchkey_core::UserId;
use latchkey_store::access_policies::EntitlementInfo;
use latchkey_store::access_requests::{self as store, Request};
use latchkey_store::{OrgTx, Result, outbox, users};
use time::OffsetDateTime;
use uuid::Uuid;

pub fn what(info: &EntitlementInfo) -> String {
    if info.entitlement_name.is_empty() {
        format!("{} ({})", info.resource_name, info.slug)
    } else {
        info.entitlement_name.clone()
    }
}

fn when(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| "-".into())
}

async fn requester(tx: &mut OrgTx, r: &Request) -> Result<(String, String)> {
    let u = users::get(tx, UserId(r.requester_id)).await?;
    Ok((u.email, u.display_name))
}

/// Asks each approver of the current stage to decide.
pub async fn approvers_needed(
    tx: &mut OrgTx,
    cfg: &AccessConfig,
    r: &Request,
    info: &EntitlementInfo,
    approvers: &[UserId],
    extension: bool,
) -> Result<()> {
    let (_, name) = requester(tx, r).await?;
    let ids: Vec<Uuid> = approvers.iter().map(|u| u.0).collect();
    let (subject, ask) = if extension {
        (
            format!("Approval needed: {name} asks to extend {}", what(info)),
            format!(
                "{name} asks for {} more seconds of {} on {} (it now ends at {}).\nReason: {}",
                r.extension_seconds.unwrap_or(0),
                what(info),
                info.resource_name,
                when(r.expires_at),
                r.extension_justification.as_deref().unwrap_or("")
            ),
        )
    } else {
        (
            format!("Approval needed: {name} requests {}", what(info)),
            format!(
                "{name} requests {} on {} ({}) for {} seconds.\nReason: {}",
                what(info),
                info.resource_name,
                info.connector_name,
                r.duration_seconds,
                r.justification
            ),
        )
    };
    let body = format!(
        "{ask}\n\nApprove or deny it here (sign-in required):\n{}\n\nIf nobody decides by {}, the request times out.\n",
        cfg.request_url(r.id),
        when(r.decide_by)
    );
    for to in store::emails(tx, &ids).await? {
        outbox::enqueue(tx, &to, &subject, &body).await?;
    }
    Ok(())
}

/// Tells the requester what happened.
pub async fn requester_told(
    tx: &mut OrgTx,
    cfg: &AccessConfig,
    r: &Request,
    info: &EntitlementInfo,
    headline: &str,
    detail: &str,
) -> Result<()> {
    let (email, _) = requester(tx, r).await?;
    let subject = format!("{headline}: {}", what(info));
    let body = format!(
        "Your request for {} on {} ({}): {headline}.\n{detail}\n\nDetails: {}\n",
        what(info),
        info.resource_name,
        info.connector_name,
        cfg.request_url(r.id)
    );
    outbox::enqueue(tx, &email, &subject, &body).await?;
    Ok(())
}

/// Break-glass was used: the connector's owners and the Super Administrators hear at once.
pub async fn emergency_alert(
    tx: &mut OrgTx,
    cfg: &AccessConfig,
    r: &Request,
    info: &EntitlementInfo,
) -> Result<()> {
    let (email, name) = requester(tx, r).await?;
    let mut ids: Vec<Uuid> = latchkey_store::connectors::owners(tx, info.connector_id)
        .await?
        .into_iter()
        .map(|o| o.user_id)
        .collect();
    ids.extend(store::super_admins(tx).await?);
    ids.sort();
    ids.dedup();
    let subject = format!("Emergency access used: {name} took {}", what(info));
    let body = format!(
        "{name} ({email}) used the emergency (break-glass) path for {} on {} ({}), without approval, for {} seconds.\nReason: {}\n\nReview it here: {}\n",
        what(info),
        info.resource_name,
        info.connector_name,
        r.duration_seconds,
        r.justification,
        cfg.request_url(r.id)
    );
    for to in store::emails(tx, &ids).await? {
        outbox::enqueue(tx, &to, &subject, &body).await?;
    }
    Ok(())
}
