//! "Request access": the catalog of requestable entitlements (with search) and the request
//! form (a duration picker bounded by the policy, the justification, break-glass where allowed).

use super::{caller, duration_choices, human, refusal, risk_class};
use crate::auth::SignedIn;
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::Nav;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use latchkey_access::policy::{ApproverRule, RequesterMode};
use latchkey_access::{NewAsk, Policy};
use latchkey_store::access_policies::{self, CatalogItem, EntitlementInfo};
use latchkey_store::page::Cursor;
use serde::Deserialize;
use uuid::Uuid;

pub struct Row {
    pub item: CatalogItem,
    pub max: String,
    pub approval: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "access_catalog.html")]
pub struct CatalogPage {
    nav: Nav,
    q: String,
    rows: Vec<Row>,
    next_cursor: Option<String>,
    can_manage: bool,
}

impl CatalogPage {
    fn risk(&self, r: &str) -> &'static str {
        risk_class(r)
    }
}

#[derive(Deserialize, Default)]
pub struct CatalogQuery {
    q: Option<String>,
    cursor: Option<String>,
}

/// How a request is decided, in a few words.
pub fn approval_summary(p: &Policy) -> String {
    if p.auto_approve.when_low_risk && p.risk == latchkey_access::policy::Risk::Low {
        return "approved automatically".into();
    }
    let stages: Vec<String> = p
        .approval_stages
        .iter()
        .map(|s| {
            let who: Vec<&str> = s
                .approvers
                .iter()
                .map(|a| match a {
                    ApproverRule::User { .. } => "a named approver",
                    ApproverRule::AppOwners => "the app owners",
                    ApproverRule::ConnectorOwners => "the connector owners",
                    ApproverRule::Manager => "your manager",
                    ApproverRule::Group { .. } => "a group",
                })
                .collect();
            if s.required > 1 {
                format!("{} of {}", s.required, who.join(" or "))
            } else {
                who.join(" or ")
            }
        })
        .collect();
    format!("approved by {}", stages.join(", then "))
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<CatalogQuery>,
) -> Result<CatalogPage, WebError> {
    let after = q.cursor.as_deref().map(Cursor::parse).transpose()?;
    let mut tx = who.tx(&state).await?;
    let page = access_policies::catalog(&mut tx, q.q.as_deref(), after, 50).await?;
    tx.commit().await?;
    let rows = page
        .items
        .into_iter()
        .map(|item| {
            let p = Policy::from_value(&item.document);
            Row {
                max: human(p.max_duration_seconds),
                approval: approval_summary(&p),
                item,
            }
        })
        .collect();
    Ok(CatalogPage {
        nav: Nav::new(&who, "request"),
        q: q.q.unwrap_or_default(),
        rows,
        next_cursor: page.next_cursor,
        can_manage: who.role.can_manage_connectors(),
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "access_new.html")]
pub struct RequestForm {
    nav: Nav,
    info: EntitlementInfo,
    risk: String,
    approval: String,
    choices: Vec<(i64, String)>,
    chosen: i64,
    justification: String,
    required: bool,
    pattern: Option<String>,
    emergency_allowed: bool,
    emergency: bool,
    groups_only: bool,
    error: Option<String>,
}

impl RequestForm {
    fn risk_badge(&self) -> &'static str {
        risk_class(&self.risk)
    }
}

async fn form(
    state: &AppState,
    who: &SignedIn,
    entitlement: Uuid,
) -> Result<RequestForm, WebError> {
    let mut tx = who.tx(state).await?;
    let info = access_policies::entitlement_info(&mut tx, entitlement).await?;
    let (policy, stored) = latchkey_access::service::current_policy(&mut tx, entitlement)
        .await
        .map_err(|e| match e {
            latchkey_access::AccessError::Store(s) => WebError::from(s),
            _ => WebError::NotFound,
        })?;
    tx.commit().await?;
    if stored.is_none() || !policy.requestable {
        return Err(WebError::NotFound);
    }
    Ok(RequestForm {
        nav: Nav::new(who, "request"),
        info,
        risk: policy.risk.as_str().to_string(),
        approval: approval_summary(&policy),
        choices: duration_choices(policy.default_duration_seconds, policy.max_duration_seconds),
        chosen: policy.default_duration_seconds,
        justification: String::new(),
        required: policy.justification_required,
        pattern: policy.justification_pattern.clone(),
        emergency_allowed: policy.emergency.enabled,
        emergency: false,
        groups_only: policy.requesters.mode == RequesterMode::Groups,
        error: None,
    })
}

pub async fn new(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> Result<RequestForm, WebError> {
    let id = Uuid::parse_str(&id).map_err(|_| WebError::NotFound)?;
    form(&state, &who, id).await
}

#[derive(Deserialize)]
pub struct AskForm {
    #[serde(default)]
    csrf_token: String,
    duration_seconds: Option<i64>,
    #[serde(default)]
    justification: String,
    #[serde(default)]
    emergency: Option<String>,
}

pub async fn submit(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<AskForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &f.csrf_token)?;
    let id = Uuid::parse_str(&id).map_err(|_| WebError::NotFound)?;
    let emergency = f.emergency.is_some();
    let asked = state
        .access()
        .ask(
            who.org_id,
            &caller(&who),
            NewAsk {
                entitlement_id: id,
                duration_seconds: f.duration_seconds,
                justification: f.justification.clone(),
                emergency,
                requester: None,
            },
        )
        .await;
    match asked {
        Ok(a) => {
            let msg = if a.extended_existing {
                "You already had this access: your request extends it."
            } else if emergency {
                "Emergency access granted; the owners have been told."
            } else {
                "Request sent."
            };
            Ok(
                super::back(&format!("/access/requests/{}", a.request.id), "notice", msg)
                    .into_response(),
            )
        }
        Err(e) => {
            let message = refusal(e)?;
            let mut page = form(&state, &who, id).await?;
            page.error = Some(message);
            page.justification = f.justification;
            page.chosen = f.duration_seconds.unwrap_or(page.chosen);
            page.emergency = emergency;
            Ok(page.into_response())
        }
    }
}
