//! The reviewer's inbox: every undecided item given to me in active campaigns, with the
//! evidence at a glance and a link to all of it; keep or revoke several at once.

use super::{ItemRow, rows, web_error, who_of};
use crate::auth::SignedIn;
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::Nav;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::Form;
use latchkey_reviews::decide::{Action, DecisionInput};
use latchkey_store::reviews;
use serde::Deserialize;
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Template, WebTemplate)]
#[template(path = "reviews_inbox.html")]
pub struct InboxPage {
    nav: Nav,
    items: Vec<ItemRow>,
    is_admin: bool,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct InboxQuery {
    notice: Option<String>,
    n: Option<u32>,
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<InboxQuery>,
) -> Result<InboxPage, WebError> {
    let mut tx = who.tx(&state).await?;
    let items = reviews::inbox(&mut tx, who.user_id.0, 500).await?;
    let items = rows(&mut tx, &items, Some(who.user_id.0)).await?;
    tx.commit().await?;
    let n = q.n.unwrap_or(0);
    Ok(InboxPage {
        nav: Nav::new(&who, "reviews"),
        items,
        is_admin: who.role.can_manage_connectors(),
        notice: match q.notice.as_deref() {
            Some("kept") => Some(format!("Kept {n} item(s).")),
            Some("revoked") => Some(format!(
                "Revoked {n} item(s): Latchkey is removing the access in the tenant (or opened a manual task where it cannot)."
            )),
            Some("reassigned") => Some("Reassigned.".to_string()),
            _ => None,
        },
    })
}

#[derive(Deserialize)]
pub struct BulkForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    item_id: Vec<Uuid>,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    comment: String,
}

/// `POST /reviews/decide`: the same decision on the checked items (grouped by campaign, all
/// in one transaction).
pub async fn decide_bulk(
    state: &AppState,
    who: &SignedIn,
    form: BulkForm,
) -> Result<Response, WebError> {
    csrf::verify_session(who, &form.csrf_token)?;
    let action = match form.decision.as_str() {
        "keep" => Action::Keep,
        "revoke" => Action::Revoke,
        _ => return Err(WebError::BadRequest("Choose Keep or Revoke.".into())),
    };
    if form.item_id.is_empty() {
        return Err(WebError::BadRequest(
            "Tick the items to decide first.".into(),
        ));
    }
    let actor = who_of(who);
    let mut tx = who.tx(state).await?;
    let mut by_campaign: BTreeMap<Uuid, Vec<DecisionInput>> = BTreeMap::new();
    for id in &form.item_id {
        let item = reviews::get_item(&mut tx, *id).await?;
        by_campaign
            .entry(item.campaign_id)
            .or_default()
            .push(DecisionInput {
                item_id: *id,
                decision: action,
                comment: Some(form.comment.clone()),
                reviewer_id: None,
            });
    }
    for (campaign, inputs) in &by_campaign {
        latchkey_reviews::decide(&mut tx, *campaign, inputs, &actor)
            .await
            .map_err(web_error)?;
    }
    tx.commit().await?;
    Ok(Redirect::to(&format!(
        "/reviews?notice={}&n={}",
        if action == Action::Keep {
            "kept"
        } else {
            "revoked"
        },
        form.item_id.len()
    ))
    .into_response())
}

pub async fn decide(
    State(state): State<AppState>,
    who: SignedIn,
    Form(form): Form<BulkForm>,
) -> Result<Response, WebError> {
    decide_bulk(&state, &who, form).await
}
