//! Connector settings: Client secret or OAuth, and the options, each with a sentence of help.

use super::actor;
use crate::auth::SignedIn;
use crate::connectors::{self, NextStep, ONLY_EDITORS, ServiceError};
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::{FieldProblem, Nav, problem};
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_crypto::SecretString;
use latchkey_entra::onboarding::settings::AuthInput;
use latchkey_entra::onboarding::{AuthMode, EntraSettings, SettingsInput};
use latchkey_store::connectors as store;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Template, WebTemplate)]
#[template(path = "connector_settings.html")]
pub struct SettingsPage {
    nav: Nav,
    id: Uuid,
    name: String,
    is_new: bool,
    oauth_available: bool,
    mode: String,
    tenant_id: String,
    client_id: String,
    secret_set: bool,
    secret_set_at: Option<String>,
    graph_domain: String,
    login_authority: String,
    provisioning: bool,
    skip_ad_groups: bool,
    fetch_sign_in_activity: bool,
    schedule_scim_provisioning: bool,
    disable_audit_feed: bool,
    allow_account_deletion: bool,
    errors: Vec<FieldProblem>,
}

impl SettingsPage {
    fn problem(&self, field: &str) -> Option<&str> {
        problem(&self.errors, field)
    }
}

#[derive(Deserialize)]
pub struct SettingsQuery {
    new: Option<String>,
}

async fn load(state: &AppState, who: &SignedIn, id: Uuid) -> Result<SettingsPage, WebError> {
    let mut tx = who.tx(state).await?;
    let row = store::get(&mut tx, id).await?;
    if !connectors::may_edit(&mut tx, &actor(who), id).await? {
        return Err(WebError::Forbidden(ONLY_EDITORS));
    }
    let secret_set = latchkey_store::secrets::exists(
        &mut tx,
        latchkey_entra::onboarding::connection_test::secret_ref(id),
    )
    .await?;
    tx.commit().await?;
    let s: Option<EntraSettings> = row.settings.and_then(|v| serde_json::from_value(v).ok());
    Ok(SettingsPage {
        nav: Nav::new(who, "connectors"),
        id,
        name: row.display_name,
        is_new: false,
        oauth_available: state.config.entra_app.is_some(),
        mode: match s.as_ref().map(|s| s.auth.mode) {
            Some(AuthMode::Oauth) => "oauth".into(),
            _ => "client_secret".into(),
        },
        tenant_id: s
            .as_ref()
            .map(|s| s.auth.tenant_id.clone())
            .unwrap_or_default(),
        client_id: s
            .as_ref()
            .and_then(|s| s.auth.client_id.clone())
            .unwrap_or_default(),
        secret_set,
        secret_set_at: row.secret_set_at.map(|t| t.date().to_string()),
        graph_domain: s
            .as_ref()
            .map(|s| s.graph_domain.clone())
            .or_else(|| state.config.default_graph_domain.clone())
            .unwrap_or_else(|| "graph.microsoft.com".into()),
        login_authority: s
            .as_ref()
            .and_then(|s| s.login_authority.clone())
            .unwrap_or_default(),
        provisioning: s.as_ref().is_some_and(|s| s.provisioning),
        skip_ad_groups: s.as_ref().is_some_and(|s| s.skip_ad_groups),
        fetch_sign_in_activity: s.as_ref().is_some_and(|s| s.fetch_sign_in_activity),
        schedule_scim_provisioning: s.as_ref().is_some_and(|s| s.schedule_scim_provisioning),
        disable_audit_feed: s.as_ref().is_some_and(|s| s.disable_audit_feed),
        allow_account_deletion: s.as_ref().is_some_and(|s| s.allow_account_deletion),
        errors: vec![],
    })
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Query(q): Query<SettingsQuery>,
) -> Result<Response, WebError> {
    {
        // A self-hosted connector's settings are its credentials (its Entra settings stay in
        // its own environment).
        let mut tx = who.tx(&state).await?;
        let row = store::get(&mut tx, id).await?;
        tx.commit().await?;
        if row.kind == crate::connector_agent::SELF_HOSTED {
            return Ok(Redirect::to(&format!("/connectors/{id}/self-hosted")).into_response());
        }
    }
    let mut page = load(&state, &who, id).await?;
    page.is_new = q.new.is_some();
    Ok(page.into_response())
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    graph_domain: String,
    #[serde(default)]
    login_authority: String,
    provisioning: Option<String>,
    skip_ad_groups: Option<String>,
    fetch_sign_in_activity: Option<String>,
    schedule_scim_provisioning: Option<String>,
    disable_audit_feed: Option<String>,
    allow_account_deletion: Option<String>,
}

impl SettingsForm {
    pub fn to_input(&self) -> SettingsInput {
        let oauth = self.mode == "oauth";
        SettingsInput {
            auth: Some(AuthInput {
                mode: Some(self.mode.clone()),
                tenant_id: Some(self.tenant_id.clone()),
                client_id: (!oauth).then(|| self.client_id.clone()),
                client_secret: (!oauth && !self.client_secret.trim().is_empty())
                    .then(|| SecretString::from(self.client_secret.clone())),
            }),
            graph_domain: Some(self.graph_domain.clone()),
            login_authority: Some(self.login_authority.clone()),
            // A checkbox that is not ticked is simply absent from the form.
            provisioning: Some(self.provisioning.is_some()),
            skip_ad_groups: Some(self.skip_ad_groups.is_some()),
            fetch_sign_in_activity: Some(self.fetch_sign_in_activity.is_some()),
            schedule_scim_provisioning: Some(self.schedule_scim_provisioning.is_some()),
            disable_audit_feed: Some(self.disable_audit_feed.is_some()),
            allow_account_deletion: Some(self.allow_account_deletion.is_some()),
        }
    }
}

pub async fn save(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<SettingsForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    match connectors::update_settings(&state, &actor(&who), id, &form.to_input()).await {
        Ok(NextStep::Testing { .. }) => {
            Ok(Redirect::to(&format!("/connectors/{id}?notice=testing")).into_response())
        }
        Ok(NextStep::Consent { .. }) => {
            Ok(Redirect::to(&format!("/connectors/{id}/consent")).into_response())
        }
        Err(ServiceError::Invalid(fields)) => {
            let mut page = load(&state, &who, id).await?;
            page.mode = form.mode.clone();
            page.tenant_id = form.tenant_id.clone();
            page.client_id = form.client_id.clone();
            page.graph_domain = form.graph_domain.clone();
            page.login_authority = form.login_authority.clone();
            page.provisioning = form.provisioning.is_some();
            page.skip_ad_groups = form.skip_ad_groups.is_some();
            page.fetch_sign_in_activity = form.fetch_sign_in_activity.is_some();
            page.schedule_scim_provisioning = form.schedule_scim_provisioning.is_some();
            page.disable_audit_feed = form.disable_audit_feed.is_some();
            page.allow_account_deletion = form.allow_account_deletion.is_some();
            page.errors = fields
                .into_iter()
                .map(|f| FieldProblem {
                    field: match f.field.trim_start_matches("settings.") {
                        "auth.mode" => "mode",
                        "auth.tenant_id" => "tenant_id",
                        "auth.client_id" => "client_id",
                        "auth.client_secret" => "client_secret",
                        "graph_domain" => "graph_domain",
                        "login_authority" => "login_authority",
                        "allow_account_deletion" => "allow_account_deletion",
                        _ => "form",
                    },
                    message: f.message,
                })
                .collect();
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}
