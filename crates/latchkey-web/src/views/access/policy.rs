//! Access policies in the browser: the list of entitlements with their policy status (search),
//! and the editor (requestable, risk, durations, justification, who may ask, up to three
//! approval stages, automatic approval, self-approval, decision timeout, reminder, break-glass).
//! Saving is an audit event, like the API's PUT.

use super::{caller, human, refusal};
use crate::auth::SignedIn;
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::Nav;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::Form;
use latchkey_access::Policy;
use latchkey_access::policy::{
    ApproverRule, AutoApprove, Emergency, RequesterMode, Requesters, Risk, Stage,
};
use latchkey_store::access_policies::{self, EntitlementInfo, PolicyRow};
use latchkey_store::resources::{self, ResourceFilter};
use latchkey_store::users;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Template, WebTemplate)]
#[template(path = "access_policies.html")]
pub struct PoliciesPage {
    nav: Nav,
    q: String,
    rows: Vec<PolicyRow>,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    q: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<ListQuery>,
) -> Result<PoliciesPage, WebError> {
    who.require(
        who.role.can_manage_connectors(),
        "Only administrators manage access policies here; connector owners open an entitlement's policy from its page.",
    )?;
    let mut tx = who.tx(&state).await?;
    let rows = access_policies::entitlements(&mut tx, q.q.as_deref(), 100).await?;
    tx.commit().await?;
    Ok(PoliciesPage {
        nav: Nav::new(&who, "policies"),
        q: q.q.unwrap_or_default(),
        rows,
    })
}

pub struct StageForm {
    pub n: usize,
    pub enabled: bool,
    pub manager: bool,
    pub app_owners: bool,
    pub connector_owners: bool,
    pub user: Option<Uuid>,
    pub group: Option<Uuid>,
    pub required: u32,
}

#[derive(Template, WebTemplate)]
#[template(path = "access_policy.html")]
pub struct PolicyPage {
    nav: Nav,
    info: EntitlementInfo,
    p: Policy,
    version: i32,
    stages: Vec<StageForm>,
    people: Vec<(Uuid, String)>,
    groups: Vec<(Uuid, String)>,
    units: [(&'static str, &'static str); 4],
    error: Option<String>,
    notice: Option<String>,
}

impl PolicyPage {
    fn human(&self, s: &i64) -> String {
        human(*s)
    }
    fn same(&self, v: &Option<Uuid>, id: &Uuid) -> bool {
        *v == Some(*id)
    }
    fn in_requesters(&self, g: &Uuid) -> bool {
        self.p.requesters.group_ids.contains(g)
    }
    fn in_auto(&self, g: &Uuid) -> bool {
        self.p.auto_approve.requester_group_ids.contains(g)
    }
    fn emergency_max(&self) -> String {
        self.p
            .emergency
            .max_duration_seconds
            .map(|s| s.to_string())
            .unwrap_or_default()
    }
}

fn stage_forms(p: &Policy) -> Vec<StageForm> {
    (0..3)
        .map(|n| {
            let s = p.approval_stages.get(n);
            let has =
                |f: &dyn Fn(&ApproverRule) -> bool| s.is_some_and(|s| s.approvers.iter().any(f));
            StageForm {
                n: n + 1,
                enabled: s.is_some(),
                manager: has(&|a| matches!(a, ApproverRule::Manager)),
                app_owners: has(&|a| matches!(a, ApproverRule::AppOwners)),
                connector_owners: has(&|a| matches!(a, ApproverRule::ConnectorOwners)),
                user: s.and_then(|s| {
                    s.approvers.iter().find_map(|a| match a {
                        ApproverRule::User { user_id } => Some(*user_id),
                        _ => None,
                    })
                }),
                group: s.and_then(|s| {
                    s.approvers.iter().find_map(|a| match a {
                        ApproverRule::Group { group_id } => Some(*group_id),
                        _ => None,
                    })
                }),
                required: s.map(|s| s.required).unwrap_or(1),
            }
        })
        .collect()
}

async fn page(
    state: &AppState,
    who: &SignedIn,
    entitlement: Uuid,
    edited: Option<Policy>,
) -> Result<PolicyPage, WebError> {
    let mut tx = who.tx(state).await?;
    let info = access_policies::entitlement_info(&mut tx, entitlement).await?;
    let c = caller(who);
    let allowed = latchkey_access::service::may_edit_policy(&mut tx, &c, info.connector_id)
        .await
        .map_err(|e| match e {
            latchkey_access::AccessError::Store(s) => WebError::from(s),
            _ => WebError::NotFound,
        })?;
    who.require(
        allowed,
        "Only administrators and the connector's owners may change access policies.",
    )?;
    let stored = access_policies::get(&mut tx, entitlement).await?;
    let people = users::list(&mut tx, None, 200)
        .await?
        .items
        .into_iter()
        .filter(|u| u.disabled_at.is_none())
        .map(|u| (u.id, format!("{} <{}>", u.display_name, u.email)))
        .collect();
    let groups = resources::list_resources(
        &mut tx,
        info.connector_id,
        &ResourceFilter {
            types: vec!["group".into()],
            ..ResourceFilter::default()
        },
        None,
        200,
    )
    .await?
    .items
    .into_iter()
    .map(|r| (r.id, r.display_name))
    .collect();
    tx.commit().await?;
    let version = stored.as_ref().map(|s| s.version).unwrap_or(0);
    let p = edited.unwrap_or_else(|| {
        stored
            .map(|s| Policy::from_value(&s.document))
            .unwrap_or_default()
    });
    Ok(PolicyPage {
        nav: Nav::new(who, "policies"),
        info,
        stages: stage_forms(&p),
        p,
        version,
        people,
        groups,
        units: [
            ("s", "seconds"),
            ("m", "minutes"),
            ("h", "hours"),
            ("d", "days"),
        ],
        error: None,
        notice: None,
    })
}

#[derive(Deserialize, Default)]
pub struct Flash {
    notice: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Query(flash): Query<Flash>,
) -> Result<PolicyPage, WebError> {
    let id = Uuid::parse_str(&id).map_err(|_| WebError::NotFound)?;
    let mut p = page(&state, &who, id, None).await?;
    p.notice = flash.notice;
    Ok(p)
}

#[derive(Deserialize, Default)]
pub struct PolicyForm {
    #[serde(default)]
    csrf_token: String,
    requestable: Option<String>,
    #[serde(default)]
    risk: String,
    #[serde(default)]
    max_duration: i64,
    #[serde(default)]
    max_unit: String,
    #[serde(default)]
    default_duration: i64,
    #[serde(default)]
    default_unit: String,
    justification_required: Option<String>,
    #[serde(default)]
    justification_pattern: String,
    #[serde(default)]
    requesters_mode: String,
    #[serde(default)]
    requester_group_ids: Vec<Uuid>,
    auto_low_risk: Option<String>,
    #[serde(default)]
    auto_group_ids: Vec<Uuid>,
    allow_self_approval: Option<String>,
    #[serde(default)]
    decision_timeout: i64,
    #[serde(default)]
    decision_unit: String,
    #[serde(default)]
    reminder_before: i64,
    #[serde(default)]
    reminder_unit: String,
    emergency_enabled: Option<String>,
    #[serde(default)]
    emergency_max_seconds: String,
    stage1_manager: Option<String>,
    stage1_app_owners: Option<String>,
    stage1_connector_owners: Option<String>,
    #[serde(default)]
    stage1_user: String,
    #[serde(default)]
    stage1_group: String,
    #[serde(default)]
    stage1_required: u32,
    stage2_enabled: Option<String>,
    stage2_manager: Option<String>,
    stage2_app_owners: Option<String>,
    stage2_connector_owners: Option<String>,
    #[serde(default)]
    stage2_user: String,
    #[serde(default)]
    stage2_group: String,
    #[serde(default)]
    stage2_required: u32,
    stage3_enabled: Option<String>,
    stage3_manager: Option<String>,
    stage3_app_owners: Option<String>,
    stage3_connector_owners: Option<String>,
    #[serde(default)]
    stage3_user: String,
    #[serde(default)]
    stage3_group: String,
    #[serde(default)]
    stage3_required: u32,
}

fn seconds(n: i64, unit: &str) -> i64 {
    n.saturating_mul(match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 1,
    })
}

#[allow(clippy::too_many_arguments)]
fn stage(
    manager: &Option<String>,
    app_owners: &Option<String>,
    connector_owners: &Option<String>,
    user: &str,
    group: &str,
    required: u32,
) -> Stage {
    let mut approvers = Vec::new();
    if manager.is_some() {
        approvers.push(ApproverRule::Manager);
    }
    if app_owners.is_some() {
        approvers.push(ApproverRule::AppOwners);
    }
    if connector_owners.is_some() {
        approvers.push(ApproverRule::ConnectorOwners);
    }
    if let Ok(u) = Uuid::parse_str(user) {
        approvers.push(ApproverRule::User { user_id: u });
    }
    if let Ok(g) = Uuid::parse_str(group) {
        approvers.push(ApproverRule::Group { group_id: g });
    }
    Stage {
        approvers,
        required: required.max(1),
    }
}

fn from_form(f: &PolicyForm) -> Policy {
    let mut stages = vec![stage(
        &f.stage1_manager,
        &f.stage1_app_owners,
        &f.stage1_connector_owners,
        &f.stage1_user,
        &f.stage1_group,
        f.stage1_required,
    )];
    if f.stage2_enabled.is_some() {
        stages.push(stage(
            &f.stage2_manager,
            &f.stage2_app_owners,
            &f.stage2_connector_owners,
            &f.stage2_user,
            &f.stage2_group,
            f.stage2_required,
        ));
    }
    if f.stage3_enabled.is_some() {
        stages.push(stage(
            &f.stage3_manager,
            &f.stage3_app_owners,
            &f.stage3_connector_owners,
            &f.stage3_user,
            &f.stage3_group,
            f.stage3_required,
        ));
    }
    Policy {
        requestable: f.requestable.is_some(),
        risk: match f.risk.as_str() {
            "low" => Risk::Low,
            "high" => Risk::High,
            _ => Risk::Medium,
        },
        max_duration_seconds: seconds(f.max_duration, &f.max_unit),
        default_duration_seconds: seconds(f.default_duration, &f.default_unit),
        justification_required: f.justification_required.is_some(),
        justification_pattern: Some(f.justification_pattern.trim().to_string())
            .filter(|p| !p.is_empty()),
        requesters: Requesters {
            mode: if f.requesters_mode == "groups" {
                RequesterMode::Groups
            } else {
                RequesterMode::Everyone
            },
            group_ids: f.requester_group_ids.clone(),
        },
        approval_stages: stages,
        auto_approve: AutoApprove {
            requester_group_ids: f.auto_group_ids.clone(),
            when_low_risk: f.auto_low_risk.is_some(),
        },
        allow_self_approval: f.allow_self_approval.is_some(),
        decision_timeout_seconds: seconds(f.decision_timeout, &f.decision_unit),
        reminder_before_seconds: seconds(f.reminder_before, &f.reminder_unit),
        emergency: Emergency {
            enabled: f.emergency_enabled.is_some(),
            max_duration_seconds: f.emergency_max_seconds.trim().parse().ok(),
        },
    }
}

pub async fn save(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<PolicyForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &f.csrf_token)?;
    let id = Uuid::parse_str(&id).map_err(|_| WebError::NotFound)?;
    let policy = from_form(&f);
    match state
        .access()
        .put_policy(who.org_id, &caller(&who), id, &policy)
        .await
    {
        Ok(saved) => Ok(super::back(
            &format!("/access/policies/{id}"),
            "notice",
            &format!("Policy saved (version {}).", saved.version),
        )
        .into_response()),
        Err(e) => {
            let message = refusal(e)?;
            let mut p = page(&state, &who, id, Some(policy)).await?;
            p.error = Some(message);
            Ok(p.into_response())
        }
    }
}
