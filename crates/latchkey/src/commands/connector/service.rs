//! Service mode: heartbeat, ask for tasks, run them with the same sync and provisioning code
//! as hosted connectors, sync on its own every `LATCHKEY_SYNC_INTERVAL`, report results.
//! Latchkey being unreachable only slows it down (backoff); a task taken back by Latchkey
//! (missed heartbeats) is dropped, and Latchkey offers it again as a fresh attempt.

use super::client::{Body, Client, ClientError};
use super::upload::{self, UploadError};
use super::{EntraConfig, LatchkeyConfig, spool};
use latchkey_entra::graph::GraphClient;
use latchkey_entra::provision::VerifyPolicy;
use latchkey_entra::provision::agent::{self as prov, AgentTask};
use latchkey_entra::provision::agent_account::{self as prov_account, AccountTask};
use latchkey_entra::sync::SyncError;
use latchkey_entra::sync::detached::LogLine;
use latchkey_jobs::LogLevel;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use uuid::Uuid;

/// A task as Latchkey hands it out.
#[derive(Debug, Deserialize)]
pub struct TaskOut {
    pub id: Uuid,
    pub lease: Uuid,
    pub attempt: i32,
    #[serde(rename = "type")]
    pub ttype: String,
    #[serde(default)]
    pub provision: Option<AgentTask>,
    /// An account task (a new account's password is in it: never logged).
    #[serde(default)]
    pub account: Option<AccountTask>,
}

/// The tasks this process holds (their leases are renewed by the heartbeats), each with the
/// flag that stops it.
#[derive(Clone, Default)]
pub struct Held(Arc<Mutex<Tasks>>);

/// Task id → (lease, stop flag).
type Tasks = HashMap<Uuid, (Uuid, Arc<AtomicBool>)>;

impl Held {
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, Tasks> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, id: Uuid, lease: Uuid) -> Arc<AtomicBool> {
        let stop = Arc::new(AtomicBool::new(false));
        self.map().insert(id, (lease, stop.clone()));
        stop
    }

    pub fn remove(&self, id: Uuid) {
        self.map().remove(&id);
    }

    fn list(&self) -> Vec<Value> {
        self.map()
            .iter()
            .map(|(id, (lease, _))| json!({"id": id, "lease": lease}))
            .collect()
    }

    fn stop(&self, id: Uuid) {
        if let Some((_, flag)) = self.map().get(&id) {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Heartbeats every `every` until dropped; tasks Latchkey no longer lets this process hold
/// (or wants cancelled) are stopped.
pub async fn heartbeats(client: Arc<Client>, held: Held, every: Duration, provisioning: bool) {
    let host = host_name();
    loop {
        let body = Body::Json(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "host": host,
            "provisioning": provisioning,
            "tasks": held.list(),
        }));
        match client.ok(Method::POST, "heartbeat", None, &body).await {
            Ok(a) => {
                for t in a
                    .body
                    .get("tasks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let held_now = t.get("held").and_then(Value::as_bool).unwrap_or(true);
                    let cancel = t
                        .get("cancel_requested")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    if (!held_now || cancel)
                        && let Some(id) = t
                            .get("id")
                            .and_then(Value::as_str)
                            .and_then(|s| Uuid::parse_str(s).ok())
                    {
                        tracing::warn!(task = %id, "Latchkey took the task back; stopping it");
                        held.stop(id);
                    }
                }
            }
            Err(ClientError::Unauthorized(why)) => {
                tracing::error!("Latchkey refused the connector's credentials: {why}");
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Forwards log lines of a task to Latchkey (best effort: a lost line is not worth a retry
/// loop that holds the task up).
fn log_forwarder(
    client: Arc<Client>,
    task: Uuid,
    lease: Uuid,
) -> (mpsc::UnboundedSender<LogLine>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<LogLine>();
    let handle = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut lines = vec![first];
            while let Ok(l) = rx.try_recv() {
                lines.push(l);
                if lines.len() >= 100 {
                    break;
                }
            }
            let body = Body::Json(json!({"lines": lines}));
            if let Err(e) = client
                .call(
                    Method::POST,
                    &format!("tasks/{task}/logs"),
                    Some(lease),
                    &body,
                )
                .await
            {
                tracing::warn!(error = %e, "could not send log lines to Latchkey");
            }
        }
    });
    (tx, handle)
}

fn transient(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<SyncError>() {
        Some(SyncError::Graph(g)) => g.is_transient(),
        Some(SyncError::Connect(_)) => false,
        _ => true,
    }
}

async fn run_sync(
    client: &Arc<Client>,
    entra: &EntraConfig,
    latchkey: &LatchkeyConfig,
    held: &Held,
    task: &TaskOut,
) -> anyhow::Result<()> {
    let stop = held.add(task.id, task.lease);
    let (logs, forwarder) = log_forwarder(client.clone(), task.id, task.lease);
    let path = spool::task_path(&latchkey.spool_dir, task.id, task.attempt);
    // A crash (or kill) during an earlier attempt left its file behind.
    let stale = spool::remove_earlier_attempts(&latchkey.spool_dir, task.id, task.attempt);
    if stale > 0 {
        tracing::info!(task = %task.id, files = stale, "removed the sync files of the task's earlier attempts");
    }
    let result = async {
        let written = {
            let logs = logs.clone();
            spool::sync_to_file_with(entra, &path, stop.clone(), move |l| {
                tracing::info!("{}", l.message);
                let _ = logs.send(l);
            })
            .await
        };
        match written {
            Ok(w) => {
                tracing::info!(batches = w.batches, "sync read; uploading");
                let _ = logs.send(LogLine {
                    level: LogLevel::Info,
                    message: format!(
                        "Uploading {} batches from the self-hosted connector",
                        w.batches
                    ),
                    fields: json!({}),
                });
                let file = spool::open(&path)?;
                match upload::upload_batches(client, task.id, task.lease, &file, latchkey.upload_pause).await {
                    Ok(_) => {
                        drop(logs);
                        let _ = forwarder.await;
                        upload::report_success(client, task.id, task.lease, &file).await?;
                        tracing::info!(task = %task.id, "sync uploaded and finished");
                        Ok(())
                    }
                    Err(UploadError::LeaseLost) => {
                        tracing::warn!(task = %task.id, "the sync was taken back during the upload; Latchkey offers it again");
                        Ok(())
                    }
                    Err(UploadError::TenantMismatch(why)) => {
                        tracing::error!("Latchkey refused the sync: {why}");
                        upload::report_failure(client, task.id, task.lease, &why, false).await?;
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Err(_) if stop.load(Ordering::Relaxed) => {
                tracing::warn!(task = %task.id, "the sync was stopped (taken back or cancelled)");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "the sync failed");
                upload::report_failure(client, task.id, task.lease, &format!("{e:#}"), transient(&e)).await?;
                Ok(())
            }
        }
    }
    .await;
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("partial"));
    held.remove(task.id);
    result
}

async fn run_provision(
    client: &Arc<Client>,
    graph: &GraphClient,
    latchkey: &LatchkeyConfig,
    held: &Held,
    task: &TaskOut,
) -> anyhow::Result<()> {
    let Some(planned) = &task.provision else {
        anyhow::bail!("a provisioning task without its plan");
    };
    held.add(task.id, task.lease);
    tracing::info!(task = %task.id, "{}", planned.summary);
    let outcome = prov::carry_out(
        graph,
        planned,
        latchkey.provisioning,
        VerifyPolicy::default(),
    )
    .await;
    report_result(
        client,
        held,
        task,
        Body::Json(json!({ "provision": outcome })),
    )
    .await
}

async fn run_account(
    client: &Arc<Client>,
    graph: &GraphClient,
    latchkey: &LatchkeyConfig,
    held: &Held,
    task: &TaskOut,
) -> anyhow::Result<()> {
    let Some(planned) = &task.account else {
        anyhow::bail!("an account task without its plan");
    };
    held.add(task.id, task.lease);
    tracing::info!(task = %task.id, "{}", planned.summary);
    let outcome = prov_account::carry_out(
        graph,
        planned,
        latchkey.provisioning,
        latchkey.allow_account_deletion,
        VerifyPolicy::default(),
    )
    .await;
    report_result(
        client,
        held,
        task,
        Body::Json(json!({ "account": outcome })),
    )
    .await
}

/// Sends a provisioning or account task's outcome and lets go of the task's lease.
async fn report_result(
    client: &Arc<Client>,
    held: &Held,
    task: &TaskOut,
    body: Body,
) -> anyhow::Result<()> {
    let r = client
        .call(
            Method::POST,
            &format!("tasks/{}/result", task.id),
            Some(task.lease),
            &body,
        )
        .await;
    held.remove(task.id);
    let a = r?;
    if !a.status.is_success() {
        tracing::warn!(status = %a.status, "Latchkey did not take the task's result: {}", a.message());
    }
    Ok(())
}

pub async fn run(entra: EntraConfig, latchkey: LatchkeyConfig) -> anyhow::Result<()> {
    let conn = super::connect(&entra).await?;
    let client = Arc::new(Client::new(&latchkey, None)?);
    let held = Held::new();
    let stop = crate::shutdown::on_signal();
    tracing::info!(url = %latchkey.url, provisioning = latchkey.provisioning, "self-hosted connector starting");
    let beat = tokio::spawn(heartbeats(
        client.clone(),
        held.clone(),
        latchkey.poll_interval,
        latchkey.provisioning,
    ));
    let mut last_sync: Option<Instant> = None;
    let work = async {
        loop {
            let next = client
                .call(Method::POST, "tasks/next", None, &Body::None)
                .await?;
            let task: Option<TaskOut> = match next.status {
                StatusCode::OK => Some(serde_json::from_value(next.body)?),
                StatusCode::NO_CONTENT => {
                    if last_sync.is_none_or(|t| t.elapsed() >= latchkey.sync_interval) {
                        // Asked at each claim: a token missing at start-up must not leave a
                        // domain name standing in for the tenant's id for good.
                        let tenant_id =
                            super::tenant_guid(&conn, &entra.settings.auth.tenant_id).await;
                        let a = client
                            .call(
                                Method::POST,
                                "syncs",
                                None,
                                &Body::Json(json!({
                                    "reason": "the self-hosted connector's sync interval",
                                    "tenant_id": tenant_id,
                                })),
                            )
                            .await?;
                        match a.status {
                            StatusCode::CREATED => Some(serde_json::from_value(a.body)?),
                            StatusCode::CONFLICT if a.code() == "tenant_mismatch" => {
                                // Tried again at the next interval: the settings may be fixed.
                                last_sync = Some(Instant::now());
                                tracing::error!("Latchkey refused the sync: {}", a.message());
                                None
                            }
                            _ => None,
                        }
                    } else {
                        None
                    }
                }
                other => {
                    tracing::warn!(status = %other, "Latchkey did not hand out tasks: {}", next.message());
                    None
                }
            };
            match task {
                Some(t) if t.ttype == "sync" => {
                    last_sync = Some(Instant::now());
                    if let Err(e) = run_sync(&client, &entra, &latchkey, &held, &t).await {
                        tracing::error!(error = %e, "sync task failed");
                    }
                }
                Some(t) if t.ttype == "account" => {
                    if let Err(e) = run_account(&client, &conn.graph, &latchkey, &held, &t).await {
                        tracing::error!(error = %e, "account task failed");
                    }
                }
                Some(t) => {
                    if let Err(e) = run_provision(&client, &conn.graph, &latchkey, &held, &t).await
                    {
                        tracing::error!(error = %e, "provisioning task failed");
                    }
                }
                None => tokio::time::sleep(latchkey.poll_interval).await,
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    };
    let result = tokio::select! {
        r = work => r,
        _ = stop.cancelled() => Ok(()),
    };
    beat.abort();
    tracing::info!("self-hosted connector stopped");
    result
}
