//! Sign-in and sign-out with a local account.

use super::safe_next;
use crate::auth::{SignedIn, password, session};
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use latchkey_core::{Email, OrgId, UserId};
use latchkey_store::{login_throttle, users};
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    csrf_token: String,
    email: String,
    next: String,
    error: Option<String>,
    /// Offer "Sign in with Microsoft" (the deployment has Latchkey's Entra app).
    microsoft: bool,
}

/// The login page's forms may also lead to the Microsoft login authority (the button's POST
/// is answered with a redirect there), so its CSP `form-action` allows that origin.
pub(crate) fn with_csp(state: &AppState, resp: Response) -> Response {
    let mut resp = resp;
    if let Some(origin) = crate::auth::microsoft::authority_origin(state)
        && let Ok(v) =
            axum::http::HeaderValue::from_str(&crate::headers::csp_allowing_form_target(&origin))
    {
        resp.headers_mut()
            .insert(axum::http::header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    jar: CookieJar,
    who: Option<SignedIn>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if who.is_some() {
        return Redirect::to(&next).into_response();
    }
    let (jar, csrf_token) = csrf::issue_presession(&state, jar);
    let microsoft = state.signin.is_some();
    with_csp(
        &state,
        (
            jar,
            LoginPage {
                csrf_token,
                email: String::new(),
                next,
                error: None,
                microsoft,
            },
        )
            .into_response(),
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    csrf::verify_presession(&state, &jar, &form.csrf_token)?;
    let next = safe_next(form.next.as_deref());
    let failed = |jar: CookieJar, status: StatusCode, message: String| {
        let (jar, csrf_token) = csrf::issue_presession(&state, jar);
        let email = form.email.clone();
        with_csp(
            &state,
            (
                status,
                jar,
                LoginPage {
                    csrf_token,
                    email,
                    next: next.clone(),
                    error: Some(message),
                    microsoft: state.signin.is_some(),
                },
            )
                .into_response(),
        )
    };
    let Ok(email) = Email::parse(&form.email) else {
        return Ok(failed(
            jar,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter the email address you signed up with.".into(),
        ));
    };
    let ip = peer.ip().to_string();

    let window =
        time::Duration::try_from(state.config.login_window).unwrap_or(time::Duration::MINUTE * 15);
    let f = login_throttle::recent_failures(&state.store, email.as_str(), &ip, window).await?;
    let max = state.config.login_max_failures;
    let frees_at = if f.by_email >= max {
        f.email_window_frees_at
    } else if f.by_ip >= max * 4 {
        f.ip_window_frees_at
    } else {
        None
    };
    if let Some(at) = frees_at {
        let secs = (at - time::OffsetDateTime::now_utc())
            .whole_seconds()
            .max(1);
        let minutes = (secs + 59) / 60;
        tracing::warn!(client_ip = %ip, "sign-in throttled");
        return Err(WebError::TooManyRequests {
            message: format!(
                "Too many failed sign-in attempts. Wait {minutes} minute{} and try again, or ask a Super Administrator to send you a new invitation.",
                if minutes == 1 { "" } else { "s" }
            ),
            retry_after_secs: secs as u64,
        });
    }

    let candidate = users::find_for_login(&state.store, &email).await?;
    let ok = password::verify(
        &form.password,
        candidate.as_ref().and_then(|c| c.password_hash.clone()),
    )
    .await;
    match candidate {
        Some(c) if ok && !c.disabled => {
            login_throttle::record(&state.store, email.as_str(), &ip, true).await?;
            let cookie = session::start(&state, OrgId(c.org_id), UserId(c.id)).await?;
            tracing::info!(org_id = %c.org_id, user_id = %c.id, "signed in");
            Ok((jar.add(cookie), Redirect::to(&next)).into_response())
        }
        Some(c) if ok && c.disabled => Ok(failed(
            jar,
            StatusCode::FORBIDDEN,
            "This account is disabled. Ask a Super Administrator of your organization to enable it.".into(),
        )),
        _ => {
            login_throttle::record(&state.store, email.as_str(), &ip, false).await?;
            Ok(failed(jar, StatusCode::UNAUTHORIZED, "The email or password is not right.".into()))
        }
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf_token: String,
}

pub async fn logout(
    State(state): State<AppState>,
    who: SignedIn,
    jar: CookieJar,
    Form(form): Form<LogoutForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    let removal = session::end(&state, &who).await?;
    Ok((jar.add(removal), Redirect::to("/login")).into_response())
}
