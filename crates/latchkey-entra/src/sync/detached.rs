//! The sync without a database, for self-hosted connectors: the same reads and mapping as a
//! hosted full sync, with each page's writes recorded as a [`Batch`] instead of written. The
//! server applies batches with [`ingest`], which runs the very writes a hosted sync runs
//! ([`write_page`], `merge_profiles`), and ends the run with the same sweep and expansion
//! ([`super::finish_full`]) once every batch has arrived.
//!
//! The file format of `latchkey connector sync --output FILE` is a sequence of these records,
//! one JSON object per line ([`Line`]); docs/connector-sync-format.md describes it.

use super::{Checkpoint, Counts, Out, Run, SyncError, SyncKind, SyncOptions};
use crate::graph::GraphClient;
use crate::onboarding::EntraSettings;
use latchkey_jobs::{JobError, LogLevel};
use latchkey_store::resources::{
    self, EntitlementRow, GRANT_KINDS, GrantRow, RESOURCE_TYPES, ResourceRow,
};
use latchkey_store::{OrgTx, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use uuid::Uuid;

/// The job kind of a sync a self-hosted connector runs (claimed by the connector, never by a
/// worker); its id is the sync run's, as for hosted syncs.
pub const AGENT_SYNC_JOB: &str = "connector_agent.sync";

/// Version of the file format and of uploaded batches.
pub const FORMAT_VERSION: u32 = 1;

/// Rows at most in one batch (a page of group memberships can hold many more).
pub const MAX_BATCH_ROWS: usize = 5000;

/// A page's writes, hosted or ingested: resources, then entitlements, then grants, in one
/// transaction.
pub async fn write_page(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    res: &[ResourceRow],
    ents: &[EntitlementRow],
    grants: &[GrantRow],
) -> Result<(), StoreError> {
    resources::upsert_resources(tx, connector, run, res).await?;
    resources::upsert_entitlements(tx, connector, run, ents).await?;
    resources::upsert_grants(tx, connector, run, grants).await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireResource {
    #[serde(rename = "type")]
    pub rtype: String,
    pub key: String,
    pub external_id: String,
    pub display_name: String,
    pub profile: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEntitlement {
    pub resource_key: String,
    pub slug: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireGrant {
    pub resource_key: String,
    pub slug: String,
    pub principal_key: String,
    pub kind: String,
    pub source: String,
    pub external_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// Fields merged into a resource's profile (sign-in activity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireProfile {
    pub key: String,
    pub fields: Value,
}

/// One batch of a sync: rows of one page (or part of one), or profile merges.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// 0, 1, 2, …: batches are applied in this order, each exactly once.
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<WireResource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<WireEntitlement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<WireGrant>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<WireProfile>,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.resources.len() + self.entitlements.len() + self.grants.len() + self.profiles.len()
    }
}

/// The first line of a sync file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    pub kind: SyncKind,
    pub tenant_id: String,
    pub graph_domain: String,
    pub started_at: String,
    pub connector_version: String,
}

/// The last line of a complete sync file: without it the file is incomplete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct End {
    /// How many batch lines precede it.
    pub batches: u64,
    /// The run's stats, as a hosted run records them (before the server's sweep adds
    /// `deleted`).
    pub stats: Value,
    pub warnings: Vec<String>,
    /// Grant kinds a missing licence kept the sync from reading: the sweep keeps them.
    pub unread: Vec<String>,
    pub finished_at: String,
}

/// One line of a sync file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    Header(Header),
    Batch(Batch),
    End(End),
}

/// Why an uploaded batch was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("unknown resource type {0:?}")]
    ResourceType(String),
    #[error("unknown grant kind {0:?}")]
    GrantKind(String),
    #[error("an empty key or slug")]
    EmptyKey,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn resource_type(t: &str) -> Result<&'static str, IngestError> {
    RESOURCE_TYPES
        .iter()
        .copied()
        .find(|k| *k == t)
        .ok_or_else(|| IngestError::ResourceType(t.to_string()))
}

fn grant_kind(k: &str) -> Result<&'static str, IngestError> {
    GRANT_KINDS
        .iter()
        .copied()
        .find(|g| *g == k)
        .ok_or_else(|| IngestError::GrantKind(k.to_string()))
}

fn nonempty(s: &str) -> Result<(), IngestError> {
    if s.is_empty() {
        Err(IngestError::EmptyKey)
    } else {
        Ok(())
    }
}

/// The store rows of a batch, checked (types and kinds the model knows, keys present).
#[allow(clippy::type_complexity)]
pub fn rows_of(
    b: &Batch,
) -> Result<(Vec<ResourceRow>, Vec<EntitlementRow>, Vec<GrantRow>), IngestError> {
    let res = b
        .resources
        .iter()
        .map(|r| {
            nonempty(&r.key)?;
            Ok(ResourceRow {
                rtype: resource_type(&r.rtype)?,
                key: r.key.clone(),
                external_id: r.external_id.clone(),
                display_name: r.display_name.clone(),
                profile: r.profile.clone(),
            })
        })
        .collect::<Result<Vec<_>, IngestError>>()?;
    let ents = b
        .entitlements
        .iter()
        .map(|e| {
            nonempty(&e.resource_key)?;
            nonempty(&e.slug)?;
            Ok(EntitlementRow {
                resource_key: e.resource_key.clone(),
                slug: e.slug.clone(),
                display_name: e.display_name.clone(),
            })
        })
        .collect::<Result<Vec<_>, IngestError>>()?;
    let grants = b
        .grants
        .iter()
        .map(|g| {
            nonempty(&g.resource_key)?;
            nonempty(&g.principal_key)?;
            nonempty(&g.slug)?;
            Ok(GrantRow {
                resource_key: g.resource_key.clone(),
                slug: g.slug.clone(),
                principal_key: g.principal_key.clone(),
                kind: grant_kind(&g.kind)?,
                source: g.source.clone(),
                external_id: g.external_id.clone(),
                details: g.details.clone(),
            })
        })
        .collect::<Result<Vec<_>, IngestError>>()?;
    Ok((res, ents, grants))
}

/// Applies one uploaded batch of run `run` in `tx`: the hosted sync's writes for its page.
pub async fn ingest(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    batch: &Batch,
) -> Result<Counts, IngestError> {
    let (res, ents, grants) = rows_of(batch)?;
    write_page(tx, connector, run, &res, &ents, &grants).await?;
    if !batch.profiles.is_empty() {
        let patches: Vec<(String, Value)> = batch
            .profiles
            .iter()
            .map(|p| (p.key.clone(), p.fields.clone()))
            .collect();
        resources::merge_profiles(tx, connector, &patches).await?;
    }
    let mut c = Counts::default();
    c.add(&res, &ents, &grants);
    Ok(c)
}

/// A log line of a detached sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
    pub fields: Value,
}

/// What a detached sync hands its consumer, in order.
#[derive(Debug)]
pub enum Record {
    /// Rows to upload (`seq` is assigned by the consumer, in the order received).
    Batch(Batch),
    Log(LogLine),
    Progress(Value),
}

/// Where a detached sync sends its batches, logs and progress, and how it is stopped.
pub struct Recorder {
    out: mpsc::Sender<Record>,
    stop: Arc<AtomicBool>,
    on_premises: Mutex<HashSet<String>>,
}

fn to_wire_resource(r: &ResourceRow) -> WireResource {
    WireResource {
        rtype: r.rtype.to_string(),
        key: r.key.clone(),
        external_id: r.external_id.clone(),
        display_name: r.display_name.clone(),
        profile: r.profile.clone(),
    }
}

fn to_wire_grant(g: &GrantRow) -> WireGrant {
    WireGrant {
        resource_key: g.resource_key.clone(),
        slug: g.slug.clone(),
        principal_key: g.principal_key.clone(),
        kind: g.kind.to_string(),
        source: g.source.clone(),
        external_id: g.external_id.clone(),
        details: g.details.clone(),
    }
}

impl Recorder {
    /// A recorder sending to `out`; setting `stop` stops the sync at its next check.
    pub fn new(out: mpsc::Sender<Record>, stop: Arc<AtomicBool>) -> Self {
        Self {
            out,
            stop,
            on_premises: Mutex::new(HashSet::new()),
        }
    }

    pub(super) fn check(&self) -> Result<(), JobError> {
        if self.stop.load(Ordering::Relaxed) {
            Err(JobError::Cancelled)
        } else {
            Ok(())
        }
    }

    async fn send(&self, r: Record) -> Result<(), SyncError> {
        self.out.send(r).await.map_err(|_| {
            SyncError::Job(JobError::permanent(
                "the sync's output was closed before it finished",
            ))
        })
    }

    pub(super) async fn log(&self, level: LogLevel, message: &str, fields: Value) {
        // A closed output fails the next batch; a log line alone is not worth an error.
        let _ = self
            .out
            .send(Record::Log(LogLine {
                level,
                message: message.to_string(),
                fields,
            }))
            .await;
    }

    pub(super) async fn progress(&self, progress: Value) {
        let _ = self.out.send(Record::Progress(progress)).await;
    }

    /// On-premises-synced users recorded so far (what a hosted sync reads back from the store).
    pub(super) fn on_premises_users(&self) -> HashSet<String> {
        self.on_premises
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) async fn page(
        &self,
        res: &[ResourceRow],
        ents: &[EntitlementRow],
        grants: &[GrantRow],
    ) -> Result<(), SyncError> {
        {
            let mut on_prem = self.on_premises.lock().unwrap_or_else(|e| e.into_inner());
            for r in res.iter().filter(|r| r.rtype == "user") {
                if r.profile.get("on_premises_sync_enabled") == Some(&Value::Bool(true)) {
                    on_prem.insert(r.external_id.clone());
                }
            }
        }
        // Resources first, then entitlements, then grants, split so no batch is too big; the
        // order keeps every batch applicable on its own after the ones before it.
        let mut batch = Batch::default();
        for r in res {
            batch.resources.push(to_wire_resource(r));
            batch = self.flush_if_full(batch).await?;
        }
        for e in ents {
            batch.entitlements.push(WireEntitlement {
                resource_key: e.resource_key.clone(),
                slug: e.slug.clone(),
                display_name: e.display_name.clone(),
            });
            batch = self.flush_if_full(batch).await?;
        }
        for g in grants {
            batch.grants.push(to_wire_grant(g));
            batch = self.flush_if_full(batch).await?;
        }
        if batch.rows() > 0 {
            self.send(Record::Batch(batch)).await?;
        }
        Ok(())
    }

    async fn flush_if_full(&self, batch: Batch) -> Result<Batch, SyncError> {
        if batch.rows() >= MAX_BATCH_ROWS {
            self.send(Record::Batch(batch)).await?;
            Ok(Batch::default())
        } else {
            Ok(batch)
        }
    }

    pub(super) async fn profiles(&self, patches: Vec<(String, Value)>) -> Result<(), SyncError> {
        for chunk in patches.chunks(MAX_BATCH_ROWS) {
            let batch = Batch {
                profiles: chunk
                    .iter()
                    .map(|(key, fields)| WireProfile {
                        key: key.clone(),
                        fields: fields.clone(),
                    })
                    .collect(),
                ..Batch::default()
            };
            self.send(Record::Batch(batch)).await?;
        }
        Ok(())
    }
}

/// What a detached sync produced besides its batches.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub stats: Value,
    pub warnings: Vec<String>,
    pub unread: Vec<String>,
}

/// Runs a full sync of the tenant `graph` reaches, with `settings`' options, sending
/// everything to `recorder`. Nothing is deleted here: the server sweeps once it has every
/// batch.
pub async fn run(
    graph: GraphClient,
    settings: EntraSettings,
    options: SyncOptions,
    recorder: &Recorder,
) -> Result<Outcome, SyncError> {
    let started = std::time::Instant::now();
    let run = Run {
        out: Out::Detached(recorder),
        // Ids are derived on the server, with the server's connector and run.
        connector: Uuid::nil(),
        run: Uuid::nil(),
        graph,
        settings,
        options,
        cp: Mutex::new(Checkpoint {
            kind: Some(SyncKind::Full),
            ..Checkpoint::default()
        }),
        saves: Default::default(),
    };
    run.info("Starting a full sync").await?;
    super::full(&run).await?;
    let stats = run.stats(started);
    let cp = run.cp().clone();
    run.log(
        LogLevel::Info,
        "Read the whole tenant; the upload completes the sync.",
        json!({}),
    )
    .await?;
    Ok(Outcome {
        stats,
        warnings: cp.warnings,
        unread: cp.unread,
    })
}
