//! The JSON view of a connector shared by the API and the pages (never the secret).

use latchkey_store::connectors::{self, Connector, Owner};
use latchkey_store::jobs::{self as queue, Job, JobId};
use latchkey_store::{OrgTx, Result};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct AppRef {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectorView {
    pub id: Uuid,
    pub kind: String,
    pub display_name: String,
    pub app: AppRef,
    pub owners: Vec<Owner>,
    pub status: String,
    pub status_reason: Option<String>,
    pub settings: Option<Value>,
    pub capabilities: Option<Value>,
    pub last_sync: Option<Value>,
    pub last_test: Option<Value>,
    /// Self-hosted connectors: online status (last heartbeat, version, host) and client ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_hosted: Option<crate::connector_agent::AgentView>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

fn rfc3339(t: Option<time::OffsetDateTime>) -> Value {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .map(Value::String)
    .unwrap_or(Value::Null)
}

fn job_summary(jobs: &[Job], id: Option<Uuid>) -> Option<Value> {
    let job = jobs.iter().find(|j| Some(j.id.as_uuid()) == id)?;
    Some(json!({
        "job_id": job.id,
        "status": job.status,
        "started_at": rfc3339(job.started_at),
        "finished_at": rfc3339(job.finished_at),
        "error": job.last_error,
        "progress": job.progress,
    }))
}

pub async fn connector_view(tx: &mut OrgTx, row: Connector) -> Result<ConnectorView> {
    // Two statements for the owners, the secret flag and both last jobs: this view answers
    // every status poll of a connector.
    let (owners, secret_set) = connectors::owners_and_secret(
        tx,
        row.id,
        latchkey_entra::onboarding::connection_test::secret_ref(row.id),
    )
    .await?;
    let job_ids: Vec<JobId> = [row.last_sync_job_id, row.last_test_job_id]
        .into_iter()
        .flatten()
        .map(JobId)
        .collect();
    let jobs = queue::get_many(tx, &job_ids).await?;
    let settings = row.settings.map(|mut s| {
        if let Value::Object(map) = &mut s {
            map.insert("client_secret_set".into(), Value::Bool(secret_set));
            map.insert("client_secret_set_at".into(), rfc3339(row.secret_set_at));
            map.insert(
                "client_secret_expires_at".into(),
                rfc3339(row.secret_expires_at),
            );
        }
        s
    });
    let mut last_sync = job_summary(&jobs, row.last_sync_job_id);
    if let Some(Value::Object(m)) = &mut last_sync {
        m.insert("synced_at".into(), rfc3339(row.last_sync_at));
    }
    let last_test = job_summary(&jobs, row.last_test_job_id);
    let self_hosted = if row.kind == crate::connector_agent::SELF_HOSTED {
        Some(crate::connector_agent::view(tx, row.id).await?)
    } else {
        None
    };
    Ok(ConnectorView {
        id: row.id,
        kind: row.kind,
        display_name: row.display_name,
        app: AppRef {
            id: row.app_id,
            name: row.app_name,
        },
        owners,
        status: row.status,
        status_reason: row.status_reason,
        settings,
        capabilities: row.capabilities,
        last_sync,
        last_test,
        self_hosted,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}
