//! Sign-up: a new organization and its first Super Administrator.

use super::{FieldProblem, problem};
use crate::auth::{password, session};
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use latchkey_core::{DisplayName, Email, Password};
use latchkey_store::{StoreError, orgs};
use serde::Deserialize;

#[derive(Template, WebTemplate)]
#[template(path = "signup.html")]
pub struct SignupPage {
    csrf_token: String,
    org_name: String,
    display_name: String,
    email: String,
    errors: Vec<FieldProblem>,
}

impl SignupPage {
    fn problem(&self, field: &str) -> Option<&str> {
        problem(&self.errors, field)
    }
}

pub async fn show(State(state): State<AppState>, jar: CookieJar) -> impl IntoResponse {
    let (jar, csrf_token) = csrf::issue_presession(&state, jar);
    let page = SignupPage {
        csrf_token,
        org_name: String::new(),
        display_name: String::new(),
        email: String::new(),
        errors: vec![],
    };
    (jar, page)
}

#[derive(Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    org_name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

pub async fn submit(
    State(state): State<AppState>,
    jar: CookieJar,
    Form(form): Form<SignupForm>,
) -> Result<Response, WebError> {
    csrf::verify_presession(&state, &jar, &form.csrf_token)?;
    let mut errors = vec![];
    let org_name = DisplayName::parse(&form.org_name)
        .map_err(|e| {
            errors.push(FieldProblem {
                field: "org_name",
                message: e.to_string(),
            })
        })
        .ok();
    let display_name = DisplayName::parse(&form.display_name)
        .map_err(|e| {
            errors.push(FieldProblem {
                field: "display_name",
                message: e.to_string(),
            })
        })
        .ok();
    let email = Email::parse(&form.email)
        .map_err(|e| {
            errors.push(FieldProblem {
                field: "email",
                message: e.to_string(),
            })
        })
        .ok();
    let pw = Password::parse(&form.password)
        .map_err(|e| {
            errors.push(FieldProblem {
                field: "password",
                message: e.to_string(),
            })
        })
        .ok();
    if pw.is_some() && form.password != form.password_confirm {
        errors.push(FieldProblem {
            field: "password_confirm",
            message: "the two passwords differ".into(),
        });
    }
    if let (true, Some(org_name), Some(display_name), Some(email), Some(pw)) =
        (errors.is_empty(), org_name, display_name, email.clone(), pw)
    {
        let hash = password::hash(&pw).await?;
        match orgs::create_with_admin(&state.store, &org_name, &email, &display_name, &hash).await {
            Ok((org, user)) => {
                tracing::info!(org_id = %org, user_id = %user, "organization created by sign-up");
                let cookie = session::start(&state, org, user).await?;
                return Ok((jar.add(cookie), Redirect::to("/dashboard")).into_response());
            }
            Err(StoreError::Conflict { field: "email" }) => errors.push(FieldProblem {
                field: "email",
                message: "an account with this email already exists; sign in instead".into(),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    let (jar, csrf_token) = csrf::issue_presession(&state, jar);
    let page = SignupPage {
        csrf_token,
        org_name: form.org_name,
        display_name: form.display_name,
        email: form.email,
        errors,
    };
    Ok((StatusCode::UNPROCESSABLE_ENTITY, jar, page).into_response())
}
