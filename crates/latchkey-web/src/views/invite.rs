//! Accepting an invitation: the invited person chooses a password and is signed in.

use super::{FieldProblem, problem};
use crate::auth::{password, session};
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use latchkey_core::{OrgId, Password, UserId};
use latchkey_crypto::sha256_hex;
use latchkey_store::{invitations, users};
use serde::Deserialize;

#[derive(Template, WebTemplate)]
#[template(path = "invite.html")]
pub struct InvitePage {
    csrf_token: String,
    token: String,
    email: String,
    org_name: String,
    errors: Vec<FieldProblem>,
}

impl InvitePage {
    fn problem(&self, field: &str) -> Option<&str> {
        problem(&self.errors, field)
    }
}

const GONE: &str = "This invitation link has already been used or has expired. Ask a Super Administrator of your organization for a new one.";

pub async fn show(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
) -> Result<Response, WebError> {
    let Some(inv) = invitations::lookup(&state.store, &sha256_hex(token.as_bytes())).await? else {
        return Err(WebError::BadRequest(GONE.into()));
    };
    let (jar, csrf_token) = csrf::issue_presession(&state, jar);
    Ok((
        jar,
        InvitePage {
            csrf_token,
            token,
            email: inv.email,
            org_name: inv.org_name,
            errors: vec![],
        },
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

pub async fn accept(
    State(state): State<AppState>,
    jar: CookieJar,
    Path(token): Path<String>,
    Form(form): Form<AcceptForm>,
) -> Result<Response, WebError> {
    csrf::verify_presession(&state, &jar, &form.csrf_token)?;
    let Some(inv) = invitations::lookup(&state.store, &sha256_hex(token.as_bytes())).await? else {
        return Err(WebError::BadRequest(GONE.into()));
    };
    let mut errors = vec![];
    match Password::parse(&form.password) {
        Ok(pw) if form.password == form.password_confirm => {
            let hash = password::hash(&pw).await?;
            let org = OrgId(inv.org_id);
            let mut tx = state.store.org_tx(org).await?;
            invitations::accept(&mut tx, inv.id)
                .await
                .map_err(|_| WebError::BadRequest(GONE.into()))?;
            users::set_password_hash(&mut tx, UserId(inv.user_id), &hash).await?;
            tx.commit().await?;
            let cookie = session::start(&state, org, UserId(inv.user_id)).await?;
            return Ok((jar.add(cookie), Redirect::to("/dashboard")).into_response());
        }
        Ok(_) => errors.push(FieldProblem {
            field: "password_confirm",
            message: "the two passwords differ".into(),
        }),
        Err(e) => errors.push(FieldProblem {
            field: "password",
            message: e.to_string(),
        }),
    }
    let (jar, csrf_token) = csrf::issue_presession(&state, jar);
    let page = InvitePage {
        csrf_token,
        token,
        email: inv.email,
        org_name: inv.org_name,
        errors,
    };
    Ok((StatusCode::UNPROCESSABLE_ENTITY, jar, page).into_response())
}
