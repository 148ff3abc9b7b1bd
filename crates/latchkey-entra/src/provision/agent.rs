//! Provisioning through a self-hosted connector, split where the database ends: the server
//! plans the task from its stored model ([`prepare`], the hosted task's first half), the
//! connector writes, reads back and (with SCIM scheduling) provisions on demand with its own
//! Entra credentials ([`carry_out`], the hosted task's Graph calls), and the server records the
//! outcome exactly as a hosted task's ([`record`]): timestamps, stored grants, trail.
//!
//! Account tasks (create, deprovision) take the same path with their own task and outcome
//! ([`super::agent_account`]): the new account's password is kept in the vault before the
//! task is handed out, and only the handed-out task carries it.

use super::agent_account::AccountTask;
use super::job::{Prep, build_request, grant_kind};
use super::plan::{Operation, Step, plan};
use super::scim::provision_on_demand;
use super::write::{
    Applied, ProvisionError, Verification, VerifyPolicy, apply_until, external_id_after, verify,
};
use crate::graph::GraphClient;
use latchkey_crypto::KeyRing;
use latchkey_store::provisioning::{self, Task};
use latchkey_store::{OrgTx, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

/// The job kind of a provisioning task a self-hosted connector carries out.
pub const AGENT_PROVISION_JOB: &str = "connector_agent.provision";

/// Who the trail names for what a self-hosted connector did.
pub(super) const ACTOR: &str = "self_hosted_connector";

/// A planned task as the connector receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentTask {
    pub task_id: Uuid,
    pub operation: Operation,
    /// The Graph change to make.
    pub step: Step,
    /// Names for messages: "grant members of Finance to Ada".
    pub summary: String,
    pub resource_name: String,
    /// End of a time-bound directory role grant (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Provision app role grants downstream on demand (the connector's SCIM option).
    pub scim: bool,
    pub principal_is_group: bool,
}

/// What the server makes of a claimed task.
#[derive(Debug, Clone)]
pub enum Prepared {
    Task(Box<AgentTask>),
    /// An account task (create, deprovision): with the kept password when creating.
    Account(Box<AccountTask>),
    /// Refused before any Graph call (recorded: the task failed with this sentence).
    Refused(String),
    /// An earlier attempt finished it.
    Done,
}

/// Plans task `task_id` of `connector` (marks it running). A refusal is recorded at once.
/// `keys` keep a new account's password in the vault before the task is handed out.
pub async fn prepare(
    tx: &mut OrgTx,
    keys: &KeyRing,
    connector: Uuid,
    task_id: Uuid,
) -> Result<Prepared, StoreError> {
    let task = provisioning::get_task(tx, task_id).await?;
    if task.is_final() {
        return Ok(Prepared::Done);
    }
    provisioning::set_running(tx, task.id).await?;
    if matches!(
        task.operation.as_str(),
        "create_account" | "deprovision_account"
    ) {
        return super::agent_account::prepare(tx, keys, connector, &task).await;
    }
    let (req, _, scim) = match build_request(tx, connector, &task).await {
        Ok(v) => v,
        Err(Prep::Store(e)) => return Err(e),
        Err(Prep::Refused(why)) => {
            refuse(tx, &task, &why).await?;
            return Ok(Prepared::Refused(why));
        }
    };
    // Whether provisioning is allowed is the connector's own setting (LATCHKEY_PROVISIONING),
    // checked where the change is made.
    let step = match plan(&req, true) {
        Ok(s) => s,
        Err(r) => {
            let why = r.to_string();
            refuse(tx, &task, &why).await?;
            return Ok(Prepared::Refused(why));
        }
    };
    Ok(Prepared::Task(Box::new(AgentTask {
        task_id: task.id,
        operation: req.operation,
        summary: format!(
            "{} {} of {} for {}",
            req.operation.as_str(),
            req.slug,
            req.resource.display_name,
            req.principal.display_name
        ),
        step,
        resource_name: req.resource.display_name.clone(),
        end: req.end.clone(),
        scim,
        principal_is_group: req.principal.rtype == "group",
    })))
}

pub(super) async fn refuse(tx: &mut OrgTx, task: &Task, why: &str) -> Result<(), StoreError> {
    provisioning::set_failed(tx, task.id, why, None).await?;
    provisioning::add_event(tx, task.id, ACTOR, "refused", Some(why)).await
}

/// What the connector reports for a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing was changed: provisioning is off on the connector, or Graph refused.
    Refused { why: String },
    /// Graph failed; `transient` ones are retried while attempts are left.
    Failed {
        why: String,
        transient: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        applied: Option<Applied>,
    },
    /// Graph accepted the change but reading it back did not show it in time.
    Unverified { why: String, applied: Applied },
    Verified {
        applied: Applied,
        reads: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_id: Option<String>,
        /// SCIM on-demand provisioning: `(event, note)` for the trail.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scim: Option<(String, String)>,
    },
}

/// The sentence a connector with provisioning off answers every provisioning task with.
pub const PROVISIONING_OFF: &str = "Provisioning is turned off on this self-hosted connector (LATCHKEY_PROVISIONING=false); nothing was changed in Microsoft Entra ID.";

/// Carries out a planned task against the tenant `graph` reaches (the connector's side).
pub async fn carry_out(
    graph: &GraphClient,
    task: &AgentTask,
    provisioning_enabled: bool,
    policy: VerifyPolicy,
) -> Outcome {
    if !provisioning_enabled {
        return Outcome::Refused {
            why: PROVISIONING_OFF.to_string(),
        };
    }
    let applied =
        match apply_until(graph, &task.step, &task.resource_name, task.end.as_deref()).await {
            Ok(a) => a,
            Err(ProvisionError::Refused(r)) => {
                return Outcome::Refused { why: r.to_string() };
            }
            Err(ProvisionError::Graph(e)) => {
                return Outcome::Failed {
                    why: e.to_string(),
                    transient: e.is_transient(),
                    applied: None,
                };
            }
        };
    match verify(graph, &task.step, policy).await {
        Verification::Verified { reads } => {
            let external_id = if task.operation == Operation::Grant {
                match external_id_after(graph, &task.step, &applied).await {
                    Ok(id) => id,
                    Err(e) => {
                        return Outcome::Failed {
                            why: e.to_string(),
                            transient: e.is_transient(),
                            applied: Some(applied),
                        };
                    }
                }
            } else {
                None
            };
            let scim = match task.step {
                Step::AssignAppRole { app, principal, .. } if task.scim => Some(
                    match provision_on_demand(graph, app, principal, task.principal_is_group).await
                    {
                        Ok(outcome) => match outcome.warning() {
                            Some(w) => ("scim_warning".to_string(), w),
                            None => (
                                "scim_provisioned".to_string(),
                                "Provisioned to the downstream app on demand".to_string(),
                            ),
                        },
                        Err(e) => (
                            "scim_warning".to_string(),
                            format!("Provision on demand failed: {e}"),
                        ),
                    },
                ),
                _ => None,
            };
            Outcome::Verified {
                applied,
                reads,
                external_id,
                scim,
            }
        }
        Verification::Failed { why, .. } => Outcome::Unverified { why, applied },
    }
}

/// What [`record`] left the task as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Succeeded,
    Failed,
    /// A transient failure with attempts left: the job goes back to the queue.
    Retry,
}

async fn provisioned(
    tx: &mut OrgTx,
    task: &Task,
    step: &Step,
    applied: &Applied,
) -> Result<(), StoreError> {
    provisioning::set_provisioned(
        tx,
        task.id,
        &json!({"step": step, "already": applied.already}),
    )
    .await?;
    let note = if applied.already {
        "Microsoft Graph reports it was already so"
    } else {
        "Microsoft Graph accepted the change"
    };
    provisioning::add_event(tx, task.id, ACTOR, "provisioned", Some(note)).await
}

/// The task a connector's outcome is for, or — when an earlier result already settled it (a
/// repeated report) — what was recorded then.
pub(super) async fn unsettled(
    tx: &mut OrgTx,
    task_id: Uuid,
) -> Result<Result<provisioning::Task, Recorded>, StoreError> {
    let task = provisioning::get_task(tx, task_id).await?;
    if !task.is_final() {
        return Ok(Ok(task));
    }
    Ok(Err(if task.status == "succeeded" {
        Recorded::Succeeded
    } else {
        Recorded::Failed
    }))
}

/// Records the connector's outcome of `planned` (re-planned by the caller from the same task)
/// as a hosted task records its own. `attempts_left`: whether a transient failure is retried.
pub async fn record(
    tx: &mut OrgTx,
    connector: Uuid,
    planned: &AgentTask,
    outcome: &Outcome,
    attempts_left: bool,
) -> Result<Recorded, StoreError> {
    let task = match unsettled(tx, planned.task_id).await? {
        Ok(task) => task,
        Err(recorded) => return Ok(recorded),
    };
    let step = &planned.step;
    match outcome {
        Outcome::Refused { why } => {
            refuse(tx, &task, why).await?;
            Ok(Recorded::Failed)
        }
        Outcome::Failed {
            why,
            transient,
            applied,
        } => {
            if let Some(a) = applied {
                provisioned(tx, &task, step, a).await?;
            }
            if *transient && attempts_left {
                provisioning::add_event(tx, task.id, ACTOR, "retrying", Some(why)).await?;
                return Ok(Recorded::Retry);
            }
            provisioning::set_failed(tx, task.id, why, None).await?;
            provisioning::add_event(tx, task.id, ACTOR, "failed", Some(why)).await?;
            Ok(Recorded::Failed)
        }
        Outcome::Unverified { why, applied } => {
            provisioned(tx, &task, step, applied).await?;
            let error = format!("The change could not be verified: {why}.");
            provisioning::set_failed(tx, task.id, &error, Some(why)).await?;
            provisioning::add_event(tx, task.id, ACTOR, "verification_failed", Some(&error))
                .await?;
            Ok(Recorded::Failed)
        }
        Outcome::Verified {
            applied,
            reads,
            external_id,
            scim,
        } => {
            provisioned(tx, &task, step, applied).await?;
            match planned.operation {
                Operation::Grant => {
                    provisioning::record_grant(
                        tx,
                        connector,
                        task.entitlement_id.unwrap_or_default(),
                        task.principal_id.unwrap_or_default(),
                        grant_kind(step),
                        external_id.as_deref().unwrap_or(""),
                        task.id,
                    )
                    .await?;
                }
                Operation::Revoke => {
                    provisioning::remove_grant(
                        tx,
                        connector,
                        task.entitlement_id.unwrap_or_default(),
                        task.principal_id.unwrap_or_default(),
                    )
                    .await?;
                }
            }
            provisioning::set_verified(tx, task.id).await?;
            provisioning::add_event(
                tx,
                task.id,
                ACTOR,
                "verified",
                Some(&format!(
                    "read back from Microsoft Graph by the self-hosted connector ({reads} read(s))"
                )),
            )
            .await?;
            if let Some((event, note)) = scim {
                let event = if event == "scim_provisioned" {
                    "scim_provisioned"
                } else {
                    provisioning::add_warning(tx, task.id, note).await?;
                    "scim_warning"
                };
                provisioning::add_event(tx, task.id, ACTOR, event, Some(note)).await?;
            }
            Ok(Recorded::Succeeded)
        }
    }
}
