//! `GET /api/v1/me`: who the token belongs to.

use crate::auth::ApiPrincipal;
use axum::Json;
use serde_json::{Value, json};

pub async fn show(who: ApiPrincipal) -> Json<Value> {
    Json(json!({"org_id": who.org_id, "api_client_id": who.client_id, "role": who.role}))
}
