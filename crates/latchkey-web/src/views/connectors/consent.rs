//! OAuth pages: "Login with Microsoft" for a connector, and the callback from Microsoft.

use super::actor;
use crate::auth::SignedIn;
use crate::connectors::consent::{self, BeginError, CallbackError};
use crate::connectors::{self, ONLY_EDITORS};
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::Nav;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_entra::onboarding::EntraSettings;
use latchkey_store::connectors as store;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Template, WebTemplate)]
#[template(path = "connector_consent.html")]
pub struct ConsentPage {
    nav: Nav,
    id: Uuid,
    name: String,
    tenant_id: String,
    status_reason: Option<String>,
    available: bool,
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    let mut tx = who.tx(&state).await?;
    let row = store::get(&mut tx, id).await?;
    // Only those who may start consent see its page (another organization's: 404 above).
    if !connectors::may_edit(&mut tx, &actor(&who), id).await? {
        return Err(WebError::Forbidden(ONLY_EDITORS));
    }
    tx.commit().await?;
    let settings: Option<EntraSettings> = row.settings.and_then(|v| serde_json::from_value(v).ok());
    // The button's POST is answered with a redirect to the login authority, which the
    // page's CSP `form-action` must allow.
    let authority = settings
        .as_ref()
        .and_then(|s| consent::consent_endpoints(&state, s).ok())
        .map(|e| e.login_authority().origin().ascii_serialization());
    let page = ConsentPage {
        nav: Nav::new(&who, "connectors"),
        id,
        name: row.display_name,
        tenant_id: settings.map(|s| s.auth.tenant_id).unwrap_or_default(),
        status_reason: row.status_reason,
        available: state.config.entra_app.is_some(),
    };
    Ok(match authority {
        Some(origin) => (
            [(
                header::CONTENT_SECURITY_POLICY,
                crate::headers::csp_allowing_form_target(&origin),
            )],
            page,
        )
            .into_response(),
        None => page.into_response(),
    })
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

/// Starts consent: a fresh state, then off to Microsoft.
pub async fn start(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    match consent::begin(&state, &who, id).await {
        Ok(url) => Ok(Redirect::to(&url).into_response()),
        Err(BeginError::Service(e)) => Err(e.into()),
        Err(e) => Err(WebError::BadRequest(e.to_string())),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "connector_consent_result.html")]
pub struct ConsentResultPage {
    nav: Nav,
    connector: Option<Uuid>,
    message: String,
}

/// `GET /connectors/oauth/callback`: every documented outcome ends on a page that says what
/// happened and what to do.
pub async fn callback(
    State(state): State<AppState>,
    who: SignedIn,
    RawQuery(query): RawQuery,
) -> Result<Response, WebError> {
    match consent::complete(&state, &who, query.as_deref().unwrap_or_default()).await {
        Ok(id) => Ok(Redirect::to(&format!("/connectors/{id}?notice=consented")).into_response()),
        Err((connector, CallbackError::Service(e))) => {
            tracing::warn!(connector_id = ?connector, "consent callback failed");
            Err(e.into())
        }
        Err((connector, e)) => {
            let page = ConsentResultPage {
                nav: Nav::new(&who, "connectors"),
                connector,
                message: e.to_string(),
            };
            Ok((StatusCode::BAD_REQUEST, page).into_response())
        }
    }
}
