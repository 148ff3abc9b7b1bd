//! JIT access requests through the API: ask, list, read (with its trail, approvers and
//! decisions), approve, deny, cancel, release, extend, and mark an emergency as reviewed.
//! An API client acts for the person who created it; administrators' clients may ask on
//! someone's behalf with `requester_user_id`.

use super::ApiQuery;
use super::{ApiJson, PageQuery};
use crate::auth::ApiPrincipal;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_access::{Caller, NewAsk, State as ReqState};
use latchkey_core::UserId;
use latchkey_store::OrgTx;
use latchkey_store::access_requests::{
    self as store, Approver, Decision, Filter, Listed, Transition,
};
use latchkey_store::audit::Actor;
use latchkey_store::page::Page;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found())
}

/// The caller as the access commands see it: the client, acting for its creator.
pub async fn caller(state: &AppState, who: &ApiPrincipal) -> Result<Caller, ApiError> {
    let mut tx = state.store.org_tx(who.org_id).await?;
    let (creator, name) = store::api_client_creator(&mut tx, who.client_id.0).await?;
    tx.commit().await?;
    Ok(Caller {
        actor: Actor::api_client(who.client_id.0, name),
        user: creator.map(UserId),
        role: who.role,
    })
}

#[derive(Debug, Serialize)]
pub struct Person {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
}

#[derive(Debug, Serialize)]
pub struct Extension {
    pub duration_seconds: i32,
    pub justification: String,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
}

/// A request as the API shows it.
#[derive(Debug, Serialize)]
pub struct RequestView {
    pub id: Uuid,
    pub state: String,
    pub state_label: &'static str,
    pub requester: Person,
    pub entitlement_id: Uuid,
    pub entitlement_name: String,
    pub slug: String,
    pub resource_name: String,
    pub resource_type: String,
    pub connector_id: Uuid,
    pub connector_name: String,
    /// The requester's account in the tenant (a synced resource) the access goes to.
    pub principal_id: Uuid,
    pub risk: String,
    pub justification: String,
    pub duration_seconds: i32,
    pub emergency: bool,
    pub needs_review: bool,
    pub round: i32,
    pub stage: i32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub decide_by: Option<OffsetDateTime>,
    pub extension: Option<Extension>,
    pub provision_task_id: Option<Uuid>,
    pub revoke_task_id: Option<Uuid>,
    /// `expired`, `released` or `revoked` once removal started.
    pub end_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub granted_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub policy_version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

pub fn view(l: Listed) -> RequestView {
    let r = l.request;
    RequestView {
        id: r.id,
        state_label: r
            .state
            .parse::<ReqState>()
            .map(|s| s.label())
            .unwrap_or("Unknown"),
        state: r.state,
        requester: Person {
            id: r.requester_id,
            email: l.requester_email,
            display_name: l.requester_name,
        },
        entitlement_id: r.entitlement_id,
        entitlement_name: l.entitlement_name,
        slug: l.slug,
        resource_name: l.resource_name,
        resource_type: l.resource_type,
        connector_id: r.connector_id,
        connector_name: l.connector_name,
        principal_id: r.principal_id,
        risk: l.risk,
        justification: r.justification,
        duration_seconds: r.duration_seconds,
        emergency: r.emergency,
        needs_review: r.needs_review,
        round: r.round,
        stage: r.stage,
        decide_by: r.decide_by,
        extension: match (r.extension_seconds, r.extension_requested_at) {
            (Some(d), Some(at)) => Some(Extension {
                duration_seconds: d,
                justification: r.extension_justification.unwrap_or_default(),
                requested_at: at,
            }),
            _ => None,
        },
        provision_task_id: r.provision_task_id,
        revoke_task_id: r.revoke_task_id,
        end_reason: r.end_reason,
        granted_at: r.granted_at,
        expires_at: r.expires_at,
        ended_at: r.ended_at,
        policy_version: r.policy_version,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

#[derive(Debug, Serialize)]
pub struct RequestDetail {
    #[serde(flatten)]
    pub request: RequestView,
    pub transitions: Vec<Transition>,
    pub approvers: Vec<Approver>,
    pub decisions: Vec<Decision>,
}

/// Whether the caller may see the request: administrators, the requester, its approvers and
/// the connector's owners. Anyone else gets 404, as for another organization's.
pub async fn may_see(
    tx: &mut OrgTx,
    caller: &Caller,
    r: &store::Request,
) -> Result<bool, ApiError> {
    if caller.role.can_manage_connectors() {
        return Ok(true);
    }
    let Some(u) = caller.user else {
        return Ok(false);
    };
    Ok(u.0 == r.requester_id
        || store::is_approver(tx, r.id, u.0).await?
        || latchkey_store::connectors::is_owner(tx, r.connector_id, u).await?)
}

pub async fn detail(tx: &mut OrgTx, caller: &Caller, id: Uuid) -> Result<RequestDetail, ApiError> {
    let l = store::get_listed(tx, id).await?;
    if !may_see(tx, caller, &l.request).await? {
        return Err(ApiError::not_found());
    }
    Ok(RequestDetail {
        transitions: store::transitions(tx, id).await?,
        approvers: store::approvers(tx, id).await?,
        decisions: store::decisions(tx, id).await?,
        request: view(l),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    pub(crate) entitlement_id: Uuid,
    pub(crate) duration_seconds: Option<i64>,
    #[serde(default)]
    pub(crate) justification: String,
    #[serde(default)]
    pub(crate) emergency: bool,
    pub(crate) requester_user_id: Option<Uuid>,
}

/// `POST /access-requests` → 201 with the request (an ask for access already held through a
/// request extends it: 200 with that request, `extension` set or already applied).
pub async fn create(
    State(state): State<AppState>,
    who: ApiPrincipal,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<RequestDetail>), ApiError> {
    let caller = caller(&state, &who).await?;
    let asked = state
        .access()
        .ask(
            who.org_id,
            &caller,
            NewAsk {
                entitlement_id: body.entitlement_id,
                duration_seconds: body.duration_seconds,
                justification: body.justification,
                emergency: body.emergency,
                requester: body.requester_user_id.map(UserId),
            },
        )
        .await?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let d = detail(&mut tx, &caller, asked.request.id).await?;
    tx.commit().await?;
    let status = if asked.extended_existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(d)))
}

#[derive(Deserialize)]
pub struct ListQuery {
    /// One state or several, comma-separated.
    state: Option<String>,
    requester_id: Option<Uuid>,
    entitlement_id: Option<Uuid>,
    connector_id: Option<Uuid>,
    /// `true`: only those waiting for the caller's decision.
    awaiting_me: Option<bool>,
    emergency: Option<bool>,
    q: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

pub fn parse_states(raw: Option<&str>) -> Result<Vec<String>, ApiError> {
    let mut states = Vec::new();
    for s in raw
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let st: ReqState = s.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "Unknown state {s:?}: use pending, approved, provisioning, active, expired, revoked, denied, cancelled, timed_out or failed."
            ))
        })?;
        states.push(st.as_str().to_string());
    }
    Ok(states)
}

/// `GET /access-requests?state=&cursor=`: administrators see every request; others see
/// their own, or with `awaiting_me=true` those waiting for their decision.
pub async fn list(
    State(state): State<AppState>,
    who: ApiPrincipal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<RequestView>>, ApiError> {
    let caller = caller(&state, &who).await?;
    let (cursor, limit) = q.page.parse()?;
    let mut filter = Filter {
        states: parse_states(q.state.as_deref())?,
        requester: q.requester_id.map(UserId),
        entitlement: q.entitlement_id,
        connector: q.connector_id,
        emergency: q.emergency,
        q: q.q,
        ..Filter::default()
    };
    if q.awaiting_me == Some(true) {
        filter.awaiting = Some(caller.user.ok_or_else(|| {
            ApiError::bad_request("This API client was not created by a person: nothing awaits it.")
        })?);
    } else if !caller.role.can_manage_connectors() {
        let me = caller
            .user
            .ok_or_else(|| ApiError::forbidden("This API client acts for no one."))?;
        if filter.requester.is_some_and(|r| r != me) {
            return Err(ApiError::forbidden(
                "Only administrators list other people's requests.",
            ));
        }
        filter.requester = Some(me);
    }
    let mut tx = state.store.org_tx(who.org_id).await?;
    let page = store::list(&mut tx, &filter, cursor, limit).await?;
    tx.commit().await?;
    Ok(Json(Page {
        items: page.items.into_iter().map(view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `GET /access-requests/{id}`.
pub async fn get(
    State(state): State<AppState>,
    who: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<RequestDetail>, ApiError> {
    let id = parse_id(&id)?;
    let caller = caller(&state, &who).await?;
    let mut tx = state.store.org_tx(who.org_id).await?;
    let d = detail(&mut tx, &caller, id).await?;
    tx.commit().await?;
    Ok(Json(d))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    #[serde(default)]
    pub(crate) comment: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    pub(crate) duration_seconds: Option<i64>,
    #[serde(default)]
    pub(crate) justification: String,
}

async fn act(
    state: &AppState,
    who: &ApiPrincipal,
    id: &str,
    raw: &[u8],
    what: &str,
) -> Result<Json<RequestDetail>, ApiError> {
    let id = parse_id(id)?;
    let caller = caller(state, who).await?;
    // Someone who may not see the request gets 404 before any rule is explained.
    {
        let mut tx = state.store.org_tx(who.org_id).await?;
        let r = store::get(&mut tx, id).await?;
        if !may_see(&mut tx, &caller, &r).await? {
            return Err(ApiError::not_found());
        }
        tx.commit().await?;
    }
    let access = state.access();
    let org = who.org_id;
    match what {
        "approve" | "deny" | "cancel" | "release" | "review" => {
            let b: CommentBody = super::body_or_default(raw)?;
            match what {
                "approve" => access.approve(org, &caller, id, &b.comment).await?,
                "deny" => access.deny(org, &caller, id, &b.comment).await?,
                "cancel" => access.cancel(org, &caller, id, &b.comment).await?,
                "release" => access.release(org, &caller, id, &b.comment).await?,
                _ => access.mark_reviewed(org, &caller, id, &b.comment).await?,
            };
        }
        _ => {
            let b: ExtendBody = super::body_or_default(raw)?;
            access
                .extend(org, &caller, id, b.duration_seconds, &b.justification)
                .await?;
        }
    }
    let mut tx = state.store.org_tx(org).await?;
    let d = detail(&mut tx, &caller, id).await?;
    tx.commit().await?;
    Ok(Json(d))
}

macro_rules! action {
    ($name:ident, $what:literal) => {
        #[doc = concat!("`POST /access-requests/{id}/", $what, "`.")]
        pub async fn $name(
            State(state): State<AppState>,
            who: ApiPrincipal,
            Path(id): Path<String>,
            body: axum::body::Bytes,
        ) -> Result<Json<RequestDetail>, ApiError> {
            act(&state, &who, &id, &body, $what).await
        }
    };
}

action!(approve, "approve");
action!(deny, "deny");
action!(cancel, "cancel");
action!(release, "release");
action!(extend, "extend");
action!(review, "review");
