//! Applications: the managed apps with what their connector synced — the **Accounts** tab
//! (users and managed identities, filterable by enabled, guest and last sign-in) and the
//! **Entitlements** tab (each entitlement with its grants: who, since, how) — and the syncs.

use crate::api::PageQuery;
use crate::api::sync::{SyncView, list_for};
use crate::auth::SignedIn;
use crate::error::WebError;
use crate::provisioning::{Asker, may_provision};
use crate::state::AppState;
use crate::views::Nav;
use crate::views::connectors::{status_class, status_label};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use latchkey_store::apps::{self, App};
use latchkey_store::connectors::{self, Connector};
use latchkey_store::page::Cursor;
use latchkey_store::resources::{self, Entitlement, Grant, GrantFilter, Resource, ResourceFilter};
use latchkey_store::{OrgTx, StoreError};
use serde::Deserialize;
use uuid::Uuid;

const PAGE: i64 = 50;

/// A managed app and its connector, if it has one.
pub struct AppRow {
    pub app: App,
    pub connector: Option<Connector>,
}

#[derive(Template, WebTemplate)]
#[template(path = "apps.html")]
pub struct AppsPage {
    nav: Nav,
    managed: Vec<AppRow>,
    discovered: Vec<App>,
}

impl AppsPage {
    fn label(&self, s: &str) -> &'static str {
        status_label(s)
    }
    fn class(&self, s: &str) -> &'static str {
        status_class(s)
    }
}

async fn connector_of(tx: &mut OrgTx, app: Uuid) -> Result<Option<Connector>, StoreError> {
    let page = connectors::list(tx, None, 200).await?;
    Ok(page.items.into_iter().find(|c| c.app_id == app))
}

pub async fn list(State(state): State<AppState>, who: SignedIn) -> Result<AppsPage, WebError> {
    let mut tx = who.tx(&state).await?;
    let conns = connectors::list(&mut tx, None, 200).await?.items;
    let managed = apps::list(&mut tx, "managed")
        .await?
        .into_iter()
        .map(|app| AppRow {
            connector: conns.iter().find(|c| c.app_id == app.id).cloned(),
            app,
        })
        .collect();
    let discovered = apps::list(&mut tx, "discovered").await?;
    tx.commit().await?;
    Ok(AppsPage {
        nav: Nav::new(&who, "apps"),
        managed,
        discovered,
    })
}

#[derive(Deserialize, Default)]
pub struct AppQuery {
    tab: Option<String>,
    q: Option<String>,
    /// `yes` / `no` / empty.
    enabled: Option<String>,
    guest: Option<String>,
    /// Last sign-in older than this many days.
    inactive_days: Option<String>,
    cursor: Option<String>,
}

fn yes_no(v: &Option<String>) -> Option<bool> {
    match v.as_deref() {
        Some("yes") => Some(true),
        Some("no") => Some(false),
        _ => None,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "app.html")]
pub struct AppPage {
    nav: Nav,
    app: App,
    connector: Option<Connector>,
    tab: &'static str,
    q: String,
    enabled: String,
    guest: String,
    inactive_days: String,
    accounts: Vec<Resource>,
    entitlements: Vec<Entitlement>,
    next_cursor: Option<String>,
    syncs: Vec<SyncView>,
    /// Owners and admins may grant, revoke, create and deprovision accounts.
    can_provision: bool,
    /// The connector lets deprovisioning delete accounts.
    allow_delete: bool,
}

impl AppPage {
    fn label(&self, s: &str) -> &'static str {
        status_label(s)
    }
    fn class(&self, s: &str) -> &'static str {
        status_class(s)
    }
    fn field(&self, r: &Resource, k: &str) -> String {
        match r.profile.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Bool(true)) => "yes".into(),
            Some(serde_json::Value::Bool(false)) => "no".into(),
            Some(serde_json::Value::Null) | None => "—".into(),
            Some(v) => v.to_string(),
        }
    }
    fn kind(&self, r: &Resource) -> &'static str {
        match r.rtype.as_str() {
            "managed_identity" => "Managed identity",
            _ => match r.profile.get("user_type").and_then(|v| v.as_str()) {
                Some("Guest") => "Guest",
                _ => "Member",
            },
        }
    }
    fn next_link(&self, cursor: &str) -> String {
        format!(
            "/apps/{}?tab={}&q={}&enabled={}&guest={}&inactive_days={}&cursor={}",
            self.app.id,
            self.tab,
            urlencode(&self.q),
            self.enabled,
            self.guest,
            urlencode(&self.inactive_days),
            cursor
        )
    }
    fn stat(&self, s: &SyncView, k: &str) -> String {
        s.stats
            .get(k)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "—".into())
    }
    fn when(&self, t: &Option<time::OffsetDateTime>) -> String {
        t.map(|t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()))
            .unwrap_or_else(|| "—".into())
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn cursor(raw: &Option<String>) -> Result<Option<Cursor>, WebError> {
    Ok(raw
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(Cursor::parse)
        .transpose()?)
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Query(q): Query<AppQuery>,
) -> Result<AppPage, WebError> {
    let tab = match q.tab.as_deref() {
        Some("entitlements") => "entitlements",
        _ => "accounts",
    };
    let mut tx = who.tx(&state).await?;
    let app = apps::get(&mut tx, id).await?;
    let connector = connector_of(&mut tx, id).await?;
    let after = cursor(&q.cursor)?;
    let mut accounts = Vec::new();
    let mut entitlements = Vec::new();
    let mut next_cursor = None;
    if let Some(c) = &connector {
        if tab == "accounts" {
            let filter = ResourceFilter {
                types: vec!["user".into(), "managed_identity".into()],
                q: q.q.clone(),
                enabled: yes_no(&q.enabled),
                guest: yes_no(&q.guest),
                inactive_days: q
                    .inactive_days
                    .as_deref()
                    .and_then(|d| d.trim().parse::<i64>().ok())
                    .filter(|d| *d >= 0),
            };
            let page = resources::list_resources(&mut tx, c.id, &filter, after, PAGE).await?;
            accounts = page.items;
            next_cursor = page.next_cursor;
        } else {
            let page =
                resources::list_entitlements(&mut tx, c.id, None, q.q.as_deref(), after, PAGE)
                    .await?;
            entitlements = page.items;
            next_cursor = page.next_cursor;
        }
    }
    let mut can_provision = false;
    let mut allow_delete = false;
    if let Some(c) = &connector {
        can_provision = may_provision(&mut tx, &asker(&who), c.id)
            .await
            .map_err(WebError::from)?;
        // A self-hosted connector has no settings here: its own LATCHKEY_ALLOW_ACCOUNT_DELETION
        // decides, and it refuses a deletion (with that reason on the task) when it is off.
        allow_delete = c.kind == crate::connector_agent::SELF_HOSTED
            || c.settings
                .as_ref()
                .and_then(|s| s.get("allow_account_deletion"))
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
    }
    tx.commit().await?;
    let syncs = match &connector {
        Some(c) => {
            list_for(
                &state,
                who.org_id,
                c.id,
                &PageQuery {
                    limit: Some(5),
                    cursor: None,
                },
            )
            .await
            .map_err(|_| WebError::NotFound)?
            .items
        }
        None => Vec::new(),
    };
    Ok(AppPage {
        nav: Nav::new(&who, "apps"),
        app,
        connector,
        tab,
        q: q.q.unwrap_or_default(),
        enabled: q.enabled.unwrap_or_default(),
        guest: q.guest.unwrap_or_default(),
        inactive_days: q.inactive_days.unwrap_or_default(),
        accounts,
        entitlements,
        next_cursor,
        syncs,
        can_provision,
        allow_delete,
    })
}

fn asker(who: &SignedIn) -> Asker {
    Asker::user(who.org_id, who.user_id, who.role)
}

#[derive(Deserialize, Default)]
pub struct GrantQuery {
    /// Search for a principal to grant to.
    who: Option<String>,
    q: Option<String>,
    expanded: Option<String>,
    cursor: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "app_entitlement.html")]
pub struct EntitlementPage {
    nav: Nav,
    app: App,
    resource: Resource,
    entitlement: Entitlement,
    grants: Vec<Grant>,
    q: String,
    expanded: bool,
    next_cursor: Option<String>,
    connector_id: Uuid,
    can_provision: bool,
    /// May start an access review of this entitlement (administrators).
    can_review: bool,
    who: String,
    /// Principals matching `who`, to grant to.
    candidates: Vec<Resource>,
}

impl EntitlementPage {
    fn kind_of(&self, r: &Resource) -> &'static str {
        match r.rtype.as_str() {
            "user" => "User",
            "group" => "Group",
            "managed_identity" => "Managed identity",
            _ => "Service principal",
        }
    }
    fn upn(&self, r: &Resource) -> String {
        r.profile
            .get("user_principal_name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    }
    fn how(&self, g: &Grant) -> String {
        if g.source == "direct" {
            "Direct".into()
        } else {
            format!("Via {}", g.source.replace('>', " › "))
        }
    }
    fn since(&self, g: &Grant) -> String {
        g.details
            .as_ref()
            .and_then(|d| d.get("created").or(d.get("start")))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                let t = g.first_seen_at;
                format!("first seen {}", t.date())
            })
    }
    fn next_link(&self, cursor: &str) -> String {
        format!(
            "/apps/{}/entitlements/{}?q={}&expanded={}&cursor={}",
            self.app.id,
            self.entitlement.id,
            urlencode(&self.q),
            if self.expanded { "yes" } else { "" },
            cursor
        )
    }
}

pub async fn entitlement(
    State(state): State<AppState>,
    who: SignedIn,
    Path((id, ent)): Path<(Uuid, Uuid)>,
    Query(q): Query<GrantQuery>,
) -> Result<EntitlementPage, WebError> {
    let mut tx = who.tx(&state).await?;
    let app = apps::get(&mut tx, id).await?;
    let connector = connector_of(&mut tx, id).await?.ok_or(WebError::NotFound)?;
    let entitlement = resources::get_entitlement(&mut tx, connector.id, ent).await?;
    let resource = resources::get_resource(&mut tx, connector.id, entitlement.resource_id).await?;
    let expanded = q.expanded.as_deref() == Some("yes");
    let page = resources::list_grants(
        &mut tx,
        connector.id,
        &GrantFilter {
            entitlement: Some(ent),
            principal: None,
            include_expanded: expanded,
            q: q.q.clone(),
        },
        cursor(&q.cursor)?,
        PAGE,
    )
    .await?;
    let can_provision = may_provision(&mut tx, &asker(&who), connector.id)
        .await
        .map_err(WebError::from)?;
    let who_q = q.who.clone().unwrap_or_default();
    let candidates = if can_provision && !who_q.trim().is_empty() {
        resources::list_resources(
            &mut tx,
            connector.id,
            &ResourceFilter {
                types: [
                    "user",
                    "group",
                    "enterprise_application",
                    "managed_identity",
                ]
                .map(String::from)
                .to_vec(),
                q: Some(who_q.trim().to_string()),
                ..Default::default()
            },
            None,
            20,
        )
        .await?
        .items
    } else {
        Vec::new()
    };
    tx.commit().await?;
    Ok(EntitlementPage {
        connector_id: connector.id,
        can_provision,
        can_review: who.role.can_manage_connectors(),
        who: who_q,
        candidates,
        nav: Nav::new(&who, "apps"),
        app,
        resource,
        entitlement,
        grants: page.items,
        q: q.q.unwrap_or_default(),
        expanded,
        next_cursor: page.next_cursor,
    })
}
