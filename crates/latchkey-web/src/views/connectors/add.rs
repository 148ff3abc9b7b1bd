//! Add connector: the catalog, then attaching it to an app and choosing its owners.

use super::actor;
use crate::auth::SignedIn;
use crate::connectors::{self, AppChoice, CreateConnector, ONLY_CONNECTOR_ADMINS, ServiceError};
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::{FieldProblem, Nav, problem};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_store::apps::{self, App};
use latchkey_store::users::{self, User};
use serde::Deserialize;
use uuid::Uuid;

pub struct CatalogEntry {
    pub key: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub available: bool,
    pub note: &'static str,
}

const CATALOG: [CatalogEntry; 2] = [
    CatalogEntry {
        key: "entra",
        name: "Microsoft Entra ID",
        description: "Hosted by Latchkey. Syncs accounts, groups, enterprise apps, directory roles, licenses and managed identities; provisions access.",
        available: true,
        note: "",
    },
    CatalogEntry {
        key: "self-hosted",
        name: "Self-hosted connector",
        description: "Run the Entra connector in your own environment (Kubernetes); it connects out to Latchkey, and your Entra credentials never leave it.",
        available: true,
        note: "",
    },
];

#[derive(Template, WebTemplate)]
#[template(path = "connector_catalog.html")]
pub struct CatalogPage {
    nav: Nav,
    q: String,
    entries: Vec<&'static CatalogEntry>,
}

#[derive(Deserialize)]
pub struct CatalogQuery {
    #[serde(default)]
    q: String,
}

pub async fn catalog(
    who: SignedIn,
    Query(q): Query<CatalogQuery>,
) -> Result<CatalogPage, WebError> {
    who.require(who.role.can_manage_connectors(), ONLY_CONNECTOR_ADMINS)?;
    let needle = q.q.trim().to_lowercase();
    let entries = CATALOG
        .iter()
        .filter(|e| {
            needle.is_empty()
                || e.name.to_lowercase().contains(&needle)
                || e.description.to_lowercase().contains(&needle)
        })
        .collect();
    Ok(CatalogPage {
        nav: Nav::new(&who, "connectors"),
        q: q.q,
        entries,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "connector_new.html")]
pub struct NewPage {
    nav: Nav,
    /// `entra` or `self-hosted` (the catalog key, also the form's path).
    kind: &'static str,
    title: &'static str,
    discovered: Vec<App>,
    managed: Vec<App>,
    people: Vec<User>,
    display_name: String,
    attach: String,
    new_app_name: String,
    selected_app: Option<Uuid>,
    owners: Vec<Uuid>,
    errors: Vec<FieldProblem>,
}

impl NewPage {
    fn problem(&self, field: &str) -> Option<&str> {
        problem(&self.errors, field)
    }
    fn is_owner(&self, id: &Uuid) -> bool {
        self.owners.contains(id)
    }
    fn is_selected(&self, id: &Uuid) -> bool {
        self.selected_app == Some(*id)
    }
}

async fn new_page(state: &AppState, who: &SignedIn) -> Result<NewPage, WebError> {
    let mut tx = who.tx(state).await?;
    let discovered = apps::list(&mut tx, "discovered").await?;
    let managed = apps::list(&mut tx, "managed").await?;
    let people = users::list(&mut tx, None, 200)
        .await?
        .items
        .into_iter()
        .filter(|u| u.disabled_at.is_none())
        .collect();
    tx.commit().await?;
    Ok(NewPage {
        nav: Nav::new(who, "connectors"),
        kind: "entra",
        title: "Add Microsoft Entra ID",
        attach: if discovered.is_empty() {
            "new".into()
        } else {
            "discovered".into()
        },
        discovered,
        managed,
        people,
        display_name: "Microsoft Entra ID".into(),
        new_app_name: String::new(),
        selected_app: None,
        owners: vec![who.user_id.0],
        errors: vec![],
    })
}

pub async fn show_new(State(state): State<AppState>, who: SignedIn) -> Result<NewPage, WebError> {
    who.require(who.role.can_manage_connectors(), ONLY_CONNECTOR_ADMINS)?;
    new_page(&state, &who).await
}

fn self_hosted_page(mut page: NewPage) -> NewPage {
    page.kind = "self-hosted";
    page.title = "Add a self-hosted connector";
    page.display_name = "Microsoft Entra ID (self-hosted)".into();
    page
}

/// Add connector > Self-hosted connector: the same app and owners as a hosted one.
pub async fn show_new_self_hosted(
    State(state): State<AppState>,
    who: SignedIn,
) -> Result<NewPage, WebError> {
    who.require(who.role.can_manage_connectors(), ONLY_CONNECTOR_ADMINS)?;
    Ok(self_hosted_page(new_page(&state, &who).await?))
}

pub async fn create_self_hosted(
    State(state): State<AppState>,
    who: SignedIn,
    RawForm(raw): RawForm,
) -> Result<Response, WebError> {
    create_kind(&state, &who, &raw, connectors::ConnectorKind::SelfHosted).await
}

/// The form has repeated `owners` fields, which `Form` into a struct cannot express.
fn parse_form(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

pub async fn create(
    State(state): State<AppState>,
    who: SignedIn,
    RawForm(raw): RawForm,
) -> Result<Response, WebError> {
    create_kind(&state, &who, &raw, connectors::ConnectorKind::Entra).await
}

async fn create_kind(
    state: &AppState,
    who: &SignedIn,
    raw: &[u8],
    kind: connectors::ConnectorKind,
) -> Result<Response, WebError> {
    let (state, who) = (state.clone(), who);
    let pairs = parse_form(raw);
    csrf::verify_session(who, first(&pairs, "csrf_token"))?;
    who.require(who.role.can_manage_connectors(), ONLY_CONNECTOR_ADMINS)?;
    let attach = first(&pairs, "attach").to_string();
    let owners: Vec<Uuid> = pairs
        .iter()
        .filter(|(k, _)| k == "owners")
        .filter_map(|(_, v)| Uuid::parse_str(v).ok())
        .collect();
    let mut errors = vec![];
    let app = match attach.as_str() {
        "new" => Some(AppChoice::New {
            name: first(&pairs, "new_app_name").to_string(),
        }),
        "managed" => Uuid::parse_str(first(&pairs, "managed_app_id"))
            .ok()
            .map(AppChoice::ManagedAppId),
        "discovered" => Uuid::parse_str(first(&pairs, "discovered_app_id"))
            .ok()
            .map(AppChoice::DiscoveredAppId),
        _ => None,
    };
    if app.is_none() {
        errors.push(FieldProblem {
            field: "attach",
            message: "choose the app to attach the connector to".into(),
        });
    }
    if owners.is_empty() {
        errors.push(FieldProblem {
            field: "owners",
            message: "choose at least one owner".into(),
        });
    }
    if let (Some(app), true) = (app.clone(), errors.is_empty()) {
        let req = CreateConnector {
            display_name: first(&pairs, "display_name").to_string(),
            app,
            owners: Some(owners.clone()),
            settings: None,
            kind,
        };
        match connectors::create(&state, &actor(who), req).await {
            Ok((id, _)) => {
                let next = match kind {
                    connectors::ConnectorKind::Entra => format!("/connectors/{id}/settings?new=1"),
                    connectors::ConnectorKind::SelfHosted => {
                        format!("/connectors/{id}/self-hosted?new=1")
                    }
                };
                return Ok(Redirect::to(&next).into_response());
            }
            Err(ServiceError::Invalid(fields)) => {
                for f in fields {
                    let key: &'static str = match f.field.as_str() {
                        "display_name" => "display_name",
                        "owners" => "owners",
                        "app.new.name" => "new_app_name",
                        _ => "attach",
                    };
                    errors.push(FieldProblem {
                        field: key,
                        message: f.message,
                    });
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut page = new_page(&state, who).await?;
    if kind == connectors::ConnectorKind::SelfHosted {
        page = self_hosted_page(page);
    }
    page.display_name = first(&pairs, "display_name").to_string();
    page.attach = attach;
    page.new_app_name = first(&pairs, "new_app_name").to_string();
    page.selected_app = Uuid::parse_str(first(&pairs, "managed_app_id"))
        .or_else(|_| Uuid::parse_str(first(&pairs, "discovered_app_id")))
        .ok();
    page.owners = owners;
    page.errors = errors;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}
