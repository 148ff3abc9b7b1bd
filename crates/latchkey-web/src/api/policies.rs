//! Access policies through the API: `GET/PUT /entitlements/{id}/policy`. Every change is an
//! audit event (`access_policy.updated`, with the document before and after).

use super::ApiJson;
use super::access_requests::caller;
use crate::auth::ApiPrincipal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use latchkey_access::Policy;
use latchkey_store::access_policies;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Serialize)]
pub struct PolicyView {
    pub entitlement_id: Uuid,
    pub connector_id: Uuid,
    /// 0 until a policy is saved (the default: not requestable).
    pub version: i32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    pub updated_by: Option<String>,
    pub policy: Policy,
}

async fn read(state: &AppState, who: &ApiPrincipal, id: Uuid) -> Result<PolicyView, ApiError> {
    let mut tx = state.store.org_tx(who.org_id).await?;
    let info = access_policies::entitlement_info(&mut tx, id).await?;
    let stored = access_policies::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(PolicyView {
        entitlement_id: id,
        connector_id: info.connector_id,
        version: stored.as_ref().map(|s| s.version).unwrap_or(0),
        updated_at: stored.as_ref().map(|s| s.updated_at),
        updated_by: stored.as_ref().map(|s| s.updated_by.clone()),
        policy: stored
            .map(|s| Policy::from_value(&s.document))
            .unwrap_or_default(),
    })
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found())
}

/// `GET /entitlements/{id}/policy`.
pub async fn get(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    Ok(Json(read(&state, &who, parse_id(&id)?).await?))
}

/// `PUT /entitlements/{id}/policy` with the whole policy document.
pub async fn put(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
    ApiJson(policy): ApiJson<Policy>,
) -> Result<Json<PolicyView>, ApiError> {
    let id = parse_id(&id)?;
    let caller = caller(&state, &who).await?;
    state
        .access()
        .put_policy(who.org_id, &caller, id, &policy)
        .await?;
    Ok(Json(read(&state, &who, id).await?))
}
