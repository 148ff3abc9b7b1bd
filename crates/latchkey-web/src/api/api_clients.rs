//! API clients: creating and rotating credentials (shared by the UI, the API and the CLI),
//! and `/api/v1/api-clients`.

use super::ApiQuery;
use super::{ApiJson, PageQuery};
use crate::auth::ApiPrincipal;
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_core::{ApiClientId, DisplayName, OrgId, Role, UserId};
use latchkey_crypto::{random_token, sha256_hex};
use latchkey_store::api_clients::{self, ApiClient};
use latchkey_store::{Page, Store, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Credentials as shown once: the secret is never stored in plaintext nor shown again.
#[derive(Debug, Serialize)]
pub struct NewCredentials {
    pub client_id: String,
    pub client_secret: String,
}

pub async fn create_client(
    store: &Store,
    org: OrgId,
    name: &DisplayName,
    role: Role,
    created_by: Option<UserId>,
) -> Result<(ApiClient, NewCredentials), StoreError> {
    let client_id = format!("lkc_{}", random_token(18));
    let client_secret = format!("lks_{}", random_token(32));
    let mut tx = store.org_tx(org).await?;
    let client = api_clients::create(
        &mut tx,
        name,
        role,
        &client_id,
        &sha256_hex(client_secret.as_bytes()),
        created_by,
    )
    .await?;
    tx.commit().await?;
    Ok((
        client,
        NewCredentials {
            client_id,
            client_secret,
        },
    ))
}

pub async fn rotate_client(
    store: &Store,
    org: OrgId,
    id: ApiClientId,
) -> Result<NewCredentials, StoreError> {
    let client_secret = format!("lks_{}", random_token(32));
    let mut tx = store.org_tx(org).await?;
    let client = api_clients::rotate(&mut tx, id, &sha256_hex(client_secret.as_bytes())).await?;
    tx.commit().await?;
    Ok(NewCredentials {
        client_id: client.client_id,
        client_secret,
    })
}

pub async fn list(
    State(state): State<AppState>,
    who: ApiPrincipal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<ApiClient>>, ApiError> {
    who.require(who.role.can_manage_people())?;
    let (cursor, limit) = q.parse()?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let page = api_clients::list(&mut tx, cursor, limit).await?;
    tx.commit().await?;
    Ok(Json(page))
}

#[derive(Deserialize)]
pub struct CreateBody {
    pub(crate) name: Option<String>,
    pub(crate) role: Option<String>,
}

#[derive(Serialize)]
pub struct Created {
    #[serde(flatten)]
    client: ApiClient,
    client_secret: String,
}

pub async fn create(
    State(state): State<AppState>,
    who: ApiPrincipal,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    who.require(who.role.can_manage_people())?;
    let mut fields = vec![];
    let name = DisplayName::parse(body.name.as_deref().unwrap_or(""))
        .map_err(|e| {
            fields.push(FieldError {
                field: "name".into(),
                message: e.to_string(),
            })
        })
        .ok();
    let role = body
        .role
        .as_deref()
        .unwrap_or("")
        .parse::<Role>()
        .map_err(|e| {
            fields.push(FieldError {
                field: "role".into(),
                message: e.to_string(),
            })
        })
        .ok();
    let (Some(name), Some(role)) = (name, role) else {
        return Err(ApiError::validation(fields));
    };
    let (client, creds) = create_client(&state.store, who.org_id, &name, role, None).await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            client,
            client_secret: creds.client_secret,
        }),
    ))
}

fn parse_id(id: &str) -> Result<ApiClientId, ApiError> {
    Uuid::parse_str(id)
        .map(ApiClientId)
        .map_err(|_| ApiError::not_found())
}

pub async fn get(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<ApiClient>, ApiError> {
    who.require(who.role.can_manage_people())?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let client = api_clients::get(&mut tx, parse_id(&id)?).await?;
    tx.commit().await?;
    Ok(Json(client))
}

pub async fn revoke(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<ApiClient>, ApiError> {
    who.require(who.role.can_manage_people())?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let client = api_clients::revoke(&mut tx, parse_id(&id)?).await?;
    tx.commit().await?;
    Ok(Json(client))
}
