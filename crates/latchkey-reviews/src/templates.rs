//! Recurring reviews: the templates that start a campaign every period, as an administrator
//! sees them (repeat period, next run, the campaigns they started), and stopping one. A
//! stopped template starts no further campaigns — its schedule is deleted, and a template job
//! already queued finds it stopped — while the campaigns it started run on to their deadlines.

use crate::start::template_schedule_name;
use crate::{ReviewError, Who};
use latchkey_store::audit::{self, NewEvent};
use latchkey_store::jobs::schedules;
use latchkey_store::reviews::{self, Campaign, Template};
use latchkey_store::{OrgTx, StoreError};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

/// A template with what an administrator needs to judge it.
#[derive(Debug, Clone)]
pub struct Recurring {
    pub template: Template,
    /// When its schedule starts the next campaign; `None` once stopped.
    pub next_run_at: Option<OffsetDateTime>,
    /// The campaigns it started, oldest first.
    pub campaigns: Vec<Campaign>,
}

impl Recurring {
    /// `active` or `stopped`.
    pub fn status(&self) -> &'static str {
        if self.template.is_active() {
            "active"
        } else {
            "stopped"
        }
    }

    /// The end rule its campaigns get (`keep` or `revoke`), from the spec.
    pub fn end_rule(&self) -> String {
        self.template
            .spec
            .get("end_rule")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("keep")
            .to_string()
    }
}

/// The template's next run and campaigns.
pub async fn recurring(tx: &mut OrgTx, template: Template) -> Result<Recurring, StoreError> {
    let next_run_at = if template.is_active() {
        schedules::get(tx, &template_schedule_name(template.id))
            .await?
            .filter(|s| s.enabled)
            .map(|s| s.next_run_at)
    } else {
        None
    };
    let campaigns = reviews::campaigns_of_template(tx, template.id).await?;
    Ok(Recurring {
        template,
        next_run_at,
        campaigns,
    })
}

/// Stops a recurring review: no further campaigns; those started go on. Only administrators;
/// a template stopped already is a conflict.
pub async fn stop_template(tx: &mut OrgTx, id: Uuid, who: &Who) -> Result<Recurring, ReviewError> {
    if !who.admin {
        return Err(ReviewError::Forbidden(
            "Only administrators stop recurring access reviews.".into(),
        ));
    }
    // Serialises with a template job starting a campaign from it.
    let t = reviews::lock_template(tx, id).await?;
    if !t.is_active() {
        return Err(ReviewError::Conflict(
            "This recurring review is stopped already.".into(),
        ));
    }
    reviews::stop_template(tx, id, &who.tag()).await?;
    schedules::delete(tx, &template_schedule_name(id)).await?;
    let started = reviews::campaigns_of_template(tx, id).await?;
    audit::append(
        tx,
        &NewEvent {
            actor: &who.actor,
            action: "review_template.stopped",
            target_kind: "review_template",
            target_id: Some(id.to_string()),
            details: json!({
                "name": t.name,
                "every_days": t.every_days,
                "campaigns_started": started.len() as i64,
                "campaigns_active": started.iter().filter(|c| c.is_active()).count() as i64,
            }),
        },
    )
    .await?;
    tracing::info!(org_id = %tx.org(), template_id = %id, "recurring access review stopped");
    let t = reviews::get_template(tx, id).await?;
    Ok(recurring(tx, t).await?)
}
