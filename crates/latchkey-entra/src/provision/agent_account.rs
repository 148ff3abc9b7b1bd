//! Account tasks (create, deprovision) through a self-hosted connector, split where the
//! database ends as grants are ([`super::agent`]): the server keeps the new account's password
//! pending in the vault and hands it, with the account to create, to that tenant's connector
//! ([`prepare`]); the connector creates or deprovisions the account with the hosted task's
//! Graph calls and reads it back ([`carry_out`]); the server binds the password to the
//! account, stores the account and marks the task, as the hosted task does ([`record`]).
//!
//! The password travels in one place only: the task handed to the connector, over its
//! authenticated channel (it is the customer's own tenant, and the connector must send it to
//! Graph). The copy of the plan Latchkey keeps with the job ([`AccountTask::without_password`])
//! and every log line leave it out. A task handed out again (the connector stopped after
//! creating the account, before reporting) carries the same kept password, and the connector
//! recognises the account its lost attempt created instead of creating a second one.

use latchkey_crypto::{ExposeSecret, KeyRing, SecretString};
use latchkey_store::provisioning::{self, Task};
use latchkey_store::{OrgTx, StoreError, resources, vault};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::account_job::created_or_ours;
use super::accounts::{
    AccountError, Expect, NewAccount, deprovision, generate_password, read_back, set_manager,
};
use super::agent::{ACTOR, PROVISIONING_OFF, Prepared, Recorded, refuse, unsettled};
use super::write::VerifyPolicy;
use crate::graph::GraphClient;
use crate::sync::map;

/// An account task as the connector receives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountTask {
    pub task_id: Uuid,
    /// For messages: "create account alex@contoso.com".
    pub summary: String,
    pub work: AccountWork,
}

/// What to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "snake_case")]
pub enum AccountWork {
    CreateAccount {
        account: Box<NewAccount>,
        /// The first password, kept pending in Latchkey's vault before the task was handed
        /// out. Only in the task the connector receives.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            serialize_with = "expose_password",
            deserialize_with = "read_password"
        )]
        password: Option<SecretString>,
        /// When the password was kept: an account with this UPN created since then is the one
        /// a lost attempt made with it.
        #[serde(with = "time::serde::rfc3339")]
        kept_at: OffsetDateTime,
        /// An earlier attempt was handed the same password (and may have created the account).
        retried: bool,
    },
    DeprovisionAccount {
        /// The account's object id in the tenant.
        account_id: Uuid,
        display_name: String,
        /// Also delete it (the connector's LATCHKEY_ALLOW_ACCOUNT_DELETION decides).
        delete: bool,
    },
}

fn expose_password<S: Serializer>(p: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_some(p.expose_secret()),
        None => s.serialize_none(),
    }
}

fn read_password<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(SecretString::from))
}

impl AccountTask {
    /// The plan as Latchkey keeps it with the job: everything but the password.
    pub fn without_password(&self) -> AccountTask {
        let mut t = self.clone();
        if let AccountWork::CreateAccount { password, .. } = &mut t.work {
            *password = None;
        }
        t
    }

    fn retried(&self) -> bool {
        matches!(self.work, AccountWork::CreateAccount { retried: true, .. })
    }
}

/// Plans account task `task` (already marked running by the caller): the kept password (a new
/// one, kept pending now, or the one an earlier attempt was handed), or a refusal recorded at
/// once for what the stored model already rules out.
pub(super) async fn prepare(
    tx: &mut OrgTx,
    keys: &KeyRing,
    connector: Uuid,
    task: &Task,
) -> Result<Prepared, StoreError> {
    match task.operation.as_str() {
        "create_account" => {
            let new: NewAccount = match serde_json::from_value(task.details.clone()) {
                Ok(n) => n,
                Err(e) => {
                    return refused(tx, task, format!("The account task is unreadable: {e}."))
                        .await;
                }
            };
            let upn = new.user_principal_name.trim().to_string();
            let (password, kept_at, retried) =
                match vault::pending_for_task(tx, keys, task.id).await? {
                    Some(p) => (p.secret, p.created_at, true),
                    None => {
                        let secret = generate_password();
                        vault::put_pending(
                            tx,
                            keys,
                            &vault::NewItem {
                                connector_id: connector,
                                task_id: Some(task.id),
                                account_external_id: "",
                                account_label: &upn,
                                requested_by: &task.requested_by,
                            },
                            &secret,
                        )
                        .await?;
                        (secret, OffsetDateTime::now_utc(), false)
                    }
                };
            Ok(Prepared::Account(Box::new(AccountTask {
                task_id: task.id,
                summary: format!("create account {upn}"),
                work: AccountWork::CreateAccount {
                    account: Box::new(new),
                    password: Some(password),
                    kept_at,
                    retried,
                },
            })))
        }
        "deprovision_account" => {
            let delete = task.details.get("delete") == Some(&json!(true));
            let account = match task.principal_id {
                Some(p) => match resources::get_resource(tx, connector, p).await {
                    Err(StoreError::NotFound) => None,
                    r => Some(r?),
                },
                None => None,
            };
            let Some(account) = account else {
                return refused(tx, task, "The account no longer exists in Latchkey's copy of the tenant (a sync removed it); nothing was changed.".into()).await;
            };
            if account.rtype != "user" {
                return refused(
                    tx,
                    task,
                    format!(
                        "{} is not a user account; only user accounts can be deprovisioned.",
                        account.display_name
                    ),
                )
                .await;
            }
            if account.profile.get("on_premises_sync_enabled") == Some(&json!(true)) {
                return refused(tx, task, format!(
                    "{} is synchronised from on-premises Active Directory, so Entra cannot disable or delete it: disable it in Active Directory.",
                    account.display_name
                ))
                .await;
            }
            let Ok(object) = Uuid::parse_str(&account.external_id) else {
                return refused(tx, task, "The account's object id is not valid.".into()).await;
            };
            Ok(Prepared::Account(Box::new(AccountTask {
                task_id: task.id,
                summary: format!(
                    "deprovision account {}{}",
                    account.display_name,
                    if delete { " (and delete it)" } else { "" }
                ),
                work: AccountWork::DeprovisionAccount {
                    account_id: object,
                    display_name: account.display_name,
                    delete,
                },
            })))
        }
        other => refused(tx, task, format!("{other} is not an account task.")).await,
    }
}

async fn refused(tx: &mut OrgTx, task: &Task, why: String) -> Result<Prepared, StoreError> {
    refuse(tx, task, &why).await?;
    Ok(Prepared::Refused(why))
}

/// What the connector did to the account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Done {
    Created {
        account_id: Uuid,
        user_principal_name: String,
        /// The account as read back from Graph (what the sync stores of a user).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<Value>,
    },
    Deprovisioned {
        /// Deleted (or already gone), rather than disabled.
        gone: bool,
    },
}

/// What the connector reports for an account task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AccountOutcome {
    /// Nothing was changed: provisioning or deletion is off on the connector.
    Refused { why: String },
    /// Graph failed before the account was created or deprovisioned; `transient` ones are
    /// retried while attempts are left (with the same kept password).
    Failed { why: String, transient: bool },
    /// Done, but reading it back did not show it in time.
    Unverified {
        why: String,
        done: Done,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
    },
    Verified {
        done: Done,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
    },
}

/// The sentence a connector without LATCHKEY_ALLOW_ACCOUNT_DELETION answers a deletion with.
pub const AGENT_DELETION_OFF: &str = "Deleting accounts is turned off on this self-hosted connector (LATCHKEY_ALLOW_ACCOUNT_DELETION=false), so the account was not changed. Deprovision it without deleting (sign-in is disabled and its sessions revoked), or set LATCHKEY_ALLOW_ACCOUNT_DELETION=true in the connector's environment.";

/// Carries out an account task against the tenant `graph` reaches (the connector's side).
pub async fn carry_out(
    graph: &GraphClient,
    task: &AccountTask,
    provisioning_enabled: bool,
    allow_deletion: bool,
    policy: VerifyPolicy,
) -> AccountOutcome {
    if !provisioning_enabled {
        return AccountOutcome::Refused {
            why: PROVISIONING_OFF.to_string(),
        };
    }
    match &task.work {
        AccountWork::CreateAccount {
            account,
            password,
            kept_at,
            retried,
        } => {
            let Some(password) = password else {
                return AccountOutcome::Refused {
                    why: "The task came without the account's password; nothing was changed."
                        .into(),
                };
            };
            let (id, upn) =
                match created_or_ours(graph, account, password, *kept_at, *retried).await {
                    Ok(v) => v,
                    Err(AccountError::Graph(e)) => {
                        return AccountOutcome::Failed {
                            why: e.to_string(),
                            transient: e.is_transient(),
                        };
                    }
                    Err(e) => {
                        return AccountOutcome::Failed {
                            why: e.to_string(),
                            transient: false,
                        };
                    }
                };
            let warning = match account.manager {
                Some(m) => set_manager(graph, id, m).await.err().map(|e| {
                    format!("The account was created, but its manager could not be set: {e}")
                }),
                None => None,
            };
            match read_back(graph, id, Expect::Exists, policy).await {
                Ok(user) => AccountOutcome::Verified {
                    done: Done::Created {
                        account_id: id,
                        user_principal_name: upn,
                        user,
                    },
                    warning,
                },
                Err(why) => AccountOutcome::Unverified {
                    why,
                    done: Done::Created {
                        account_id: id,
                        user_principal_name: upn,
                        user: None,
                    },
                    warning,
                },
            }
        }
        AccountWork::DeprovisionAccount {
            account_id, delete, ..
        } => {
            if *delete && !allow_deletion {
                return AccountOutcome::Refused {
                    why: AGENT_DELETION_OFF.to_string(),
                };
            }
            let done = match deprovision(graph, *account_id, *delete).await {
                Ok(d) => d,
                Err(e) => {
                    return AccountOutcome::Failed {
                        why: e.to_string(),
                        transient: e.is_transient(),
                    };
                }
            };
            let expect = if done.gone {
                Expect::Gone
            } else {
                Expect::Disabled
            };
            let done_now = Done::Deprovisioned { gone: done.gone };
            match read_back(graph, *account_id, expect, policy).await {
                Ok(_) => AccountOutcome::Verified {
                    done: done_now,
                    warning: None,
                },
                Err(why) => AccountOutcome::Unverified {
                    why,
                    done: done_now,
                    warning: None,
                },
            }
        }
    }
}

/// The provisioned half of a task (the account exists, or is disabled / gone): the password
/// is bound to the created account and becomes revealable.
async fn provisioned(
    tx: &mut OrgTx,
    keys: &KeyRing,
    task: &Task,
    done: &Done,
) -> Result<(), StoreError> {
    match done {
        Done::Created {
            account_id,
            user_principal_name,
            ..
        } => {
            if let Some(p) = vault::pending_for_task(tx, keys, task.id).await? {
                vault::activate(tx, keys, p.id, &account_id.to_string(), user_principal_name)
                    .await?;
                provisioning::set_vault_item(tx, task.id, p.id).await?;
            }
            provisioning::set_provisioned(
                tx,
                task.id,
                &json!({"account_id": account_id.to_string()}),
            )
            .await?;
            provisioning::add_event(
                tx,
                task.id,
                ACTOR,
                "provisioned",
                Some(&format!(
                    "The self-hosted connector created {user_principal_name} in Microsoft Graph (sign-in with a one-time password that must be changed at first sign-in)"
                )),
            )
            .await
        }
        Done::Deprovisioned { gone } => {
            provisioning::set_provisioned(tx, task.id, &json!({"deleted": gone})).await?;
            let note = if *gone {
                "the account is deleted (or was already gone)"
            } else {
                "the self-hosted connector disabled sign-in and revoked the account's sessions"
            };
            provisioning::add_event(tx, task.id, ACTOR, "provisioned", Some(note)).await
        }
    }
}

async fn failed(tx: &mut OrgTx, task: &Task, event: &str, why: &str) -> Result<(), StoreError> {
    provisioning::set_failed(tx, task.id, why, None).await?;
    provisioning::add_event(tx, task.id, ACTOR, event, Some(why)).await
}

/// Records the connector's outcome of `planned` (the plan kept with the job, without the
/// password) as the hosted account task records its own. `attempts_left`: whether a transient
/// failure is retried.
pub async fn record(
    tx: &mut OrgTx,
    keys: &KeyRing,
    connector: Uuid,
    planned: &AccountTask,
    outcome: &AccountOutcome,
    attempts_left: bool,
) -> Result<Recorded, StoreError> {
    let task = match unsettled(tx, planned.task_id).await? {
        Ok(task) => task,
        Err(recorded) => return Ok(recorded),
    };
    match outcome {
        AccountOutcome::Refused { why } => {
            // Nothing was sent to Graph in this attempt; a password an earlier attempt was
            // handed may be an account's already, so it stays kept.
            if !planned.retried() {
                vault::discard_pending(tx, task.id).await?;
            }
            refuse(tx, &task, why).await?;
            Ok(Recorded::Failed)
        }
        AccountOutcome::Failed { why, transient } => {
            if *transient && attempts_left {
                provisioning::add_event(tx, task.id, ACTOR, "retrying", Some(why)).await?;
                return Ok(Recorded::Retry);
            }
            // Graph refused the creation for good: no account holds the password. (A
            // transient failure may have created it before its answer was lost: kept.)
            if !*transient {
                vault::discard_pending(tx, task.id).await?;
            }
            failed(tx, &task, "failed", why).await?;
            Ok(Recorded::Failed)
        }
        AccountOutcome::Unverified { why, done, warning } => {
            provisioned(tx, keys, &task, done).await?;
            if let Some(w) = warning {
                warn(tx, &task, w).await?;
            }
            let error = match done {
                Done::Created { .. } => format!("The account could not be verified: {why}."),
                Done::Deprovisioned { .. } => format!("The change could not be verified: {why}."),
            };
            provisioning::set_failed(tx, task.id, &error, Some(why)).await?;
            provisioning::add_event(tx, task.id, ACTOR, "verification_failed", Some(&error))
                .await?;
            Ok(Recorded::Failed)
        }
        AccountOutcome::Verified { done, warning } => {
            provisioned(tx, keys, &task, done).await?;
            if let Some(w) = warning {
                warn(tx, &task, w).await?;
            }
            let note = match done {
                Done::Created {
                    account_id, user, ..
                } => {
                    let row = user
                        .as_ref()
                        .and_then(map::user)
                        .filter(|r| r.external_id.eq_ignore_ascii_case(&account_id.to_string()));
                    let Some(row) = row else {
                        let why = "The self-hosted connector reported the account without reading it back from Microsoft Graph.";
                        provisioning::set_failed(tx, task.id, why, Some(why)).await?;
                        provisioning::add_event(
                            tx,
                            task.id,
                            ACTOR,
                            "verification_failed",
                            Some(why),
                        )
                        .await?;
                        return Ok(Recorded::Failed);
                    };
                    resources::upsert_resources(tx, connector, task.id, &[row]).await?;
                    let resource =
                        provisioning::user_resource_id(tx, connector, &account_id.to_string())
                            .await?;
                    provisioning::stamp_provisioned(tx, connector, resource).await?;
                    provisioning::set_principal(tx, task.id, resource).await?;
                    "the account was read back from Microsoft Graph by the self-hosted connector"
                }
                Done::Deprovisioned { gone } => {
                    if let Some(account) = task.principal_id {
                        provisioning::record_deprovisioned(tx, connector, account, *gone).await?;
                    }
                    if *gone {
                        "the self-hosted connector found the account gone from Microsoft Graph"
                    } else {
                        "the self-hosted connector read back sign-in disabled from Microsoft Graph"
                    }
                }
            };
            provisioning::set_verified(tx, task.id).await?;
            provisioning::add_event(tx, task.id, ACTOR, "verified", Some(note)).await?;
            Ok(Recorded::Succeeded)
        }
    }
}

async fn warn(tx: &mut OrgTx, task: &Task, warning: &str) -> Result<(), StoreError> {
    provisioning::add_warning(tx, task.id, warning).await?;
    provisioning::add_event(tx, task.id, ACTOR, "warning", Some(warning)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_plan_has_no_password_and_the_handed_out_task_has_it() {
        let task = AccountTask {
            task_id: Uuid::nil(),
            summary: "create account a@contoso.com".into(),
            work: AccountWork::CreateAccount {
                account: Box::new(NewAccount {
                    user_principal_name: "a@contoso.com".into(),
                    display_name: "A".into(),
                    mail_nickname: "a".into(),
                    ..Default::default()
                }),
                password: Some(SecretString::from("s3cret-Aa1".to_string())),
                kept_at: OffsetDateTime::UNIX_EPOCH,
                retried: false,
            },
        };
        let out = serde_json::to_string(&task).unwrap();
        assert!(out.contains("s3cret-Aa1"));
        let back: AccountTask = serde_json::from_str(&out).unwrap();
        let AccountWork::CreateAccount { password, .. } = &back.work else {
            panic!("a create task");
        };
        assert_eq!(password.as_ref().unwrap().expose_secret(), "s3cret-Aa1");
        assert!(!format!("{task:?}").contains("s3cret-Aa1"));
        let kept = serde_json::to_string(&task.without_password()).unwrap();
        assert!(!kept.contains("s3cret-Aa1"));
        assert!(!kept.contains("password"));
        let _: AccountTask = serde_json::from_str(&kept).unwrap();
    }
}
