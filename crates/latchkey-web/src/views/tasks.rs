//! A connector's provisioning tasks: the list (state, operation, who, times, reason and
//! warnings) and one task with its event trail.

use crate::api::provisioning::{TaskView, view};
use crate::auth::SignedIn;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::{Nav, when};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use latchkey_store::connectors::{self, Connector};
use latchkey_store::page::Cursor;
use latchkey_store::provisioning::{self, Event, actor_for};
use latchkey_store::{OrgTx, StoreError, resources};
use serde::Deserialize;
use uuid::Uuid;

/// A task with the names a person reads.
pub struct TaskRow {
    pub t: TaskView,
    pub who: String,
    pub what: String,
}

impl TaskRow {
    pub fn badge(&self) -> &'static str {
        match self.t.status.as_str() {
            "succeeded" => "badge-ok",
            "failed" => "badge-error",
            _ => "badge-pending",
        }
    }
    pub fn operation(&self) -> &'static str {
        match self.t.operation.as_str() {
            "grant" => "Grant",
            "revoke" => "Revoke",
            "create_account" => "Create account",
            "deprovision_account" => "Deprovision account",
            _ => "Task",
        }
    }
    pub fn at(&self, t: &Option<time::OffsetDateTime>) -> String {
        t.map(when).unwrap_or_else(|| "—".into())
    }
    pub fn requested(&self) -> String {
        when(self.t.requested_at)
    }
}

async fn name_of(tx: &mut OrgTx, connector: Uuid, id: Option<Uuid>) -> Result<String, StoreError> {
    let Some(id) = id else {
        return Ok(String::new());
    };
    Ok(match resources::get_resource(tx, connector, id).await {
        Ok(r) => r.display_name,
        Err(StoreError::NotFound) => "(removed)".into(),
        Err(e) => return Err(e),
    })
}

async fn row(tx: &mut OrgTx, t: provisioning::Task) -> Result<TaskRow, StoreError> {
    let who = actor_for(tx, &t.requested_by).await?.label;
    let principal = name_of(tx, t.connector_id, t.principal_id).await?;
    let upn = t
        .details
        .get("user_principal_name")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let what = match t.operation.as_str() {
        "create_account" => upn,
        "deprovision_account" => {
            if t.details.get("delete") == Some(&serde_json::json!(true)) {
                format!("{principal} (and delete it)")
            } else {
                principal
            }
        }
        _ => {
            let ent = match t.entitlement_id {
                Some(e) => match resources::get_entitlement(tx, t.connector_id, e).await {
                    Ok(e) => e.display_name,
                    Err(StoreError::NotFound) => "(removed)".into(),
                    Err(e) => return Err(e),
                },
                None => String::new(),
            };
            format!("{ent} → {principal}")
        }
    };
    Ok(TaskRow {
        t: view(t),
        who,
        what,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "tasks.html")]
pub struct TasksPage {
    nav: Nav,
    c: Connector,
    tasks: Vec<TaskRow>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Query(q): Query<ListQuery>,
) -> Result<TasksPage, WebError> {
    let mut tx = who.tx(&state).await?;
    let c = connectors::get(&mut tx, id).await?;
    let after = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(Cursor::parse)
        .transpose()?;
    let page = provisioning::list_tasks(&mut tx, id, after, 50).await?;
    let mut tasks = Vec::with_capacity(page.items.len());
    for t in page.items {
        tasks.push(row(&mut tx, t).await?);
    }
    tx.commit().await?;
    Ok(TasksPage {
        nav: Nav::new(&who, "connectors"),
        c,
        tasks,
        next_cursor: page.next_cursor,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "task.html")]
pub struct TaskPage {
    nav: Nav,
    c: Connector,
    task: TaskRow,
    events: Vec<Event>,
}

impl TaskPage {
    fn at(&self, t: &time::OffsetDateTime) -> String {
        when(*t)
    }
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path((id, task)): Path<(Uuid, Uuid)>,
) -> Result<TaskPage, WebError> {
    let mut tx = who.tx(&state).await?;
    let c = connectors::get(&mut tx, id).await?;
    let t = provisioning::get_task(&mut tx, task).await?;
    if t.connector_id != id {
        return Err(WebError::NotFound);
    }
    let events = provisioning::events(&mut tx, task).await?;
    let task = row(&mut tx, t).await?;
    tx.commit().await?;
    Ok(TaskPage {
        nav: Nav::new(&who, "connectors"),
        c,
        task,
        events,
    })
}
