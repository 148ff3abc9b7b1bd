//! `/api/v1/connectors`: create, list, read, change and disable connectors.

use super::ApiQuery;
use super::{ApiJson, PageQuery};
use crate::auth::ApiPrincipal;
use crate::connectors::{
    self, Actor, AppChoice, ConnectorKind, ConnectorView, CreateConnector, NextStep, connector_view,
};
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_entra::onboarding::SettingsInput;
use latchkey_store::Page;
use latchkey_store::connectors as store;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

fn actor(p: &ApiPrincipal) -> Actor {
    Actor {
        org: p.org_id,
        user: None,
        role: p.role,
    }
}

/// A connector plus what to do next after a change.
#[derive(Serialize)]
pub struct ConnectorResponse {
    #[serde(flatten)]
    connector: ConnectorView,
    #[serde(skip_serializing_if = "Option::is_none")]
    consent_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_test_job_id: Option<Uuid>,
}

async fn respond(
    state: &AppState,
    who: &ApiPrincipal,
    id: Uuid,
    next: Option<NextStep>,
) -> Result<ConnectorResponse, ApiError> {
    let mut tx = state.store.org_tx(who.org_id).await?;
    let row = store::get(&mut tx, id).await?;
    let view = connector_view(&mut tx, row).await?;
    tx.commit().await?;
    let (consent_url, connection_test_job_id) = match next {
        Some(NextStep::Consent { consent_url }) => (Some(consent_url), None),
        Some(NextStep::Testing { job_id }) => (None, Some(job_id)),
        None if view.status == "pending_consent" => (
            Some(format!(
                "{}connectors/{id}/consent",
                state.config.public_url
            )),
            None,
        ),
        None => (None, None),
    };
    Ok(ConnectorResponse {
        connector: view,
        consent_url,
        connection_test_job_id,
    })
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub(crate) display_name: String,
    pub(crate) app: AppChoice,
    #[serde(default)]
    pub(crate) owners: Option<Vec<Uuid>>,
    #[serde(default)]
    pub(crate) settings: Option<SettingsInput>,
    /// `entra` (default) or `self_hosted`.
    #[serde(default)]
    pub(crate) kind: ConnectorKind,
}

pub async fn create(
    State(state): State<AppState>,
    who: ApiPrincipal,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<ConnectorResponse>), ApiError> {
    let req = CreateConnector {
        display_name: body.display_name,
        app: body.app,
        owners: body.owners,
        settings: body.settings,
        kind: body.kind,
    };
    let (id, next) = connectors::create(&state, &actor(&who), req).await?;
    Ok((
        StatusCode::CREATED,
        Json(respond(&state, &who, id, next).await?),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    who: ApiPrincipal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<ConnectorView>>, ApiError> {
    let (cursor, limit) = q.parse()?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let page = store::list(&mut tx, cursor, limit).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for row in page.items {
        items.push(connector_view(&mut tx, row).await?);
    }
    tx.commit().await?;
    Ok(Json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

pub async fn get(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<ConnectorResponse>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(respond(&state, &who, id, None).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default)]
    pub(crate) display_name: Option<String>,
    #[serde(default)]
    pub(crate) owners: Option<Vec<Uuid>>,
    #[serde(default)]
    pub(crate) settings: Option<SettingsInput>,
}

pub async fn patch(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> Result<Json<ConnectorResponse>, ApiError> {
    let id = parse_id(&id)?;
    let actor = actor(&who);
    // Check existence and permission first, so a refused request changes nothing.
    {
        let mut tx = state.store.org_tx(who.org_id).await?;
        store::get(&mut tx, id).await?;
        if !connectors::may_edit(&mut tx, &actor, id).await? {
            return Err(ApiError::forbidden(connectors::ONLY_EDITORS));
        }
    }
    let mut next = None;
    if let Some(settings) = &body.settings {
        next = Some(connectors::update_settings(&state, &actor, id, settings).await?);
    }
    if let Some(name) = &body.display_name {
        connectors::set_display_name(&state, &actor, id, name).await?;
    }
    if let Some(owners) = &body.owners {
        connectors::set_owners(&state, &actor, id, owners).await?;
    }
    Ok(Json(respond(&state, &who, id, next).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<ConnectorResponse>, ApiError> {
    let id = parse_id(&id)?;
    connectors::disable(&state, &actor(&who), id).await?;
    Ok(Json(respond(&state, &who, id, None).await?))
}

/// `POST /api/v1/connectors/{id}/test`: run the connection test again.
pub async fn test(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ConnectorResponse>), ApiError> {
    let id = parse_id(&id)?;
    let job = connectors::test_again(&state, &actor(&who), id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(respond(&state, &who, id, Some(NextStep::Testing { job_id: job })).await?),
    ))
}

/// `POST /api/v1/connectors/{id}/agent-credentials`: Settings > Rotate of a self-hosted
/// connector. The new client ID and secret are in this answer only; the old ones keep working
/// until `previous_valid_until`.
pub async fn rotate_agent_credentials(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<crate::connector_agent::Rotated>), ApiError> {
    let id = parse_id(&id)?;
    let rotated = crate::connector_agent::rotate(&state, &actor(&who), id).await?;
    Ok((StatusCode::CREATED, Json(rotated)))
}
