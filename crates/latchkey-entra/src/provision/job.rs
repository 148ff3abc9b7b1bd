//! Provisioning tasks as jobs: [`request`] records a task and enqueues its `entra.provision`
//! job in the caller's transaction; [`ProvisionHandler`] runs it — plan (refusals), write,
//! read back, then the task's timestamps, the stored grants and the trail, at once.

use std::sync::Arc;

use latchkey_crypto::KeyRing;
use latchkey_jobs::{JobClass, JobContext, JobError, JobHandler, LogLevel, NewJob, queue};
use latchkey_store::provisioning::{self, NewTask, Task};
use latchkey_store::{OrgTx, Store, StoreError, connectors, resources};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::PROVISION_JOB;
use super::plan::{GroupRel, Object, Operation, Request, Step, plan};
use super::scim::provision_on_demand;
use super::write::{
    ProvisionError, Verification, VerifyPolicy, apply_until, external_id_after, verify,
};
use crate::endpoints::OutboundPolicy;
use crate::onboarding::connection_test::{ConnectError, connect_for};
use crate::onboarding::{EntraSettings, LatchkeyApp};

/// The payload of an `entra.provision` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvisionPayload {
    pub task_id: Uuid,
}

/// What to provision: a grant of an entitlement to a principal, or the revoke of a stored grant.
#[derive(Debug, Clone, Copy)]
pub enum Ask {
    Grant { entitlement: Uuid, principal: Uuid },
    Revoke { grant: Uuid },
}

/// Records a task and enqueues its job in `tx` (both commit together). Unknown (or another
/// organization's) connector, entitlement, principal or grant: [`StoreError::NotFound`].
pub async fn request(
    tx: &mut OrgTx,
    connector: Uuid,
    ask: Ask,
    requested_by: &str,
) -> Result<Uuid, StoreError> {
    request_until(tx, connector, ask, requested_by, None).await
}

/// [`request`] for a time-bound grant (a JIT request): directory roles granted through PIM get
/// `until` as their schedule's end, so Entra itself ends them even if Latchkey's expiry job
/// does not run. Other grants ignore it (their expiry is a revoke task).
pub async fn request_until(
    tx: &mut OrgTx,
    connector: Uuid,
    ask: Ask,
    requested_by: &str,
    until: Option<time::OffsetDateTime>,
) -> Result<Uuid, StoreError> {
    let details = match until {
        Some(t) => json!({"until": rfc3339(t)?}),
        None => json!({}),
    };
    request_with(tx, connector, ask, requested_by, details, None).await
}

/// A grant that ends by itself at `until` (the REST API's `expires_at`): like
/// [`request_until`], and once verified, grants that Entra does not end itself (everything
/// but PIM schedules) get a revoke task queued to run at `until`.
pub async fn request_expiring(
    tx: &mut OrgTx,
    connector: Uuid,
    ask: Ask,
    requested_by: &str,
    until: time::OffsetDateTime,
) -> Result<Uuid, StoreError> {
    let details = json!({"until": rfc3339(until)?, "revoke_at_end": true});
    request_with(tx, connector, ask, requested_by, details, None).await
}

/// Who asks for the revoke that ends a time-bound grant.
pub const EXPIRY: &str = "expiry";

fn rfc3339(t: time::OffsetDateTime) -> Result<String, StoreError> {
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

async fn request_with(
    tx: &mut OrgTx,
    connector: Uuid,
    ask: Ask,
    requested_by: &str,
    details: serde_json::Value,
    run_at: Option<time::OffsetDateTime>,
) -> Result<Uuid, StoreError> {
    connectors::get(tx, connector).await?;
    let (operation, entitlement, principal, grant) = match ask {
        Ask::Grant {
            entitlement,
            principal,
        } => {
            resources::get_entitlement(tx, connector, entitlement).await?;
            resources::get_resource(tx, connector, principal).await?;
            (Operation::Grant, entitlement, principal, None)
        }
        Ask::Revoke { grant } => {
            let g = provisioning::get_grant(tx, connector, grant).await?;
            (
                Operation::Revoke,
                g.entitlement_id,
                g.principal_id,
                Some(grant),
            )
        }
    };
    enqueue_task(
        tx,
        connector,
        NewTaskSpec {
            operation: operation.as_str(),
            entitlement: Some(entitlement),
            principal: Some(principal),
            grant,
            details,
            run_at,
        },
        requested_by,
    )
    .await
}

pub(super) struct NewTaskSpec<'a> {
    pub operation: &'a str,
    pub entitlement: Option<Uuid>,
    pub principal: Option<Uuid>,
    pub grant: Option<Uuid>,
    pub details: serde_json::Value,
    pub run_at: Option<time::OffsetDateTime>,
}

/// Records the task (and its `requested` event, in the audit trail too) and its job.
pub(super) async fn enqueue_task(
    tx: &mut OrgTx,
    connector: Uuid,
    spec: NewTaskSpec<'_>,
    requested_by: &str,
) -> Result<Uuid, StoreError> {
    let row = connectors::get(tx, connector).await?;
    // A self-hosted connector carries out its tasks itself (`agent::AGENT_PROVISION_JOB`):
    // grants and revokes, and account tasks (`agent_account`).
    let kind = if row.kind == "self_hosted" {
        super::agent::AGENT_PROVISION_JOB
    } else {
        PROVISION_JOB
    };
    let task = Uuid::now_v7();
    provisioning::create_task(
        tx,
        &NewTask {
            id: task,
            connector_id: connector,
            job_id: None,
            operation: spec.operation,
            entitlement_id: spec.entitlement,
            principal_id: spec.principal,
            grant_id: spec.grant,
            requested_by,
            details: spec.details,
        },
    )
    .await?;
    let mut job = NewJob::new(kind, json!(ProvisionPayload { task_id: task }))
        .class(JobClass::Provision)
        .connector(connector)
        .dedupe_key(format!("provision:{task}"));
    if let Some(at) = spec.run_at {
        job = job.run_at(at);
    }
    let job = queue::enqueue(tx, &job).await?;
    provisioning::set_job(tx, task, job.job.id.as_uuid()).await?;
    Ok(task)
}

/// Runs `entra.provision` jobs.
pub struct ProvisionHandler {
    pub(super) keys: Arc<KeyRing>,
    pub(super) app: Option<LatchkeyApp>,
    pub(super) policy: OutboundPolicy,
    pub(super) verify: VerifyPolicy,
}

impl ProvisionHandler {
    pub fn new(keys: Arc<KeyRing>, app: Option<LatchkeyApp>, policy: OutboundPolicy) -> Self {
        Self {
            keys,
            app,
            policy,
            verify: VerifyPolicy::default(),
        }
    }

    /// How long to read a change back before calling it unverified.
    pub fn with_verify(mut self, verify: VerifyPolicy) -> Self {
        self.verify = verify;
        self
    }
}

pub(super) const WORKER: &str = "worker";

pub(super) fn db(e: StoreError) -> JobError {
    JobError::from(e)
}

/// Why a task cannot even be planned.
pub(super) enum Prep {
    Refused(String),
    Store(StoreError),
}

impl From<StoreError> for Prep {
    fn from(e: StoreError) -> Self {
        Prep::Store(e)
    }
}

fn object(r: resources::Resource) -> Object {
    Object {
        rtype: r.rtype,
        external_id: r.external_id,
        display_name: r.display_name,
        profile: r.profile,
    }
}

/// The task in the access model's terms, read fresh (the tenant may have changed since it was
/// asked for).
pub(super) async fn build_request(
    tx: &mut OrgTx,
    connector: Uuid,
    task: &Task,
) -> Result<(Request, bool, bool), Prep> {
    let gone = |what: &str| {
        Prep::Refused(format!(
            "The {what} no longer exists in Latchkey's copy of the tenant (a sync removed it); nothing was changed."
        ))
    };
    let row = connectors::get(tx, connector).await?;
    let settings = row
        .settings
        .and_then(|v| serde_json::from_value::<EntraSettings>(v).ok());
    let enabled = settings.as_ref().is_some_and(|s| s.provisioning);
    let scim = settings
        .as_ref()
        .is_some_and(|s| s.schedule_scim_provisioning);
    // What the last connection test found about PIM (Entra ID P2).
    let pim = match row
        .capabilities
        .as_ref()
        .and_then(|c| c.pointer("/features/pim/state"))
        .and_then(serde_json::Value::as_str)
    {
        Some("available") => Some(true),
        Some("unlicensed") => Some(false),
        _ => None,
    };
    let (Some(entitlement_id), Some(principal_id)) = (task.entitlement_id, task.principal_id)
    else {
        return Err(Prep::Refused(
            "This task names no entitlement or principal; nothing was changed.".into(),
        ));
    };
    let ent = match resources::get_entitlement(tx, connector, entitlement_id).await {
        Err(StoreError::NotFound) => return Err(gone("entitlement")),
        r => r?,
    };
    let resource = match resources::get_resource(tx, connector, ent.resource_id).await {
        Err(StoreError::NotFound) => return Err(gone("resource")),
        r => r?,
    };
    let principal = match resources::get_resource(tx, connector, principal_id).await {
        Err(StoreError::NotFound) => return Err(gone("principal")),
        r => r?,
    };
    let operation = if task.operation == "revoke" {
        Operation::Revoke
    } else {
        Operation::Grant
    };
    let mut inherited_via = None;
    let mut grant_external_id = None;
    if let Some(g) = task.grant_id {
        match provisioning::get_grant(tx, connector, g).await {
            Ok(g) if g.expanded || g.source != "direct" => inherited_via = Some(g.source),
            Ok(g) => grant_external_id = Some(g.external_id).filter(|e| !e.is_empty()),
            // Already removed from the store (a sync saw it go): revoking again is harmless.
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let current_holders = Some(provisioning::direct_holders(tx, connector, ent.id).await?);
    Ok((
        Request {
            operation,
            resource: object(resource),
            slug: ent.slug,
            principal: object(principal),
            inherited_via,
            current_holders,
            grant_external_id,
            pim,
            end: task
                .details
                .get("until")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
        },
        enabled,
        scim,
    ))
}

pub(super) fn grant_kind(step: &Step) -> &'static str {
    match step {
        Step::AddGroupLink { rel, .. } | Step::RemoveGroupLink { rel, .. } => match rel {
            GroupRel::Members => "group_members",
            GroupRel::Owners => "group_owners",
        },
        Step::AssignAppRole { .. } | Step::RemoveAppRole { .. } => "app_role_assignments",
        Step::AddAppOwner { .. } | Step::RemoveAppOwner { .. } => "app_owners",
        Step::AssignLicense { .. } | Step::RemoveLicense { .. } => "license_assigned",
        Step::AssignRole { eligible: true, .. } | Step::RemoveRole { eligible: true, .. } => {
            "role_eligible"
        }
        Step::AssignRole { .. } | Step::RemoveRole { .. } => "role_assigned",
    }
}

impl ProvisionHandler {
    pub(super) async fn fail(
        &self,
        ctx: &JobContext,
        task: &Task,
        event: &str,
        error: &str,
        verification: Option<&str>,
    ) -> Result<(), JobError> {
        let store = ctx.store();
        let org = ctx.org().expect("checked");
        let mut tx = store.org_tx(org).await.map_err(db)?;
        provisioning::set_failed(&mut tx, task.id, error, verification)
            .await
            .map_err(db)?;
        provisioning::add_event(&mut tx, task.id, WORKER, event, Some(error))
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        ctx.log(LogLevel::Error, error, json!({"task_id": task.id}))
            .await?;
        Err(JobError::permanent(error.to_string()))
    }

    pub(super) async fn graph_failed(
        &self,
        ctx: &JobContext,
        task: &Task,
        e: String,
        transient: bool,
    ) -> Result<(), JobError> {
        if transient && ctx.attempt() < ctx.max_attempts() {
            let mut tx = ctx
                .store()
                .org_tx(ctx.org().expect("checked"))
                .await
                .map_err(db)?;
            provisioning::add_event(&mut tx, task.id, WORKER, "retrying", Some(&e))
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            return Err(JobError::transient(e));
        }
        self.fail(ctx, task, "failed", &e, None).await
    }
}

impl JobHandler for ProvisionHandler {
    fn kind(&self) -> &str {
        PROVISION_JOB
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let org = ctx
            .org()
            .ok_or_else(|| JobError::permanent("a provisioning task belongs to an organization"))?;
        let connector = ctx
            .connector_id()
            .ok_or_else(|| JobError::permanent("a provisioning task names its connector"))?;
        let payload: ProvisionPayload = ctx.payload_as()?;
        let store: &Store = ctx.store();

        let mut tx = store.org_tx(org).await.map_err(db)?;
        let task = match provisioning::get_task(&mut tx, payload.task_id).await {
            Err(StoreError::NotFound) => {
                return Err(JobError::permanent(
                    "the provisioning task no longer exists",
                ));
            }
            r => r.map_err(db)?,
        };
        if task.is_final() {
            // A retried job whose earlier attempt finished the task: nothing to do twice.
            return Ok(());
        }
        provisioning::set_running(&mut tx, task.id)
            .await
            .map_err(db)?;
        match task.operation.as_str() {
            "create_account" => {
                tx.commit().await.map_err(db)?;
                return super::account_job::create(self, ctx, connector, &task).await;
            }
            "deprovision_account" => {
                tx.commit().await.map_err(db)?;
                return super::account_job::deprovision(self, ctx, connector, &task).await;
            }
            _ => {}
        }
        let prepared = build_request(&mut tx, connector, &task).await;
        tx.commit().await.map_err(db)?;
        let (req, enabled, scim) = match prepared {
            Ok(v) => v,
            Err(Prep::Store(e)) => return Err(db(e)),
            Err(Prep::Refused(why)) => return self.fail(ctx, &task, "refused", &why, None).await,
        };

        let step = match plan(&req, enabled) {
            Ok(s) => s,
            Err(r) => return self.fail(ctx, &task, "refused", &r.to_string(), None).await,
        };
        ctx.log(
            LogLevel::Info,
            format!(
                "{} {} of {} for {}",
                req.operation.as_str(),
                req.slug,
                req.resource.display_name,
                req.principal.display_name
            ),
            json!({"task_id": task.id, "step": step}),
        )
        .await?;

        let (_, conn) = match connect_for(
            store,
            &self.keys,
            self.app.as_ref(),
            self.policy,
            org,
            connector,
        )
        .await
        {
            Ok(v) => v,
            Err(ConnectError::Store(e)) => return Err(db(e)),
            Err(e) => return self.fail(ctx, &task, "failed", &e.to_string(), None).await,
        };
        ctx.check_in().await?;

        let applied = match apply_until(
            &conn.graph,
            &step,
            &req.resource.display_name,
            req.end.as_deref(),
        )
        .await
        {
            Ok(a) => a,
            Err(ProvisionError::Refused(r)) => {
                return self.fail(ctx, &task, "refused", &r.to_string(), None).await;
            }
            Err(ProvisionError::Graph(e)) => {
                let transient = e.is_transient();
                return self
                    .graph_failed(ctx, &task, e.to_string(), transient)
                    .await;
            }
        };
        let mut tx = store.org_tx(org).await.map_err(db)?;
        provisioning::set_provisioned(
            &mut tx,
            task.id,
            &json!({"step": step, "already": applied.already}),
        )
        .await
        .map_err(db)?;
        let note = if applied.already {
            "Microsoft Graph reports it was already so"
        } else {
            "Microsoft Graph accepted the change"
        };
        provisioning::add_event(&mut tx, task.id, WORKER, "provisioned", Some(note))
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        ctx.check_in().await?;

        match verify(&conn.graph, &step, self.verify).await {
            Verification::Verified { reads } => {
                let external_id = if req.operation == Operation::Grant {
                    match external_id_after(&conn.graph, &step, &applied).await {
                        Ok(id) => id,
                        Err(e) => {
                            let transient = e.is_transient();
                            return self
                                .graph_failed(ctx, &task, e.to_string(), transient)
                                .await;
                        }
                    }
                } else {
                    None
                };
                let mut tx = store.org_tx(org).await.map_err(db)?;
                let (entitlement, principal) = (
                    task.entitlement_id.unwrap_or_default(),
                    task.principal_id.unwrap_or_default(),
                );
                match req.operation {
                    Operation::Grant => {
                        let grant = provisioning::record_grant(
                            &mut tx,
                            connector,
                            entitlement,
                            principal,
                            grant_kind(&step),
                            external_id.as_deref().unwrap_or(""),
                            task.id,
                        )
                        .await
                        .map_err(db)?;
                        // Entra ends PIM schedules itself; anything else gets its revoke now.
                        let pim = matches!(step, Step::AssignRole { via_pim: true, .. });
                        if !pim
                            && task.details.get("revoke_at_end") == Some(&json!(true))
                            && let Some(end) = req.end.as_deref().and_then(|e| {
                                time::OffsetDateTime::parse(
                                    e,
                                    &time::format_description::well_known::Rfc3339,
                                )
                                .ok()
                            })
                        {
                            let revoke = request_with(
                                &mut tx,
                                connector,
                                Ask::Revoke { grant },
                                EXPIRY,
                                json!({"ends_task": task.id.to_string()}),
                                Some(end),
                            )
                            .await
                            .map_err(db)?;
                            provisioning::add_event(
                                &mut tx,
                                task.id,
                                WORKER,
                                "revoke_scheduled",
                                Some(&format!(
                                    "revoke task {revoke} runs at {}",
                                    rfc3339(end).map_err(db)?
                                )),
                            )
                            .await
                            .map_err(db)?;
                        }
                    }
                    Operation::Revoke => {
                        provisioning::remove_grant(&mut tx, connector, entitlement, principal)
                            .await
                            .map_err(db)?;
                    }
                }
                provisioning::set_verified(&mut tx, task.id)
                    .await
                    .map_err(db)?;
                provisioning::add_event(
                    &mut tx,
                    task.id,
                    WORKER,
                    "verified",
                    Some(&format!("read back from Microsoft Graph ({reads} read(s))")),
                )
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                ctx.info("Verified in Microsoft Graph").await?;
                if scim && let Step::AssignAppRole { app, principal, .. } = step {
                    let group = req.principal.rtype == "group";
                    let (event, note) =
                        match provision_on_demand(&conn.graph, app, principal, group).await {
                            Ok(outcome) => match outcome.warning() {
                                Some(w) => ("scim_warning", w),
                                None => (
                                    "scim_provisioned",
                                    "Provisioned to the downstream app on demand".to_string(),
                                ),
                            },
                            Err(e) => ("scim_warning", format!("Provision on demand failed: {e}")),
                        };
                    let mut tx = store.org_tx(org).await.map_err(db)?;
                    if event == "scim_warning" {
                        provisioning::add_warning(&mut tx, task.id, &note)
                            .await
                            .map_err(db)?;
                    }
                    provisioning::add_event(&mut tx, task.id, WORKER, event, Some(&note))
                        .await
                        .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                }
                Ok(())
            }
            Verification::Failed { why, .. } => {
                let error = format!("The change could not be verified: {why}.");
                self.fail(ctx, &task, "verification_failed", &error, Some(&why))
                    .await
            }
        }
    }
}
