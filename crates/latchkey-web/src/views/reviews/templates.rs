//! Recurring reviews: every template with its repeat period, next run and the campaigns it
//! started, and Stop (no further campaigns; those started go on). Administrators.

use super::{ONLY_ADMINS, day, web_error, when, who_of};
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
use latchkey_reviews::templates::{Recurring, recurring, stop_template};
use latchkey_store::reviews;
use serde::Deserialize;
use uuid::Uuid;

pub struct StartedRow {
    pub id: String,
    pub name: String,
    pub active: bool,
    pub deadline: String,
}

pub struct TemplateRow {
    pub id: String,
    pub name: String,
    pub active: bool,
    pub every: String,
    pub runs_for: String,
    pub end_rule: String,
    pub next_run: String,
    pub stopped: String,
    pub campaigns: Vec<StartedRow>,
}

fn days(n: i64) -> String {
    if n == 1 {
        "1 day".into()
    } else {
        format!("{n} days")
    }
}

fn row(r: Recurring) -> TemplateRow {
    let active = r.template.is_active();
    let end_rule = r.end_rule();
    let t = &r.template;
    TemplateRow {
        id: t.id.to_string(),
        name: t.name.clone(),
        active,
        every: days(i64::from(t.every_days)),
        // Rounded up: a campaign of a day and an hour runs for 2 days.
        runs_for: days((t.duration_secs + 86_399) / 86_400),
        end_rule,
        next_run: r.next_run_at.map(when).unwrap_or_default(),
        stopped: t
            .stopped_at
            .map(|at| format!("Stopped {}", when(at)))
            .unwrap_or_default(),
        campaigns: r
            .campaigns
            .iter()
            .map(|c| StartedRow {
                id: c.id.to_string(),
                name: c.name.clone(),
                active: c.is_active(),
                deadline: day(c.deadline),
            })
            .collect(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "reviews_templates.html")]
pub struct TemplatesPage {
    nav: Nav,
    templates: Vec<TemplateRow>,
}

/// `GET /reviews/templates`.
pub async fn list(State(state): State<AppState>, who: SignedIn) -> Result<TemplatesPage, WebError> {
    who.require(who.role.can_manage_connectors(), ONLY_ADMINS)?;
    let mut tx = who.tx(&state).await?;
    let page = reviews::list_templates(&mut tx, None, 200).await?;
    let mut templates = Vec::with_capacity(page.items.len());
    for t in page.items {
        templates.push(row(recurring(&mut tx, t).await?));
    }
    tx.commit().await?;
    Ok(TemplatesPage {
        nav: Nav::new(&who, "reviews"),
        templates,
    })
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf_token: String,
}

/// `POST /reviews/templates/{id}/stop`: no further campaigns start from it.
pub async fn stop(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    let mut tx = who.tx(&state).await?;
    // Another organization's template is 404 before any role check.
    reviews::get_template(&mut tx, id).await?;
    stop_template(&mut tx, id, &who_of(&who))
        .await
        .map_err(web_error)?;
    tx.commit().await?;
    Ok(Redirect::to("/reviews/templates").into_response())
}
