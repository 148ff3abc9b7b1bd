//! Settings > People: the organization's users, invitations and roles (Super Administrators).

use super::{FieldProblem, Nav, problem};
use crate::auth::SignedIn;
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_core::{DisplayName, Email, Role, UserId};
use latchkey_crypto::{random_token, sha256_hex};
use latchkey_store::page::{Cursor, clamp_limit};
use latchkey_store::users::User;
use latchkey_store::{StoreError, invitations, users};
use serde::Deserialize;
use uuid::Uuid;

const ONLY_SUPER_ADMINS: &str = "Only Super Administrators can manage people.";

#[derive(Template, WebTemplate)]
#[template(path = "people.html")]
pub struct PeoplePage {
    nav: Nav,
    people: Vec<User>,
    next_cursor: Option<String>,
    roles: [Role; 3],
    invite_email: String,
    invite_name: String,
    invite_role: Role,
    errors: Vec<FieldProblem>,
    notice: Option<String>,
    /// Shown exactly once, right after an invitation is created.
    invite_link: Option<String>,
    me: Uuid,
}

impl PeoplePage {
    fn problem(&self, field: &str) -> Option<&str> {
        problem(&self.errors, field)
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    notice: Option<String>,
}

async fn page(
    state: &AppState,
    who: &SignedIn,
    cursor: Option<&str>,
) -> Result<PeoplePage, WebError> {
    let after = cursor.map(Cursor::parse).transpose()?;
    let mut tx = who.tx(state).await?;
    let list = users::list(&mut tx, after, clamp_limit(Some(100))).await?;
    tx.commit().await?;
    Ok(PeoplePage {
        nav: Nav::new(who, "people"),
        people: list.items,
        next_cursor: list.next_cursor,
        roles: Role::ALL,
        invite_email: String::new(),
        invite_name: String::new(),
        invite_role: Role::Member,
        errors: vec![],
        notice: None,
        invite_link: None,
        me: who.user_id.0,
    })
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<ListQuery>,
) -> Result<PeoplePage, WebError> {
    who.require(who.role.can_manage_people(), ONLY_SUPER_ADMINS)?;
    let mut p = page(&state, &who, q.cursor.as_deref()).await?;
    p.notice = q
        .notice
        .filter(|n| ["role", "disabled", "enabled"].contains(&n.as_str()))
        .map(|n| match n.as_str() {
            "role" => "Role changed.".to_string(),
            "disabled" => "Account disabled; its sessions have ended.".to_string(),
            _ => "Account enabled.".to_string(),
        });
    Ok(p)
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    role: String,
}

pub async fn invite(
    State(state): State<AppState>,
    who: SignedIn,
    Form(form): Form<InviteForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    who.require(who.role.can_manage_people(), ONLY_SUPER_ADMINS)?;
    let mut errors = vec![];
    let email = Email::parse(&form.email)
        .map_err(|e| {
            errors.push(FieldProblem {
                field: "email",
                message: e.to_string(),
            })
        })
        .ok();
    let name = DisplayName::parse(&form.display_name)
        .map_err(|e| {
            errors.push(FieldProblem {
                field: "display_name",
                message: e.to_string(),
            })
        })
        .ok();
    let role = form
        .role
        .parse::<Role>()
        .map_err(|e| {
            errors.push(FieldProblem {
                field: "role",
                message: e.to_string(),
            })
        })
        .ok();

    if let (Some(email), Some(name), Some(role)) = (&email, &name, role) {
        let mut tx = who.tx(&state).await?;
        match users::create(&mut tx, email, name, role).await {
            Ok(user) => {
                let token = random_token(32);
                let expires = time::OffsetDateTime::now_utc()
                    + time::Duration::try_from(state.config.invitation_lifetime)
                        .unwrap_or(time::Duration::WEEK);
                invitations::create(
                    &mut tx,
                    UserId(user.id),
                    &sha256_hex(token.as_bytes()),
                    who.user_id,
                    expires,
                )
                .await?;
                tx.commit().await?;
                tracing::info!(invited_user_id = %user.id, role = %role, "person invited");
                let mut p = page(&state, &who, None).await?;
                let base = state.config.public_url.as_str().trim_end_matches('/');
                p.invite_link = Some(format!("{base}/invite/{token}"));
                p.notice = Some(format!(
                    "{} was invited. Send them this link; it works once, for 7 days.",
                    user.email
                ));
                return Ok(p.into_response());
            }
            Err(StoreError::Conflict { .. }) => errors.push(FieldProblem {
                field: "email",
                message: "someone with this email already has an account".into(),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    let mut p = page(&state, &who, None).await?;
    p.invite_email = form.email;
    p.invite_name = form.display_name;
    p.invite_role = role.unwrap_or(Role::Member);
    p.errors = errors;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, p).into_response())
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    role: String,
}

pub async fn change_role(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<RoleForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    who.require(who.role.can_manage_people(), ONLY_SUPER_ADMINS)?;
    let role = form
        .role
        .parse::<Role>()
        .map_err(|e| WebError::BadRequest(e.to_string()))?;
    let mut tx = who.tx(&state).await?;
    match users::set_role(&mut tx, UserId(id), role).await {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(WebError::BadRequest(
                "The organization needs at least one active Super Administrator: promote someone else first.".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(Redirect::to("/settings/people?notice=role").into_response())
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

pub async fn disable(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    set_disabled(state, who, id, form, true).await
}

pub async fn enable(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    set_disabled(state, who, id, form, false).await
}

async fn set_disabled(
    state: AppState,
    who: SignedIn,
    id: Uuid,
    form: CsrfOnly,
    disabled: bool,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    who.require(who.role.can_manage_people(), ONLY_SUPER_ADMINS)?;
    let mut tx = who.tx(&state).await?;
    match users::set_disabled(&mut tx, UserId(id), disabled).await {
        Ok(_) => {}
        Err(StoreError::Conflict { .. }) => {
            return Err(WebError::BadRequest(
                "The organization needs at least one active Super Administrator: promote someone else first.".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(Redirect::to(if disabled {
        "/settings/people?notice=disabled"
    } else {
        "/settings/people?notice=enabled"
    })
    .into_response())
}
