//! Settings > Audit log: every recorded event, newest first, with filters, and whether the
//! organization's hash chain is intact (Super Administrators).

use super::at;
use crate::auth::SignedIn;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::Nav;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use latchkey_store::audit::{self, ChainCheck, Event, Filter};
use serde::Deserialize;

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    nav: Nav,
    events: Vec<Event>,
    next_cursor: Option<String>,
    chain: ChainCheck,
    action: String,
    target: String,
}

impl AuditPage {
    fn at(&self, t: &time::OffsetDateTime) -> String {
        at(t)
    }
    fn details(&self, e: &Event) -> String {
        e.details.to_string()
    }
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    action: Option<String>,
    target: Option<String>,
    cursor: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<AuditQuery>,
) -> Result<AuditPage, WebError> {
    who.require(
        who.role.can_manage_people(),
        "Only Super Administrators read the audit log.",
    )?;
    let before = q.cursor.as_deref().map(audit::parse_cursor).transpose()?;
    let blank = |s: &Option<String>| s.clone().filter(|v| !v.trim().is_empty());
    let mut tx = who.tx(&state).await?;
    let page = audit::list(
        &mut tx,
        &Filter {
            target_kind: None,
            target_id: blank(&q.target),
            action_prefix: blank(&q.action),
        },
        before,
        100,
    )
    .await?;
    let chain = audit::verify_chain(&mut tx).await?;
    tx.commit().await?;
    Ok(AuditPage {
        nav: Nav::new(&who, "audit"),
        events: page.items,
        next_cursor: page.next_cursor,
        chain,
        action: q.action.unwrap_or_default(),
        target: q.target.unwrap_or_default(),
    })
}
