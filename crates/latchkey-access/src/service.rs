//! The commands people (and API clients) give: ask, approve, deny, cancel, release, extend,
//! mark reviewed, and policy edits. Each is one transaction that locks the request row, checks
//! the state machine and the caller's rights, then writes the change, its transition, its
//! audit event and its emails together.

use crate::approvers;
use crate::config::AccessConfig;
use crate::error::AccessError;
use crate::lifecycle::{self, Change};
use crate::notify;
use crate::policy::{Policy, PolicyProblem, RequesterMode, Risk};
use crate::state::{Event, State};
use latchkey_core::{OrgId, Role, UserId};
use latchkey_store::access_policies::{self, EntitlementInfo, PutPolicy, StoredPolicy};
use latchkey_store::access_requests::{self as store, Request};
use latchkey_store::audit::{self, Actor, NewEvent};
use latchkey_store::{OrgTx, Store, StoreError, connectors, identities};
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Who is acting. An API client acts for the person who created it (`user`), so that the
/// rules about requesters and approvers apply to a person either way.
#[derive(Clone, Debug)]
pub struct Caller {
    pub actor: Actor,
    pub user: Option<UserId>,
    pub role: Role,
}

impl Caller {
    pub fn person(user: UserId, label: impl Into<String>, role: Role) -> Self {
        Caller {
            actor: Actor::user(user.0, label),
            user: Some(user),
            role,
        }
    }

    fn is_admin(&self) -> bool {
        self.role.can_manage_connectors()
    }

    fn person_or(&self, what: &str) -> Result<UserId, AccessError> {
        self.user.ok_or_else(|| {
            AccessError::Forbidden(format!(
                "Only a person can {what}: this API client was not created by anyone in Latchkey."
            ))
        })
    }
}

/// An ask for access.
#[derive(Clone, Debug, Default)]
pub struct NewAsk {
    pub entitlement_id: Uuid,
    /// `None`: the policy's default.
    pub duration_seconds: Option<i64>,
    pub justification: String,
    /// Break-glass: at once, without approval (only where the policy allows it).
    pub emergency: bool,
    /// For whom (administrators may ask on someone's behalf); `None`: the caller.
    pub requester: Option<UserId>,
}

/// What an ask did: a new request, or (for access already held through a request) an
/// extension of the existing one.
#[derive(Clone, Debug)]
pub struct Asked {
    pub request: Request,
    pub extended_existing: bool,
}

/// The request commands, on the store, with the lifecycle's settings.
#[derive(Clone)]
pub struct Access {
    pub store: Store,
    pub config: AccessConfig,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub(crate) fn state_of(r: &Request) -> Result<State, AccessError> {
    r.state
        .parse()
        .map_err(|e: String| AccessError::Store(StoreError::Corrupt(e)))
}

/// Moves the request by `event` (refused unless the state machine allows it), recording
/// the transition and an audit event `access_request.<name>`.
pub(crate) async fn transition(
    tx: &mut OrgTx,
    r: &mut Request,
    event: Event,
    name: &str,
    actor: &Actor,
    reason: Option<&str>,
) -> Result<(), AccessError> {
    let from = state_of(r)?;
    let to = crate::state::next(from, event)?;
    r.state = to.as_str().to_string();
    store::add_transition(
        tx,
        r.id,
        Some(from.as_str()),
        to.as_str(),
        name,
        actor,
        reason,
    )
    .await?;
    audit::append(
        tx,
        &NewEvent {
            actor,
            action: &format!("access_request.{name}"),
            target_kind: "access_request",
            target_id: Some(r.id.to_string()),
            details: json!({
                "from": from.as_str(), "to": to.as_str(), "reason": reason,
                "requester_id": r.requester_id.to_string(), "entitlement_id": r.entitlement_id.to_string(),
                "connector_id": r.connector_id.to_string(), "principal_id": r.principal_id.to_string(),
            }),
        },
    )
    .await?;
    Ok(())
}

fn secs(d: i64) -> Duration {
    Duration::seconds(d)
}

/// The current policy of an entitlement (the default, not requestable, when none was saved).
pub async fn current_policy(
    tx: &mut OrgTx,
    entitlement: Uuid,
) -> Result<(Policy, Option<StoredPolicy>), AccessError> {
    let stored = access_policies::get(tx, entitlement).await?;
    let policy = stored
        .as_ref()
        .map(|s| Policy::from_value(&s.document))
        .unwrap_or_default();
    Ok((policy, stored))
}

/// Whether auto-approval applies to this requester's principal.
async fn auto_approval(
    tx: &mut OrgTx,
    policy: &Policy,
    principal: Uuid,
) -> Result<Option<&'static str>, AccessError> {
    if policy.auto_approve.when_low_risk && policy.risk == Risk::Low {
        return Ok(Some(
            "Approved automatically: the entitlement is marked low-risk.",
        ));
    }
    if store::member_of_any(tx, principal, &policy.auto_approve.requester_group_ids).await? {
        return Ok(Some(
            "Approved automatically: the requester is in a group the policy trusts.",
        ));
    }
    Ok(None)
}

/// Starts the current stage of the current round: resolves its approvers, asks them.
async fn begin_stage(
    tx: &mut OrgTx,
    cfg: &AccessConfig,
    r: &Request,
    info: &EntitlementInfo,
    policy: &Policy,
    extension: bool,
) -> Result<(), AccessError> {
    let stage = &policy.approval_stages[r.stage as usize];
    let people = approvers::resolve(tx, r, info, stage, policy.allow_self_approval).await?;
    store::set_approvers(tx, r.id, r.round, r.stage, &people).await?;
    let ids: Vec<UserId> = people.iter().map(|(u, _)| *u).collect();
    notify::approvers_needed(tx, cfg, r, info, &ids, extension).await?;
    Ok(())
}

impl Access {
    pub fn new(store: Store, config: AccessConfig) -> Self {
        Self { store, config }
    }

    /// Asks for access. Something already held through a request is extended instead.
    pub async fn ask(
        &self,
        org: OrgId,
        caller: &Caller,
        ask: NewAsk,
    ) -> Result<Asked, AccessError> {
        let requester = match ask.requester {
            Some(u) if Some(u) != caller.user => {
                if !caller.is_admin() {
                    return Err(AccessError::Forbidden(
                        "Only administrators may ask for access on someone else's behalf.".into(),
                    ));
                }
                u
            }
            Some(u) => u,
            None => caller.user.ok_or_else(|| {
                AccessError::invalid(
                    "requester_user_id",
                    "This API client was not created by a person: name the person the access is for.",
                )
            })?,
        };
        let mut tx = self.store.org_tx(org).await?;
        if !store::user_enabled(&mut tx, requester.0).await? {
            return Err(AccessError::invalid(
                "requester_user_id",
                "No such person in this organization.",
            ));
        }
        let info = match access_policies::entitlement_info(&mut tx, ask.entitlement_id).await {
            Err(StoreError::NotFound) => {
                return Err(AccessError::invalid(
                    "entitlement_id",
                    "No such entitlement.",
                ));
            }
            r => r?,
        };
        let (policy, stored) = current_policy(&mut tx, info.entitlement_id).await?;
        let Some(stored) = stored.filter(|_| policy.requestable) else {
            return Err(AccessError::invalid(
                "entitlement_id",
                "This entitlement cannot be requested (its owners have not made it requestable).",
            ));
        };
        let principal = find_principal(&mut tx, requester, &info).await?;
        if policy.requesters.mode == RequesterMode::Groups
            && !store::member_of_any(&mut tx, principal, &policy.requesters.group_ids).await?
        {
            return Err(AccessError::Forbidden(
                "This entitlement may only be requested by members of the groups its policy names."
                    .into(),
            ));
        }
        if ask.emergency && !policy.emergency.enabled {
            return Err(AccessError::invalid(
                "emergency",
                "This entitlement has no emergency (break-glass) path.",
            ));
        }
        let max = policy.max_for(ask.emergency);
        let duration = ask
            .duration_seconds
            .unwrap_or(policy.default_duration_seconds.min(max));
        if duration < 1 || duration > max {
            return Err(AccessError::invalid(
                "duration_seconds",
                format!("must be between 1 and {max} seconds for this entitlement"),
            ));
        }
        if let Err(m) = policy.check_justification(&ask.justification) {
            return Err(AccessError::invalid("justification", m));
        }

        if let Some(mut open) = store::lock_open(&mut tx, requester, info.entitlement_id).await? {
            let state = state_of(&open)?;
            if state == State::Active && open.end_reason.is_none() && !ask.emergency {
                self.extend_locked(
                    &mut tx,
                    caller,
                    &mut open,
                    &info,
                    duration,
                    ask.justification.trim(),
                )
                .await?;
                tx.commit().await?;
                return Ok(Asked {
                    request: open,
                    extended_existing: true,
                });
            }
            return Err(AccessError::Conflict(format!(
                "There is already a request for this access ({}).",
                state.label().to_lowercase()
            )));
        }
        if store::direct_grant(&mut tx, info.connector_id, info.entitlement_id, principal)
            .await?
            .is_some()
        {
            return Err(AccessError::Conflict(
                "You already have this access, and not through a request: there is nothing to grant."
                    .into(),
            ));
        }

        let t = now();
        let mut r = Request {
            id: Uuid::now_v7(),
            requester_id: requester.0,
            connector_id: info.connector_id,
            entitlement_id: info.entitlement_id,
            principal_id: principal,
            state: State::Pending.as_str().into(),
            emergency: ask.emergency,
            needs_review: ask.emergency,
            reviewed_at: None,
            reviewed_by: None,
            justification: ask.justification.trim().to_string(),
            duration_seconds: duration as i32,
            policy: policy.to_value(),
            policy_version: stored.version,
            round: 0,
            stage: 0,
            decide_by: Some(t + secs(policy.decision_timeout_seconds)),
            extension_seconds: None,
            extension_justification: None,
            extension_requested_at: None,
            provision_task_id: None,
            revoke_task_id: None,
            revoke_attempts: 0,
            end_reason: None,
            granted_at: None,
            expires_at: None,
            reminded_at: None,
            ended_at: None,
            created_by: via(caller),
            created_at: t,
            updated_at: t,
        };
        store::insert(&mut tx, &r).await.map_err(|e| match e {
            StoreError::Conflict { .. } => {
                AccessError::Conflict("There is already a request for this access.".into())
            }
            other => other.into(),
        })?;
        store::add_transition(
            &mut tx,
            r.id,
            None,
            "pending",
            "requested",
            &caller.actor,
            Some(&r.justification),
        )
        .await?;
        audit::append(
            &mut tx,
            &NewEvent {
                actor: &caller.actor,
                action: "access_request.created",
                target_kind: "access_request",
                target_id: Some(r.id.to_string()),
                details: json!({
                    "requester_id": r.requester_id.to_string(), "entitlement_id": r.entitlement_id.to_string(),
                    "connector_id": r.connector_id.to_string(), "principal_id": r.principal_id.to_string(),
                    "duration_seconds": duration, "emergency": ask.emergency, "justification": r.justification,
                }),
            },
        )
        .await?;

        if ask.emergency {
            r.decide_by = None;
            transition(
                &mut tx,
                &mut r,
                Event::Approve,
                "emergency_approved",
                &caller.actor,
                Some("Emergency (break-glass) access: granted without approval and flagged for review."),
            )
            .await?;
            notify::emergency_alert(&mut tx, &self.config, &r, &info).await?;
            lifecycle::start_provisioning(&mut tx, &self.config, &mut r, &info).await?;
        } else if let Some(why) = auto_approval(&mut tx, &policy, principal).await? {
            r.decide_by = None;
            transition(
                &mut tx,
                &mut r,
                Event::Approve,
                "auto_approved",
                &Actor::system("auto-approval"),
                Some(why),
            )
            .await?;
            notify::requester_told(&mut tx, &self.config, &r, &info, "Approved", why).await?;
            lifecycle::start_provisioning(&mut tx, &self.config, &mut r, &info).await?;
        } else {
            begin_stage(&mut tx, &self.config, &r, &info, &policy, false).await?;
            lifecycle::schedule(&mut tx, &r, r.decide_by.unwrap_or(t)).await?;
        }
        store::save(&mut tx, &r).await?;
        tx.commit().await?;
        Ok(Asked {
            request: r,
            extended_existing: false,
        })
    }

    /// Approves the request's current decision (the request itself or an extension) as one
    /// of the current stage's approvers.
    pub async fn approve(
        &self,
        org: OrgId,
        caller: &Caller,
        id: Uuid,
        comment: &str,
    ) -> Result<Request, AccessError> {
        self.decide(org, caller, id, true, comment).await
    }

    pub async fn deny(
        &self,
        org: OrgId,
        caller: &Caller,
        id: Uuid,
        comment: &str,
    ) -> Result<Request, AccessError> {
        self.decide(org, caller, id, false, comment).await
    }

    async fn decide(
        &self,
        org: OrgId,
        caller: &Caller,
        id: Uuid,
        approve: bool,
        comment: &str,
    ) -> Result<Request, AccessError> {
        let comment = comment.trim();
        if comment.chars().count() > 2000 {
            return Err(AccessError::invalid(
                "comment",
                "must be at most 2000 characters",
            ));
        }
        let mut tx = self.store.org_tx(org).await?;
        let mut r = store::lock(&mut tx, id).await?;
        let user = caller.person_or("decide a request")?;
        let state = state_of(&r)?;
        let extension = match state {
            State::Pending => false,
            State::Active if r.extension_requested_at.is_some() && r.end_reason.is_none() => true,
            State::Active if r.end_reason.is_some() => {
                return Err(AccessError::Conflict(
                    "This access is already being removed; there is nothing to decide.".into(),
                ));
            }
            s => {
                return Err(AccessError::Conflict(format!(
                    "This request is {}; there is nothing to decide.",
                    s.label().to_lowercase()
                )));
            }
        };
        if r.decide_by.is_some_and(|d| d <= now()) {
            // Too late: the timeout the lifecycle would apply, applied now, so that the
            // outcome does not depend on who got the row first.
            let info = access_policies::entitlement_info(&mut tx, r.entitlement_id).await?;
            lifecycle::time_out(&mut tx, &self.config, &mut r, &info).await?;
            store::save(&mut tx, &r).await?;
            tx.commit().await?;
            return Err(AccessError::Conflict(
                "The time to decide this has passed; it timed out.".into(),
            ));
        }
        let policy = Policy::from_value(&r.policy);
        if user.0 == r.requester_id && !policy.allow_self_approval {
            return Err(AccessError::Forbidden(
                "You cannot decide your own request: this entitlement's policy does not allow self-approval."
                    .into(),
            ));
        }
        let approvers = store::approvers(&mut tx, r.id).await?;
        let stage_people: Vec<_> = approvers
            .iter()
            .filter(|a| a.round == r.round && a.stage == r.stage)
            .collect();
        if !stage_people.iter().any(|a| a.user_id == user.0) {
            return Err(AccessError::Forbidden(
                "You are not an approver of this request's current stage.".into(),
            ));
        }
        let decision = if approve { "approved" } else { "denied" };
        store::add_decision(&mut tx, &r, user, decision, comment, &via(caller))
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => {
                    AccessError::Conflict("You have already decided this stage.".into())
                }
                other => other.into(),
            })?;
        let info = access_policies::entitlement_info(&mut tx, r.entitlement_id).await?;
        let reason = (!comment.is_empty()).then_some(comment);
        let stage_no = r.stage;

        if !approve {
            if extension {
                clear_extension(&mut r);
                transition(
                    &mut tx,
                    &mut r,
                    Event::Extension,
                    "extension_denied",
                    &caller.actor,
                    reason,
                )
                .await?;
                notify::requester_told(
                    &mut tx,
                    &self.config,
                    &r,
                    &info,
                    "Extension denied",
                    comment,
                )
                .await?;
            } else {
                r.decide_by = None;
                transition(
                    &mut tx,
                    &mut r,
                    Event::Deny,
                    "denied",
                    &caller.actor,
                    reason,
                )
                .await?;
                notify::requester_told(&mut tx, &self.config, &r, &info, "Denied", comment).await?;
            }
        } else {
            let stage =
                &policy.approval_stages[(stage_no as usize).min(policy.approval_stages.len() - 1)];
            let approvals = store::approvals_in_stage(&mut tx, &r).await?;
            let required = i64::from(stage.required)
                .min(stage_people.len() as i64)
                .max(1);
            if approvals < required {
                audit::append(
                    &mut tx,
                    &NewEvent {
                        actor: &caller.actor,
                        action: "access_request.approval_recorded",
                        target_kind: "access_request",
                        target_id: Some(r.id.to_string()),
                        details: json!({"round": r.round, "stage": stage_no, "approvals": approvals,
                                        "required": required, "comment": comment}),
                    },
                )
                .await?;
            } else if (stage_no as usize) + 1 < policy.approval_stages.len() {
                r.stage += 1;
                let ev = if extension {
                    Event::Extension
                } else {
                    Event::StageApproved
                };
                transition(
                    &mut tx,
                    &mut r,
                    ev,
                    "stage_approved",
                    &caller.actor,
                    Some(&format!(
                        "Stage {} of {} approved.",
                        stage_no + 1,
                        policy.approval_stages.len()
                    )),
                )
                .await?;
                begin_stage(&mut tx, &self.config, &r, &info, &policy, extension).await?;
            } else if extension {
                apply_extension(
                    &mut tx,
                    &self.config,
                    &mut r,
                    &info,
                    &caller.actor,
                    "extension_approved",
                    reason,
                )
                .await?;
            } else {
                r.decide_by = None;
                transition(
                    &mut tx,
                    &mut r,
                    Event::Approve,
                    "approved",
                    &caller.actor,
                    reason,
                )
                .await?;
                notify::requester_told(&mut tx, &self.config, &r, &info, "Approved", comment)
                    .await?;
                lifecycle::start_provisioning(&mut tx, &self.config, &mut r, &info).await?;
            }
        }
        store::save(&mut tx, &r).await?;
        tx.commit().await?;
        Ok(r)
    }

    /// The requester (or an administrator) withdraws a request before it is decided, or an
    /// extension before it is decided.
    pub async fn cancel(
        &self,
        org: OrgId,
        caller: &Caller,
        id: Uuid,
        reason: &str,
    ) -> Result<Request, AccessError> {
        let mut tx = self.store.org_tx(org).await?;
        let mut r = store::lock(&mut tx, id).await?;
        if caller.user.map(|u| u.0) != Some(r.requester_id) && !caller.is_admin() {
            return Err(AccessError::Forbidden(
                "Only the requester or an administrator can cancel a request.".into(),
            ));
        }
        let reason = Some(reason.trim()).filter(|s| !s.is_empty());
        match state_of(&r)? {
            State::Active if r.extension_requested_at.is_some() => {
                clear_extension(&mut r);
                transition(
                    &mut tx,
                    &mut r,
                    Event::Extension,
                    "extension_cancelled",
                    &caller.actor,
                    reason,
                )
                .await?;
            }
            _ => {
                r.decide_by = None;
                transition(
                    &mut tx,
                    &mut r,
                    Event::Cancel,
                    "cancelled",
                    &caller.actor,
                    reason,
                )
                .await?;
            }
        }
        store::save(&mut tx, &r).await?;
        tx.commit().await?;
        Ok(r)
    }

    /// Ends active access early: the holder releases it ("I'm done"), or an administrator or
    /// the connector's owner revokes it. The removal goes through provisioning and the
    /// request ends `revoked` once the removal is verified.
    pub async fn release(
        &self,
        org: OrgId,
        caller: &Caller,
        id: Uuid,
        reason: &str,
    ) -> Result<Request, AccessError> {
        let mut tx = self.store.org_tx(org).await?;
        let mut r = store::lock(&mut tx, id).await?;
        let holder = caller.user.map(|u| u.0) == Some(r.requester_id);
        let owner = match caller.user {
            Some(u) => connectors::is_owner(&mut tx, r.connector_id, u).await?,
            None => false,
        };
        if !holder && !caller.is_admin() && !owner {
            return Err(AccessError::Forbidden(
                "Only the holder, the connector's owners or an administrator can end this access."
                    .into(),
            ));
        }
        if state_of(&r)? != State::Active {
            return Err(AccessError::Conflict(format!(
                "Only active access can be released; this request is {}.",
                state_of(&r)?.label().to_lowercase()
            )));
        }
        if r.end_reason.is_some() {
            return Err(AccessError::Conflict(
                "This access is already being removed.".into(),
            ));
        }
        let reason = reason.trim();
        let end = if holder { "released" } else { "revoked" };
        let default_reason = if holder {
            "Released early by the holder."
        } else {
            "Revoked early."
        };
        let info = access_policies::entitlement_info(&mut tx, r.entitlement_id).await?;
        lifecycle::start_removal(
            &mut tx,
            &self.config,
            &mut r,
            &info,
            Change {
                end_reason: end,
                actor: &caller.actor,
                reason: if reason.is_empty() {
                    default_reason
                } else {
                    reason
                },
            },
        )
        .await?;
        store::save(&mut tx, &r).await?;
        tx.commit().await?;
        Ok(r)
    }

    /// The holder asks for more time before expiry; the current policy applies again.
    pub async fn extend(
        &self,
        org: OrgId,
        caller: &Caller,
        id: Uuid,
        duration_seconds: Option<i64>,
        justification: &str,
    ) -> Result<Request, AccessError> {
        let mut tx = self.store.org_tx(org).await?;
        let mut r = store::lock(&mut tx, id).await?;
        if caller.user.map(|u| u.0) != Some(r.requester_id) {
            return Err(AccessError::Forbidden(
                "Only the holder can ask to extend their access.".into(),
            ));
        }
        let info = access_policies::entitlement_info(&mut tx, r.entitlement_id).await?;
        let (policy, _) = current_policy(&mut tx, r.entitlement_id).await?;
        let duration = duration_seconds.unwrap_or(policy.default_duration_seconds);
        if duration < 1 || duration > policy.max_duration_seconds {
            return Err(AccessError::invalid(
                "duration_seconds",
                format!(
                    "must be between 1 and {} seconds for this entitlement",
                    policy.max_duration_seconds
                ),
            ));
        }
        if let Err(m) = policy.check_justification(justification) {
            return Err(AccessError::invalid("justification", m));
        }
        self.extend_locked(
            &mut tx,
            caller,
            &mut r,
            &info,
            duration,
            justification.trim(),
        )
        .await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn extend_locked(
        &self,
        tx: &mut OrgTx,
        caller: &Caller,
        r: &mut Request,
        info: &EntitlementInfo,
        duration: i64,
        justification: &str,
    ) -> Result<(), AccessError> {
        if state_of(r)? != State::Active || r.end_reason.is_some() {
            return Err(AccessError::Conflict(
                "Only active access that is not being removed can be extended.".into(),
            ));
        }
        if r.extension_requested_at.is_some() {
            return Err(AccessError::Conflict(
                "An extension of this access is already waiting for a decision.".into(),
            ));
        }
        let (policy, stored) = current_policy(tx, r.entitlement_id).await?;
        let Some(stored) = stored.filter(|_| policy.requestable) else {
            return Err(AccessError::Conflict(
                "This entitlement cannot be requested any more, so it cannot be extended.".into(),
            ));
        };
        let t = now();
        r.policy = policy.to_value();
        r.policy_version = stored.version;
        r.round += 1;
        r.stage = 0;
        r.extension_seconds = Some(duration as i32);
        r.extension_justification = Some(justification.to_string());
        r.extension_requested_at = Some(t);
        r.decide_by = Some(t + secs(policy.decision_timeout_seconds));
        transition(
            tx,
            r,
            Event::Extension,
            "extension_requested",
            &caller.actor,
            Some(&format!("{duration} more seconds: {justification}")),
        )
        .await?;
        if let Some(why) = auto_approval(tx, &policy, r.principal_id).await? {
            apply_extension(
                tx,
                &self.config,
                r,
                info,
                &Actor::system("auto-approval"),
                "extension_approved",
                Some(why),
            )
            .await?;
        } else {
            begin_stage(tx, &self.config, r, info, &policy, true).await?;
            lifecycle::schedule(tx, r, r.decide_by.unwrap_or(t)).await?;
        }
        store::save(tx, r).await?;
        Ok(())
    }

    /// An administrator marks a break-glass request as reviewed.
    pub async fn mark_reviewed(
        &self,
        org: OrgId,
        caller: &Caller,
        id: Uuid,
        comment: &str,
    ) -> Result<Request, AccessError> {
        let mut tx = self.store.org_tx(org).await?;
        let mut r = store::lock(&mut tx, id).await?;
        let user = caller.person_or("review emergency access")?;
        if !caller.is_admin() {
            return Err(AccessError::Forbidden(
                "Only administrators review emergency access.".into(),
            ));
        }
        if !r.needs_review {
            return Err(AccessError::Conflict(
                "This request is not waiting for a review.".into(),
            ));
        }
        r.needs_review = false;
        r.reviewed_at = Some(now());
        r.reviewed_by = Some(user.0);
        audit::append(
            &mut tx,
            &NewEvent {
                actor: &caller.actor,
                action: "access_request.reviewed",
                target_kind: "access_request",
                target_id: Some(r.id.to_string()),
                details: json!({"comment": comment.trim()}),
            },
        )
        .await?;
        store::save(&mut tx, &r).await?;
        tx.commit().await?;
        Ok(r)
    }

    /// Replaces an entitlement's policy (validated, references checked), as an audit event.
    pub async fn put_policy(
        &self,
        org: OrgId,
        caller: &Caller,
        entitlement: Uuid,
        policy: &Policy,
    ) -> Result<StoredPolicy, AccessError> {
        let mut tx = self.store.org_tx(org).await?;
        let info = access_policies::entitlement_info(&mut tx, entitlement).await?;
        if !may_edit_policy(&mut tx, caller, info.connector_id).await? {
            return Err(AccessError::Forbidden(
                "Only administrators and the connector's owners may change access policies.".into(),
            ));
        }
        let mut problems = policy.validate(&self.config);
        problems.extend(check_references(&mut tx, policy).await?);
        if !problems.is_empty() {
            return Err(AccessError::Invalid(problems));
        }
        let before = access_policies::get(&mut tx, entitlement).await?;
        let document = policy.to_value();
        let stored = access_policies::put(
            &mut tx,
            &PutPolicy {
                connector_id: info.connector_id,
                entitlement_id: entitlement,
                requestable: policy.requestable,
                risk: policy.risk.as_str(),
                document: &document,
                updated_by: &via(caller),
            },
        )
        .await?;
        audit::append(
            &mut tx,
            &NewEvent {
                actor: &caller.actor,
                action: "access_policy.updated",
                target_kind: "entitlement",
                target_id: Some(entitlement.to_string()),
                details: json!({
                    "version": stored.version,
                    "connector_id": info.connector_id.to_string(),
                    "before": before.map(|b| b.document),
                    "after": document,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(stored)
    }
}

/// Administrators, or the owners of the entitlement's connector.
pub async fn may_edit_policy(
    tx: &mut OrgTx,
    caller: &Caller,
    connector: Uuid,
) -> Result<bool, AccessError> {
    if caller.is_admin() {
        return Ok(true);
    }
    Ok(match caller.user {
        Some(u) => connectors::is_owner(tx, connector, u).await?,
        None => false,
    })
}

async fn check_references(
    tx: &mut OrgTx,
    policy: &Policy,
) -> Result<Vec<PolicyProblem>, AccessError> {
    let mut problems = Vec::new();
    for g in policy.group_ids() {
        if !is_group(tx, g).await? {
            problems.push(PolicyProblem {
                field: "group_ids".into(),
                message: format!("{g} is not a group of this organization's connectors"),
            });
        }
    }
    for u in policy.user_ids() {
        if !store::user_enabled(tx, u).await? {
            problems.push(PolicyProblem {
                field: "approval_stages".into(),
                message: format!("{u} is not a person of this organization"),
            });
        }
    }
    Ok(problems)
}

async fn is_group(tx: &mut OrgTx, id: Uuid) -> Result<bool, AccessError> {
    Ok(matches!(
        store::resource_type(tx, id).await?.as_deref(),
        Some("group")
    ))
}

/// `user:<id>` or `api_client:<id>`.
pub fn via(caller: &Caller) -> String {
    format!(
        "{}:{}",
        caller.actor.kind.as_str(),
        caller.actor.id.map(|i| i.to_string()).unwrap_or_default()
    )
}

fn clear_extension(r: &mut Request) {
    r.extension_seconds = None;
    r.extension_justification = None;
    r.extension_requested_at = None;
    r.decide_by = None;
}

/// The extension was approved: the window grows (never beyond the policy's maximum from now).
async fn apply_extension(
    tx: &mut OrgTx,
    cfg: &AccessConfig,
    r: &mut Request,
    info: &EntitlementInfo,
    actor: &Actor,
    name: &str,
    reason: Option<&str>,
) -> Result<(), AccessError> {
    let policy = Policy::from_value(&r.policy);
    let t = now();
    let extra = i64::from(r.extension_seconds.unwrap_or(0));
    let current = r.expires_at.unwrap_or(t).max(t);
    let until = (current + secs(extra)).min(t + secs(policy.max_duration_seconds));
    r.expires_at = Some(until);
    r.reminded_at = None;
    clear_extension(r);
    let why = format!(
        "Extended until {}.{}",
        until
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        reason.map(|x| format!(" {x}")).unwrap_or_default()
    );
    let trail = match lifecycle::push_entra_end(tx, r, info).await? {
        Some(task) => format!("{why} Entra's end time moves with it (provisioning task {task})."),
        None => why.clone(),
    };
    transition(tx, r, Event::Extension, name, actor, Some(&trail)).await?;
    notify::requester_told(tx, cfg, r, info, "Extension approved", &why).await?;
    lifecycle::schedule_window(tx, r).await?;
    Ok(())
}

/// The requester's synced Entra account in the entitlement's tenant.
async fn find_principal(
    tx: &mut OrgTx,
    requester: UserId,
    info: &EntitlementInfo,
) -> Result<Uuid, AccessError> {
    let Some(tenant) = approvers::tenant_of(info) else {
        return Err(AccessError::invalid(
            "entitlement_id",
            "This entitlement's connector has no tenant configured.",
        ));
    };
    let identity = identities::for_user(tx, requester)
        .await?
        .into_iter()
        .find(|i| i.tenant_id == tenant);
    let Some(identity) = identity else {
        return Err(AccessError::invalid(
            "entitlement_id",
            "Your Latchkey account is not linked to an account in this entitlement's Microsoft Entra tenant: link your Microsoft account under Your account (or sign in with Microsoft once), then ask again.",
        ));
    };
    store::user_resource(tx, info.connector_id, &identity.object_id)
        .await?
        .ok_or_else(|| {
            AccessError::invalid(
                "entitlement_id",
                "Your Microsoft Entra account has not been synced from this tenant yet; try again after the next sync.",
            )
        })
}
