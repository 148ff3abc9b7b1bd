//! Account tasks: [`request_account`] / [`request_deprovision`] record a task and its job;
//! the `entra.provision` handler runs them here. Creating an account keeps its first password
//! in the vault (pending) *before* Graph creates the account, binds it to the account in the
//! transaction that records the account's id (a retried job resumes from that id rather than
//! creating a second account; one whose earlier attempt created the account but crashed
//! before recording it reuses the kept password and recognises the account), reads the
//! account back and stores it as a `user` resource at once. Deprovisioning disables sign-in, revokes sessions and deletes
//! only when asked and allowed by the connector, then reads the account back.

use latchkey_jobs::{JobContext, JobError, LogLevel};
use latchkey_store::provisioning::{self, Task};
use latchkey_store::{OrgTx, StoreError, connectors, resources, vault};
use serde_json::{Value, json};
use uuid::Uuid;

use super::accounts::{
    AccountError, Expect, NewAccount, create_account, deprovision as deprovision_account,
    find_by_upn, generate_password, read_back, set_manager,
};
use super::job::{NewTaskSpec, ProvisionHandler, WORKER, db, enqueue_task};
use super::plan::Refusal;
use crate::onboarding::EntraSettings;
use crate::onboarding::connection_test::{ConnectError, connect_for};
use crate::sync::map;

/// Records a `create_account` task for `new` (checked by the caller with
/// [`super::accounts::check`]) and enqueues its job in `tx`.
pub async fn request_account(
    tx: &mut OrgTx,
    connector: Uuid,
    new: &NewAccount,
    requested_by: &str,
) -> Result<Uuid, StoreError> {
    connectors::get(tx, connector).await?;
    let details = serde_json::to_value(new).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    enqueue_task(
        tx,
        connector,
        NewTaskSpec {
            operation: "create_account",
            entitlement: None,
            principal: None,
            grant: None,
            details,
            run_at: None,
        },
        requested_by,
    )
    .await
}

/// Records a `deprovision_account` task for the stored account `account` (a resource of the
/// connector: unknown or another organization's is [`StoreError::NotFound`]).
pub async fn request_deprovision(
    tx: &mut OrgTx,
    connector: Uuid,
    account: Uuid,
    delete: bool,
    requested_by: &str,
) -> Result<Uuid, StoreError> {
    connectors::get(tx, connector).await?;
    resources::get_resource(tx, connector, account).await?;
    enqueue_task(
        tx,
        connector,
        NewTaskSpec {
            operation: "deprovision_account",
            entitlement: None,
            principal: Some(account),
            grant: None,
            details: json!({"delete": delete}),
            run_at: None,
        },
        requested_by,
    )
    .await
}

const DELETION_OFF: &str = "Deleting accounts is turned off for this connector, so the account was not changed. Deprovision it without deleting (sign-in is disabled and its sessions revoked), or turn on \"Allow deleting accounts\" in the connector's settings.";

async fn settings(ctx: &JobContext, connector: Uuid) -> Result<Option<EntraSettings>, JobError> {
    let mut tx = ctx
        .store()
        .org_tx(ctx.org().expect("checked"))
        .await
        .map_err(db)?;
    let row = connectors::get(&mut tx, connector).await.map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(row
        .settings
        .and_then(|v| serde_json::from_value::<EntraSettings>(v).ok()))
}

async fn graph(
    h: &ProvisionHandler,
    ctx: &JobContext,
    connector: Uuid,
    task: &Task,
) -> Result<Result<crate::graph::GraphClient, ()>, JobError> {
    let org = ctx.org().expect("checked");
    match connect_for(
        ctx.store(),
        &h.keys,
        h.app.as_ref(),
        h.policy,
        org,
        connector,
    )
    .await
    {
        Ok((_, conn)) => Ok(Ok(conn.graph)),
        Err(ConnectError::Store(e)) => Err(db(e)),
        Err(e) => {
            h.fail(ctx, task, "failed", &e.to_string(), None).await?;
            Ok(Err(()))
        }
    }
}

/// The password of a `create_account` task, kept in the vault (pending) before Graph is asked
/// to create the account, so that a crash between the creation and the commit recording it
/// cannot lose it. `retried`: an earlier attempt kept it (and may have created the account).
struct Kept {
    kept: vault::Pending,
    retried: bool,
}

async fn keep_password(
    h: &ProvisionHandler,
    ctx: &JobContext,
    connector: Uuid,
    task: &Task,
    new: &NewAccount,
) -> Result<Kept, JobError> {
    let mut tx = ctx
        .store()
        .org_tx(ctx.org().expect("checked"))
        .await
        .map_err(db)?;
    let kept = match vault::pending_for_task(&mut tx, &h.keys, task.id)
        .await
        .map_err(db)?
    {
        Some(p) => Kept {
            kept: p,
            retried: true,
        },
        None => {
            let secret = generate_password();
            let id = vault::put_pending(
                &mut tx,
                &h.keys,
                &vault::NewItem {
                    connector_id: connector,
                    task_id: Some(task.id),
                    account_external_id: "",
                    account_label: new.user_principal_name.trim(),
                    requested_by: &task.requested_by,
                },
                &secret,
            )
            .await
            .map_err(db)?;
            Kept {
                kept: vault::Pending {
                    id,
                    created_at: time::OffsetDateTime::now_utc(),
                    secret,
                },
                retried: false,
            }
        }
    };
    tx.commit().await.map_err(db)?;
    Ok(kept)
}

/// How far apart Latchkey's and Entra's clocks may be when a retry decides whether an
/// existing account is the one its lost attempt created.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(1);

/// Creates the account with the kept `password` (kept at `kept_at`): `(object id, UPN)`. On a
/// retry (`retried`: an earlier attempt had the same password), "that UPN already exists" for
/// an account created after the password was kept is the account the lost attempt created
/// (with that same password), not a conflict. The self-hosted connector uses it too.
pub(super) async fn created_or_ours(
    graph: &crate::graph::GraphClient,
    new: &NewAccount,
    password: &latchkey_crypto::SecretString,
    kept_at: time::OffsetDateTime,
    retried: bool,
) -> Result<(Uuid, String), AccountError> {
    match create_account(graph, new, password).await {
        Ok(c) => Ok((c.id, c.user_principal_name)),
        Err(AccountError::DuplicateUpn(upn)) if retried => match find_by_upn(graph, &upn).await? {
            Some((id, Some(created))) if created >= kept_at - CLOCK_SKEW => Ok((id, upn)),
            _ => Err(AccountError::DuplicateUpn(upn)),
        },
        Err(e) => Err(e),
    }
}

/// Runs a `create_account` task.
pub(super) async fn create(
    h: &ProvisionHandler,
    ctx: &JobContext,
    connector: Uuid,
    task: &Task,
) -> Result<(), JobError> {
    let org = ctx.org().expect("checked");
    let store = ctx.store();
    let enabled = settings(ctx, connector)
        .await?
        .is_some_and(|s| s.provisioning);
    if !enabled {
        let why = Refusal::ProvisioningDisabled.to_string();
        return h.fail(ctx, task, "refused", &why, None).await;
    }
    let new: NewAccount = serde_json::from_value(task.details.clone())
        .map_err(|e| JobError::permanent(format!("the account task is unreadable: {e}")))?;
    let Ok(graph) = graph(h, ctx, connector, task).await? else {
        return Err(JobError::permanent("could not connect to the tenant"));
    };
    ctx.check_in().await?;

    // A retried job whose first attempt created the account continues from it.
    let existing = task
        .details
        .get("account_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    let account = match existing {
        Some(id) => id,
        None => {
            let pending = keep_password(h, ctx, connector, task, &new).await?;
            match created_or_ours(
                &graph,
                &new,
                &pending.kept.secret,
                pending.kept.created_at,
                pending.retried,
            )
            .await
            {
                Ok((id, upn)) => {
                    let mut tx = store.org_tx(org).await.map_err(db)?;
                    vault::activate(&mut tx, &h.keys, pending.kept.id, &id.to_string(), &upn)
                        .await
                        .map_err(db)?;
                    provisioning::set_vault_item(&mut tx, task.id, pending.kept.id)
                        .await
                        .map_err(db)?;
                    provisioning::set_provisioned(
                        &mut tx,
                        task.id,
                        &json!({"account_id": id.to_string()}),
                    )
                    .await
                    .map_err(db)?;
                    provisioning::add_event(
                        &mut tx,
                        task.id,
                        WORKER,
                        "provisioned",
                        Some(&format!(
                            "Microsoft Graph created {upn} (sign-in with a one-time password that must be changed at first sign-in)"
                        )),
                    )
                    .await
                    .map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    id
                }
                // Graph may have created the account before the answer was lost: the
                // password stays kept for the retry.
                Err(AccountError::Graph(e)) if e.is_transient() => {
                    return h.graph_failed(ctx, task, e.to_string(), true).await;
                }
                Err(e) => {
                    // No account holds the password: drop it.
                    let mut tx = store.org_tx(org).await.map_err(db)?;
                    vault::discard_pending(&mut tx, task.id).await.map_err(db)?;
                    tx.commit().await.map_err(db)?;
                    return match e {
                        AccountError::Graph(e) => {
                            h.graph_failed(ctx, task, e.to_string(), false).await
                        }
                        e => h.fail(ctx, task, "failed", &e.to_string(), None).await,
                    };
                }
            }
        }
    };
    ctx.check_in().await?;

    if let Some(manager) = new.manager
        && let Err(e) = set_manager(&graph, account, manager).await
    {
        let warning = format!("The account was created, but its manager could not be set: {e}");
        let mut tx = store.org_tx(org).await.map_err(db)?;
        provisioning::add_warning(&mut tx, task.id, &warning)
            .await
            .map_err(db)?;
        provisioning::add_event(&mut tx, task.id, WORKER, "warning", Some(&warning))
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
    }

    match read_back(&graph, account, Expect::Exists, h.verify).await {
        Ok(user) => {
            let row = user.as_ref().and_then(map::user).ok_or_else(|| {
                JobError::permanent("Microsoft Graph returned the account without an id")
            })?;
            let mut tx = store.org_tx(org).await.map_err(db)?;
            resources::upsert_resources(&mut tx, connector, task.id, &[row])
                .await
                .map_err(db)?;
            let resource = provisioning::user_resource_id(&mut tx, connector, &account.to_string())
                .await
                .map_err(db)?;
            provisioning::stamp_provisioned(&mut tx, connector, resource)
                .await
                .map_err(db)?;
            provisioning::set_principal(&mut tx, task.id, resource)
                .await
                .map_err(db)?;
            provisioning::set_verified(&mut tx, task.id)
                .await
                .map_err(db)?;
            provisioning::add_event(
                &mut tx,
                task.id,
                WORKER,
                "verified",
                Some("the account was read back from Microsoft Graph"),
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)?;
            ctx.info("Account created and verified in Microsoft Graph")
                .await?;
            Ok(())
        }
        Err(why) => {
            let error = format!("The account could not be verified: {why}.");
            h.fail(ctx, task, "verification_failed", &error, Some(&why))
                .await
        }
    }
}

/// Runs a `deprovision_account` task.
pub(super) async fn deprovision(
    h: &ProvisionHandler,
    ctx: &JobContext,
    connector: Uuid,
    task: &Task,
) -> Result<(), JobError> {
    let org = ctx.org().expect("checked");
    let store = ctx.store();
    let settings = settings(ctx, connector).await?;
    let delete = task.details.get("delete") == Some(&json!(true));
    if !settings.as_ref().is_some_and(|s| s.provisioning) {
        let why = Refusal::ProvisioningDisabled.to_string();
        return h.fail(ctx, task, "refused", &why, None).await;
    }
    let mut tx = store.org_tx(org).await.map_err(db)?;
    let account = match task.principal_id {
        Some(p) => match resources::get_resource(&mut tx, connector, p).await {
            Err(StoreError::NotFound) => None,
            r => Some(r.map_err(db)?),
        },
        None => None,
    };
    tx.commit().await.map_err(db)?;
    let refusal = match &account {
        None => Some("The account no longer exists in Latchkey's copy of the tenant (a sync removed it); nothing was changed.".to_string()),
        Some(a) if a.rtype != "user" => Some(format!(
            "{} is not a user account; only user accounts can be deprovisioned.",
            a.display_name
        )),
        Some(a) if a.profile.get("on_premises_sync_enabled") == Some(&json!(true)) => Some(format!(
            "{} is synchronised from on-premises Active Directory, so Entra cannot disable or delete it: disable it in Active Directory.",
            a.display_name
        )),
        _ if delete && !settings.as_ref().is_some_and(|s| s.allow_account_deletion) => {
            Some(DELETION_OFF.to_string())
        }
        _ => None,
    };
    if let Some(why) = refusal {
        return h.fail(ctx, task, "refused", &why, None).await;
    }
    let account = account.expect("checked above");
    let Ok(object) = Uuid::parse_str(&account.external_id) else {
        return h
            .fail(
                ctx,
                task,
                "refused",
                "The account's object id is not valid.",
                None,
            )
            .await;
    };
    let Ok(graph) = graph(h, ctx, connector, task).await? else {
        return Err(JobError::permanent("could not connect to the tenant"));
    };
    ctx.log(
        LogLevel::Info,
        format!(
            "Deprovisioning {}{}",
            account.display_name,
            if delete { " (and deleting it)" } else { "" }
        ),
        json!({"task_id": task.id}),
    )
    .await?;
    let done = match deprovision_account(&graph, object, delete).await {
        Ok(d) => d,
        Err(e) => {
            let transient = e.is_transient();
            return h.graph_failed(ctx, task, e.to_string(), transient).await;
        }
    };
    let mut tx = store.org_tx(org).await.map_err(db)?;
    provisioning::set_provisioned(&mut tx, task.id, &json!({"deleted": done.gone}))
        .await
        .map_err(db)?;
    let note = if done.gone {
        "the account is deleted (or was already gone)"
    } else {
        "Microsoft Graph disabled sign-in and revoked the account's sessions"
    };
    provisioning::add_event(&mut tx, task.id, WORKER, "provisioned", Some(note))
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    ctx.check_in().await?;

    let expect = if done.gone {
        Expect::Gone
    } else {
        Expect::Disabled
    };
    match read_back(&graph, object, expect, h.verify).await {
        Ok(_) => {
            let mut tx = store.org_tx(org).await.map_err(db)?;
            provisioning::record_deprovisioned(&mut tx, connector, account.id, done.gone)
                .await
                .map_err(db)?;
            provisioning::set_verified(&mut tx, task.id)
                .await
                .map_err(db)?;
            provisioning::add_event(
                &mut tx,
                task.id,
                WORKER,
                "verified",
                Some(if done.gone {
                    "the account is gone from Microsoft Graph"
                } else {
                    "Microsoft Graph shows sign-in disabled"
                }),
            )
            .await
            .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(())
        }
        Err(why) => {
            let error = format!("The change could not be verified: {why}.");
            h.fail(ctx, task, "verification_failed", &error, Some(&why))
                .await
        }
    }
}
