//! The audit trail through the API: pages of events (newest first, with filters), the chain
//! check, and an NDJSON export (oldest first) for archiving. Super Administrators only.

use super::ApiQuery;
use super::PageQuery;
use crate::auth::ApiPrincipal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use latchkey_store::audit::{self, ChainCheck, Event, Filter};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct AuditQuery {
    target_kind: Option<String>,
    target_id: Option<String>,
    /// Events whose action starts with this (`access_request.`, `access_policy.updated`).
    action: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

#[derive(Serialize)]
pub struct EventPage {
    pub items: Vec<Event>,
    pub next_cursor: Option<String>,
}

fn filter(q: &AuditQuery) -> Filter {
    let blank = |s: &Option<String>| s.clone().filter(|v| !v.trim().is_empty());
    Filter {
        target_kind: blank(&q.target_kind),
        target_id: blank(&q.target_id),
        action_prefix: blank(&q.action),
    }
}

/// `GET /audit-events?cursor=&target_kind=&target_id=&action=`.
pub async fn list(
    State(state): State<AppState>,
    who: ApiPrincipal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<EventPage>, ApiError> {
    who.require(who.role.can_manage_people())?;
    let before = q
        .page
        .cursor
        .as_deref()
        .map(audit::parse_cursor)
        .transpose()?;
    let limit = latchkey_store::page::clamp_limit(q.page.limit);
    let mut tx = state.store.org_tx(who.org_id).await?;
    let page = audit::list(&mut tx, &filter(&q), before, limit).await?;
    tx.commit().await?;
    Ok(Json(EventPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Serialize)]
pub struct ChainView {
    pub intact: bool,
    #[serde(flatten)]
    pub check: ChainCheck,
}

/// `GET /audit-events/verify`: recomputes the organization's chain.
pub async fn verify(
    State(state): State<AppState>,
    who: ApiPrincipal,
) -> Result<Json<ChainView>, ApiError> {
    who.require(who.role.can_manage_people())?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let check = audit::verify_chain(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(ChainView {
        intact: check.intact(),
        check,
    }))
}

/// `GET /audit-events/export`: every event, oldest first, one JSON object per line.
pub async fn export(
    State(state): State<AppState>,
    who: ApiPrincipal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    who.require(who.role.can_manage_people())?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let mut events = Vec::new();
    let mut before = None;
    loop {
        let page = audit::list(&mut tx, &filter(&q), before, 1000).await?;
        before = page.items.last().map(|e| e.seq);
        let more = page.next_cursor.is_some();
        events.extend(page.items);
        if !more {
            break;
        }
    }
    tx.commit().await?;
    let mut body = String::new();
    for e in events.iter().rev() {
        body.push_str(&serde_json::to_string(e).map_err(ApiError::internal)?);
        body.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit-events.ndjson\"",
            ),
        ],
        body,
    ))
}
