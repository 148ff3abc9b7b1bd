//! After an app role is granted: ask the app's SCIM provisioning (synchronization) job to
//! provision that principal now (`provisionOnDemand`), or start the job when on-demand is not
//! possible, so the downstream app gets the user in seconds rather than at the next cycle.

use http::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::graph::{GraphClient, GraphError, Query};

/// What happened to the downstream app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScimOutcome {
    /// `provisionOnDemand` accepted the principal.
    OnDemand { job: String },
    /// On-demand was refused; the job was started instead.
    Started { job: String, why: String },
    /// The app has no provisioning job: nothing to do (a warning, not a failure).
    NoJob,
}

impl ScimOutcome {
    /// The warning to put on the task, if any.
    pub fn warning(&self) -> Option<String> {
        match self {
            ScimOutcome::OnDemand { .. } => None,
            ScimOutcome::Started { why, .. } => Some(format!(
                "Provision on demand was not possible ({why}); the app's provisioning job was started instead, so the downstream app gets the change at its next cycle."
            )),
            ScimOutcome::NoJob => Some(
                "Schedule SCIM provisioning is on, but this enterprise application has no provisioning job: the downstream app is not provisioned by Entra."
                    .into(),
            ),
        }
    }
}

const SYNC: &str = "Synchronization.ReadWrite.All";

/// Provisions `principal` (a user, or a group when `group`) to `app`'s downstream system now.
pub async fn provision_on_demand(
    graph: &GraphClient,
    app: Uuid,
    principal: Uuid,
    group: bool,
) -> Result<ScimOutcome, GraphError> {
    let jobs: Value = graph
        .get(
            &Query::v1(format!("servicePrincipals/{app}/synchronization/jobs"))
                .needs_permission(SYNC),
        )
        .await?;
    let Some(job) = jobs
        .get("value")
        .and_then(Value::as_array)
        .and_then(|j| j.first())
        .and_then(|j| j.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Ok(ScimOutcome::NoJob);
    };
    let base = format!("servicePrincipals/{app}/synchronization/jobs/{job}");
    let schema: Result<Value, GraphError> = graph
        .get(&Query::v1(format!("{base}/schema")).needs_permission(SYNC))
        .await;
    let rule = schema.ok().and_then(|s| {
        s.get("synchronizationRules")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let why = match rule {
        Some(rule) => {
            let body = json!({"parameters": [{
                "subjects": [{"objectId": principal, "objectTypeName": if group { "Group" } else { "User" }}],
                "ruleId": rule,
            }]});
            match graph
                .send(
                    Method::POST,
                    &Query::v1(format!("{base}/provisionOnDemand")).needs_permission(SYNC),
                    Some(&body),
                )
                .await
            {
                Ok(_) => return Ok(ScimOutcome::OnDemand { job }),
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => e.to_string(),
            }
        }
        None => "the job's schema names no synchronization rule".into(),
    };
    graph
        .send(
            Method::POST,
            &Query::v1(format!("{base}/start")).needs_permission(SYNC),
            None,
        )
        .await?;
    Ok(ScimOutcome::Started { job, why })
}
