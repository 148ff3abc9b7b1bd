//! What time and provisioning move forward: handing an approved request to provisioning and
//! following its task until the grant is verified (the access window starts then), expiry
//! and early removal through provisioning (the request ends once the removal is verified),
//! reminders before expiry and decision timeouts.
//!
//! [`advance`] looks at one locked request and does whatever is due; it is idempotent, so it
//! can run as often as anyone likes. It runs from `access.advance` jobs scheduled for the
//! moment something becomes due ([`schedule`]) and from the `access.sweep` schedule
//! ([`sweep`]), which finds anything overdue: an expiry that passed while no worker was
//! running is carried out when one starts again.

use crate::config::AccessConfig;
use crate::error::AccessError;
use crate::jobs::ADVANCE_JOB;
use crate::notify;
use crate::policy::Policy;
use crate::service::{state_of, transition};
use crate::state::{Event, State};
use latchkey_core::OrgId;
use latchkey_entra::provision::{Ask, request, request_until};
use latchkey_jobs::{JobClass, NewJob, queue};
use latchkey_store::access_policies::{self, EntitlementInfo};
use latchkey_store::access_requests::{self as store, Request};
use latchkey_store::audit::{self, Actor, NewEvent};
use latchkey_store::provisioning::{self, Task};
use latchkey_store::{OrgTx, Store, StoreError};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn asker(r: &Request) -> String {
    format!("access_request:{}", r.id)
}

/// Runs [`advance`] for the request at `at` (an `access.advance` job).
pub async fn schedule(tx: &mut OrgTx, r: &Request, at: OffsetDateTime) -> Result<(), AccessError> {
    let at = at.max(now());
    queue::enqueue(
        tx,
        &NewJob::new(ADVANCE_JOB, json!({"request_id": r.id}))
            .class(JobClass::Provision)
            .run_at(at)
            .max_attempts(10)
            .dedupe_key(format!(
                "{ADVANCE_JOB}:{}:{}",
                r.id,
                at.unix_timestamp_nanos() / 1_000_000
            )),
    )
    .await?;
    Ok(())
}

/// Schedules the expiry and the reminder of an active request's window.
pub async fn schedule_window(tx: &mut OrgTx, r: &Request) -> Result<(), AccessError> {
    let Some(expires) = r.expires_at else {
        return Ok(());
    };
    schedule(tx, r, expires).await?;
    let before = Policy::from_value(&r.policy).reminder_before_seconds;
    if before > 0 {
        let remind = expires - Duration::seconds(before);
        if remind > now() {
            schedule(tx, r, remind).await?;
        }
    }
    Ok(())
}

/// How soon to look at a provisioning task again: often at first (most finish in seconds).
fn poll_after(task: &Task) -> Duration {
    let age = now() - task.requested_at;
    if age < Duration::seconds(5) {
        Duration::milliseconds(300)
    } else if age < Duration::seconds(60) {
        Duration::seconds(1)
    } else {
        Duration::seconds(5)
    }
}

/// The task's outcome: `Some(Ok)` verified, `Some(Err(why))` failed, `None` still running.
fn outcome(task: &Task) -> Option<Result<OffsetDateTime, String>> {
    if task.status == "succeeded" {
        return Some(Ok(task.verified_at.unwrap_or_else(now)));
    }
    if task.status == "failed" {
        return Some(Err(task
            .error
            .clone()
            .unwrap_or_else(|| "Provisioning failed.".into())));
    }
    // The job ended without the handler finishing the task (its worker died on the last
    // attempt, or it was cancelled).
    if matches!(
        task.job_status.as_deref(),
        Some("failed" | "dead" | "cancelled")
    ) {
        return Some(Err(task.job_error.clone().unwrap_or_else(|| {
            "The provisioning job stopped before finishing.".into()
        })));
    }
    None
}

/// Entra's own end for a time-bound grant (PIM schedules): a safety net a little after
/// Latchkey's expiry, so that Latchkey's verified removal normally comes first.
fn entra_end(expires: OffsetDateTime) -> OffsetDateTime {
    expires + Duration::seconds(300)
}

/// After an extension of an active request: directory roles granted through PIM carry an
/// end time in Entra, which must move out with the new expiry or Entra would end the access
/// early. Asks provisioning for the same grant with the new end (the grant step moves an
/// existing schedule's end with `adminUpdate`). Other entitlements have no end in Entra.
/// Returns the task, if one was needed.
pub async fn push_entra_end(
    tx: &mut OrgTx,
    r: &Request,
    info: &EntitlementInfo,
) -> Result<Option<Uuid>, AccessError> {
    let Some(expires) = r.expires_at else {
        return Ok(None);
    };
    if info.resource_type != "role" {
        return Ok(None);
    }
    let ask = Ask::Grant {
        entitlement: r.entitlement_id,
        principal: r.principal_id,
    };
    let task = request_until(tx, r.connector_id, ask, &asker(r), Some(entra_end(expires))).await?;
    Ok(Some(task))
}

/// Hands an approved request to provisioning (a grant task, bounded in time where the
/// tenant supports it) and schedules following it.
pub async fn start_provisioning(
    tx: &mut OrgTx,
    cfg: &AccessConfig,
    r: &mut Request,
    info: &EntitlementInfo,
) -> Result<(), AccessError> {
    let until = entra_end(now() + Duration::seconds(i64::from(r.duration_seconds)));
    let ask = Ask::Grant {
        entitlement: r.entitlement_id,
        principal: r.principal_id,
    };
    match request_until(tx, r.connector_id, ask, &asker(r), Some(until)).await {
        Ok(task) => {
            r.provision_task_id = Some(task);
            transition(
                tx,
                r,
                Event::StartProvisioning,
                "provisioning_started",
                &Actor::system("provisioning"),
                Some(&format!("Provisioning task {task}")),
            )
            .await?;
            schedule(tx, r, now() + Duration::milliseconds(300)).await
        }
        Err(StoreError::NotFound) => {
            let why = "The entitlement or the requester's account no longer exists in the tenant; nothing was granted.";
            transition(
                tx,
                r,
                Event::ProvisioningFailed,
                "failed",
                &Actor::system("provisioning"),
                Some(why),
            )
            .await?;
            notify::requester_told(tx, cfg, r, info, "Failed", why).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Why and by whom access is being removed.
pub struct Change<'a> {
    /// `expired`, `released` or `revoked`.
    pub end_reason: &'a str,
    pub actor: &'a Actor,
    pub reason: &'a str,
}

/// Asks provisioning to remove the access (the request stays active until the removal is
/// verified). Access that is already gone from the stored model ends at once.
pub async fn start_removal(
    tx: &mut OrgTx,
    cfg: &AccessConfig,
    r: &mut Request,
    info: &EntitlementInfo,
    change: Change<'_>,
) -> Result<(), AccessError> {
    let first = r.end_reason.is_none();
    r.end_reason = Some(change.end_reason.to_string());
    // A pending extension no longer matters.
    r.extension_seconds = None;
    r.extension_justification = None;
    r.extension_requested_at = None;
    r.decide_by = None;
    let grant = store::direct_grant(tx, r.connector_id, r.entitlement_id, r.principal_id).await?;
    let name = match change.end_reason {
        "expired" => "expiry_started",
        "released" => "release_started",
        _ => "revoke_started",
    };
    let task = match grant {
        Some(g) => Some(request(tx, r.connector_id, Ask::Revoke { grant: g }, &asker(r)).await?),
        None => None,
    };
    r.revoke_task_id = task;
    if first || task.is_some() {
        let note = match task {
            Some(t) => format!("{} Removal task {t}.", change.reason),
            None => change.reason.to_string(),
        };
        transition(tx, r, Event::StartRemoval, name, change.actor, Some(&note)).await?;
    }
    match task {
        Some(_) => schedule(tx, r, now() + Duration::milliseconds(300)).await,
        None => {
            finish_removal(
                tx,
                cfg,
                r,
                info,
                "The access was already gone from the tenant (as last synced); nothing to remove.",
            )
            .await
        }
    }
}

async fn finish_removal(
    tx: &mut OrgTx,
    cfg: &AccessConfig,
    r: &mut Request,
    info: &EntitlementInfo,
    note: &str,
) -> Result<(), AccessError> {
    let expired = r.end_reason.as_deref() == Some("expired");
    let (event, name, headline) = if expired {
        (Event::ExpiryVerified, "expired", "Expired")
    } else {
        (Event::RevocationVerified, "revoked", "Removed")
    };
    r.ended_at = Some(now());
    transition(
        tx,
        r,
        event,
        name,
        &Actor::system("provisioning"),
        Some(note),
    )
    .await?;
    notify::requester_told(tx, cfg, r, info, headline, note).await?;
    Ok(())
}

/// The pending decision (the request, or an extension of active access) ran out of time.
pub async fn time_out(
    tx: &mut OrgTx,
    cfg: &AccessConfig,
    r: &mut Request,
    info: &EntitlementInfo,
) -> Result<(), AccessError> {
    let actor = Actor::system("decision timeout");
    r.decide_by = None;
    if state_of(r)? == State::Active {
        r.extension_seconds = None;
        r.extension_justification = None;
        r.extension_requested_at = None;
        let why = "Nobody decided the extension before the policy's time limit.";
        transition(
            tx,
            r,
            Event::Extension,
            "extension_timed_out",
            &actor,
            Some(why),
        )
        .await?;
        notify::requester_told(tx, cfg, r, info, "Extension timed out", why).await?;
    } else {
        let why = "Nobody decided before the policy's time limit.";
        transition(tx, r, Event::TimeOut, "timed_out", &actor, Some(why)).await?;
        notify::requester_told(tx, cfg, r, info, "Timed out", why).await?;
    }
    Ok(())
}

/// What [`advance`] did, for logs and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advanced {
    Nothing,
    Moved(State),
    Waiting,
    Reminded,
}

fn placeholder(r: &Request) -> EntitlementInfo {
    EntitlementInfo {
        entitlement_id: r.entitlement_id,
        connector_id: r.connector_id,
        connector_name: String::new(),
        connector_settings: None,
        resource_id: Uuid::nil(),
        resource_type: String::new(),
        resource_external_id: String::new(),
        resource_name: "(no longer in the tenant)".into(),
        slug: String::new(),
        entitlement_name: format!("entitlement {}", r.entitlement_id),
    }
}

/// Does whatever is due for one request: a decision timeout, following a provisioning task,
/// an expiry, a reminder. Safe to run any number of times.
pub async fn advance(
    store: &Store,
    cfg: &AccessConfig,
    org: OrgId,
    id: Uuid,
) -> Result<Advanced, AccessError> {
    let mut tx = store.org_tx(org).await?;
    let mut r = match store::lock(&mut tx, id).await {
        Err(StoreError::NotFound) => return Ok(Advanced::Nothing),
        other => other?,
    };
    let info = match access_policies::entitlement_info(&mut tx, r.entitlement_id).await {
        Ok(i) => i,
        Err(StoreError::NotFound) => placeholder(&r),
        Err(e) => return Err(e.into()),
    };
    let t = now();
    let system = Actor::system("lifecycle");
    let before = state_of(&r)?;
    let mut result = Advanced::Nothing;
    match before {
        State::Pending if r.decide_by.is_some_and(|d| d <= t) => {
            time_out(&mut tx, cfg, &mut r, &info).await?;
        }
        State::Approved => start_provisioning(&mut tx, cfg, &mut r, &info).await?,
        State::Provisioning => {
            let task = match r.provision_task_id {
                Some(task) => Some(provisioning::get_task(&mut tx, task).await?),
                None => None,
            };
            match task.as_ref().map(|t| (t, outcome(t))) {
                Some((_, Some(Ok(verified_at)))) => {
                    let policy = Policy::from_value(&r.policy);
                    r.granted_at = Some(verified_at);
                    let window = Duration::seconds(i64::from(r.duration_seconds));
                    let max = Duration::seconds(policy.max_for(r.emergency));
                    r.expires_at = Some(verified_at + window.min(max));
                    let until = r.expires_at.map(rfc3339).unwrap_or_default();
                    transition(
                        &mut tx,
                        &mut r,
                        Event::Verified,
                        "granted",
                        &Actor::system("provisioning"),
                        Some(&format!(
                            "Verified in Microsoft Entra; active until {until}."
                        )),
                    )
                    .await?;
                    notify::requester_told(
                        &mut tx,
                        cfg,
                        &r,
                        &info,
                        "Access granted",
                        &format!(
                            "It is active until {until}; you will be reminded before it ends."
                        ),
                    )
                    .await?;
                    schedule_window(&mut tx, &r).await?;
                }
                Some((_, Some(Err(why)))) => {
                    transition(
                        &mut tx,
                        &mut r,
                        Event::ProvisioningFailed,
                        "failed",
                        &Actor::system("provisioning"),
                        Some(&why),
                    )
                    .await?;
                    notify::requester_told(&mut tx, cfg, &r, &info, "Failed", &why).await?;
                }
                Some((task, None)) => {
                    schedule(&mut tx, &r, t + poll_after(task)).await?;
                    result = Advanced::Waiting;
                }
                None => {
                    // Approved and handed over in one transaction, so this is never seen;
                    // if it is, hand it over again.
                    r.state = State::Approved.as_str().into();
                    start_provisioning(&mut tx, cfg, &mut r, &info).await?;
                }
            }
        }
        State::Active if r.end_reason.is_some() => {
            let task = match r.revoke_task_id {
                Some(task) => Some(provisioning::get_task(&mut tx, task).await?),
                None => None,
            };
            match task.as_ref().map(|t| (t, outcome(t))) {
                Some((_, Some(Ok(_)))) => {
                    finish_removal(
                        &mut tx,
                        cfg,
                        &mut r,
                        &info,
                        "Removal verified in Microsoft Entra.",
                    )
                    .await?;
                }
                Some((_, Some(Err(why)))) => {
                    r.revoke_attempts += 1;
                    r.revoke_task_id = None;
                    audit::append(
                        &mut tx,
                        &NewEvent {
                            actor: &system,
                            action: "access_request.removal_failed",
                            target_kind: "access_request",
                            target_id: Some(r.id.to_string()),
                            details: json!({"error": why, "attempts": r.revoke_attempts}),
                        },
                    )
                    .await?;
                    store::add_transition(
                        &mut tx,
                        r.id,
                        Some("active"),
                        "active",
                        "removal_failed",
                        &system,
                        Some(&format!("{why} Latchkey tries again.")),
                    )
                    .await?;
                    let wait = Duration::seconds(30 * (1i64 << r.revoke_attempts.clamp(0, 7)));
                    schedule(&mut tx, &r, t + wait).await?;
                }
                Some((task, None)) => {
                    schedule(&mut tx, &r, t + poll_after(task)).await?;
                    result = Advanced::Waiting;
                }
                None => {
                    // An earlier removal failed: try again.
                    let reason = format!("Removal retried (attempt {}).", r.revoke_attempts + 1);
                    let end = r.end_reason.clone().unwrap_or_else(|| "expired".into());
                    start_removal(
                        &mut tx,
                        cfg,
                        &mut r,
                        &info,
                        Change {
                            end_reason: &end,
                            actor: &system,
                            reason: &reason,
                        },
                    )
                    .await?;
                }
            }
        }
        State::Active => {
            if r.expires_at.is_some_and(|e| e <= t) {
                let reason = format!(
                    "The access window ended at {}.",
                    r.expires_at.map(rfc3339).unwrap_or_default()
                );
                start_removal(
                    &mut tx,
                    cfg,
                    &mut r,
                    &info,
                    Change {
                        end_reason: "expired",
                        actor: &Actor::system("expiry"),
                        reason: &reason,
                    },
                )
                .await?;
            } else {
                if r.extension_requested_at.is_some() && r.decide_by.is_some_and(|d| d <= t) {
                    time_out(&mut tx, cfg, &mut r, &info).await?;
                }
                let before = Policy::from_value(&r.policy).reminder_before_seconds;
                if let Some(expires) = r.expires_at
                    && before > 0
                    && r.reminded_at.is_none()
                    && expires - Duration::seconds(before) <= t
                {
                    r.reminded_at = Some(t);
                    audit::append(
                        &mut tx,
                        &NewEvent {
                            actor: &system,
                            action: "access_request.reminded",
                            target_kind: "access_request",
                            target_id: Some(r.id.to_string()),
                            details: json!({"expires_at": rfc3339(expires)}),
                        },
                    )
                    .await?;
                    notify::requester_told(
                        &mut tx,
                        cfg,
                        &r,
                        &info,
                        "Expires soon",
                        &format!(
                            "It ends at {}. Ask for an extension before then if you still need it: {}",
                            rfc3339(expires),
                            cfg.request_url(r.id)
                        ),
                    )
                    .await?;
                    result = Advanced::Reminded;
                }
            }
        }
        _ => {}
    }
    store::save(&mut tx, &r).await?;
    tx.commit().await?;
    let after = state_of(&r)?;
    if after != before {
        result = Advanced::Moved(after);
    }
    Ok(result)
}

/// The catch-up: advances every request with something overdue, in every organization.
/// Returns how many it looked at.
pub async fn sweep(store: &Store, cfg: &AccessConfig) -> Result<usize, AccessError> {
    let due = store::due(store, 500).await?;
    let n = due.len();
    for (org, id) in due {
        if let Err(e) = advance(store, cfg, org, id).await {
            tracing::warn!(%org, request_id = %id, error = %e, "access request could not advance");
        }
    }
    Ok(n)
}
