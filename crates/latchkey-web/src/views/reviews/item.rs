//! One item's evidence (who, what, since when, how, last sign-in, whether Latchkey granted it,
//! the recommendation) with the decision and reassignment forms. Opening it as the reviewer
//! is recorded for the approver-quality signals.

use super::{ItemRow, rows, web_error, who_of};
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
use latchkey_reviews::decide::{Action, DecisionInput, open_evidence};
use latchkey_store::page::clamp_limit;
use latchkey_store::{reviews, users};
use serde::Deserialize;
use uuid::Uuid;

pub struct Person {
    pub id: String,
    pub label: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "reviews_item.html")]
pub struct ItemPage {
    nav: Nav,
    item: ItemRow,
    can_decide: bool,
    active: bool,
    people: Vec<Person>,
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
) -> Result<ItemPage, WebError> {
    let actor = who_of(&who);
    let mut tx = who.tx(&state).await?;
    let it = open_evidence(&mut tx, id, &actor)
        .await
        .map_err(web_error)?;
    let campaign = reviews::get_campaign(&mut tx, it.campaign_id).await?;
    let subject = it.subject_user_id;
    let people = users::list(&mut tx, None, clamp_limit(Some(200)))
        .await?
        .items
        .into_iter()
        .filter(|u| {
            u.disabled_at.is_none() && Some(u.id) != subject && Some(u.id) != it.reviewer_id
        })
        .map(|u| Person {
            id: u.id.to_string(),
            label: format!("{} ({})", u.display_name, u.email),
        })
        .collect();
    let can_decide = it.decision.is_none()
        && campaign.is_active()
        && subject != Some(who.user_id.0)
        && (actor.admin || it.reviewer_id == Some(who.user_id.0));
    let mut r = rows(&mut tx, std::slice::from_ref(&it), Some(who.user_id.0)).await?;
    tx.commit().await?;
    Ok(ItemPage {
        nav: Nav::new(&who, "reviews"),
        item: r.remove(0),
        can_decide,
        active: campaign.is_active(),
        people,
    })
}

#[derive(Deserialize)]
pub struct DecideForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    comment: String,
}

/// `POST /reviews/items/{id}`: keep or revoke this item.
pub async fn decide(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<DecideForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    let action = match form.decision.as_str() {
        "keep" => Action::Keep,
        "revoke" => Action::Revoke,
        _ => return Err(WebError::BadRequest("Choose Keep or Revoke.".into())),
    };
    let mut tx = who.tx(&state).await?;
    let item = reviews::get_item(&mut tx, id).await?;
    latchkey_reviews::decide(
        &mut tx,
        item.campaign_id,
        &[DecisionInput {
            item_id: id,
            decision: action,
            comment: Some(form.comment),
            reviewer_id: None,
        }],
        &who_of(&who),
    )
    .await
    .map_err(web_error)?;
    tx.commit().await?;
    Ok(Redirect::to(&format!(
        "/reviews?notice={}&n=1",
        if action == Action::Keep {
            "kept"
        } else {
            "revoked"
        }
    ))
    .into_response())
}

#[derive(Deserialize)]
pub struct ReassignForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    reviewer_id: String,
    #[serde(default)]
    comment: String,
}

/// `POST /reviews/items/{id}/reassign`: give the item to someone else.
pub async fn reassign(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<ReassignForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    let to = Uuid::parse_str(form.reviewer_id.trim())
        .map_err(|_| WebError::BadRequest("Choose the new reviewer.".into()))?;
    let mut tx = who.tx(&state).await?;
    let item = reviews::get_item(&mut tx, id).await?;
    latchkey_reviews::decide(
        &mut tx,
        item.campaign_id,
        &[DecisionInput {
            item_id: id,
            decision: Action::Reassign,
            comment: Some(form.comment),
            reviewer_id: Some(to),
        }],
        &who_of(&who),
    )
    .await
    .map_err(web_error)?;
    tx.commit().await?;
    Ok(Redirect::to("/reviews?notice=reassigned").into_response())
}
