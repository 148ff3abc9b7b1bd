//! `/api/v1/users`: the organization's people.

use super::ApiQuery;
use super::PageQuery;
use crate::auth::ApiPrincipal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use latchkey_core::UserId;
use latchkey_store::Page;
use latchkey_store::users::{self, User};
use uuid::Uuid;

pub async fn list(
    State(state): State<AppState>,
    who: ApiPrincipal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<User>>, ApiError> {
    let (cursor, limit) = q.parse()?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let page = users::list(&mut tx, cursor, limit).await?;
    tx.commit().await?;
    Ok(Json(page))
}

pub async fn get(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let user = users::get(&mut tx, UserId(id)).await?;
    tx.commit().await?;
    Ok(Json(user))
}
