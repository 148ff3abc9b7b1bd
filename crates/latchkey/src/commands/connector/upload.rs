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
                .call(
                    Method::PUT,
                    &format!("tasks/{task}/batches/{seq}"),
                    Some(lease),
                    &body,
                )
                .await?;
            if lost(&a) {
                return Err(UploadError::LeaseLost);
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
    if !a.status.is_success() {
        return Err(ClientError::Refused {
            status: a.status,
            message: a.message(),
        }
        .into());
    }
    Ok(a.body)
}

#[derive(Serialize)]
pub struct Uploaded {
    pub task_id: Uuid,
    pub tenant_id: String,
    pub batches: u64,
    pub status: Value,
}

/// `latchkey connector upload FILE`: a new sync of this connector whose data is the file.
pub async fn upload_file(config: &LatchkeyConfig, path: &Path) -> anyhow::Result<Uploaded> {
    let file = spool::open(path)?;
    let client = Arc::new(Client::new(config, None)?);
    let task: TaskOut = {
        let a = client
            .ok(
                Method::POST,
                "syncs",
                None,
                &Body::Json(json!({"reason": format!("uploaded from {}", path.display())})),
            )
            .await?;
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
    held.remove(task.id);
    Ok(result?)
}
