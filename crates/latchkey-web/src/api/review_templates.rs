//! Recurring access reviews through the API: the templates that start a campaign every
//! period (list, get) and stopping one. Administrators' clients only, as for campaigns.

use super::review_campaigns::who;
use super::{ApiQuery, PageQuery};
use crate::auth::ApiPrincipal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use latchkey_reviews::templates::{Recurring, recurring, stop_template};
use latchkey_store::reviews;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// A campaign a template started, as its template lists it.
#[derive(Debug, Serialize)]
pub struct StartedCampaign {
    pub id: Uuid,
    pub name: String,
    /// `active` or `closed`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
}

/// A recurring review as the API shows it.
#[derive(Debug, Serialize)]
pub struct TemplateView {
    pub id: Uuid,
    pub name: String,
    /// `active` (starts a campaign every `every_days`) or `stopped`.
    pub status: &'static str,
    pub every_days: i32,
    /// How long each campaign runs before its deadline.
    pub campaign_duration_secs: i64,
    /// What undecided items of its campaigns become at their deadline.
    pub end_rule: String,
    /// When the next campaign starts; null once stopped.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_run_at: Option<OffsetDateTime>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub stopped_at: Option<OffsetDateTime>,
    pub stopped_by: Option<String>,
    /// Scope, reviewers, recommendation threshold and reminders of every campaign it starts.
    pub spec: Value,
    /// The campaigns it started, oldest first.
    pub campaigns: Vec<StartedCampaign>,
}

pub fn template_view(r: Recurring) -> TemplateView {
    let status = r.status();
    let end_rule = r.end_rule();
    let t = r.template;
    TemplateView {
        id: t.id,
        name: t.name,
        status,
        every_days: t.every_days,
        campaign_duration_secs: t.duration_secs,
        end_rule,
        next_run_at: r.next_run_at,
        created_by: t.created_by,
        created_at: t.created_at,
        stopped_at: t.stopped_at,
        stopped_by: t.stopped_by,
        spec: t.spec,
        campaigns: r
            .campaigns
            .into_iter()
            .map(|c| StartedCampaign {
                id: c.id,
                name: c.name,
                status: c.status,
                created_at: c.created_at,
                deadline: c.deadline,
            })
            .collect(),
    }
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found())
}

#[derive(Serialize)]
pub struct TemplatePage {
    pub items: Vec<TemplateView>,
    pub next_cursor: Option<String>,
}

/// `GET /review-templates`: recurring reviews, newest first, stopped ones included.
pub async fn list(
    State(state): State<AppState>,
    p: ApiPrincipal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<TemplatePage>, ApiError> {
    p.require(p.role.can_manage_connectors())?;
    let (cursor, limit) = q.parse()?;
    let mut tx = state.store.org_tx(p.org_id).await?;
    let page = reviews::list_templates(&mut tx, cursor, limit).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for t in page.items {
        items.push(template_view(recurring(&mut tx, t).await?));
    }
    tx.commit().await?;
    Ok(Json(TemplatePage {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// `GET /review-templates/{id}`.
pub async fn get(
    State(state): State<AppState>,
    p: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<TemplateView>, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.store.org_tx(p.org_id).await?;
    let t = reviews::get_template(&mut tx, id).await?;
    let view = template_view(recurring(&mut tx, t).await?);
    tx.commit().await?;
    p.require(p.role.can_manage_connectors())?;
    Ok(Json(view))
}

/// `POST /review-templates/{id}/stop`: no further campaigns start from it; those it started
/// go on. 409 when stopped already.
pub async fn stop(
    State(state): State<AppState>,
    p: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<TemplateView>, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.store.org_tx(p.org_id).await?;
    // Another organization's template is 404 before any role check.
    reviews::get_template(&mut tx, id).await?;
    let actor = who(&mut tx, &p).await?;
    let r = stop_template(&mut tx, id, &actor).await?;
    tx.commit().await?;
    Ok(Json(template_view(r)))
}
