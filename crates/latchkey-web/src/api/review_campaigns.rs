//! Access review campaigns through the API: create, list, get, close; their items (list,
//! decide — one or many, keep / revoke / reassign); the report as JSON or CSV.

use super::ApiQuery;
use super::{ApiJson, PageQuery};
use crate::auth::ApiPrincipal;
use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_reviews::decide::{DecisionInput, decide};
use latchkey_reviews::end::{EndReason, end_campaign};
use latchkey_reviews::report::{self, GroupNames, provisioning_result};
use latchkey_reviews::{CreateCampaign, ReviewError, Who, start_campaign};
use latchkey_store::audit::Actor;
use latchkey_store::reviews::{self, Campaign, Counts, Item, ItemFilter};
use latchkey_store::{OrgTx, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::Store(s) => s.into(),
            ReviewError::Invalid(problems) => ApiError::validation(
                problems
                    .into_iter()
                    .map(|p| FieldError {
                        field: p.field,
                        message: p.message,
                    })
                    .collect(),
            ),
            ReviewError::Forbidden(m) => ApiError::forbidden(m),
            ReviewError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
        }
    }
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found())
}

/// The API client as a reviews actor: administrators' clients run campaigns and decide, but
/// never on the access of the person who created the client.
pub async fn who(tx: &mut OrgTx, p: &ApiPrincipal) -> Result<Who, StoreError> {
    let (creator, _) =
        latchkey_store::access_requests::api_client_creator(tx, p.client_id.0).await?;
    Ok(Who {
        actor: Actor::api_client(p.client_id.0, format!("API client {}", p.client_id.0)),
        user: None,
        admin: p.role.can_manage_connectors(),
        person: creator,
    })
}

/// A campaign as the API shows it.
#[derive(Debug, Serialize)]
pub struct CampaignView {
    pub id: Uuid,
    pub name: String,
    /// `active` or `closed`.
    pub status: String,
    pub end_rule: String,
    #[serde(with = "time::serde::rfc3339")]
    pub deadline: OffsetDateTime,
    pub template_id: Option<Uuid>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
    /// `deadline` or `closed`.
    pub closed_reason: Option<String>,
    /// Scope, reviewers, recommendation threshold and reminders as asked for.
    pub spec: Value,
    pub counts: Counts,
}

pub fn campaign_view(c: Campaign, counts: Counts) -> CampaignView {
    CampaignView {
        id: c.id,
        name: c.name,
        status: c.status,
        end_rule: c.end_rule,
        deadline: c.deadline,
        template_id: c.template_id,
        created_by: c.created_by,
        created_at: c.created_at,
        closed_at: c.closed_at,
        closed_reason: c.closed_reason,
        spec: c.spec,
        counts,
    }
}

async fn load(tx: &mut OrgTx, id: Uuid) -> Result<CampaignView, StoreError> {
    let c = reviews::get_campaign(tx, id).await?;
    let counts = reviews::counts(tx, id).await?;
    Ok(campaign_view(c, counts))
}

fn rfc(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An item with its evidence, reviewer, decision and revocation (`names`: the groups of
/// inherited access, for `evidence.how_described`).
pub fn item_view(i: &Item, names: &GroupNames) -> Value {
    let prov = provisioning_result(i);
    json!({
        "id": i.id,
        "campaign_id": i.campaign_id,
        "connector_id": i.connector_id,
        "grant_id": i.grant_id,
        "principal": {
            "id": i.principal_id, "type": i.principal_type, "display_name": i.principal_name,
            "external_id": i.principal_external_id, "upn": i.principal_upn, "guest": i.principal_guest,
            "enabled": i.principal_enabled,
        },
        "access": {
            "resource_id": i.resource_id, "resource_type": i.resource_type, "resource": i.resource_name,
            "entitlement_id": i.entitlement_id, "entitlement": i.entitlement_name, "slug": i.entitlement_slug,
            "kind": i.grant_kind,
        },
        "evidence": {
            "how": i.source,
            "how_described": names.how(i),
            "since": rfc(i.granted_since),
            "sign_in_known": i.sign_in_known,
            "last_sign_in": i.last_sign_in.map(rfc),
            "granted_through_latchkey": i.granted_by_task_id.map(|t| json!({"task_id": t, "requested_by": i.granted_by})),
            "jit_request": i.access_request_id.map(|r| json!({"id": r, "expires_at": i.access_request_expires_at.map(rfc)})),
            "recommendation": i.recommendation.as_ref().map(|r| json!({"decision": r, "reason": i.recommendation_reason})),
        },
        "reviewer": i.reviewer_id.map(|r| json!({"id": r, "name": i.reviewer_name, "email": i.reviewer_email, "source": i.reviewer_source})),
        "decision": i.decision.as_ref().map(|d| json!({
            "decision": d, "comment": i.decision_comment, "decided_at": i.decided_at.map(rfc),
            "decided_by": i.decided_by, "bulk": i.bulk,
        })),
        "revocation": prov.map(|(result, detail)| json!({
            "result": result, "detail": detail, "task_id": i.revocation_task_id, "manual_task_id": i.manual_task_id,
        })),
    })
}

/// `POST /review-campaigns` → 201 with the campaign (its items are snapshotted at once).
pub async fn create(
    State(state): State<AppState>,
    p: ApiPrincipal,
    ApiJson(body): ApiJson<CreateCampaign>,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    let mut tx = state.store.org_tx(p.org_id).await?;
    let actor = who(&mut tx, &p).await?;
    let c = start_campaign(&mut tx, &body, &actor).await?;
    let view = load(&mut tx, c.id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Serialize)]
pub struct CampaignPage {
    pub items: Vec<CampaignView>,
    pub next_cursor: Option<String>,
}

/// `GET /review-campaigns`, newest first.
pub async fn list(
    State(state): State<AppState>,
    p: ApiPrincipal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<CampaignPage>, ApiError> {
    // Campaigns show who holds what across the organization: administrators' clients only,
    // as on the pages (reviewers decide their own items in the review inbox).
    p.require(p.role.can_manage_connectors())?;
    let (cursor, limit) = q.parse()?;
    let mut tx = state.store.org_tx(p.org_id).await?;
    let page = reviews::list_campaigns(&mut tx, cursor, limit).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for c in page.items {
        let counts = reviews::counts(&mut tx, c.id).await?;
        items.push(campaign_view(c, counts));
    }
    tx.commit().await?;
    Ok(Json(CampaignPage {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// `GET /review-campaigns/{id}`.
pub async fn get(
    State(state): State<AppState>,
    p: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<CampaignView>, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.store.org_tx(p.org_id).await?;
    let view = load(&mut tx, id).await?;
    tx.commit().await?;
    p.require(p.role.can_manage_connectors())?;
    Ok(Json(view))
}

/// `POST /review-campaigns/{id}/close`: undecided items follow the end rule; 409 when closed.
pub async fn close(
    State(state): State<AppState>,
    p: ApiPrincipal,
    Path(id): Path<String>,
) -> Result<Json<CampaignView>, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.store.org_tx(p.org_id).await?;
    // Another organization's campaign is 404 before any role check.
    reviews::get_campaign(&mut tx, id).await?;
    let actor = who(&mut tx, &p).await?;
    end_campaign(&mut tx, id, EndReason::Closed, &actor).await?;
    let view = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
pub struct ItemQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub reviewer_id: Option<Uuid>,
    /// `undecided`, `keep` or `revoke`.
    pub decision: Option<String>,
}

/// `GET /review-campaigns/{id}/items?reviewer_id=&decision=`.
pub async fn items(
    State(state): State<AppState>,
    p: ApiPrincipal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ItemQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let (cursor, limit) = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .parse()?;
    if let Some(d) = q.decision.as_deref()
        && !["undecided", "keep", "revoke"].contains(&d)
    {
        return Err(ApiError::bad_request(
            "`decision` is undecided, keep or revoke.",
        ));
    }
    let mut tx = state.store.org_tx(p.org_id).await?;
    reviews::get_campaign(&mut tx, id).await?;
    p.require(p.role.can_manage_connectors())?;
    let page = reviews::list_items(
        &mut tx,
        id,
        &ItemFilter {
            reviewer: q.reviewer_id,
            decision: q.decision.clone(),
        },
        cursor,
        limit,
    )
    .await?;
    let names = GroupNames::load(&mut tx, &page.items).await?;
    tx.commit().await?;
    Ok(Json(json!({
        "items": page.items.iter().map(|i| item_view(i, &names)).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    pub decisions: Vec<DecisionInput>,
}

/// `POST /review-campaigns/{id}/items` `{"decisions": [{"item_id", "decision": "keep"|"revoke"|"reassign",
/// "comment", "reviewer_id"}]}`: all or nothing; answers the items as they are now.
pub async fn decide_items(
    State(state): State<AppState>,
    p: ApiPrincipal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecideBody>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.store.org_tx(p.org_id).await?;
    reviews::get_campaign(&mut tx, id).await?;
    let actor = who(&mut tx, &p).await?;
    let done = decide(&mut tx, id, &body.decisions, &actor).await?;
    let mut decided = Vec::with_capacity(done.len());
    for o in &done {
        decided.push(reviews::get_item(&mut tx, o.item_id).await?);
    }
    let names = GroupNames::load(&mut tx, &decided).await?;
    tx.commit().await?;
    let items: Vec<Value> = decided.iter().map(|i| item_view(i, &names)).collect();
    Ok(Json(json!({"items": items})))
}

#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    pub format: Option<String>,
}

/// `GET /review-campaigns/{id}/report?format=json|csv`.
pub async fn report(
    State(state): State<AppState>,
    p: ApiPrincipal,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let format = q.format.as_deref().unwrap_or("json");
    if format != "json" && format != "csv" {
        return Err(ApiError::bad_request(unknown_format(format)));
    }
    let mut tx = state.store.org_tx(p.org_id).await?;
    let r = build_report(&mut tx, id).await?;
    tx.commit().await?;
    p.require(p.role.can_manage_connectors())?;
    Ok(render_report(&r, format))
}

/// The message of a report asked for in a format there is none of.
fn unknown_format(format: &str) -> String {
    let shown: String = format.chars().take(20).collect();
    let more = if shown.len() < format.len() {
        "…"
    } else {
        ""
    };
    format!("There is no report format \"{shown}{more}\": `format` is json or csv.")
}

pub async fn build_report(tx: &mut OrgTx, id: Uuid) -> Result<report::Report, StoreError> {
    let c = reviews::get_campaign(tx, id).await?;
    let counts = reviews::counts(tx, id).await?;
    let items = reviews::all_items(tx, id).await?;
    let names = GroupNames::load(tx, &items).await?;
    Ok(report::build(&c, counts, &items, &names))
}

/// The report as a download: CSV (`text/csv`) or JSON.
pub fn render_report(r: &report::Report, format: &str) -> Response {
    let stem = format!("access-review-{}", r.campaign.id);
    if format == "csv" {
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{stem}.csv\""),
                ),
            ],
            report::csv(r),
        )
            .into_response()
    } else {
        Json(r).into_response()
    }
}
