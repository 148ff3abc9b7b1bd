//! The campaign report page (every item with decision, reviewer, time, comment, provisioning
//! result; approver-quality signals) and its CSV and JSON downloads.

use super::ONLY_ADMINS;
use crate::api::review_campaigns::{build_report, render_report};
use crate::auth::SignedIn;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::Nav;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::response::Response;
use latchkey_reviews::report::{Report, ReportRow, ReviewerSignals};
use uuid::Uuid;

#[derive(Template, WebTemplate)]
#[template(path = "reviews_report.html")]
pub struct ReportPage {
    nav: Nav,
    report: Report,
}

impl ReportPage {
    fn o(&self, v: &Option<String>) -> String {
        v.clone().unwrap_or_default()
    }
    fn sign_in(&self, r: &ReportRow) -> String {
        if !r.sign_in_known {
            "unknown".into()
        } else {
            r.last_sign_in.clone().unwrap_or_else(|| "never".into())
        }
    }
    fn median(&self, s: &ReviewerSignals) -> String {
        s.median_seconds_to_decide
            .map(|m| format!("{m} s"))
            .unwrap_or_else(|| "—".into())
    }
    fn blind(&self, s: &ReviewerSignals) -> String {
        match (s.kept_without_evidence, s.kept_without_evidence_pct) {
            (Some(n), Some(p)) => format!("{n} ({p}%)"),
            _ => "not tracked (API)".into(),
        }
    }
}

async fn load(state: &AppState, who: &SignedIn, id: Uuid) -> Result<Report, WebError> {
    who.require(who.role.can_manage_connectors(), ONLY_ADMINS)?;
    let mut tx = who.tx(state).await?;
    let r = build_report(&mut tx, id).await?;
    tx.commit().await?;
    Ok(r)
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
) -> Result<ReportPage, WebError> {
    let report = load(&state, &who, id).await?;
    Ok(ReportPage {
        nav: Nav::new(&who, "reviews"),
        report,
    })
}

pub async fn csv(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    Ok(render_report(&load(&state, &who, id).await?, "csv"))
}

pub async fn json(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    Ok(render_report(&load(&state, &who, id).await?, "json"))
}
