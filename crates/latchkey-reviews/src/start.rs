//! Starting a campaign: check the request against the organization, store the campaign (and
//! its template when it repeats), snapshot the items, find their reviewers, recommend, tell
//! the reviewers, and schedule the reminders and the deadline — all in the caller's transaction.

use crate::spec::{CampaignSpec, CreateCampaign};
use crate::{DEADLINE_JOB, EMAIL_JOB, Problem, REMIND_JOB, ReviewError, TEMPLATE_JOB, Who};
use latchkey_core::UserId;
use latchkey_jobs::{JobClass, NewJob, queue};
use latchkey_store::audit::{self, NewEvent};
use latchkey_store::jobs::schedules::{self, NewSchedule};
use latchkey_store::reviews::{self, Campaign, NewCampaign, NewTemplate};
use latchkey_store::{OrgTx, StoreError, connectors, outbox, users};
use serde_json::json;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// The payload of the deadline and reminder jobs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CampaignPayload {
    pub campaign_id: Uuid,
}

/// The payload of the template job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TemplatePayload {
    pub template_id: Uuid,
}

/// The schedule that starts a template's campaigns.
pub fn template_schedule_name(template: Uuid) -> String {
    format!("review_template:{template}")
}

async fn user_usable(tx: &mut OrgTx, id: Uuid) -> Result<bool, StoreError> {
    match users::get(tx, UserId(id)).await {
        Ok(u) => Ok(u.disabled_at.is_none()),
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Checks the spec's references against the organization; returns the connectors to review.
async fn resolve(tx: &mut OrgTx, spec: &CampaignSpec) -> Result<Vec<Uuid>, ReviewError> {
    let mut problems: Vec<Problem> = Vec::new();
    let mut connectors_out: Vec<Uuid> = Vec::new();
    for c in &spec.scope.connector_ids {
        match connectors::get(tx, *c).await {
            Ok(_) => connectors_out.push(*c),
            Err(StoreError::NotFound) => problems.push(Problem::new(
                "scope.connector_ids",
                format!("There is no connector {c}."),
            )),
            Err(e) => return Err(e.into()),
        }
    }
    if !spec.scope.app_ids.is_empty() {
        let all = connectors::list(tx, None, 200).await?.items;
        for a in &spec.scope.app_ids {
            let of_app: Vec<Uuid> = all
                .iter()
                .filter(|c| c.app_id == *a)
                .map(|c| c.id)
                .collect();
            if of_app.is_empty() {
                problems.push(Problem::new(
                    "scope.app_ids",
                    format!("There is no app {a} with a connector."),
                ));
            }
            connectors_out.extend(of_app);
        }
    }
    connectors_out.sort();
    connectors_out.dedup();
    if spec.scope.inactive_days.is_some() {
        // Inactivity is judged from the tenant's sign-in activity; without it every user would
        // look inactive.
        for c in &connectors_out {
            let row = connectors::get(tx, *c).await?;
            let fetches = row
                .settings
                .as_ref()
                .and_then(|s| s.get("fetch_sign_in_activity"))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            if !fetches {
                problems.push(Problem::new(
                    "scope.inactive_days",
                    format!(
                        "{} does not fetch sign-in activity, so Latchkey cannot tell who is inactive. Turn on \"Fetch user sign-in activity\" in its settings (and let it sync), or leave out the inactivity filter.",
                        row.display_name
                    ),
                ));
            }
        }
    }
    for u in &spec.reviewers.user_ids {
        if !user_usable(tx, *u).await? {
            problems.push(Problem::new(
                "reviewers.user_ids",
                format!("{u} is not an active person of this organization."),
            ));
        }
    }
    if let Some(u) = spec.reviewers.fallback_user_id
        && !user_usable(tx, u).await?
    {
        problems.push(Problem::new(
            "reviewers.fallback_user_id",
            "The fallback reviewer is not an active person of this organization.",
        ));
    }
    if problems.is_empty() {
        Ok(connectors_out)
    } else {
        Err(ReviewError::Invalid(problems))
    }
}

/// Starts a campaign as asked through the API or the form. Only administrators.
pub async fn start_campaign(
    tx: &mut OrgTx,
    req: &CreateCampaign,
    who: &Who,
) -> Result<Campaign, ReviewError> {
    if !who.admin {
        return Err(ReviewError::Forbidden(
            "Only administrators start access reviews.".into(),
        ));
    }
    let now = OffsetDateTime::now_utc();
    let problems = req.check(now);
    if !problems.is_empty() {
        return Err(ReviewError::Invalid(problems));
    }
    let spec = req.spec();
    let template = match req.repeat_every_days {
        Some(every) => {
            let id = Uuid::now_v7();
            let spec_json = serde_json::to_value(&spec).expect("a spec serialises");
            reviews::create_template(
                tx,
                &NewTemplate {
                    id,
                    name: req.name.trim(),
                    spec: &spec_json,
                    every_days: every,
                    duration_secs: (req.deadline - now).whole_seconds().max(1),
                    created_by: &who.tag(),
                },
            )
            .await?;
            let every = Duration::from_secs(u64::from(every.unsigned_abs()) * 86_400);
            schedules::upsert(
                tx,
                &NewSchedule::new(template_schedule_name(id), TEMPLATE_JOB, every)
                    .payload(json!(TemplatePayload { template_id: id }))
                    .class(JobClass::Other),
            )
            .await?;
            audit::append(
                tx,
                &NewEvent {
                    actor: &who.actor,
                    action: "review_template.created",
                    target_kind: "review_template",
                    target_id: Some(id.to_string()),
                    details: json!({"name": req.name.trim(), "every_days": req.repeat_every_days}),
                },
            )
            .await?;
            Some(id)
        }
        None => None,
    };
    create(tx, req.name.trim(), &spec, req.deadline, template, who).await
}

/// Creates the campaign from a checked spec: snapshot, reviewers, recommendations, emails,
/// reminder and deadline jobs, audit. Also what a template's job calls.
pub async fn create(
    tx: &mut OrgTx,
    name: &str,
    spec: &CampaignSpec,
    deadline: OffsetDateTime,
    template: Option<Uuid>,
    who: &Who,
) -> Result<Campaign, ReviewError> {
    let connectors = resolve(tx, spec).await?;
    let id = Uuid::now_v7();
    let spec_json = serde_json::to_value(spec).expect("a spec serialises");
    let campaign = reviews::create_campaign(
        tx,
        &NewCampaign {
            id,
            name,
            spec: &spec_json,
            end_rule: spec.end_rule.as_str(),
            deadline,
            template_id: template,
            created_by: &who.tag(),
        },
    )
    .await?;
    let items = reviews::snapshot_items(tx, id, &spec.snapshot_scope(connectors)).await?;
    let unassigned =
        reviews::assign_reviewers(tx, id, &spec.rule(), spec.reviewers.fallback_user_id).await?;
    reviews::recommend(tx, id, spec.recommend_revoke_after_days).await?;
    tracing::info!(org_id = %tx.org(), campaign_id = %id, items, unassigned, "access review started");

    let due = deadline
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let reviewers = reviews::open_by_reviewer(tx, id).await?;
    for (_, email, name_of, n) in &reviewers {
        outbox::enqueue(
            tx,
            email,
            &format!("Access review: {name}"),
            &format!(
                "Hello {name_of},\n\nYou have {n} access item(s) to review in \"{name}\" by {due}.\nFor each, decide whether the access should stay or be revoked: open Access reviews in Latchkey.\n\nUndecided items will be {} at the deadline.\n",
                if spec.end_rule == crate::EndRule::Revoke { "revoked" } else { "kept" }
            ),
        )
        .await?;
    }
    if !reviewers.is_empty() {
        queue::enqueue(
            tx,
            &NewJob::new(EMAIL_JOB, json!({})).dedupe_key("email:deliver"),
        )
        .await?;
    }
    let payload = json!(CampaignPayload { campaign_id: id });
    let now = OffsetDateTime::now_utc();
    for h in &spec.reminder_hours_before {
        let at = deadline - time::Duration::hours(*h);
        if at > now {
            queue::enqueue(
                tx,
                &NewJob::new(REMIND_JOB, payload.clone())
                    .run_at(at)
                    .dedupe_key(format!("review_remind:{id}:{h}")),
            )
            .await?;
        }
    }
    queue::enqueue(
        tx,
        &NewJob::new(DEADLINE_JOB, payload)
            .run_at(deadline)
            .max_attempts(10)
            .dedupe_key(format!("review_deadline:{id}")),
    )
    .await?;
    audit::append(
        tx,
        &NewEvent {
            actor: &who.actor,
            action: "review_campaign.created",
            target_kind: "review_campaign",
            target_id: Some(id.to_string()),
            details: json!({
                "name": name,
                "items": items as i64,
                "unassigned": unassigned as i64,
                "end_rule": spec.end_rule.as_str(),
                "deadline": due,
                "reviewer_strategy": spec.reviewers.strategy.as_str(),
            }),
        },
    )
    .await?;
    Ok(campaign)
}
