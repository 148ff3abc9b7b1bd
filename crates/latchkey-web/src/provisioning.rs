//! Provisioning as a service shared by the pages and the REST API: ask for a grant (optionally
//! time-bound), a revoke, an account or a deprovisioning (each a task run by a job), and
//! reveal a vault item once. Each operation checks who may do it and what is valid first; a
//! refused request stores nothing (a refused reveal is audited).

use crate::connectors::ServiceError;
use crate::error::FieldError;
use crate::state::AppState;
use latchkey_core::{OrgId, Role, UserId};
use latchkey_crypto::SecretString;
use latchkey_entra::provision::accounts::{NewAccount, check};
use latchkey_entra::provision::{
    Ask, request, request_account, request_deprovision, request_expiring,
};
use latchkey_store::audit::{self, NewEvent};
use latchkey_store::provisioning::actor_for;
use latchkey_store::vault::{self, RevealError, VaultItem};
use latchkey_store::{OrgTx, StoreError, connectors, resources};
use serde::Deserialize;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Who asks: a signed-in person or an API client.
#[derive(Clone, Debug)]
pub struct Asker {
    pub org: OrgId,
    /// `user:<id>` or `api_client:<id>`, as tasks and vault items record it.
    pub requested_by: String,
    pub user: Option<UserId>,
    pub role: Role,
}

impl Asker {
    pub fn user(org: OrgId, user: UserId, role: Role) -> Self {
        Asker {
            org,
            requested_by: format!("user:{}", user.0),
            user: Some(user),
            role,
        }
    }

    pub fn api_client(org: OrgId, client: Uuid, role: Role) -> Self {
        Asker {
            org,
            requested_by: format!("api_client:{client}"),
            user: None,
            role,
        }
    }
}

pub const ONLY_PROVISIONERS: &str = "Only Super Administrators, Connector Administrators and this connector's owners can change access through it.";
const ONLY_REVEALERS: &str = "Only the person who asked for this account and the connector's owners can reveal its password.";

/// The longest a time-bound grant may run.
pub const MAX_GRANT_DAYS: i64 = 366;

/// Whether `who` may provision through `connector` (another organization's: NotFound).
pub async fn may_provision(
    tx: &mut OrgTx,
    who: &Asker,
    connector: Uuid,
) -> Result<bool, ServiceError> {
    connectors::get(tx, connector).await?;
    if who.role.can_manage_connectors() {
        return Ok(true);
    }
    Ok(match who.user {
        Some(u) => connectors::is_owner(tx, connector, u).await?,
        None => false,
    })
}

async fn authorised(tx: &mut OrgTx, who: &Asker, connector: Uuid) -> Result<(), ServiceError> {
    if may_provision(tx, who, connector).await? {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(ONLY_PROVISIONERS))
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(vec![FieldError {
        field: field.to_string(),
        message: message.into(),
    }])
}

/// Parses a grant's end: RFC 3339, at least a minute ahead, at most [`MAX_GRANT_DAYS`].
pub fn parse_expires_at(raw: &str) -> Result<OffsetDateTime, ServiceError> {
    let at = OffsetDateTime::parse(raw.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            invalid(
                "expires_at",
                "give the end as an RFC 3339 date and time, e.g. 2030-01-31T18:00:00Z",
            )
        })?;
    let now = OffsetDateTime::now_utc();
    if at < now + Duration::minutes(1) {
        return Err(invalid(
            "expires_at",
            "the end must be in the future (at least a minute from now)",
        ));
    }
    if at > now + Duration::days(MAX_GRANT_DAYS) {
        return Err(invalid(
            "expires_at",
            format!(
                "a time-bound grant may run at most {MAX_GRANT_DAYS} days; choose an earlier end or leave it out"
            ),
        ));
    }
    Ok(at)
}

/// Asks for a grant of `entitlement` to `principal`, ending at `expires_at` when given.
pub async fn grant(
    state: &AppState,
    who: &Asker,
    connector: Uuid,
    entitlement: Uuid,
    principal: Uuid,
    expires_at: Option<&str>,
) -> Result<Uuid, ServiceError> {
    let mut tx = state.store.org_tx(who.org).await?;
    authorised(&mut tx, who, connector).await?;
    let until = expires_at
        .filter(|e| !e.trim().is_empty())
        .map(parse_expires_at)
        .transpose()?;
    let ask = Ask::Grant {
        entitlement,
        principal,
    };
    let task = match until {
        Some(t) => request_expiring(&mut tx, connector, ask, &who.requested_by, t).await?,
        None => request(&mut tx, connector, ask, &who.requested_by).await?,
    };
    tx.commit().await?;
    Ok(task)
}

/// Asks for the revoke of a stored grant.
pub async fn revoke(
    state: &AppState,
    who: &Asker,
    connector: Uuid,
    grant: Uuid,
) -> Result<Uuid, ServiceError> {
    let mut tx = state.store.org_tx(who.org).await?;
    authorised(&mut tx, who, connector).await?;
    let task = request(&mut tx, connector, Ask::Revoke { grant }, &who.requested_by).await?;
    tx.commit().await?;
    Ok(task)
}

/// A new account as the API and the form send it. `manager_id` is a stored user of the connector.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    #[serde(default)]
    pub user_principal_name: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub mail_nickname: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub department: Option<String>,
    pub job_title: Option<String>,
    pub employee_id: Option<String>,
    pub manager_id: Option<Uuid>,
    pub usage_location: Option<String>,
}

impl AccountInput {
    /// The account to create (trimmed, blanks as absent), with the manager's Entra object id.
    pub fn to_new_account(&self, manager: Option<Uuid>) -> NewAccount {
        NewAccount {
            user_principal_name: self.user_principal_name.trim().to_string(),
            display_name: self.display_name.trim().to_string(),
            mail_nickname: self.mail_nickname.trim().to_string(),
            given_name: blank_none(&self.given_name),
            surname: blank_none(&self.surname),
            department: blank_none(&self.department),
            job_title: blank_none(&self.job_title),
            employee_id: blank_none(&self.employee_id),
            usage_location: blank_none(&self.usage_location).map(|l| l.to_ascii_uppercase()),
            manager,
        }
    }
}

fn blank_none(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Asks for a new account. Returns the task id.
pub async fn create_account(
    state: &AppState,
    who: &Asker,
    connector: Uuid,
    input: &AccountInput,
) -> Result<Uuid, ServiceError> {
    let mut tx = state.store.org_tx(who.org).await?;
    authorised(&mut tx, who, connector).await?;
    // A self-hosted connector's last connection test is its own: `capabilities` are empty and
    // Entra itself checks the domain when the connector creates the account.
    let row = connectors::get(&mut tx, connector).await?;
    let verified: Vec<String> = row
        .capabilities
        .as_ref()
        .and_then(|c| c.pointer("/tenant/verified_domains"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut problems = Vec::new();
    let manager = match input.manager_id {
        Some(m) => match resources::get_resource(&mut tx, connector, m).await {
            Ok(r) if r.rtype == "user" => Uuid::parse_str(&r.external_id).ok(),
            Ok(_) | Err(StoreError::NotFound) => {
                problems.push(FieldError {
                    field: "manager_id".into(),
                    message: "choose a user account of this connector as the manager".into(),
                });
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let new = input.to_new_account(manager);
    if let Err(ps) = check(&new, &verified) {
        problems.extend(ps.into_iter().map(|p| FieldError {
            field: p.field.to_string(),
            message: p.message,
        }));
    }
    if !problems.is_empty() {
        return Err(ServiceError::Invalid(problems));
    }
    let task = request_account(&mut tx, connector, &new, &who.requested_by).await?;
    tx.commit().await?;
    Ok(task)
}

/// Asks for an account to be deprovisioned (and deleted, when `delete` and the connector allows).
pub async fn deprovision(
    state: &AppState,
    who: &Asker,
    connector: Uuid,
    account: Uuid,
    delete: bool,
) -> Result<Uuid, ServiceError> {
    let mut tx = state.store.org_tx(who.org).await?;
    authorised(&mut tx, who, connector).await?;
    let r = resources::get_resource(&mut tx, connector, account).await?;
    if r.rtype != "user" {
        return Err(invalid(
            "resource_id",
            format!(
                "{} is not a user account; only user accounts can be deprovisioned",
                r.display_name
            ),
        ));
    }
    let task = request_deprovision(&mut tx, connector, account, delete, &who.requested_by).await?;
    tx.commit().await?;
    Ok(task)
}

/// Why a reveal did not happen.
#[derive(Debug)]
pub enum RevealRefused {
    NotFound,
    Forbidden(&'static str),
    /// Already revealed: by whom and when.
    Gone(Box<VaultItem>),
    Store(StoreError),
}

impl From<StoreError> for RevealRefused {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => RevealRefused::NotFound,
            other => RevealRefused::Store(other),
        }
    }
}

/// Whether `who` may read `item` (the asker, or an owner of its connector).
pub async fn may_reveal(tx: &mut OrgTx, who: &Asker, item: &VaultItem) -> Result<bool, StoreError> {
    if item.requested_by == who.requested_by {
        return Ok(true);
    }
    Ok(match who.user {
        Some(u) => connectors::is_owner(tx, item.connector_id, u).await?,
        None => false,
    })
}

async fn audit_reveal(
    tx: &mut OrgTx,
    who: &Asker,
    item: &VaultItem,
    action: &str,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let actor = actor_for(tx, &who.requested_by).await?;
    let mut details = json!({
        "connector_id": item.connector_id.to_string(),
        "account": item.account_label,
        "account_id": item.account_external_id,
    });
    if let Some(t) = item.task_id {
        details["task_id"] = json!(t.to_string());
    }
    if let Some(r) = reason {
        details["reason"] = json!(r);
    }
    audit::append(
        tx,
        &NewEvent {
            actor: &actor,
            action,
            target_kind: "vault_item",
            target_id: Some(item.id.to_string()),
            details,
        },
    )
    .await?;
    Ok(())
}

/// Reveals a vault item once. Every reveal and every refused attempt (not allowed, already
/// revealed) is an audit event.
pub async fn reveal(
    state: &AppState,
    who: &Asker,
    id: Uuid,
) -> Result<(VaultItem, SecretString), RevealRefused> {
    let mut tx = state.store.org_tx(who.org).await?;
    let item = vault::get(&mut tx, id).await?;
    if !may_reveal(&mut tx, who, &item).await? {
        audit_reveal(
            &mut tx,
            who,
            &item,
            "vault.reveal_refused",
            Some("not_allowed"),
        )
        .await?;
        tx.commit().await?;
        return Err(RevealRefused::Forbidden(ONLY_REVEALERS));
    }
    let label = actor_for(&mut tx, &who.requested_by).await?.label;
    match vault::reveal(&mut tx, &state.keys, id, &who.requested_by, &label).await {
        Ok((item, secret)) => {
            audit_reveal(&mut tx, who, &item, "vault.revealed", None).await?;
            tx.commit().await?;
            Ok((item, secret))
        }
        Err(RevealError::AlreadyRevealed(item)) => {
            audit_reveal(
                &mut tx,
                who,
                &item,
                "vault.reveal_refused",
                Some("already_revealed"),
            )
            .await?;
            tx.commit().await?;
            Err(RevealRefused::Gone(item))
        }
        Err(RevealError::Store(e)) => Err(e.into()),
    }
}
