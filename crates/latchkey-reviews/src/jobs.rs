//! Job handlers of access reviews: the deadline (end rule), reminders before it, and the
//! template schedule that starts recurring campaigns (until the template is stopped).

use crate::end::{EndReason, end_campaign};
use crate::spec::CampaignSpec;
use crate::start::{CampaignPayload, TemplatePayload, create};
use crate::{DEADLINE_JOB, EMAIL_JOB, REMIND_JOB, ReviewError, TEMPLATE_JOB, Who};
use latchkey_core::OrgId;
use latchkey_jobs::{JobContext, JobError, JobHandler, LogLevel, NewJob, queue};
use latchkey_store::audit::Actor;
use latchkey_store::reviews;
use latchkey_store::{StoreError, outbox};
use serde_json::json;
use time::OffsetDateTime;

fn org(ctx: &JobContext) -> Result<OrgId, JobError> {
    ctx.org()
        .ok_or_else(|| JobError::permanent("an access review job belongs to an organization"))
}

fn system(label: &str) -> Who {
    Who {
        actor: Actor::system(label),
        user: None,
        admin: true,
        person: None,
    }
}

fn job_error(e: ReviewError) -> JobError {
    match e {
        ReviewError::Store(s) => JobError::from(s),
        other => JobError::permanent(other.to_string()),
    }
}

/// `reviews.deadline`: at the deadline, undecided items follow the end rule and the campaign
/// closes. A campaign closed earlier needs nothing.
pub struct DeadlineHandler;

impl JobHandler for DeadlineHandler {
    fn kind(&self) -> &str {
        DEADLINE_JOB
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let org = org(ctx)?;
        let p: CampaignPayload = ctx.payload_as()?;
        let mut tx = ctx.store().org_tx(org).await?;
        let c = match reviews::get_campaign(&mut tx, p.campaign_id).await {
            Err(StoreError::NotFound) => return Ok(()),
            r => r?,
        };
        if !c.is_active() {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        if c.deadline > now {
            // Queued before a deadline that moved later: come back then.
            let wait = (c.deadline - now).unsigned_abs();
            return Err(JobError::retry_after("the deadline is later", wait));
        }
        let c = end_campaign(
            &mut tx,
            c.id,
            EndReason::Deadline,
            &system("review deadline"),
        )
        .await
        .map_err(job_error)?;
        tx.commit().await?;
        ctx.log(
            LogLevel::Info,
            "deadline reached: end rule applied",
            json!({"campaign_id": c.id, "end_rule": c.end_rule}),
        )
        .await
    }
}

/// `reviews.remind`: emails every reviewer who still has undecided items.
pub struct ReminderHandler;

impl JobHandler for ReminderHandler {
    fn kind(&self) -> &str {
        REMIND_JOB
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let org = org(ctx)?;
        let p: CampaignPayload = ctx.payload_as()?;
        let mut tx = ctx.store().org_tx(org).await?;
        let c = match reviews::get_campaign(&mut tx, p.campaign_id).await {
            Err(StoreError::NotFound) => return Ok(()),
            r => r?,
        };
        if !c.is_active() {
            return Ok(());
        }
        let due = c
            .deadline
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let open = reviews::open_by_reviewer(&mut tx, c.id).await?;
        for (_, email, name, n) in &open {
            outbox::enqueue(
                &mut tx,
                email,
                &format!("Reminder: access review {} is due {due}", c.name),
                &format!(
                    "Hello {name},\n\n{n} access item(s) in \"{}\" still wait for your decision. The campaign ends {due}; undecided items will then be {}.\nOpen Access reviews in Latchkey to decide them.\n",
                    c.name,
                    if c.end_rule == "revoke" { "revoked" } else { "kept" }
                ),
            )
            .await?;
        }
        if !open.is_empty() {
            queue::enqueue(
                &mut tx,
                &NewJob::new(EMAIL_JOB, json!({})).dedupe_key("email:deliver"),
            )
            .await?;
        }
        tx.commit().await?;
        ctx.log(
            LogLevel::Info,
            "reminded reviewers",
            json!({"campaign_id": c.id, "reviewers": open.len()}),
        )
        .await
    }
}

/// `reviews.template`: starts this period's campaign from a template (run by its schedule).
pub struct TemplateHandler;

impl JobHandler for TemplateHandler {
    fn kind(&self) -> &str {
        TEMPLATE_JOB
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let org = org(ctx)?;
        let p: TemplatePayload = ctx.payload_as()?;
        let mut tx = ctx.store().org_tx(org).await?;
        // Locked: a template being stopped now either waits for this campaign or is stopped
        // before it starts.
        let t = match reviews::lock_template(&mut tx, p.template_id).await {
            Err(StoreError::NotFound) => {
                return Err(JobError::permanent("the review template no longer exists"));
            }
            r => r?,
        };
        if !t.is_active() {
            // Queued before the template was stopped: nothing more starts from it.
            tx.commit().await?;
            return ctx
                .log(
                    LogLevel::Info,
                    "the recurring review is stopped: no campaign started",
                    json!({"template_id": t.id}),
                )
                .await;
        }
        let spec: CampaignSpec = serde_json::from_value(t.spec.clone())?;
        let now = OffsetDateTime::now_utc();
        let name = format!("{} ({})", t.name, now.date());
        let deadline = now + time::Duration::seconds(t.duration_secs);
        let c = create(
            &mut tx,
            &name,
            &spec,
            deadline,
            Some(t.id),
            &system("review template"),
        )
        .await
        .map_err(job_error)?;
        tx.commit().await?;
        ctx.log(
            LogLevel::Info,
            "started a campaign from its template",
            json!({"campaign_id": c.id, "template_id": t.id}),
        )
        .await
    }
}
