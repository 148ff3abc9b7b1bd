//! A campaign's progress: counts, the chart of decided / undecided / revoked over time, the
//! manual tasks to carry out by hand, every item, and Close.

use super::{ItemRow, ONLY_ADMINS, chart, rows, web_error, when, who_of};
use crate::auth::SignedIn;
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::Nav;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::Form;
use latchkey_reviews::decide::complete_manual;
use latchkey_reviews::end::{EndReason, end_campaign};
use latchkey_reviews::timeline::timeline;
use latchkey_store::reviews::{self, Counts, ManualTask};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

pub struct Legend {
    pub name: &'static str,
    pub colour: &'static str,
    pub dash: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "reviews_campaign.html")]
pub struct ProgressPage {
    nav: Nav,
    id: String,
    name: String,
    active: bool,
    deadline: String,
    end_rule: String,
    closed: String,
    recurring: bool,
    counts: Counts,
    pct: i64,
    chart: String,
    legend: Vec<Legend>,
    points: Vec<(String, i64, i64, i64)>,
    manual: Vec<ManualTask>,
    items: Vec<ItemRow>,
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
) -> Result<ProgressPage, WebError> {
    who.require(who.role.can_manage_connectors(), ONLY_ADMINS)?;
    let mut tx = who.tx(&state).await?;
    let c = reviews::get_campaign(&mut tx, id).await?;
    let counts = reviews::counts(&mut tx, id).await?;
    let items = reviews::all_items(&mut tx, id).await?;
    let manual = reviews::manual_tasks(&mut tx, id).await?;
    let now = OffsetDateTime::now_utc();
    let end = c.closed_at.unwrap_or(now).max(c.created_at);
    // The latest thing that happened counts too (a revoke verified after closing).
    let end = items
        .iter()
        .filter_map(|i| latchkey_reviews::report::revoked_at(i).or(i.decided_at))
        .fold(end, |a, b| a.max(b));
    let points = timeline(&items, c.created_at, end, 12);
    let svg = chart::svg(&points, counts.items);
    let rows = rows(&mut tx, &items, Some(who.user_id.0)).await?;
    tx.commit().await?;
    Ok(ProgressPage {
        nav: Nav::new(&who, "reviews"),
        id: c.id.to_string(),
        name: c.name.clone(),
        active: c.is_active(),
        deadline: when(c.deadline),
        end_rule: c.end_rule.clone(),
        closed: match (c.closed_at, c.closed_reason.as_deref()) {
            (Some(t), Some("deadline")) => format!("Ended at its deadline, {}", when(t)),
            (Some(t), _) => format!("Closed {}", when(t)),
            _ => String::new(),
        },
        recurring: c.template_id.is_some(),
        pct: if counts.items == 0 {
            100
        } else {
            counts.decided * 100 / counts.items
        },
        counts,
        chart: svg,
        legend: chart::legend()
            .iter()
            .map(|(name, colour, dash)| Legend { name, colour, dash })
            .collect(),
        points: points
            .iter()
            .map(|p| (when(p.at), p.decided, p.undecided, p.revoked))
            .collect(),
        manual,
        items: rows,
    })
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    note: String,
}

/// `POST /reviews/campaigns/{id}/close`: end now; undecided items follow the end rule.
pub async fn close(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    let mut tx = who.tx(&state).await?;
    reviews::get_campaign(&mut tx, id).await?;
    end_campaign(&mut tx, id, EndReason::Closed, &who_of(&who))
        .await
        .map_err(web_error)?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/reviews/campaigns/{id}")).into_response())
}

/// `POST /reviews/manual-tasks/{id}/done`: the access was removed by hand.
pub async fn manual_done(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    let mut tx = who.tx(&state).await?;
    let t = reviews::get_manual_task(&mut tx, id).await?;
    complete_manual(&mut tx, id, Some(&form.note), &who_of(&who))
        .await
        .map_err(web_error)?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/reviews/campaigns/{}", t.campaign_id)).into_response())
}
