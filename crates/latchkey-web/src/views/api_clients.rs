//! Settings > API clients: create, rotate and revoke client credentials (Super Administrators).

use super::{FieldProblem, Nav, problem};
use crate::api::api_clients::{NewCredentials, create_client, rotate_client};
use crate::auth::SignedIn;
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_core::{ApiClientId, DisplayName, Role};
use latchkey_store::api_clients::{self, ApiClient};
use serde::Deserialize;
use uuid::Uuid;

const ONLY_SUPER_ADMINS: &str = "Only Super Administrators can manage API clients.";

#[derive(Template, WebTemplate)]
#[template(path = "api_clients.html")]
pub struct ApiClientsPage {
    nav: Nav,
    clients: Vec<ApiClient>,
    roles: [Role; 3],
    name: String,
    errors: Vec<FieldProblem>,
    notice: Option<String>,
    /// Shown once, right after creation or rotation; never again.
    revealed: Option<NewCredentials>,
}

impl ApiClientsPage {
    fn problem(&self, field: &str) -> Option<&str> {
        problem(&self.errors, field)
    }
}

async fn page(state: &AppState, who: &SignedIn) -> Result<ApiClientsPage, WebError> {
    let mut tx = who.tx(state).await?;
    let clients = api_clients::list(&mut tx, None, 200).await?.items;
    tx.commit().await?;
    Ok(ApiClientsPage {
        nav: Nav::new(who, "api-clients"),
        clients,
        roles: Role::ALL,
        name: String::new(),
        errors: vec![],
        notice: None,
        revealed: None,
    })
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
) -> Result<ApiClientsPage, WebError> {
    who.require(who.role.can_manage_people(), ONLY_SUPER_ADMINS)?;
    page(&state, &who).await
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

pub async fn create(
    State(state): State<AppState>,
    who: SignedIn,
    Form(form): Form<CreateForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    who.require(who.role.can_manage_people(), ONLY_SUPER_ADMINS)?;
    let mut errors = vec![];
    let name = DisplayName::parse(&form.name)
        .map_err(|e| {
            errors.push(FieldProblem {
                field: "name",
                message: e.to_string(),
            })
        })
        .ok();
    let role = form
        .role
        .parse::<Role>()
        .map_err(|e| {
            errors.push(FieldProblem {
                field: "role",
                message: e.to_string(),
            })
        })
        .ok();
    if let (Some(name), Some(role)) = (name, role) {
        let (_, creds) =
            create_client(&state.store, who.org_id, &name, role, Some(who.user_id)).await?;
        let mut p = page(&state, &who).await?;
        p.notice = Some(format!(
            "API client \u{201c}{}\u{201d} created. Copy the secret now: it will not be shown again.",
            name
        ));
        p.revealed = Some(creds);
        return Ok(p.into_response());
    }
    let mut p = page(&state, &who).await?;
    p.name = form.name;
    p.errors = errors;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, p).into_response())
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

pub async fn rotate(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    who.require(who.role.can_manage_people(), ONLY_SUPER_ADMINS)?;
    let creds = rotate_client(&state.store, who.org_id, ApiClientId(id)).await?;
    let mut p = page(&state, &who).await?;
    p.notice = Some("Secret rotated: the old secret and every token issued with it stopped working. Copy the new secret now.".into());
    p.revealed = Some(creds);
    Ok(p.into_response())
}

pub async fn revoke(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    who.require(who.role.can_manage_people(), ONLY_SUPER_ADMINS)?;
    let mut tx = who.tx(&state).await?;
    let client = api_clients::revoke(&mut tx, ApiClientId(id)).await?;
    tx.commit().await?;
    let mut p = page(&state, &who).await?;
    p.notice = Some(format!(
        "API client \u{201c}{}\u{201d} revoked; its tokens no longer work.",
        client.name
    ));
    Ok(p.into_response())
}
