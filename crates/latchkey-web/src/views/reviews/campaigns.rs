//! Campaigns: the list with progress, and the New campaign form (scope, reviewers, deadline,
//! end rule, repeat) for administrators, also started from one entitlement's page.

use super::{ONLY_ADMINS, day, web_error, who_of};
use crate::auth::SignedIn;
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::{FieldProblem, Nav, problem};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::Form;
use latchkey_reviews::{CreateCampaign, EndRule, ReviewError, Reviewers, Scope, Strategy};
use latchkey_store::page::clamp_limit;
use latchkey_store::{OrgTx, StoreError, connectors, resources, reviews, users};
use serde::Deserialize;
use time::{Date, OffsetDateTime, Time};
use uuid::Uuid;

pub struct CampaignRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub deadline: String,
    pub end_rule: String,
    pub items: i64,
    pub decided: i64,
    pub pct: i64,
    pub recurring: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "reviews_campaigns.html")]
pub struct CampaignsPage {
    nav: Nav,
    campaigns: Vec<CampaignRow>,
}

pub async fn list(State(state): State<AppState>, who: SignedIn) -> Result<CampaignsPage, WebError> {
    who.require(who.role.can_manage_connectors(), ONLY_ADMINS)?;
    let mut tx = who.tx(&state).await?;
    let page = reviews::list_campaigns(&mut tx, None, 200).await?;
    let mut campaigns = Vec::new();
    for c in page.items {
        let n = reviews::counts(&mut tx, c.id).await?;
        campaigns.push(CampaignRow {
            id: c.id.to_string(),
            name: c.name,
            status: c.status,
            deadline: day(c.deadline),
            end_rule: c.end_rule,
            items: n.items,
            decided: n.decided,
            pct: if n.items == 0 {
                100
            } else {
                n.decided * 100 / n.items
            },
            recurring: c.template_id.is_some(),
        });
    }
    tx.commit().await?;
    Ok(CampaignsPage {
        nav: Nav::new(&who, "reviews"),
        campaigns,
    })
}

pub struct Choice {
    pub id: String,
    pub label: String,
    pub checked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "reviews_new.html")]
pub struct NewPage {
    nav: Nav,
    form: NewForm,
    connectors: Vec<Choice>,
    /// Entitlements the scope is narrowed to (a campaign started from an entitlement's page).
    entitlements: Vec<Choice>,
    resource_types: Vec<Choice>,
    people: Vec<Choice>,
    errors: Vec<FieldProblem>,
}

impl NewPage {
    fn problem(&self, field: &str) -> Option<&str> {
        problem(&self.errors, field)
    }
    fn fallback_selected(&self, id: &str) -> bool {
        self.form.fallback_user_id == id
    }
}

#[derive(Deserialize, Default, Clone)]
pub struct NewForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub connector_id: Vec<Uuid>,
    /// Only these entitlements (none: all).
    #[serde(default)]
    pub entitlement_id: Vec<Uuid>,
    #[serde(default)]
    pub resource_type: Vec<String>,
    #[serde(default)]
    pub guests_only: Option<String>,
    #[serde(default)]
    pub inactive_days: String,
    #[serde(default)]
    pub include_inherited: Option<String>,
    #[serde(default)]
    pub strategy: String,
    #[serde(default)]
    pub reviewer_id: Vec<Uuid>,
    #[serde(default)]
    pub fallback_user_id: String,
    /// `YYYY-MM-DD`; the campaign ends at the end of that day (UTC).
    #[serde(default)]
    pub deadline: String,
    #[serde(default)]
    pub end_rule: String,
    #[serde(default)]
    pub repeat_every_days: String,
}

const TYPES: &[(&str, &str)] = &[
    ("role", "Directory roles"),
    ("group", "Groups"),
    ("enterprise_application", "Application roles and owners"),
    ("license", "Licences"),
];

async fn page(
    tx: &mut OrgTx,
    who: &SignedIn,
    form: NewForm,
    errors: Vec<FieldProblem>,
) -> Result<NewPage, StoreError> {
    let conns = connectors::list(tx, None, 200).await?.items;
    let people = users::list(tx, None, clamp_limit(Some(200))).await?.items;
    let mut entitlements = Vec::new();
    for e in &form.entitlement_id {
        for c in &form.connector_id {
            match resources::get_entitlement(tx, *c, *e).await {
                Ok(ent) => {
                    let resource = resources::get_resource(tx, *c, ent.resource_id).await?;
                    entitlements.push(Choice {
                        id: ent.id.to_string(),
                        label: format!("{} of {}", ent.display_name, resource.display_name),
                        checked: true,
                    });
                    break;
                }
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(NewPage {
        entitlements,
        nav: Nav::new(who, "reviews"),
        connectors: conns
            .into_iter()
            .map(|c| Choice {
                checked: form.connector_id.contains(&c.id),
                id: c.id.to_string(),
                label: format!("{} ({})", c.app_name, c.display_name),
            })
            .collect(),
        resource_types: TYPES
            .iter()
            .map(|(t, l)| Choice {
                id: t.to_string(),
                label: l.to_string(),
                checked: form.resource_type.iter().any(|x| x == t),
            })
            .collect(),
        people: people
            .into_iter()
            .filter(|u| u.disabled_at.is_none())
            .map(|u| Choice {
                checked: form.reviewer_id.contains(&u.id),
                id: u.id.to_string(),
                label: format!("{} ({})", u.display_name, u.email),
            })
            .collect(),
        form,
        errors,
    })
}

/// `?connector_id=&entitlement_id=`: start from one entitlement (its page links here).
#[derive(Deserialize, Default)]
pub struct NewQuery {
    connector_id: Option<Uuid>,
    entitlement_id: Option<Uuid>,
}

pub async fn new(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<NewQuery>,
) -> Result<NewPage, WebError> {
    who.require(who.role.can_manage_connectors(), ONLY_ADMINS)?;
    let mut tx = who.tx(&state).await?;
    let deadline = (OffsetDateTime::now_utc() + time::Duration::days(14)).date();
    let form = NewForm {
        connector_id: q.connector_id.into_iter().collect(),
        entitlement_id: q.entitlement_id.into_iter().collect(),
        strategy: "app_owner".into(),
        end_rule: "keep".into(),
        deadline: deadline.to_string(),
        include_inherited: Some("yes".into()),
        fallback_user_id: who.user_id.0.to_string(),
        ..Default::default()
    };
    let p = page(&mut tx, &who, form, vec![]).await?;
    tx.commit().await?;
    Ok(p)
}

fn field(name: &str) -> &'static str {
    match name {
        "name" => "name",
        "deadline" => "deadline",
        "scope.connector_ids" | "scope.app_ids" => "connector_id",
        "scope.inactive_days" => "inactive_days",
        "reviewers.user_ids" => "reviewer_id",
        "reviewers.fallback_user_id" => "fallback_user_id",
        "repeat_every_days" => "repeat_every_days",
        _ => "form",
    }
}

fn parse(form: &NewForm) -> Result<CreateCampaign, Vec<FieldProblem>> {
    let mut errors = Vec::new();
    let mut bad = |field: &'static str, message: &str| {
        errors.push(FieldProblem {
            field,
            message: message.to_string(),
        })
    };
    let deadline = match Date::parse(
        form.deadline.trim(),
        &time::format_description::well_known::Iso8601::DATE,
    ) {
        Ok(d) => d
            .with_time(Time::from_hms(23, 59, 59).expect("valid"))
            .assume_utc(),
        Err(_) => {
            bad("deadline", "Choose the day the campaign ends.");
            OffsetDateTime::now_utc()
        }
    };
    let inactive_days = match form.inactive_days.trim() {
        "" => None,
        s => match s.parse::<i64>() {
            Ok(d) => Some(d),
            Err(_) => {
                bad(
                    "inactive_days",
                    "Enter a number of days, or leave it empty.",
                );
                None
            }
        },
    };
    let strategy = match form.strategy.as_str() {
        "manager" => Strategy::Manager,
        "specific" => Strategy::Specific,
        _ => Strategy::AppOwner,
    };
    let fallback = match form.fallback_user_id.trim() {
        "" => None,
        s => Uuid::parse_str(s).ok(),
    };
    let repeat = match form.repeat_every_days.trim() {
        "" | "0" => None,
        s => s.parse::<i32>().ok(),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CreateCampaign {
        name: form.name.clone(),
        scope: Scope {
            connector_ids: form.connector_id.clone(),
            entitlement_ids: form.entitlement_id.clone(),
            resource_types: form.resource_type.clone(),
            guests_only: form.guests_only.is_some(),
            inactive_days,
            include_inherited: form.include_inherited.is_some(),
            ..Default::default()
        },
        reviewers: Reviewers {
            strategy,
            user_ids: form.reviewer_id.clone(),
            fallback_user_id: fallback,
        },
        deadline,
        end_rule: if form.end_rule == "revoke" {
            EndRule::Revoke
        } else {
            EndRule::Keep
        },
        recommend_revoke_after_days: 90,
        reminder_hours_before: vec![72, 24],
        repeat_every_days: repeat,
    })
}

/// `POST /reviews/campaigns`: start the campaign, or show the form again with its problems.
pub async fn create(
    State(state): State<AppState>,
    who: SignedIn,
    Form(form): Form<NewForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    who.require(who.role.can_manage_connectors(), ONLY_ADMINS)?;
    let mut tx = who.tx(&state).await?;
    let req = match parse(&form) {
        Ok(r) => r,
        Err(errors) => return Ok(page(&mut tx, &who, form, errors).await?.into_response()),
    };
    match latchkey_reviews::start_campaign(&mut tx, &req, &who_of(&who)).await {
        Ok(c) => {
            tx.commit().await?;
            Ok(Redirect::to(&format!("/reviews/campaigns/{}", c.id)).into_response())
        }
        Err(ReviewError::Invalid(problems)) => {
            drop(tx);
            let errors = problems
                .into_iter()
                .map(|p| FieldProblem {
                    field: field(&p.field),
                    message: p.message,
                })
                .collect();
            let mut tx = who.tx(&state).await?;
            let p = page(&mut tx, &who, form, errors).await?;
            tx.commit().await?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, p).into_response())
        }
        Err(e) => Err(web_error(e)),
    }
}
