//! The Entra sync job (`entra.sync`): reads users, groups, enterprise applications, managed
//! identities, directory roles and licences from Microsoft Graph and stores them as resources,
//! entitlements and grants, page by page, stamped with the sync run.
//!
//! A **full** sync reads everything, then marks deleted what it did not see (only when it
//! succeeded), recomputes expanded grants (nested groups, grants to groups) and records delta
//! links. An **incremental** sync starts from those links (`users/delta`, `groups/delta` with
//! member changes) and the directory audit feed, and refetches only what changed; without
//! usable links it runs as a full sync. Progress is checkpointed after every page, so a sync
//! whose worker died resumes where it stopped.

pub mod agent_finish;
pub mod detached;
pub mod fetch;
mod incremental;
pub mod map;

use crate::endpoints::OutboundPolicy;
use crate::graph::{ApiVersion, GraphClient, GraphError, RequestStats, RetryPolicy};
use crate::onboarding::connection_test::{ConnectError, connect_for_with};
use crate::onboarding::{EntraSettings, LatchkeyApp, SYNC_JOB};
use fetch::RelPage;
use latchkey_core::OrgId;
use latchkey_crypto::KeyRing;
use latchkey_jobs::{JobClass, JobContext, JobError, JobHandler, LogLevel, NewJob, queue};
use latchkey_store::jobs::schedules::{self, NewSchedule};
use latchkey_store::resources::{self, EntitlementRow, GrantRow, ResourceRow};
use latchkey_store::{OrgTx, Store, StoreError, apps, connectors, sync_runs};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

/// Full or incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    Full,
    Incremental,
}

impl SyncKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Full => "full",
            SyncKind::Incremental => "incremental",
        }
    }
}

/// The payload of an `entra.sync` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncPayload {
    pub kind: SyncKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How often the periodic syncs run.
#[derive(Debug, Clone, Copy)]
pub struct SyncSchedule {
    pub incremental_every: Duration,
    /// A full sync every this often (the safety net for what the delta feed misses).
    pub full_every: Duration,
}

impl Default for SyncSchedule {
    fn default() -> Self {
        SyncSchedule {
            incremental_every: Duration::from_secs(15 * 60),
            full_every: Duration::from_secs(24 * 3600),
        }
    }
}

/// The job that enqueues a sync of a connector: the dedupe key makes a second request while one
/// is queued or running return that one.
pub fn sync_job(connector: Uuid, kind: SyncKind, reason: &str) -> NewJob {
    NewJob::new(
        SYNC_JOB,
        json!(SyncPayload {
            kind,
            reason: Some(reason.to_string())
        }),
    )
    .class(JobClass::Sync)
    .connector(connector)
    .dedupe_key(format!("sync:{connector}"))
}

/// Creates or updates the connector's periodic syncs (incremental and full). Called after each
/// successful sync, so a connector that syncs once keeps syncing.
pub async fn install_schedules(
    tx: &mut OrgTx,
    connector: Uuid,
    every: SyncSchedule,
) -> Result<(), StoreError> {
    for (name, kind, period) in [
        (
            format!("sync:{connector}"),
            SyncKind::Incremental,
            every.incremental_every,
        ),
        (
            format!("sync-full:{connector}"),
            SyncKind::Full,
            every.full_every,
        ),
    ] {
        schedules::upsert(
            tx,
            &NewSchedule::new(name, SYNC_JOB, period)
                .payload(json!(SyncPayload {
                    kind,
                    reason: Some("scheduled".into())
                }))
                .connector(connector)
                .class(JobClass::Sync),
        )
        .await?;
    }
    Ok(())
}

/// Why a sync attempt stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Job(#[from] JobError),
}

impl SyncError {
    fn into_job(self) -> JobError {
        match self {
            SyncError::Graph(GraphError::Throttled {
                retry_after: Some(d),
                ..
            }) => JobError::retry_after(
                "Microsoft Graph kept throttling the sync; it resumes from its checkpoint.",
                d,
            ),
            SyncError::Graph(e) if e.is_transient() => JobError::transient(e.to_string()),
            SyncError::Graph(e) => JobError::permanent(e.to_string()),
            SyncError::Store(e) => JobError::from(e),
            SyncError::Connect(ConnectError::Store(e)) => JobError::from(e),
            SyncError::Connect(e) => JobError::permanent(e.to_string()),
            SyncError::Job(e) => e,
        }
    }
}

/// Tuning of the sync.
#[derive(Debug, Clone, Copy)]
pub struct SyncOptions {
    /// `$batch` requests in flight when reading many small collections.
    pub concurrency: usize,
    /// Items per page asked of delta queries (`Prefer: odata.maxpagesize`).
    pub delta_page: u32,
    /// Database connections the sync writes through at once.
    pub db_writers: usize,
    pub schedule: SyncSchedule,
    /// The Graph client's retry limits for one attempt of the job (throttling, 5xx,
    /// timeouts); past them the job is retried by the queue, resuming from its checkpoint.
    pub retry: RetryPolicy,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            concurrency: 4,
            delta_page: 999,
            db_writers: 2,
            schedule: SyncSchedule::default(),
            retry: RetryPolicy::default(),
        }
    }
}

/// Runs `entra.sync` jobs.
pub struct SyncHandler {
    keys: Arc<KeyRing>,
    app: Option<LatchkeyApp>,
    policy: OutboundPolicy,
    options: SyncOptions,
}

impl SyncHandler {
    pub fn new(keys: Arc<KeyRing>, app: Option<LatchkeyApp>, policy: OutboundPolicy) -> Self {
        Self {
            keys,
            app,
            policy,
            options: SyncOptions::default(),
        }
    }

    pub fn with_options(mut self, options: SyncOptions) -> Self {
        self.options = options;
        self
    }
}

/// Counts of what a run wrote, per resource type and grant kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub resources: BTreeMap<String, u64>,
    pub entitlements: u64,
    pub grants: BTreeMap<String, u64>,
    pub pages: u64,
    pub deleted: u64,
}

impl Counts {
    fn add(&mut self, res: &[ResourceRow], ents: &[EntitlementRow], grants: &[GrantRow]) {
        for r in res {
            *self.resources.entry(r.rtype.to_string()).or_default() += 1;
        }
        self.entitlements += ents.len() as u64;
        for g in grants {
            *self.grants.entry(g.kind.to_string()).or_default() += 1;
        }
    }
}

/// What a later attempt needs to resume: the phase, where in it, and what was learnt so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Checkpoint {
    run: Option<Uuid>,
    /// Set when an incremental request ran as a full sync (no usable delta links).
    kind: Option<SyncKind>,
    /// Phases finished, and where unfinished ones go on.
    done: BTreeSet<u32>,
    cursors: BTreeMap<u32, String>,
    users_delta: Option<String>,
    groups_delta: Option<String>,
    audit_since: Option<String>,
    counts: Counts,
    warnings: Vec<String>,
    /// Grant kinds a missing licence kept the sync from reading (not swept).
    unread: Vec<String>,
    /// Requests of earlier attempts.
    prior: RequestStats,
    /// Incremental runs: what the audit feed said changed (outer `None`: not read yet; inner
    /// `None`: the feed is off or unavailable).
    audit: Option<Option<incremental::AuditChanges>>,
    /// Incremental runs: what the finishing step rechecks and re-expands (see
    /// [`incremental::Touched`]).
    #[serde(default)]
    touched: incremental::Touched,
    /// When this run started reading sign-in activity's window (the next incremental run reads
    /// sign-ins from then on).
    #[serde(default)]
    sign_in_since: Option<String>,
}

/// The delta links and audit position a successful run leaves for the next incremental one.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursors {
    users_delta: String,
    groups_delta: String,
    audit_since: Option<String>,
    /// Sign-ins from then on are the next incremental run's business.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sign_in_since: Option<String>,
}

/// Where a sync's writes, logs and checkpoints go.
enum Out<'a> {
    /// A hosted sync: page by page into the database; logs, progress and checkpoints on its job.
    Hosted {
        job: &'a JobContext,
        store: &'a Store,
        org: OrgId,
        /// Phases read side by side but write through at most this many connections, so a
        /// sync leaves the worker's pool room for its heartbeats, checkpoints and other jobs.
        writers: tokio::sync::Semaphore,
    },
    /// A self-hosted connector's sync: no database; pages go to a [`detached::Recorder`] and
    /// the server applies them with the same writes ([`detached::ingest`]).
    Detached(&'a detached::Recorder),
}

struct Run<'a> {
    out: Out<'a>,
    connector: Uuid,
    run: Uuid,
    graph: GraphClient,
    settings: EntraSettings,
    options: SyncOptions,
    /// Shared by the phases running concurrently; never held across an await.
    cp: Mutex<Checkpoint>,
    saves: SaveOrder,
}

/// Keeps checkpoint saves in snapshot order: phases save concurrently, and an older snapshot
/// written after a newer one would take the checkpoint back (a resume would then redo
/// finished phases).
#[derive(Default)]
struct SaveOrder {
    /// Numbers the snapshots, taken under the checkpoint's lock so numbers follow its order.
    taken: AtomicU64,
    /// The number of the last snapshot saved; held while saving.
    saved: tokio::sync::Mutex<u64>,
}

fn add_stats(a: RequestStats, b: RequestStats) -> RequestStats {
    RequestStats {
        requests: a.requests + b.requests,
        throttled: a.throttled + b.throttled,
        transient_failures: a.transient_failures + b.transient_failures,
        retries: a.retries + b.retries,
        token_refreshes: a.token_refreshes + b.token_refreshes,
        retry_wait_ms: a.retry_wait_ms + b.retry_wait_ms,
    }
}

/// Statement timeout of the finishing transaction (sweep, expansion) of a large tenant.
const LONG_STATEMENTS: Duration = Duration::from_secs(30 * 60);

const FULL_PHASES: &[&str] = &[
    "enterprise applications and managed identities",
    "users",
    "sign-in activity",
    "groups",
    "group memberships",
    "directory roles",
    "licences",
];

impl<'a> Run<'a> {
    fn cp(&self) -> MutexGuard<'_, Checkpoint> {
        self.cp.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn requests(&self) -> RequestStats {
        add_stats(self.cp().prior, self.graph.stats())
    }

    fn stats(&self, started: std::time::Instant) -> Value {
        let r = self.requests();
        let counts = self.cp().counts.clone();
        json!({
            "resources": counts.resources,
            "entitlements": counts.entitlements,
            "grants": counts.grants,
            "pages": counts.pages,
            "deleted": counts.deleted,
            "requests": r.requests,
            "throttled": r.throttled,
            "retries": r.retries,
            "transient_failures": r.transient_failures,
            "token_refreshes": r.token_refreshes,
            "retry_wait_ms": r.retry_wait_ms,
            "attempt_ms": started.elapsed().as_millis() as u64,
        })
    }

    /// A transaction of the connector's organization: hosted syncs only (a detached sync
    /// never reads or writes the database; it runs full syncs only).
    async fn tx(&self) -> Result<OrgTx, SyncError> {
        match &self.out {
            Out::Hosted { store, org, .. } => Ok(store.org_tx(*org).await?),
            Out::Detached(_) => Err(SyncError::Job(JobError::permanent(
                "this step of the sync needs Latchkey's database; a self-hosted connector runs full syncs only",
            ))),
        }
    }

    /// Stops the run when its job was cancelled or is shutting down.
    fn check(&self) -> Result<(), SyncError> {
        match &self.out {
            Out::Hosted { job, .. } => Ok(job.check()?),
            Out::Detached(r) => Ok(r.check()?),
        }
    }

    async fn log(
        &self,
        level: LogLevel,
        message: impl AsRef<str>,
        fields: Value,
    ) -> Result<(), SyncError> {
        match &self.out {
            Out::Hosted { job, .. } => Ok(job.log(level, message, fields).await?),
            Out::Detached(r) => {
                r.log(level, message.as_ref(), fields).await;
                Ok(())
            }
        }
    }

    async fn info(&self, message: impl AsRef<str>) -> Result<(), SyncError> {
        self.log(LogLevel::Info, message, json!({})).await
    }

    fn is_done(&self, phase: u32) -> bool {
        self.cp().done.contains(&phase)
    }

    /// Writes one page's rows of `phase` in one transaction, then saves the checkpoint
    /// (`cursor` = where the phase goes on).
    async fn write(
        &self,
        phase: u32,
        res: Vec<ResourceRow>,
        ents: Vec<EntitlementRow>,
        grants: Vec<GrantRow>,
        cursor: Option<String>,
    ) -> Result<(), SyncError> {
        match &self.out {
            Out::Hosted { writers, .. } => {
                let _permit = writers.acquire().await.map_err(|_| {
                    SyncError::Job(JobError::transient("the sync's writers were closed"))
                })?;
                let mut tx = self.tx().await?;
                detached::write_page(&mut tx, self.connector, self.run, &res, &ents, &grants)
                    .await?;
                tx.commit().await?;
            }
            Out::Detached(r) => r.page(&res, &ents, &grants).await?,
        }
        self.advance(phase, cursor, |c| c.add(&res, &ents, &grants))
            .await
    }

    /// Merges profile fields (`(resource key, fields)`) of users of `phase`'s page.
    async fn merge_profiles(
        &self,
        phase: u32,
        patches: Vec<(String, Value)>,
        cursor: Option<String>,
    ) -> Result<(), SyncError> {
        match &self.out {
            Out::Hosted { .. } => {
                let mut tx = self.tx().await?;
                resources::merge_profiles(&mut tx, self.connector, &patches).await?;
                tx.commit().await?;
            }
            Out::Detached(r) => r.profiles(patches).await?,
        }
        self.advance(phase, cursor, |_| {}).await
    }

    /// Records a written page of `phase`: counts, where the phase goes on; saves.
    async fn advance(
        &self,
        phase: u32,
        cursor: Option<String>,
        count: impl FnOnce(&mut Counts),
    ) -> Result<(), SyncError> {
        {
            let mut cp = self.cp();
            count(&mut cp.counts);
            cp.counts.pages += 1;
            match cursor {
                Some(c) => cp.cursors.insert(phase, c),
                None => cp.cursors.remove(&phase),
            };
        }
        self.save().await
    }

    async fn save(&self) -> Result<(), SyncError> {
        let requests = self.requests();
        let (number, snapshot, progress) = {
            let guard = self.cp();
            let number = self.saves.taken.fetch_add(1, Ordering::Relaxed) + 1;
            let mut cp = guard.clone();
            drop(guard);
            cp.prior = requests;
            let progress = json!({"phases_done": cp.done, "counts": cp.counts});
            (
                number,
                serde_json::to_value(&cp).map_err(|e| JobError::permanent(e.to_string()))?,
                progress,
            )
        };
        let mut saved = self.saves.saved.lock().await;
        if *saved > number {
            // A newer snapshot is already saved; this one would take the checkpoint back.
            return Ok(());
        }
        *saved = number;
        match &self.out {
            Out::Hosted { job, .. } => {
                job.checkpoint(snapshot).await?;
                job.progress(progress).await?;
            }
            // A detached sync that stops starts again from the beginning: nothing to keep.
            Out::Detached(r) => r.progress(progress).await,
        }
        Ok(())
    }

    async fn finish_phase(&self, phase: u32) -> Result<(), SyncError> {
        {
            let mut cp = self.cp();
            cp.done.insert(phase);
            cp.cursors.remove(&phase);
        }
        self.save().await
    }

    async fn warn(&self, message: String) -> Result<(), SyncError> {
        self.log(LogLevel::Warn, &message, json!({})).await?;
        let mut cp = self.cp();
        if !cp.warnings.contains(&message) {
            cp.warnings.push(message);
        }
        Ok(())
    }

    /// Pages a collection of `phase` from its checkpointed cursor (or `first`), handing each
    /// page to `each`; the next page is fetched while the current one is written.
    async fn pages<T, F>(
        &self,
        phase: u32,
        version: ApiVersion,
        first: String,
        page_size: Option<u32>,
        mut each: F,
    ) -> Result<Option<String>, SyncError>
    where
        T: DeserializeOwned + Send,
        F: AsyncPageFn<T>,
    {
        let start = self.cp().cursors.get(&phase).cloned().unwrap_or(first);
        let graph = self.graph.clone();
        let mut current = fetch::page(&graph, version, &start, page_size).await?;
        loop {
            let next = current.next.clone();
            let delta = current.delta.clone();
            let items = std::mem::take(&mut current.items);
            let prefetch = {
                let graph = graph.clone();
                let next = next.clone();
                async move {
                    match next {
                        Some(n) => fetch::page(&graph, version, &n, page_size).await.map(Some),
                        None => Ok(None),
                    }
                }
            };
            let (written, fetched) =
                futures::join!(each.call(self, phase, items, next.clone()), prefetch);
            written?;
            match fetched? {
                Some(p) => current = p,
                None => return Ok(delta),
            }
        }
    }
}

/// A page handler for [`Run::pages`] (an async closure borrowing the run) of items read as `T`.
trait AsyncPageFn<T = Value> {
    fn call<'r, 's>(
        &'s mut self,
        run: &'s Run<'r>,
        phase: u32,
        items: Vec<T>,
        next: Option<String>,
    ) -> futures::future::BoxFuture<'s, Result<(), SyncError>>;
}

impl JobHandler for SyncHandler {
    fn kind(&self) -> &str {
        SYNC_JOB
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let org = ctx
            .org()
            .ok_or_else(|| JobError::permanent("a sync belongs to an organization"))?;
        let connector = ctx
            .connector_id()
            .ok_or_else(|| JobError::permanent("a sync names its connector"))?;
        let payload: SyncPayload = ctx.payload_as()?;
        let span = tracing::info_span!("entra.sync", org = %org.0, connector = %connector, job = %ctx.id().as_uuid(), kind = payload.kind.as_str());
        self.sync(ctx, org, connector, payload.kind)
            .instrument(span)
            .await
    }
}

impl SyncHandler {
    async fn sync(
        &self,
        ctx: &JobContext,
        org: OrgId,
        connector: Uuid,
        requested: SyncKind,
    ) -> Result<(), JobError> {
        let store = ctx.store();
        let started = std::time::Instant::now();
        let run_id = ctx.id().as_uuid();
        let mut cp: Checkpoint = ctx
            .saved_checkpoint()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let resuming = cp.run == Some(run_id);
        if !resuming {
            cp = Checkpoint {
                run: Some(run_id),
                ..Checkpoint::default()
            };
        }
        let (settings, conn) = match connect_for_with(
            store,
            &self.keys,
            self.app.as_ref(),
            self.policy,
            org,
            connector,
            self.options.retry,
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                return fail(
                    ctx,
                    store,
                    org,
                    connector,
                    run_id,
                    requested,
                    SyncError::Connect(e),
                )
                .await;
            }
        };

        // Where an incremental run starts; without it the run is a full one.
        let mut kind = cp.kind.unwrap_or(requested);
        let mut cursors: Option<Cursors> = None;
        {
            let mut tx = store.org_tx(org).await?;
            if kind == SyncKind::Incremental {
                cursors = sync_runs::last_cursors(&mut tx, connector)
                    .await?
                    .and_then(|r| r.cursors)
                    .and_then(|c| serde_json::from_value(c).ok());
                if cursors.is_none() {
                    kind = SyncKind::Full;
                }
            }
            sync_runs::start(&mut tx, run_id, connector, kind.as_str()).await?;
            connectors::set_status(
                &mut tx,
                connector,
                "syncing",
                Some(&format!("A {} sync is running.", kind.as_str())),
            )
            .await?;
            connectors::set_last_sync_job(&mut tx, connector, run_id).await?;
            tx.commit().await?;
        }
        cp.kind = Some(kind);
        ctx.info(if resuming {
            format!(
                "Resuming the {} sync with {} of its steps done",
                kind.as_str(),
                cp.done.len()
            )
        } else {
            match kind {
                SyncKind::Full => "Starting a full sync".to_owned(),
                SyncKind::Incremental => "Starting an incremental sync".to_owned(),
            }
        })
        .await?;

        let run = Run {
            out: Out::Hosted {
                job: ctx,
                store,
                org,
                writers: tokio::sync::Semaphore::new(self.options.db_writers.max(1)),
            },
            connector,
            run: run_id,
            graph: conn.graph.clone(),
            settings,
            options: self.options,
            cp: Mutex::new(cp),
            saves: SaveOrder::default(),
        };
        let result = match kind {
            SyncKind::Full => full(&run).await,
            SyncKind::Incremental => match cursors {
                Some(c) => incremental::run(&run, c).await,
                None => full(&run).await,
            },
        };
        match result {
            Ok(new_cursors) => {
                let stats = run.stats(started);
                let warning_list = run.cp().warnings.clone();
                let mut tx = store.org_tx(org).await?;
                let reason = record_success(
                    &mut tx,
                    connector,
                    run_id,
                    &stats,
                    &warning_list,
                    new_cursors.map(|c| json!(c)).as_ref(),
                )
                .await?;
                install_schedules(&mut tx, connector, self.options.schedule).await?;
                tx.commit().await?;
                ctx.log(LogLevel::Info, format!("Sync finished. {reason}"), stats)
                    .await?;
                Ok(())
            }
            Err(e) => fail(ctx, store, org, connector, run_id, kind, e).await,
        }
    }
}

/// Records a successful run: its stats, warnings and cursors; the connector *Connected* with a
/// sentence counting what it holds (and the warnings). Returns that sentence.
pub async fn record_success(
    tx: &mut OrgTx,
    connector: Uuid,
    run: Uuid,
    stats: &Value,
    warnings: &[String],
    cursors: Option<&Value>,
) -> Result<String, StoreError> {
    sync_runs::finish(tx, run, "succeeded", stats, &json!(warnings), None, cursors).await?;
    let counts = resources::resource_counts(tx, connector).await?;
    let n = |t: &str| counts.get(t).copied().unwrap_or(0);
    let mut reason = format!(
        "Synced {} accounts, {} groups, {} enterprise applications, {} managed identities, {} roles and {} licences.",
        n("user"),
        n("group"),
        n("enterprise_application"),
        n("managed_identity"),
        n("role"),
        n("license")
    );
    if !warnings.is_empty() {
        reason.push_str(&format!(
            " {} warning(s): {}",
            warnings.len(),
            warnings.join(" ")
        ));
    }
    connectors::set_status(tx, connector, "connected", Some(&reason)).await?;
    connectors::record_sync_finished(tx, connector).await?;
    Ok(reason)
}

/// Records a failed attempt: a stop (cancel, shutdown, lost lease) or a retry leaves the data
/// as it is; a final failure marks the run failed and the connector in error with the reason.
/// A failed or cancelled sync deletes nothing.
async fn fail(
    ctx: &JobContext,
    store: &Store,
    org: OrgId,
    connector: Uuid,
    run_id: Uuid,
    kind: SyncKind,
    e: SyncError,
) -> Result<(), JobError> {
    let err = e.into_job();
    match &err {
        JobError::Interrupted | JobError::LeaseLost => return Err(err),
        JobError::Cancelled => {
            let mut tx = store.org_tx(org).await?;
            sync_runs::start(&mut tx, run_id, connector, kind.as_str()).await?;
            let run = sync_runs::get(&mut tx, run_id).await?;
            sync_runs::finish(
                &mut tx,
                run_id,
                "cancelled",
                &run.stats,
                &run.warnings,
                None,
                None,
            )
            .await?;
            let c = connectors::get(&mut tx, connector).await?;
            let (status, reason) = if c.last_sync_at.is_some() {
                (
                    "connected",
                    "The last sync was cancelled; the data is from the sync before it.",
                )
            } else {
                (
                    "error",
                    "The first sync was cancelled: start a sync to read the tenant.",
                )
            };
            connectors::set_status(&mut tx, connector, status, Some(reason)).await?;
            tx.commit().await?;
            return Err(err);
        }
        _ => {}
    }
    let last = matches!(err, JobError::Permanent { .. }) || ctx.attempt() >= ctx.max_attempts();
    let message = err.to_string();
    let mut tx = store.org_tx(org).await?;
    sync_runs::start(&mut tx, run_id, connector, kind.as_str()).await?;
    if last {
        let run = sync_runs::get(&mut tx, run_id).await?;
        sync_runs::finish(
            &mut tx,
            run_id,
            "failed",
            &run.stats,
            &run.warnings,
            Some(&message),
            None,
        )
        .await?;
        connectors::set_status(
            &mut tx,
            connector,
            "error",
            Some(&format!("The sync failed: {message}")),
        )
        .await?;
    } else {
        connectors::set_status(
            &mut tx,
            connector,
            "syncing",
            Some(&format!(
                "The sync hit a temporary problem and will resume: {message}"
            )),
        )
        .await?;
    }
    tx.commit().await?;
    ctx.log(LogLevel::Error, &message, json!({})).await.ok();
    Err(err)
}

macro_rules! page_fn {
    ($name:ident, |$run:ident, $phase:ident, $items:ident, $next:ident| $body:block) => {
        struct $name;
        impl AsyncPageFn for $name {
            fn call<'r, 's>(
                &'s mut self,
                $run: &'s Run<'r>,
                $phase: u32,
                $items: Vec<Value>,
                $next: Option<String>,
            ) -> futures::future::BoxFuture<'s, Result<(), SyncError>> {
                Box::pin(async move $body)
            }
        }
    };
}

/// Service principals: enterprise applications (with owners and app role assignments) and
/// managed identities.
async fn service_principals_page(
    run: &Run<'_>,
    phase: u32,
    items: Vec<Value>,
    next: Option<String>,
) -> Result<(), SyncError> {
    let mut res = Vec::new();
    let mut ents = Vec::new();
    let mut grants = Vec::new();
    let mut owner_refetch = Vec::new();
    let mut apps: Vec<(String, Vec<String>)> = Vec::new();
    for v in &items {
        let Some((r, e)) = map::service_principal(v) else {
            continue;
        };
        if r.rtype == "enterprise_application" {
            let owners = v.get("owners").and_then(Value::as_array);
            match owners {
                Some(list) if list.len() < 20 => {
                    for o in list {
                        if let Some(p) = map::principal_of(o) {
                            grants.push(map::link_grant(&r.key, "owners", "app_owners", p));
                        }
                    }
                }
                // An inline expansion stops at 20 without a next link: read the rest.
                _ => owner_refetch.push(r.key.clone()),
            }
            apps.push((r.key.clone(), map::app_role_ids(v)));
        }
        res.push(r);
        ents.extend(e);
    }
    let concurrency = run.options.concurrency;
    let owner_rels = owner_refetch
        .iter()
        .map(|id| format!("servicePrincipals/{id}/owners?$select=id&$top=999"))
        .collect();
    for (i, list) in
        fetch::collections(&run.graph, ApiVersion::Beta, owner_rels, concurrency).await?
    {
        for o in &list {
            if let Some(p) = map::principal_of(o) {
                grants.push(map::link_grant(
                    &owner_refetch[i],
                    "owners",
                    "app_owners",
                    p,
                ));
            }
        }
    }
    provisioning_jobs(run, &mut res).await?;
    let assignment_rels = apps
        .iter()
        .map(|(id, _)| format!("servicePrincipals/{id}/appRoleAssignedTo?$top=999"))
        .collect();
    for (i, list) in
        fetch::collections(&run.graph, ApiVersion::V1, assignment_rels, concurrency).await?
    {
        let (app, roles) = &apps[i];
        for a in &list {
            if let Some(g) = map::app_role_assignment(app, a) {
                // An assignment to a role the app no longer declares still grants access.
                let role = g.slug.trim_start_matches("assignment:");
                if !roles.iter().any(|r| r == role) {
                    ents.push(EntitlementRow {
                        resource_key: app.clone(),
                        slug: g.slug.clone(),
                        display_name: format!("App role {role}"),
                    });
                }
                grants.push(g);
            }
        }
    }
    run.write(phase, res, ents, grants, next).await
}

/// Enterprise applications without single sign-on may still provision users (a SCIM
/// synchronization job): those are apps an organization wants to manage too. Their jobs are
/// read (20 per `$batch`) and the app's profile gets `provisioning_jobs` (template ids). Apps
/// with single sign-on and Microsoft's own apps are not asked. Without
/// Synchronization.Read.All (not in the sync-only permission set) a warning says what was
/// not looked for, and the sync goes on.
async fn provisioning_jobs(run: &Run<'_>, res: &mut [ResourceRow]) -> Result<(), SyncError> {
    let candidates: Vec<usize> = res
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.rtype == "enterprise_application"
                && r.profile.get("sso_mode").is_none_or(Value::is_null)
                && r.profile.get("first_party") != Some(&Value::Bool(true))
        })
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    let rels = candidates
        .iter()
        .map(|&i| {
            format!(
                "servicePrincipals/{}/synchronization/jobs?$select=id,templateId",
                res[i].external_id
            )
        })
        .collect();
    match fetch::collections(&run.graph, ApiVersion::V1, rels, run.options.concurrency).await {
        Ok(found) => {
            for (k, jobs) in found {
                let templates: Vec<Value> = jobs
                    .iter()
                    .filter_map(|j| j.get("templateId").cloned())
                    .collect();
                if let Some(p) = res[candidates[k]].profile.as_object_mut() {
                    p.insert("provisioning_jobs".into(), Value::Array(templates));
                }
            }
            Ok(())
        }
        Err(e @ GraphError::PermissionMissing { .. }) => {
            run.warn(format!(
                "{e} Enterprise applications that provision users without single sign-on were not looked for (they are not offered as discovered apps); everything else was synced."
            ))
            .await
        }
        Err(e) => Err(e.into()),
    }
}

page_fn!(SpPages, |run, phase, items, next| {
    service_principals_page(run, phase, items, next).await
});

page_fn!(UserPages, |run, phase, items, next| {
    let mut res = Vec::new();
    let mut grants = Vec::new();
    let mut removed = Vec::new();
    let incremental = run.cp().kind == Some(SyncKind::Incremental);
    for v in &items {
        if v.get("@removed").is_some() {
            if let Some(id) = map::id_of(v) {
                removed.push(id.to_string());
            }
            continue;
        }
        if let Some(mut r) = map::user(v) {
            // A first delta round names every manager: no `manager@delta` means none. (An
            // incremental round leaves out managers that did not change.)
            if !incremental && let Some(p) = r.profile.as_object_mut() {
                p.entry("manager_id").or_insert(Value::Null);
            }
            grants.extend(map::user_licenses(v));
            res.push(r);
        }
    }
    if incremental {
        incremental::users_page(run, phase, res, grants, removed, next).await
    } else {
        run.write(phase, res, Vec::new(), grants, next).await
    }
});

page_fn!(SignInPages, |run, phase, items, next| {
    let patches: Vec<(String, Value)> = items
        .iter()
        .filter_map(|v| {
            let id = map::id_of(v)?;
            let last = v
                .get("signInActivity")
                .and_then(|s| s.get("lastSignInDateTime"))
                .cloned()
                .unwrap_or(Value::Null);
            Some((id.to_string(), json!({"last_sign_in": last})))
        })
        .collect();
    run.merge_profiles(phase, patches, next).await
});

page_fn!(GroupPages, |run, phase, items, next| {
    let mut res = Vec::new();
    let mut ents = Vec::new();
    let mut grants = Vec::new();
    let mut refetch = Vec::new();
    let skip_ad = run.settings.skip_ad_groups;
    for v in &items {
        if skip_ad && map::group_on_premises(v) {
            continue;
        }
        let Some((r, e)) = map::group(v) else {
            continue;
        };
        match v.get("owners").and_then(Value::as_array) {
            Some(list) if list.len() < 20 => {
                for o in list {
                    if let Some(p) = map::principal_of(o) {
                        grants.push(map::link_grant(&r.key, "owners", "group_owners", p));
                    }
                }
            }
            _ => refetch.push(r.key.clone()),
        }
        res.push(r);
        ents.extend(e);
    }
    let rels = refetch
        .iter()
        .map(|id| format!("groups/{id}/owners?$select=id&$top=999"))
        .collect();
    for (i, list) in
        fetch::collections(&run.graph, ApiVersion::Beta, rels, run.options.concurrency).await?
    {
        for o in &list {
            if let Some(p) = map::principal_of(o) {
                grants.push(map::link_grant(&refetch[i], "owners", "group_owners", p));
            }
        }
    }
    run.write(phase, res, ents, grants, next).await
});

/// On-premises users are left out of cloud groups when on-premises groups are skipped (the
/// documented meaning of the option).
async fn skipped_members(run: &Run<'_>) -> Result<HashSet<String>, SyncError> {
    if !run.settings.skip_ad_groups {
        return Ok(HashSet::new());
    }
    if let Out::Detached(r) = &run.out {
        // Written earlier in this run: the users phase precedes members when skipping.
        return Ok(r.on_premises_users());
    }
    let mut tx = run.tx().await?;
    let keys =
        resources::keys_with_flag(&mut tx, run.connector, "user", "on_premises_sync_enabled")
            .await?;
    tx.commit().await?;
    Ok(keys.into_iter().collect())
}

/// `members@delta` of a `groups/delta` page: `(group, added, removed)`.
fn member_changes(v: &Value) -> (Vec<String>, Vec<String>) {
    let mut added = Vec::new();
    let mut removed = Vec::new();
    for m in v
        .get("members@delta")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(p) = map::principal_of(m) else {
            continue;
        };
        if m.get("@removed").is_some() {
            removed.push(p.to_string());
        } else {
            added.push(p.to_string());
        }
    }
    (added, removed)
}

struct MemberPages {
    skip: HashSet<String>,
}

impl AsyncPageFn<map::GroupMembers> for MemberPages {
    fn call<'r, 's>(
        &'s mut self,
        run: &'s Run<'r>,
        phase: u32,
        items: Vec<map::GroupMembers>,
        next: Option<String>,
    ) -> futures::future::BoxFuture<'s, Result<(), SyncError>> {
        Box::pin(async move {
            let skip_ad = run.settings.skip_ad_groups;
            let mut grants = Vec::new();
            for group in &items {
                let Some(g) = group.current_id(skip_ad) else {
                    continue;
                };
                for p in group.added() {
                    if !self.skip.contains(p) {
                        grants.push(map::link_grant(g, "members", "group_members", p));
                    }
                }
            }
            drop(items);
            run.write(phase, Vec::new(), Vec::new(), grants, next).await
        })
    }
}

/// Reads a small, unpaged-or-few-pages collection whole.
async fn read_all(
    run: &Run<'_>,
    version: ApiVersion,
    first: &str,
) -> Result<Vec<Value>, SyncError> {
    let mut out = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(rel) = next {
        let RelPage { items, next: n, .. } = fetch::page(&run.graph, version, &rel, None).await?;
        out.extend(items);
        next = n;
    }
    Ok(out)
}

/// Directory role definitions, active assignments and PIM eligibility (P2; without it a
/// warning, and eligibility is left as it was).
async fn roles(run: &Run<'_>, phase: u32) -> Result<(), SyncError> {
    let defs = read_all(
        run,
        ApiVersion::V1,
        "roleManagement/directory/roleDefinitions",
    )
    .await?;
    let mut res = Vec::new();
    let mut ents = Vec::new();
    for v in &defs {
        if let Some((r, e)) = map::role_definition(v) {
            res.push(r);
            ents.extend(e);
        }
    }
    let mut grants: Vec<GrantRow> = read_all(
        run,
        ApiVersion::V1,
        "roleManagement/directory/roleAssignments",
    )
    .await?
    .iter()
    .filter_map(|v| map::role_grant(v, false))
    .collect();
    // `roleAssignments` has no schedule: the start and end of time-bound (PIM) active
    // assignments come from their schedule instances. Without P2 there are none to read, and
    // the eligibility read below says so.
    match read_all(
        run,
        ApiVersion::V1,
        "roleManagement/directory/roleAssignmentScheduleInstances",
    )
    .await
    {
        Ok(instances) => map::apply_assignment_schedules(&mut grants, &instances),
        Err(SyncError::Graph(GraphError::NotPremium { .. })) => {}
        Err(e) => return Err(e),
    }
    match read_all(
        run,
        ApiVersion::V1,
        "roleManagement/directory/roleEligibilitySchedules",
    )
    .await
    {
        Ok(list) => grants.extend(list.iter().filter_map(|v| map::role_grant(v, true))),
        Err(SyncError::Graph(e @ GraphError::NotPremium { .. })) => {
            {
                let mut cp = run.cp();
                if !cp.unread.iter().any(|k| k == "role_eligible") {
                    cp.unread.push("role_eligible".into());
                }
            }
            run.warn(format!(
                "{e} Eligible (PIM) role assignments were not read; everything else was synced."
            ))
            .await?;
        }
        Err(e) => return Err(e),
    }
    run.write(phase, res, ents, grants, None).await
}

async fn licences(run: &Run<'_>, phase: u32) -> Result<(), SyncError> {
    let skus = read_all(run, ApiVersion::V1, "subscribedSkus").await?;
    let mut res = Vec::new();
    let mut ents = Vec::new();
    for v in &skus {
        if let Some((r, e)) = map::sku(v) {
            res.push(r);
            ents.push(e);
        }
    }
    run.write(phase, res, ents, Vec::new(), None).await
}

fn select(fields: &[&str]) -> String {
    fields.join(",")
}

/// Last sign-in dates (when the option is on), of every user or, with `since`, of those who
/// signed in since then; without P1 a warning instead.
async fn sign_in_activity(run: &Run<'_>, phase: u32, since: Option<&str>) -> Result<(), SyncError> {
    if !run.settings.fetch_sign_in_activity {
        return Ok(());
    }
    let first = match since {
        Some(t) => format!(
            "users?$filter=signInActivity/lastSignInDateTime%20ge%20{t}&$select=id,signInActivity&$top=500"
        ),
        None => "users?$select=id,signInActivity&$top=500".to_string(),
    };
    match run
        .pages(phase, ApiVersion::V1, first, None, SignInPages)
        .await
    {
        Ok(_) => Ok(()),
        Err(SyncError::Graph(e @ GraphError::NotPremium { .. })) => {
            run.warn(format!(
                "{e} Last sign-in dates were not read; everything else was synced."
            ))
            .await
        }
        Err(e) => Err(e),
    }
}

/// One phase of the full sync, unless a previous attempt finished it.
async fn full_phase(run: &Run<'_>, phase: u32) -> Result<(), SyncError> {
    if run.is_done(phase) {
        return Ok(());
    }
    run.check()?;
    let fresh = !run.cp().cursors.contains_key(&phase);
    if fresh {
        run.info(format!("Reading {}", FULL_PHASES[phase as usize]))
            .await?;
    }
    let delta_page = run.options.delta_page;
    match phase {
        0 => {
            let first = format!(
                "servicePrincipals?$select={}&$expand=owners($select=id)&$top=999",
                select(map::SP_FIELDS)
            );
            run.pages(phase, ApiVersion::Beta, first, None, SpPages)
                .await?;
        }
        1 => {
            let first = format!("users/delta?$select={}", select(map::USER_FIELDS));
            let link = run
                .pages(phase, ApiVersion::V1, first, Some(delta_page), UserPages)
                .await?;
            run.cp().users_delta = link;
        }
        2 => sign_in_activity(run, phase, None).await?,
        3 => {
            let first = format!(
                "groups?$select={}&$expand=owners($select=id)&$top=999",
                select(map::GROUP_FIELDS)
            );
            run.pages(phase, ApiVersion::Beta, first, None, GroupPages)
                .await?;
        }
        4 => {
            let skip = skipped_members(run).await?;
            let first = format!("groups/delta?$select={},members", select(map::GROUP_FIELDS));
            let link = run
                .pages(
                    phase,
                    ApiVersion::Beta,
                    first,
                    Some(delta_page),
                    MemberPages { skip },
                )
                .await?;
            run.cp().groups_delta = link;
        }
        5 => roles(run, phase).await?,
        6 => licences(run, phase).await?,
        _ => unreachable!("phases are bounded by FULL_PHASES"),
    }
    run.finish_phase(phase).await
}

async fn full_phases(run: &Run<'_>, phases: &[u32]) -> Result<(), SyncError> {
    for p in phases {
        full_phase(run, *p).await?;
    }
    Ok(())
}

/// The whole tenant from the checkpoint, independent reads running side by side (their rows
/// have derived ids, so no read waits for another); then the sweep and expansion.
async fn full(run: &Run<'_>) -> Result<Option<Cursors>, SyncError> {
    {
        let mut cp = run.cp();
        if cp.audit_since.is_none() && !run.settings.disable_audit_feed {
            // Changes from now on are the next incremental run's business.
            cp.audit_since = Some(now_rfc3339());
        }
        if cp.sign_in_since.is_none() && run.settings.fetch_sign_in_activity {
            cp.sign_in_since = Some(now_rfc3339());
        }
    }
    // Skipping on-premises members needs the users first.
    let (users, members): (&[u32], &[u32]) = if run.settings.skip_ad_groups {
        (&[1, 2, 4], &[])
    } else {
        (&[1, 2], &[4])
    };
    futures::try_join!(
        full_phases(run, &[0]),
        full_phases(run, users),
        full_phases(run, &[3]),
        full_phases(run, members),
        full_phases(run, &[5, 6]),
    )?;
    let unread: Vec<String> = run.cp().unread.clone();
    if let Out::Hosted { store, org, .. } = &run.out {
        run.info("Removing what the tenant no longer has").await?;
        let done = finish_full(store, *org, run.connector, run.run, &unread).await?;
        run.cp().counts.deleted += done.deleted();
        let (message, fields) = done.describe();
        run.log(LogLevel::Info, message, fields).await?;
    }
    // Detached: the server sweeps and expands when the upload is complete (the same
    // `finish_full`), so a partial upload deletes nothing.
    let cp = run.cp().clone();
    Ok(match (cp.users_delta, cp.groups_delta) {
        (Some(u), Some(g)) => Some(Cursors {
            users_delta: u,
            groups_delta: g,
            audit_since: cp.audit_since,
            sign_in_since: cp.sign_in_since,
        }),
        _ => None,
    })
}

/// What the end of a full sync did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Finished {
    pub swept: resources::Swept,
    pub dangling: u64,
    pub expanded: u64,
}

impl Finished {
    /// Rows marked deleted (the stats' `deleted`).
    pub fn deleted(&self) -> u64 {
        self.swept.resources + self.swept.entitlements + self.swept.grants
    }

    /// The job log line saying so, with its fields.
    pub fn describe(&self) -> (String, Value) {
        let s = self.swept;
        (
            format!(
                "Marked {} resources, {} entitlements and {} grants deleted; {} grants name objects that are not principals here; {} expanded grants through groups.",
                s.resources, s.entitlements, s.grants, self.dangling, self.expanded
            ),
            json!({"swept": s, "dangling": self.dangling, "expanded": self.expanded}),
        )
    }
}

/// The end of a successful full sync, hosted or uploaded by a self-hosted connector: marks
/// deleted what run `run` did not see (except grant kinds in `unread`, which it could not
/// read), drops grants to non-principals, expands grants through groups, and offers
/// enterprise applications with single sign-on as discovered apps.
pub async fn finish_full(
    store: &Store,
    org: OrgId,
    connector: Uuid,
    run: Uuid,
    unread: &[String],
) -> Result<Finished, StoreError> {
    let unread: Vec<&str> = unread.iter().map(String::as_str).collect();
    // The run's writes are committed: statistics that describe them plan the sweep and the
    // expansion; after the expansion's million rows, they plan the incremental runs to come.
    resources::refresh_statistics(store).await?;
    let mut tx = store.org_tx(org).await?;
    resources::allow_long_statements(&mut tx, LONG_STATEMENTS).await?;
    let swept = resources::sweep(&mut tx, connector, run, &unread).await?;
    let dangling = resources::drop_dangling(&mut tx, connector).await?;
    let expanded = resources::expand(&mut tx, connector, run).await?;
    tx.commit().await?;
    resources::refresh_statistics(store).await?;
    let mut tx = store.org_tx(org).await?;
    discovered_apps(&mut tx, connector).await?;
    tx.commit().await?;
    Ok(Finished {
        swept,
        dangling,
        expanded,
    })
}

/// Enterprise applications with single sign-on or a provisioning job become discovered apps
/// of the organization.
async fn discovered_apps(tx: &mut OrgTx, connector: Uuid) -> Result<(), StoreError> {
    let list = resources::discoverable_apps(tx, connector).await?;
    for (id, name, sso) in &list {
        let why = if *sso {
            "Enterprise application with single sign-on in Microsoft Entra ID"
        } else {
            "Enterprise application that provisions users (SCIM) from Microsoft Entra ID"
        };
        apps::upsert_discovered(tx, connector, id, name, Some(why)).await?;
    }
    Ok(())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Enqueues a sync of the connector (or returns the one queued or running).
pub async fn request_sync(
    tx: &mut OrgTx,
    connector: Uuid,
    kind: SyncKind,
    reason: &str,
) -> Result<(Uuid, bool), StoreError> {
    // A self-hosted connector runs its syncs itself (always full ones: it has no database to
    // read an incremental run's starting point from).
    let job = if connectors::get(tx, connector).await?.kind == "self_hosted" {
        let mut job = sync_job(connector, SyncKind::Full, reason);
        job.kind = detached::AGENT_SYNC_JOB.to_string();
        job
    } else {
        sync_job(connector, kind, reason)
    };
    let e = queue::enqueue(tx, &job).await?;
    if e.created {
        connectors::set_last_sync_job(tx, connector, e.job.id.as_uuid()).await?;
    }
    Ok((e.job.id.as_uuid(), e.created))
}
