//! A request's page (timeline, approvers, decisions, and the actions the viewer may take),
//! "My access", the "Approvals" inbox and the administrators' list of every request.

use super::{at, caller, duration_choices, human, refusal, risk_class, state_class, when};
use crate::api::access_requests::{RequestDetail, RequestView, detail, parse_states, view};
use crate::auth::SignedIn;
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::Nav;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Redirect;
use latchkey_access::Policy;
use latchkey_store::access_requests::{self as store, Filter, HeldAccess};
use latchkey_store::page::Cursor;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Deserialize, Default)]
pub struct Flash {
    notice: Option<String>,
    error: Option<String>,
}

fn api_to_web(e: crate::error::ApiError) -> WebError {
    match e.status.as_u16() {
        404 => WebError::NotFound,
        _ => WebError::Internal(anyhow::anyhow!(e.to_string())),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "access_request.html")]
pub struct RequestPage {
    nav: Nav,
    d: RequestDetail,
    notice: Option<String>,
    error: Option<String>,
    /// The viewer may decide the current stage now.
    can_decide: bool,
    is_requester: bool,
    self_approval_note: bool,
    can_revoke: bool,
    can_review: bool,
    extend_choices: Vec<(i64, String)>,
    held: Vec<HeldAccess>,
    duration: String,
}

impl RequestPage {
    fn badge(&self) -> &'static str {
        state_class(&self.d.request.state)
    }
    fn risk_badge(&self) -> &'static str {
        risk_class(&self.d.request.risk)
    }
    fn t(&self, t: &Option<time::OffsetDateTime>) -> String {
        when(t)
    }
    fn at(&self, t: &time::OffsetDateTime) -> String {
        at(t)
    }
    fn awaiting(&self) -> bool {
        let r = &self.d.request;
        r.state == "pending"
            || (r.state == "active" && r.extension.is_some() && r.end_reason.is_none())
    }
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Query(flash): Query<Flash>,
) -> Result<RequestPage, WebError> {
    let id = Uuid::parse_str(&id).map_err(|_| WebError::NotFound)?;
    let c = caller(&who);
    let mut tx = who.tx(&state).await?;
    let d = detail(&mut tx, &c, id).await.map_err(api_to_web)?;
    let r = &d.request;
    let me = who.user_id.0;
    let is_requester = r.requester.id == me;
    let awaiting = r.state == "pending"
        || (r.state == "active" && r.extension.is_some() && r.end_reason.is_none());
    let in_stage = d
        .approvers
        .iter()
        .any(|a| a.round == r.round && a.stage == r.stage && a.user_id == me);
    let decided = d
        .decisions
        .iter()
        .any(|x| x.round == r.round && x.stage == r.stage && x.approver_id == me);
    let stored = store::get(&mut tx, id).await?;
    let policy = Policy::from_value(&stored.policy);
    let owner = latchkey_store::connectors::is_owner(&mut tx, r.connector_id, who.user_id).await?;
    let held = if in_stage || who.role.can_manage_connectors() {
        store::held_access(&mut tx, r.principal_id, 25).await?
    } else {
        vec![]
    };
    let (current, _) = latchkey_access::service::current_policy(&mut tx, r.entitlement_id)
        .await
        .unwrap_or_default();
    tx.commit().await?;
    Ok(RequestPage {
        nav: Nav::new(&who, "access"),
        notice: flash.notice,
        error: flash.error,
        can_decide: awaiting && in_stage && !decided,
        is_requester,
        self_approval_note: is_requester && awaiting && !policy.allow_self_approval,
        can_revoke: !is_requester && (who.role.can_manage_connectors() || owner),
        can_review: r.needs_review && who.role.can_manage_connectors(),
        extend_choices: duration_choices(
            current.default_duration_seconds,
            current.max_duration_seconds,
        ),
        held,
        duration: human(i64::from(r.duration_seconds)),
        d,
    })
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    comment: String,
    duration_seconds: Option<i64>,
    #[serde(default)]
    justification: String,
    /// Where to go afterwards (a page of Latchkey), default the request's page.
    #[serde(default)]
    back: String,
}

/// `POST /access/requests/{id}/{action}`.
pub async fn act(
    State(state): State<AppState>,
    who: SignedIn,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Result<Redirect, WebError> {
    csrf::verify_session(&who, &f.csrf_token)?;
    let id = Uuid::parse_str(&id).map_err(|_| WebError::NotFound)?;
    let c = caller(&who);
    let a = state.access();
    let org = who.org_id;
    let result = match action.as_str() {
        "approve" => a
            .approve(org, &c, id, &f.comment)
            .await
            .map(|_| "Approved."),
        "deny" => a.deny(org, &c, id, &f.comment).await.map(|_| "Denied."),
        "cancel" => a
            .cancel(org, &c, id, &f.comment)
            .await
            .map(|_| "Cancelled."),
        "release" => a
            .release(org, &c, id, &f.comment)
            .await
            .map(|_| "Removal started: the access ends once it is verified in the tenant."),
        "extend" => a
            .extend(org, &c, id, f.duration_seconds, &f.justification)
            .await
            .map(|r| {
                if r.extension_requested_at.is_some() {
                    "Extension requested."
                } else {
                    "Extended."
                }
            }),
        "review" => a
            .mark_reviewed(org, &c, id, &f.comment)
            .await
            .map(|_| "Marked as reviewed."),
        _ => return Err(WebError::NotFound),
    };
    let target = if f.back.starts_with("/access/") && !f.back.starts_with("//") {
        f.back.clone()
    } else {
        format!("/access/requests/{id}")
    };
    Ok(match result {
        Ok(msg) => super::back(&target, "notice", msg),
        Err(e) => super::back(&target, "error", &refusal(e)?),
    })
}

pub struct MineRow {
    pub r: RequestView,
    pub remaining: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "access_mine.html")]
pub struct MinePage {
    nav: Nav,
    active: Vec<MineRow>,
    open: Vec<RequestView>,
    past: Vec<RequestView>,
    notice: Option<String>,
    error: Option<String>,
}

impl MinePage {
    fn t(&self, t: &Option<time::OffsetDateTime>) -> String {
        when(t)
    }
    fn badge(&self, s: &str) -> &'static str {
        state_class(s)
    }
}

pub async fn mine(
    State(state): State<AppState>,
    who: SignedIn,
    Query(flash): Query<Flash>,
) -> Result<MinePage, WebError> {
    let mut tx = who.tx(&state).await?;
    let list = store::list(
        &mut tx,
        &Filter {
            requester: Some(who.user_id),
            ..Filter::default()
        },
        None,
        100,
    )
    .await?;
    tx.commit().await?;
    let now = time::OffsetDateTime::now_utc();
    let (mut active, mut open, mut past) = (vec![], vec![], vec![]);
    for l in list.items {
        let v = view(l);
        match v.state.as_str() {
            "active" => active.push(MineRow {
                remaining: v
                    .expires_at
                    .map(|e| human((e - now).whole_seconds().max(0)))
                    .unwrap_or_default(),
                r: v,
            }),
            "pending" | "approved" | "provisioning" => open.push(v),
            _ => past.push(v),
        }
    }
    Ok(MinePage {
        nav: Nav::new(&who, "mine"),
        active,
        open,
        past,
        notice: flash.notice,
        error: flash.error,
    })
}

pub struct InboxRow {
    pub r: RequestView,
    pub held: Vec<HeldAccess>,
    pub duration: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "access_approvals.html")]
pub struct ApprovalsPage {
    nav: Nav,
    rows: Vec<InboxRow>,
    notice: Option<String>,
    error: Option<String>,
}

impl ApprovalsPage {
    fn risk(&self, r: &str) -> &'static str {
        risk_class(r)
    }
}

pub async fn approvals(
    State(state): State<AppState>,
    who: SignedIn,
    Query(flash): Query<Flash>,
) -> Result<ApprovalsPage, WebError> {
    let mut tx = who.tx(&state).await?;
    let list = store::list(
        &mut tx,
        &Filter {
            awaiting: Some(who.user_id),
            ..Filter::default()
        },
        None,
        100,
    )
    .await?;
    let mut rows = Vec::new();
    for l in list.items {
        let held = store::held_access(&mut tx, l.request.principal_id, 10).await?;
        let v = view(l);
        rows.push(InboxRow {
            duration: human(i64::from(
                v.extension
                    .as_ref()
                    .map(|e| e.duration_seconds)
                    .unwrap_or(v.duration_seconds),
            )),
            r: v,
            held,
        });
    }
    tx.commit().await?;
    Ok(ApprovalsPage {
        nav: Nav::new(&who, "approvals"),
        rows,
        notice: flash.notice,
        error: flash.error,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "access_requests.html")]
pub struct AllPage {
    nav: Nav,
    rows: Vec<RequestView>,
    next_cursor: Option<String>,
    state: String,
    q: String,
    review: bool,
    states: Vec<(&'static str, &'static str)>,
}

impl AllPage {
    fn at(&self, t: &time::OffsetDateTime) -> String {
        at(t)
    }
    fn badge(&self, s: &str) -> &'static str {
        state_class(s)
    }
    fn t(&self, t: &Option<time::OffsetDateTime>) -> String {
        when(t)
    }
}

#[derive(Deserialize, Default)]
pub struct AllQuery {
    state: Option<String>,
    q: Option<String>,
    review: Option<String>,
    cursor: Option<String>,
}

pub async fn all(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<AllQuery>,
) -> Result<AllPage, WebError> {
    who.require(
        who.role.can_manage_connectors(),
        "Only administrators see everyone's requests.",
    )?;
    let states = parse_states(q.state.as_deref()).map_err(|e| WebError::BadRequest(e.message))?;
    let before = q.cursor.as_deref().map(Cursor::parse).transpose()?;
    let review = q.review.as_deref() == Some("1");
    let mut tx = who.tx(&state).await?;
    let list = store::list(
        &mut tx,
        &Filter {
            states,
            q: q.q.clone(),
            emergency: review.then_some(true),
            ..Filter::default()
        },
        before,
        50,
    )
    .await?;
    tx.commit().await?;
    let rows: Vec<RequestView> = list
        .items
        .into_iter()
        .map(view)
        .filter(|r| !review || r.needs_review)
        .collect();
    Ok(AllPage {
        nav: Nav::new(&who, "requests"),
        rows,
        next_cursor: list.next_cursor,
        state: q.state.unwrap_or_default(),
        q: q.q.unwrap_or_default(),
        review,
        states: latchkey_access::State::ALL
            .iter()
            .map(|s| (s.as_str(), s.label()))
            .collect(),
    })
}
