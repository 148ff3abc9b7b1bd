//! Settings of a self-hosted connector: its credentials and Rotate (the new secret is shown in
//! the answer to the rotation only).

use super::actor;
use crate::auth::SignedIn;
use crate::connector_agent::{self, Rotated, SELF_HOSTED};
use crate::connectors::{self, ONLY_EDITORS};
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::Nav;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_store::connectors as store;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Template, WebTemplate)]
#[template(path = "connector_self_hosted.html")]
pub struct SelfHostedPage {
    nav: Nav,
    id: Uuid,
    name: String,
    is_new: bool,
    /// (client id, created, valid until)
    credentials: Vec<(String, String, String)>,
    rotated: Option<Rotated>,
    previous_until: Option<String>,
    grace: String,
}

fn when(t: time::OffsetDateTime) -> String {
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        t.date(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

async fn load(state: &AppState, who: &SignedIn, id: Uuid) -> Result<SelfHostedPage, WebError> {
    let mut tx = who.tx(state).await?;
    let row = store::get(&mut tx, id).await?;
    if row.kind != SELF_HOSTED {
        return Err(WebError::NotFound);
    }
    if !connectors::may_edit(&mut tx, &actor(who), id).await? {
        return Err(WebError::Forbidden(ONLY_EDITORS));
    }
    let view = connector_agent::view(&mut tx, id).await?;
    tx.commit().await?;
    let grace = state.config.agent_rotation_grace.as_secs();
    Ok(SelfHostedPage {
        nav: Nav::new(who, "connectors"),
        id,
        name: row.display_name,
        is_new: false,
        credentials: view
            .credentials
            .into_iter()
            .map(|c| {
                (
                    c.client_id,
                    when(c.created_at),
                    c.expires_at
                        .map(|t| format!("until {}", when(t)))
                        .unwrap_or_else(|| "current".into()),
                )
            })
            .collect(),
        rotated: None,
        previous_until: None,
        grace: if grace.is_multiple_of(60) {
            format!("{} minute(s)", grace / 60)
        } else {
            format!("{grace} seconds")
        },
    })
}

#[derive(Deserialize)]
pub struct PageQuery {
    new: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Query(q): Query<PageQuery>,
) -> Result<SelfHostedPage, WebError> {
    let mut page = load(&state, &who, id).await?;
    page.is_new = q.new.is_some();
    Ok(page)
}

#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    csrf_token: String,
}

/// Settings > Rotate: the answer shows the new secret once and is never cached.
pub async fn rotate(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<RotateForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    let rotated = connector_agent::rotate(&state, &actor(&who), id).await?;
    let mut page = load(&state, &who, id).await?;
    page.previous_until = rotated.previous_valid_until.map(when);
    page.rotated = Some(rotated);
    let mut resp = page.into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
