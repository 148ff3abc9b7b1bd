//! Grant and revoke buttons (on an application's entitlement page) and the account forms:
//! each posts a provisioning task and shows it.

use crate::auth::SignedIn;
use crate::connectors::ServiceError;
use crate::csrf;
use crate::error::WebError;
use crate::provisioning::{self as service, AccountInput, Asker};
use crate::state::AppState;
use crate::views::{FieldProblem, Nav, problem};
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_store::connectors::{self, Connector};
use serde::Deserialize;
use uuid::Uuid;

fn asker(who: &SignedIn) -> Asker {
    Asker::user(who.org_id, who.user_id, who.role)
}

fn to_task(connector: Uuid, task: Uuid) -> Response {
    Redirect::to(&format!("/connectors/{connector}/tasks/{task}")).into_response()
}

#[derive(Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    csrf_token: String,
    entitlement_id: Uuid,
    principal_id: Uuid,
    /// `datetime-local` (UTC) or RFC 3339; empty for no end.
    #[serde(default)]
    expires_at: String,
}

/// A `datetime-local` value has no offset: the form says it is UTC.
fn as_rfc3339(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let has_offset = raw.ends_with('Z') || raw.get(19..).is_some_and(|t| t.contains(['+', '-']));
    Some(match (has_offset, raw.len()) {
        (true, _) => raw.to_string(),
        (false, 16) => format!("{raw}:00Z"),
        (false, _) => format!("{raw}Z"),
    })
}

fn service_error(e: ServiceError) -> WebError {
    e.into()
}

pub async fn grant(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<GrantForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    let end = as_rfc3339(&form.expires_at);
    let task = service::grant(
        &state,
        &asker(&who),
        id,
        form.entitlement_id,
        form.principal_id,
        end.as_deref(),
    )
    .await
    .map_err(service_error)?;
    Ok(to_task(id, task))
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

pub async fn revoke(
    State(state): State<AppState>,
    who: SignedIn,
    Path((id, grant)): Path<(Uuid, Uuid)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    let task = service::revoke(&state, &asker(&who), id, grant)
        .await
        .map_err(service_error)?;
    Ok(to_task(id, task))
}

#[derive(Deserialize)]
pub struct DeprovisionForm {
    #[serde(default)]
    csrf_token: String,
    delete: Option<String>,
}

pub async fn deprovision(
    State(state): State<AppState>,
    who: SignedIn,
    Path((id, account)): Path<(Uuid, Uuid)>,
    Form(form): Form<DeprovisionForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    let task = service::deprovision(&state, &asker(&who), id, account, form.delete.is_some())
        .await
        .map_err(service_error)?;
    Ok(to_task(id, task))
}

#[derive(Template, WebTemplate)]
#[template(path = "account_new.html")]
pub struct AccountPage {
    nav: Nav,
    c: Connector,
    f: AccountFields,
    errors: Vec<FieldProblem>,
}

impl AccountPage {
    fn problem(&self, field: &str) -> Option<&str> {
        problem(&self.errors, field)
    }
}

#[derive(Deserialize, Default)]
pub struct AccountFields {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    pub user_principal_name: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub mail_nickname: String,
    #[serde(default)]
    pub given_name: String,
    #[serde(default)]
    pub surname: String,
    #[serde(default)]
    pub department: String,
    #[serde(default)]
    pub job_title: String,
    #[serde(default)]
    pub employee_id: String,
    #[serde(default)]
    pub usage_location: String,
    /// A stored user's id (the manager), or empty.
    #[serde(default)]
    pub manager_id: String,
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

const FIELDS: &[&str] = &[
    "user_principal_name",
    "display_name",
    "mail_nickname",
    "given_name",
    "surname",
    "department",
    "job_title",
    "employee_id",
    "usage_location",
    "manager_id",
];

async fn page(
    state: &AppState,
    who: &SignedIn,
    id: Uuid,
    f: AccountFields,
    errors: Vec<FieldProblem>,
) -> Result<AccountPage, WebError> {
    let mut tx = who.tx(state).await?;
    let c = connectors::get(&mut tx, id).await?;
    if !service::may_provision(&mut tx, &asker(who), id).await? {
        return Err(WebError::Forbidden(service::ONLY_PROVISIONERS));
    }
    tx.commit().await?;
    Ok(AccountPage {
        nav: Nav::new(who, "apps"),
        c,
        f,
        errors,
    })
}

pub async fn new_account(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
) -> Result<AccountPage, WebError> {
    page(&state, &who, id, AccountFields::default(), vec![]).await
}

pub async fn create_account(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(f): Form<AccountFields>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &f.csrf_token)?;
    let manager = match opt(&f.manager_id) {
        Some(m) => match Uuid::parse_str(&m) {
            Ok(u) => Some(u),
            Err(_) => {
                let errors = vec![FieldProblem {
                    field: "manager_id",
                    message: "choose a user account of this connector as the manager".into(),
                }];
                let p = page(&state, &who, id, f, errors).await?;
                return Ok((StatusCode::UNPROCESSABLE_ENTITY, p).into_response());
            }
        },
        None => None,
    };
    let input = AccountInput {
        user_principal_name: f.user_principal_name.clone(),
        display_name: f.display_name.clone(),
        mail_nickname: f.mail_nickname.clone(),
        given_name: opt(&f.given_name),
        surname: opt(&f.surname),
        department: opt(&f.department),
        job_title: opt(&f.job_title),
        employee_id: opt(&f.employee_id),
        manager_id: manager,
        usage_location: opt(&f.usage_location),
    };
    match service::create_account(&state, &asker(&who), id, &input).await {
        Ok(task) => Ok(to_task(id, task)),
        Err(ServiceError::Invalid(fields)) => {
            let errors = fields
                .into_iter()
                .map(|e| FieldProblem {
                    field: FIELDS
                        .iter()
                        .find(|f| **f == e.field)
                        .copied()
                        .unwrap_or("form"),
                    message: e.message,
                })
                .collect();
            let p = page(&state, &who, id, f, errors).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, p).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
