//! Sends a planned [`Step`] to Graph (idempotently) and reads it back until it shows.

use std::time::{Duration, Instant};

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plan::{GroupRel, Refusal, Step, refusal_from_graph};
use crate::graph::{GraphClient, GraphError, Query, odata_string};

/// Why a step did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// Graph refused it for a reason Latchkey knows and words (the stored model was stale).
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Graph(#[from] GraphError),
}

impl ProvisionError {
    /// Worth retrying with the queue's backoff (throttling, 5xx, network).
    pub fn is_transient(&self) -> bool {
        matches!(self, ProvisionError::Graph(e) if e.is_transient())
    }
}

/// What Graph did with a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Graph answered "already exists" (grant) or "does not exist" (revoke): the tenant was
    /// already as asked, e.g. a retried job whose first attempt got through.
    pub already: bool,
}

fn rel_permission(rel: GroupRel) -> &'static str {
    match rel {
        GroupRel::Members => "GroupMember.ReadWrite.All",
        GroupRel::Owners => "Group.ReadWrite.All",
    }
}

/// Sends the step. "Already exists" on an add and "not found" on a removal are success.
pub async fn apply(
    graph: &GraphClient,
    step: &Step,
    group_name: &str,
) -> Result<Applied, ProvisionError> {
    let (rel, result, adding) = match *step {
        Step::AddGroupLink {
            group,
            rel,
            principal,
        } => {
            let q = Query::v1(format!("groups/{group}/{}/$ref", rel.as_str()))
                .needs_permission(rel_permission(rel));
            let body = graph.directory_object_ref(&principal);
            (rel, graph.send(Method::POST, &q, Some(&body)).await, true)
        }
        Step::RemoveGroupLink {
            group,
            rel,
            principal,
        } => {
            let q = Query::v1(format!("groups/{group}/{}/{principal}/$ref", rel.as_str()))
                .needs_permission(rel_permission(rel));
            (rel, graph.send(Method::DELETE, &q, None).await, false)
        }
    };
    match result {
        Ok(_) => Ok(Applied { already: false }),
        Err(e) if adding && e.is_already_exists() => Ok(Applied { already: true }),
        Err(e) if !adding && e.is_already_absent() => Ok(Applied { already: true }),
        Err(e) => match e
            .graph_message()
            .and_then(|m| refusal_from_graph(m, group_name, rel))
        {
            Some(r) if !e.is_transient() => Err(ProvisionError::Refused(r)),
            _ => Err(ProvisionError::Graph(e)),
        },
    }
}

/// How long to keep reading a change back before calling it unverified (Entra replicates
/// writes to its read replicas with a delay of seconds, occasionally more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Give up after this long.
    pub timeout: Duration,
    /// Wait before the second read; doubled each time up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy {
            timeout: Duration::from_secs(60),
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// The outcome of reading a change back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verification {
    Verified { reads: u32 },
    Failed { why: String, reads: u32 },
}

/// Whether the step's effect is visible in Graph now: `true` when a grant is there / a revoked
/// grant is gone.
pub async fn in_effect(graph: &GraphClient, step: &Step) -> Result<bool, GraphError> {
    let (group, rel, principal, want_present) = match *step {
        Step::AddGroupLink {
            group,
            rel,
            principal,
        } => (group, rel, principal, true),
        Step::RemoveGroupLink {
            group,
            rel,
            principal,
        } => (group, rel, principal, false),
    };
    // beta: v1.0 leaves service principals out of members and owners.
    let q = Query::beta(format!("groups/{group}/{}", rel.as_str()))
        .select(&["id"])
        .filter(format!("id eq {}", odata_string(&principal.to_string())))
        .advanced();
    let page: Value = graph.get(&q).await?;
    let present = page
        .get("value")
        .and_then(Value::as_array)
        .is_some_and(|items| {
            items.iter().any(|i| {
                i.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.eq_ignore_ascii_case(&principal.to_string()))
            })
        });
    Ok(present == want_present)
}

/// Reads the step back until it is in effect or `policy.timeout` passes. Transient read errors
/// count as "not yet"; a permanent one ends the wait with its reason.
pub async fn verify(graph: &GraphClient, step: &Step, policy: VerifyPolicy) -> Verification {
    let start = Instant::now();
    let mut delay = policy.first_delay;
    let mut reads = 0u32;
    loop {
        reads += 1;
        let last_error = match in_effect(graph, step).await {
            Ok(true) => return Verification::Verified { reads },
            Ok(false) => None,
            Err(e) if e.is_transient() => Some(e.to_string()),
            Err(e) => {
                return Verification::Failed {
                    why: format!("reading the change back failed: {e}"),
                    reads,
                };
            }
        };
        if start.elapsed() + delay > policy.timeout {
            let seen = match step {
                Step::AddGroupLink { .. } => "the new grant did not appear in Microsoft Graph",
                Step::RemoveGroupLink { .. } => "the revoked grant was still in Microsoft Graph",
            };
            let why = match last_error {
                Some(e) => format!(
                    "{seen} within {} s ({reads} reads; last read failed: {e})",
                    policy.timeout.as_secs()
                ),
                None => format!(
                    "{seen} within {} s ({reads} reads): Graph accepted the change but it did not take effect; check the object in Entra",
                    policy.timeout.as_secs()
                ),
            };
            return Verification::Failed { why, reads };
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(policy.max_delay);
    }
}
