//! `/_sim/...`: unauthenticated introspection for tests — ground truth, request log, out-of-band changes, faults.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{ConsentOutcome, Faults};
use crate::server::State;
use crate::truth::{self, Change};

type St = AxState<Arc<State>>;

pub(crate) fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/_sim/info", get(info))
        .route("/_sim/truth", get(summary))
        .route("/_sim/truth/users", get(users))
        .route("/_sim/truth/groups", get(groups))
        .route("/_sim/truth/groups/{id}", get(group))
        .route("/_sim/truth/service-principals", get(sps))
        .route("/_sim/truth/service-principals/{id}", get(sp))
        .route("/_sim/truth/role-assignments", get(role_assignments))
        .route("/_sim/truth/role-eligibilities", get(role_eligibilities))
        .route("/_sim/truth/provision-on-demand", get(provision_calls))
        .route("/_sim/requests", get(requests).delete(clear_requests))
        .route("/_sim/changes", post(changes))
        .route(
            "/_sim/faults",
            get(get_faults).patch(patch_faults).put(put_faults),
        )
        .route("/_sim/consent", get(get_consent).patch(patch_consent))
}

fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

async fn info(st: St) -> Json<Value> {
    let d = st.read();
    Json(json!({
        "base_url": st.base_url,
        "tenant_id": d.tenant_id,
        "domain": d.domain,
        "initial_domain": d.initial_domain,
        "authority": format!("{}/{}", st.base_url, d.tenant_id),
        "graph_base": st.base_url,
        "graph_scope": format!("{}/.default", st.base_url),
        "customer_app": st.customer,
        "customer_app_service_principal_id": d.sps.get(st.customer_sp as usize).map(|s| s.id),
        "latchkey_app": {
            "client_id": st.latchkey.client_id,
            "client_secret": st.latchkey.client_secret,
            "redirect_uris": st.latchkey.redirect_uris,
        },
    }))
}

async fn summary(st: St) -> Json<truth::GroundTruth> {
    Json(truth::ground_truth(&st))
}

#[derive(Deserialize)]
struct Window {
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: Option<usize>,
}

async fn users(st: St, Query(w): Query<Window>) -> Json<Value> {
    let d = st.read();
    Json(json!({"value": truth::users(&d, w.offset, w.limit.unwrap_or(1000))}))
}

async fn groups(st: St, Query(w): Query<Window>) -> Json<Value> {
    let d = st.read();
    Json(json!({"value": truth::groups(&d, w.offset, w.limit.unwrap_or(1000))}))
}

async fn group(st: St, Path(id): Path<String>) -> Response {
    let d = st.read();
    let Some(gi) = d.find_group(&id) else {
        return err(StatusCode::NOT_FOUND, format!("no group {id}"));
    };
    let g = &d.groups[gi];
    Json(json!({
        "id": g.id, "display_name": g.display_name, "kind": g.kind,
        "members": truth::refs(&d, &g.members), "owners": truth::refs(&d, &g.owners),
        "licenses": g.licenses.iter().map(|s| d.skus[*s as usize].sku_id).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn sps(st: St, Query(w): Query<Window>) -> Json<Value> {
    let d = st.read();
    let v: Vec<Value> = d
        .sps
        .iter()
        .filter(|s| s.deleted.is_none())
        .skip(w.offset)
        .take(w.limit.unwrap_or(1000))
        .map(|s| {
            json!({
                "id": s.id, "app_id": s.app_id, "display_name": s.display_name,
                "type": match s.sp_type { crate::model::SpType::Application => "Application", crate::model::SpType::ManagedIdentity => "ManagedIdentity" },
                "first_party": s.first_party, "created": crate::json::fmt_ts(s.created), "app_role_assignments": s.assigned_to.len(), "owners": s.owners.len(),
                "sync_jobs": s.sync_jobs.iter().map(|j| json!({"id": j.id, "state": j.state, "rule_id": j.rule_id})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({"value": v}))
}

async fn sp(st: St, Path(id): Path<String>) -> Response {
    let d = st.read();
    let Some(si) = d.find_sp(&id) else {
        return err(StatusCode::NOT_FOUND, format!("no service principal {id}"));
    };
    let s = &d.sps[si];
    let assignments: Vec<Value> = s
        .assigned_to
        .iter()
        .filter(|a| !d.is_deleted(a.principal))
        .map(|a| json!({"id": a.id, "principal_id": d.obj_id(a.principal), "principal_type": a.principal.kind().name(), "app_role_id": a.app_role_id}))
        .collect();
    Json(json!({
        "id": s.id, "app_id": s.app_id, "display_name": s.display_name,
        "app_roles": s.app_roles.iter().map(|r| json!({"id": r.id, "value": r.value, "allowed_member_types": r.allowed_member_types})).collect::<Vec<_>>(),
        "assignments": assignments, "owners": truth::refs(&d, &s.owners),
    }))
    .into_response()
}

async fn role_assignments(st: St) -> Json<Value> {
    let d = st.read();
    let t = crate::json::now();
    let v: Vec<Value> = d
        .active_assignments(t)
        .map(|a| json!({
            "id": a.id, "role_definition_id": d.roles[a.role as usize].id, "role": d.roles[a.role as usize].display_name,
            "principal_id": d.obj_id(a.principal), "principal_type": a.principal.kind().name(),
            "end": a.end.map(crate::json::fmt_ts), "via_pim": a.via_pim,
        }))
        .collect();
    Json(json!({"value": v}))
}

async fn role_eligibilities(st: St) -> Json<Value> {
    let d = st.read();
    let t = crate::json::now();
    let v: Vec<Value> = d
        .active_eligibilities(t)
        .map(|e| json!({
            "id": e.id, "role_definition_id": d.roles[e.role as usize].id, "role": d.roles[e.role as usize].display_name,
            "principal_id": d.obj_id(e.principal), "principal_type": e.principal.kind().name(), "end": e.end.map(crate::json::fmt_ts),
        }))
        .collect();
    Json(json!({"value": v}))
}

async fn provision_calls(st: St) -> Json<Value> {
    let d = st.read();
    Json(json!({"value": d.provision_calls}))
}

async fn requests(st: St, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let since = q.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    Json(json!({"value": st.requests(since)}))
}

async fn clear_requests(st: St) -> StatusCode {
    st.clear_requests();
    StatusCode::NO_CONTENT
}

async fn changes(st: St, Json(body): Json<Value>) -> Response {
    let list: Vec<Value> = match body {
        Value::Array(a) => a,
        other => vec![other],
    };
    let mut outcomes = Vec::new();
    for v in list {
        let change: Change = match serde_json::from_value(v) {
            Ok(c) => c,
            Err(e) => return err(StatusCode::BAD_REQUEST, format!("invalid change: {e}")),
        };
        match truth::apply_change(&st, change) {
            Ok(o) => outcomes.push(o),
            Err(e @ crate::error::SimError::NotFound(_)) => {
                return err(StatusCode::NOT_FOUND, e.to_string());
            }
            Err(e) => return err(StatusCode::CONFLICT, e.to_string()),
        }
    }
    Json(json!({"value": outcomes})).into_response()
}

async fn get_faults(st: St) -> Json<Faults> {
    Json(st.faults())
}

async fn put_faults(st: St, Json(f): Json<Faults>) -> Json<Faults> {
    st.set_faults(f);
    Json(st.faults())
}

/// Merges the given fields into the current faults.
async fn patch_faults(st: St, Json(patch): Json<Value>) -> Response {
    let mut cur = serde_json::to_value(st.faults()).unwrap_or(Value::Null);
    if let (Value::Object(c), Value::Object(p)) = (&mut cur, patch) {
        for (k, v) in p {
            c.insert(k, v);
        }
    }
    match serde_json::from_value::<Faults>(cur) {
        Ok(f) => {
            st.set_faults(f);
            Json(st.faults()).into_response()
        }
        Err(e) => err(StatusCode::BAD_REQUEST, format!("invalid faults: {e}")),
    }
}

fn consent_json(st: &State) -> Value {
    let c = st.consent();
    json!({"outcome": c.outcome, "granted_permissions": c.customer_permissions, "latchkey_consented": c.latchkey_consented})
}

async fn get_consent(st: St) -> Json<Value> {
    Json(consent_json(&st))
}

#[derive(Deserialize)]
struct ConsentPatch {
    outcome: Option<ConsentOutcome>,
    granted_permissions: Option<Vec<String>>,
    latchkey_consented: Option<bool>,
}

async fn patch_consent(st: St, Json(p): Json<ConsentPatch>) -> Json<Value> {
    {
        let mut c = st.consent_mut();
        if let Some(o) = p.outcome {
            c.outcome = o;
        }
        if let Some(g) = p.granted_permissions {
            c.customer_permissions = g;
        }
        if let Some(false) = p.latchkey_consented {
            c.latchkey_consented = false;
        }
    }
    Json(consent_json(&st))
}
