//! Provisioning tasks (one grant, revoke, account creation or deprovisioning each, with the
//! timestamps of its life), their append-only event trail mirrored into the audit trail, and
//! the immediate update of stored grants once a change is verified.

use crate::audit::{self, Actor, NewEvent};
use crate::page::{Cursor, Page};
use crate::{OrgTx, Result, StoreError};
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

/// What to record when a task is asked for.
#[derive(Debug, Clone)]
pub struct NewTask<'a> {
    pub id: Uuid,
    pub connector_id: Uuid,
    pub job_id: Option<Uuid>,
    /// `grant`, `revoke`, `create_account` or `deprovision_account`.
    pub operation: &'a str,
    /// Set for `grant` and `revoke`.
    pub entitlement_id: Option<Uuid>,
    /// The grantee, or the account to deprovision; none for `create_account` (until created).
    pub principal_id: Option<Uuid>,
    pub grant_id: Option<Uuid>,
    /// `user:<id>` or `api_client:<id>`.
    pub requested_by: &'a str,
    /// What else the asker said, e.g. `{"until": "<RFC 3339>"}` for a time-bound grant.
    pub details: Value,
}

#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct Task {
    pub id: Uuid,
    pub connector_id: Uuid,
    pub job_id: Option<Uuid>,
    pub operation: String,
    pub entitlement_id: Option<Uuid>,
    pub principal_id: Option<Uuid>,
    pub grant_id: Option<Uuid>,
    /// The created account's one-time password, for `create_account`.
    pub vault_item_id: Option<Uuid>,
    pub status: String,
    pub error: Option<String>,
    pub verification_failed: Option<String>,
    pub details: Value,
    pub requested_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub provisioned_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub verified_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The job's own status and last error (a job that died without the handler finishing
    /// the task, e.g. its worker was killed on the last attempt).
    pub job_status: Option<String>,
    pub job_error: Option<String>,
}

impl Task {
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed")
    }
}

const TASK_COLUMNS: &str = "t.id, t.connector_id, t.job_id, t.operation, t.entitlement_id, t.principal_id, t.grant_id,
    t.vault_item_id, t.status, t.error, t.verification_failed, t.details, t.requested_by, t.requested_at, t.started_at,
    t.provisioned_at, t.verified_at, t.finished_at, j.status AS job_status, j.last_error AS job_error";

/// Records a new task (status `queued`) and its `requested` event.
pub async fn create_task(tx: &mut OrgTx, new: &NewTask<'_>) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "INSERT INTO provisioning_tasks (id, org_id, connector_id, job_id, operation, entitlement_id, principal_id, grant_id, requested_by, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(new.id)
    .bind(org.0)
    .bind(new.connector_id)
    .bind(new.job_id)
    .bind(new.operation)
    .bind(new.entitlement_id)
    .bind(new.principal_id)
    .bind(new.grant_id)
    .bind(new.requested_by)
    .bind(&new.details)
    .execute(tx.conn())
    .await?;
    let what = match (new.operation, new.entitlement_id, new.principal_id) {
        (op, Some(e), Some(p)) => format!("{op} of entitlement {e} to principal {p}"),
        ("deprovision_account", _, Some(p)) => format!("deprovision account {p}"),
        (op, ..) => op.replace('_', " "),
    };
    add_event(tx, new.id, new.requested_by, "requested", Some(&what)).await
}

pub async fn set_job(tx: &mut OrgTx, task: Uuid, job: Uuid) -> Result<()> {
    sqlx::query("UPDATE provisioning_tasks SET job_id = $2 WHERE id = $1")
        .bind(task)
        .bind(job)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// A connector's tasks, newest first.
pub async fn list_tasks(
    tx: &mut OrgTx,
    connector: Uuid,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page<Task>> {
    let org = tx.org();
    // Task ids are UUIDv7: ordered by the time they were asked for.
    let rows: Vec<Task> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM provisioning_tasks t LEFT JOIN jobs j ON j.id = t.job_id AND j.org_id = t.org_id
          WHERE t.org_id = $1 AND t.connector_id = $2 AND ($3::uuid IS NULL OR t.id < $3)
          ORDER BY t.id DESC LIMIT $4"
    )))
    .bind(org.0)
    .bind(connector)
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |t| t.id))
}

pub async fn get_task(tx: &mut OrgTx, id: Uuid) -> Result<Task> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM provisioning_tasks t LEFT JOIN jobs j ON j.id = t.job_id AND j.org_id = t.org_id
          WHERE t.org_id = $1 AND t.id = $2"
    )))
    .bind(org.0)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// The created account's password is in the vault.
pub async fn set_vault_item(tx: &mut OrgTx, task: Uuid, item: Uuid) -> Result<()> {
    sqlx::query("UPDATE provisioning_tasks SET vault_item_id = $2 WHERE id = $1")
        .bind(task)
        .bind(item)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// The account a `create_account` task made, once it is stored as a resource.
pub async fn set_principal(tx: &mut OrgTx, task: Uuid, principal: Uuid) -> Result<()> {
    sqlx::query("UPDATE provisioning_tasks SET principal_id = $2 WHERE id = $1")
        .bind(task)
        .bind(principal)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// The job picked the task up (again).
pub async fn set_running(tx: &mut OrgTx, id: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE provisioning_tasks SET status = 'running', started_at = coalesce(started_at, now())
          WHERE id = $1 AND status IN ('queued', 'running')",
    )
    .bind(id)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Graph accepted the change (or said it was already so); `details` says what was sent.
pub async fn set_provisioned(tx: &mut OrgTx, id: Uuid, details: &Value) -> Result<()> {
    sqlx::query(
        "UPDATE provisioning_tasks SET provisioned_at = coalesce(provisioned_at, now()), details = details || $2
          WHERE id = $1",
    )
    .bind(id)
    .bind(details)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// A warning on a task that still succeeded (e.g. the app has no SCIM provisioning job), kept
/// in `details.warnings`.
pub async fn add_warning(tx: &mut OrgTx, id: Uuid, warning: &str) -> Result<()> {
    sqlx::query(
        "UPDATE provisioning_tasks
            SET details = jsonb_set(details, '{warnings}', coalesce(details->'warnings', '[]'::jsonb) || to_jsonb($2::text))
          WHERE id = $1",
    )
    .bind(id)
    .bind(warning)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The change was read back from Graph: the task succeeded.
pub async fn set_verified(tx: &mut OrgTx, id: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE provisioning_tasks SET status = 'succeeded', verified_at = now(), finished_at = now(),
                error = NULL, verification_failed = NULL
          WHERE id = $1",
    )
    .bind(id)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The task failed: refused, refused by Graph, out of retries, or not verified (`verification`
/// then says why).
pub async fn set_failed(
    tx: &mut OrgTx,
    id: Uuid,
    error: &str,
    verification: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE provisioning_tasks SET status = 'failed', error = $2, verification_failed = $3, finished_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(verification)
    .execute(tx.conn())
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct Event {
    pub id: i64,
    pub task_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub event: String,
    pub detail: Option<String>,
}

/// Appends to the task's trail (who, what, result). The steps that matter to an auditor
/// (requested, refused, provisioned, verified, verification_failed, failed) also go to the
/// organization's audit trail, in the same transaction.
pub async fn add_event(
    tx: &mut OrgTx,
    task: Uuid,
    actor: &str,
    event: &str,
    detail: Option<&str>,
) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "INSERT INTO provisioning_events (org_id, task_id, actor, event, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(org.0)
    .bind(task)
    .bind(actor)
    .bind(event)
    .bind(detail)
    .execute(tx.conn())
    .await?;
    let result = match event {
        "requested" | "refused" | "verified" | "verification_failed" | "failed" => event,
        // Graph accepted the write: the audit trail's "succeeded" (verification follows).
        "provisioned" => "succeeded",
        _ => return Ok(()),
    };
    audit_task(tx, task, result, detail).await
}

#[derive(FromRow)]
struct AuditFacts {
    connector_id: Uuid,
    operation: String,
    entitlement_id: Option<Uuid>,
    principal_id: Option<Uuid>,
    grant_id: Option<Uuid>,
    vault_item_id: Option<Uuid>,
    requested_by: String,
    details: Value,
}

/// The audit action of a task's step: `provisioning.grant_requested`,
/// `provisioning.account_create_verified`, ...
pub fn audit_action(operation: &str, result: &str) -> String {
    let op = match operation {
        "create_account" => "account_create",
        "deprovision_account" => "account_deprovision",
        other => other,
    };
    format!("provisioning.{op}_{result}")
}

async fn audit_task(tx: &mut OrgTx, task: Uuid, result: &str, detail: Option<&str>) -> Result<()> {
    let org = tx.org();
    let f: AuditFacts = sqlx::query_as(
        "SELECT connector_id, operation, entitlement_id, principal_id, grant_id, vault_item_id, requested_by, details
           FROM provisioning_tasks WHERE org_id = $1 AND id = $2",
    )
    .bind(org.0)
    .bind(task)
    .fetch_one(tx.conn())
    .await?;
    // Who asked does the asking; what follows is Latchkey's worker acting for them.
    let actor = if result == "requested" {
        actor_for(tx, &f.requested_by).await?
    } else {
        Actor::system("provisioning")
    };
    let mut details = serde_json::Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            details.insert(k.to_string(), Value::String(v));
        }
    };
    put("result", Some(result.to_string()));
    put("requested_by", Some(f.requested_by.clone()));
    put("connector_id", Some(f.connector_id.to_string()));
    put("entitlement_id", f.entitlement_id.map(|u| u.to_string()));
    put("principal_id", f.principal_id.map(|u| u.to_string()));
    put("grant_id", f.grant_id.map(|u| u.to_string()));
    put("vault_item_id", f.vault_item_id.map(|u| u.to_string()));
    put("detail", detail.map(str::to_string));
    for k in ["until", "user_principal_name"] {
        put(
            k,
            f.details.get(k).and_then(Value::as_str).map(str::to_string),
        );
    }
    if let Some(d) = f.details.get("delete").and_then(Value::as_bool) {
        details.insert("delete".into(), Value::Bool(d));
    }
    audit::append(
        tx,
        &NewEvent {
            actor: &actor,
            action: &audit_action(&f.operation, result),
            target_kind: "provisioning_task",
            target_id: Some(task.to_string()),
            details: Value::Object(details),
        },
    )
    .await?;
    Ok(())
}

/// The audit actor for a `requested_by` value (`user:<id>`, `api_client:<id>`, anything else
/// is Latchkey itself, e.g. an expiry), labelled with the person's email or the client's name.
pub async fn actor_for(tx: &mut OrgTx, requested_by: &str) -> Result<Actor> {
    let org = tx.org();
    let parsed = requested_by
        .split_once(':')
        .and_then(|(k, id)| Uuid::parse_str(id).ok().map(|id| (k, id)));
    Ok(match parsed {
        Some(("user", id)) => {
            let label: Option<String> =
                sqlx::query_scalar("SELECT email FROM users WHERE org_id = $1 AND id = $2")
                    .bind(org.0)
                    .bind(id)
                    .fetch_optional(tx.conn())
                    .await?;
            Actor::user(id, label.unwrap_or_else(|| requested_by.to_string()))
        }
        Some(("api_client", id)) => {
            let label: Option<String> =
                sqlx::query_scalar("SELECT name FROM api_clients WHERE org_id = $1 AND id = $2")
                    .bind(org.0)
                    .bind(id)
                    .fetch_optional(tx.conn())
                    .await?;
            Actor::api_client(id, label.unwrap_or_else(|| requested_by.to_string()))
        }
        _ => Actor::system(requested_by),
    })
}

pub async fn events(tx: &mut OrgTx, task: Uuid) -> Result<Vec<Event>> {
    let org = tx.org();
    Ok(sqlx::query_as(
        "SELECT id, task_id, at, actor, event, detail FROM provisioning_events
          WHERE org_id = $1 AND task_id = $2 ORDER BY id",
    )
    .bind(org.0)
    .bind(task)
    .fetch_all(tx.conn())
    .await?)
}

/// A current stored grant, as a revoke needs it.
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct StoredGrant {
    pub id: Uuid,
    pub entitlement_id: Uuid,
    pub principal_id: Uuid,
    pub kind: String,
    pub source: String,
    pub expanded: bool,
    pub external_id: String,
}

pub async fn get_grant(tx: &mut OrgTx, connector: Uuid, id: Uuid) -> Result<StoredGrant> {
    let org = tx.org();
    sqlx::query_as(
        "SELECT id, entitlement_id, principal_id, kind, source, expanded, external_id FROM grants
          WHERE org_id = $1 AND connector_id = $2 AND id = $3 AND deleted_at IS NULL",
    )
    .bind(org.0)
    .bind(connector)
    .bind(id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

/// Current direct holders of an entitlement (e.g. a group's owners).
pub async fn direct_holders(tx: &mut OrgTx, connector: Uuid, entitlement: Uuid) -> Result<i64> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "SELECT count(DISTINCT principal_id) FROM grants
          WHERE org_id = $1 AND connector_id = $2 AND entitlement_id = $3
            AND deleted_at IS NULL AND NOT expanded AND source = 'direct'",
    )
    .bind(org.0)
    .bind(connector)
    .bind(entitlement)
    .fetch_one(tx.conn())
    .await?)
}

/// Stores a verified grant at once (the next sync finds the same row: same derived id), stamped
/// with the task as its "run" and `provisioned_at` (a sync that started earlier leaves it
/// alone). Returns the grant's id.
pub async fn record_grant(
    tx: &mut OrgTx,
    connector: Uuid,
    entitlement: Uuid,
    principal: Uuid,
    kind: &str,
    external_id: &str,
    task: Uuid,
) -> Result<Uuid> {
    let org = tx.org();
    Ok(sqlx::query_scalar(
        "INSERT INTO grants (id, org_id, connector_id, entitlement_id, principal_id, kind, source, external_id, last_seen_run, provisioned_at)
         VALUES (sync_grant_id($3, $4, 'direct', $6), $1, $2, $3, $4, $5, 'direct', $6, $7, now())
         ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), deleted_at = NULL, provisioned_at = now()
         RETURNING id",
    )
    .bind(org.0)
    .bind(connector)
    .bind(entitlement)
    .bind(principal)
    .bind(kind)
    .bind(external_id)
    .bind(task)
    .fetch_one(tx.conn())
    .await?)
}

/// Marks a verified revoke at once: the principal's direct grants of the entitlement (stamped
/// `provisioned_at`, so a sync that read them earlier does not revive them).
pub async fn remove_grant(
    tx: &mut OrgTx,
    connector: Uuid,
    entitlement: Uuid,
    principal: Uuid,
) -> Result<u64> {
    let org = tx.org();
    Ok(sqlx::query(
        "UPDATE grants SET deleted_at = now(), provisioned_at = now()
          WHERE org_id = $1 AND connector_id = $2 AND entitlement_id = $3 AND principal_id = $4
            AND deleted_at IS NULL AND NOT expanded AND source = 'direct'",
    )
    .bind(org.0)
    .bind(connector)
    .bind(entitlement)
    .bind(principal)
    .execute(tx.conn())
    .await?
    .rows_affected())
}

/// A deprovisioned account, at once: sign-in disabled; or, when deleted, the account and every
/// grant it held marked deleted (all stamped `provisioned_at`).
pub async fn record_deprovisioned(
    tx: &mut OrgTx,
    connector: Uuid,
    account: Uuid,
    deleted: bool,
) -> Result<()> {
    let org = tx.org();
    if deleted {
        sqlx::query(
            "UPDATE resources SET deleted_at = coalesce(deleted_at, now()), provisioned_at = now()
              WHERE org_id = $1 AND connector_id = $2 AND id = $3",
        )
        .bind(org.0)
        .bind(connector)
        .bind(account)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "UPDATE grants SET deleted_at = now(), provisioned_at = now()
              WHERE org_id = $1 AND connector_id = $2 AND principal_id = $3 AND deleted_at IS NULL",
        )
        .bind(org.0)
        .bind(connector)
        .bind(account)
        .execute(tx.conn())
        .await?;
    } else {
        sqlx::query(
            "UPDATE resources SET profile = profile || '{\"account_enabled\": false}'::jsonb,
                    provisioned_at = now()
              WHERE org_id = $1 AND connector_id = $2 AND id = $3",
        )
        .bind(org.0)
        .bind(connector)
        .bind(account)
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

/// Stamps a resource provisioning just wrote (a created account), so that a sync that started
/// earlier neither revives an older picture of it nor sweeps it away.
pub async fn stamp_provisioned(tx: &mut OrgTx, connector: Uuid, resource: Uuid) -> Result<()> {
    let org = tx.org();
    sqlx::query(
        "UPDATE resources SET provisioned_at = now(), deleted_at = NULL
          WHERE org_id = $1 AND connector_id = $2 AND id = $3",
    )
    .bind(org.0)
    .bind(connector)
    .bind(resource)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The stored id of a `user` resource by its object id (after [`crate::resources::upsert_resources`]).
pub async fn user_resource_id(tx: &mut OrgTx, connector: Uuid, object_id: &str) -> Result<Uuid> {
    let org = tx.org();
    sqlx::query_scalar(
        "SELECT id FROM resources WHERE org_id = $1 AND connector_id = $2 AND type = 'user' AND external_id = $3",
    )
    .bind(org.0)
    .bind(connector)
    .bind(object_id)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}
