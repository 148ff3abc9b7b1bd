//! Uploading a sync file as the batches of a sync task: gzip, in order, each acknowledged
//! before the next; after a lost connection it asks Latchkey where to go on, so nothing is
//! sent twice into the data and nothing is skipped.

use super::LatchkeyConfig;
use super::client::{Body, Client, ClientError};
use super::service::{self, Held, TaskOut};
use super::spool::{self, SyncFile};
use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the task was taken back by Latchkey (missed heartbeats or cancelled)")]
    LeaseLost,
    /// The sync was read from another Entra tenant than the one the connector syncs: Latchkey
    /// refused it, nothing of it was saved (Latchkey's explanation).
    #[error("Latchkey refused the sync: {0}")]
    TenantMismatch(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

fn gzip(v: &impl Serialize) -> anyhow::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    serde_json::to_writer(&mut enc, v)?;
    Ok(enc.finish()?)
}

fn lost(a: &super::client::Answer) -> bool {
    a.status == StatusCode::CONFLICT && a.code() == "lease_lost"
}

/// The refusal of data read from another tenant than the connector's, if `a` is one.
fn tenant_mismatch(a: &super::client::Answer) -> Option<UploadError> {
    (a.status == StatusCode::CONFLICT && a.code() == "tenant_mismatch")
        .then(|| UploadError::TenantMismatch(a.message()))
}

/// The header naming the Entra tenant a sync file was read from.
const TENANT_HEADER: &str = "Latchkey-Tenant";

async fn next_seq(client: &Client, task: Uuid, lease: Uuid) -> Result<u64, UploadError> {
    let a = client
        .call(
            Method::GET,
            &format!("tasks/{task}/batches"),
            Some(lease),
            &Body::None,
        )
        .await?;
    if lost(&a) {
        return Err(UploadError::LeaseLost);
    }
    if !a.status.is_success() {
        return Err(ClientError::Refused {
            status: a.status,
            message: a.message(),
        }
        .into());
    }
    Ok(a.body.get("next_seq").and_then(Value::as_u64).unwrap_or(0))
}

/// Uploads every batch of `file` for task `task`, from where Latchkey says it stands.
pub async fn upload_batches(
    client: &Client,
    task: Uuid,
    lease: Uuid,
    file: &SyncFile,
    pause: std::time::Duration,
) -> Result<u64, UploadError> {
    let total = file.end.batches;
    let mut next = next_seq(client, task, lease).await?;
    'resume: while next < total {
        for batch in file.batches_from(next)? {
            let batch = batch?;
            let seq = batch.seq;
            if !pause.is_zero() && seq > 0 {
                tokio::time::sleep(pause).await;
            }
            let body = Body::Gzip(gzip(&batch)?);
            let a = client
                .call_with(
                    Method::PUT,
                    &format!("tasks/{task}/batches/{seq}"),
                    Some(lease),
                    &[(TENANT_HEADER, file.header.tenant_id.as_str())],
                    &body,
                )
                .await?;
            if lost(&a) {
                return Err(UploadError::LeaseLost);
            }
            if let Some(refused) = tenant_mismatch(&a) {
                return Err(refused);
            }
            if a.status == StatusCode::CONFLICT {
                // Out of order (an acknowledgement was lost): ask where to go on.
                next = next_seq(client, task, lease).await?;
                continue 'resume;
            }
            if !a.status.is_success() {
                return Err(ClientError::Refused {
                    status: a.status,
                    message: a.message(),
                }
                .into());
            }
            next = a
                .body
                .get("next_seq")
                .and_then(Value::as_u64)
                .unwrap_or(seq + 1);
            if next != seq + 1 {
                continue 'resume;
            }
        }
        // Every line read: re-check with the server (it decides what arrived).
        next = next_seq(client, task, lease).await?;
    }
    Ok(total)
}

/// Reports a finished upload: the server checks every batch arrived, then sweeps and expands.
pub async fn report_success(
    client: &Client,
    task: Uuid,
    lease: Uuid,
    file: &SyncFile,
) -> Result<Value, UploadError> {
    let body = Body::Json(json!({"sync": {
        "status": "succeeded",
        "batches": file.end.batches,
        "stats": file.end.stats,
        "warnings": file.end.warnings,
        "unread": file.end.unread,
        "tenant_id": file.header.tenant_id,
    }}));
    let a = client
        .call(
            Method::POST,
            &format!("tasks/{task}/result"),
            Some(lease),
            &body,
        )
        .await?;
    if lost(&a) {
        return Err(UploadError::LeaseLost);
    }
    if let Some(refused) = tenant_mismatch(&a) {
        return Err(refused);
    }
    if !a.status.is_success() {
        return Err(ClientError::Refused {
            status: a.status,
            message: a.message(),
        }
        .into());
    }
    Ok(a.body)
}

/// Reports that the sync failed (`transient`: Latchkey offers it again later).
pub async fn report_failure(
    client: &Client,
    task: Uuid,
    lease: Uuid,
    error: &str,
    transient: bool,
) -> Result<(), ClientError> {
    let body = Body::Json(json!({"sync": {
        "status": "failed",
        "error": error,
        "transient": transient,
    }}));
    client
        .call(
            Method::POST,
            &format!("tasks/{task}/result"),
            Some(lease),
            &body,
        )
        .await?;
    Ok(())
}

#[derive(Serialize)]
pub struct Uploaded {
    pub task_id: Uuid,
    pub tenant_id: String,
    pub batches: u64,
    pub status: Value,
}

/// `latchkey connector upload FILE`: a new sync of this connector whose data is the file.
/// Latchkey refuses a file read from another Entra tenant than the connector's earlier syncs
/// before anything of it is written.
pub async fn upload_file(config: &LatchkeyConfig, path: &Path) -> anyhow::Result<Uploaded> {
    let file = spool::open(path)?;
    let client = Arc::new(Client::new(config, None)?);
    let task: TaskOut = {
        let a = client
            .call(
                Method::POST,
                "syncs",
                None,
                &Body::Json(json!({
                    "reason": format!("uploaded from {}", path.display()),
                    "tenant_id": file.header.tenant_id,
                })),
            )
            .await?;
        if let Some(refused) = tenant_mismatch(&a) {
            return Err(
                anyhow::Error::new(refused).context(format!("{} was not uploaded", path.display()))
            );
        }
        if !a.status.is_success() {
            return Err(anyhow::Error::new(ClientError::Refused {
                status: a.status,
                message: a.message(),
            })
            .context(format!("{} was not uploaded", path.display())));
        }
        serde_json::from_value(a.body)?
    };
    let held = Held::new();
    held.add(task.id, task.lease);
    let beat = service::heartbeats(
        client.clone(),
        held.clone(),
        config.poll_interval,
        config.provisioning,
    );
    let work = async {
        let n = upload_batches(&client, task.id, task.lease, &file, config.upload_pause).await?;
        let status = report_success(&client, task.id, task.lease, &file).await?;
        Ok::<_, UploadError>(Uploaded {
            task_id: task.id,
            tenant_id: file.header.tenant_id.clone(),
            batches: n,
            status,
        })
    };
    let result = tokio::select! {
        r = work => r,
        _ = beat => unreachable!("heartbeats run until stopped"),
    };
    if let Err(UploadError::TenantMismatch(why)) = &result {
        // Refused for good: the task ends now rather than when its lease runs out.
        report_failure(&client, task.id, task.lease, why, false).await?;
    }
    held.remove(task.id);
    result
        .map_err(|e| anyhow::Error::new(e).context(format!("{} was not uploaded", path.display())))
}
