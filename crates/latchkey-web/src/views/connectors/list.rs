//! Admin > Connectors: every connector with its status, app, owners and last sync.

use super::{status_class, status_label};
use crate::auth::SignedIn;
use crate::connectors::{ConnectorView, connector_view};
use crate::error::WebError;
use crate::state::AppState;
use crate::views::Nav;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use latchkey_store::connectors;

#[derive(Template, WebTemplate)]
#[template(path = "connectors.html")]
pub struct ConnectorsPage {
    nav: Nav,
    connectors: Vec<ConnectorView>,
    can_add: bool,
}

impl ConnectorsPage {
    fn label(&self, status: &str) -> &'static str {
        status_label(status)
    }
    fn class(&self, status: &str) -> &'static str {
        status_class(status)
    }
    fn owner_names(&self, c: &ConnectorView) -> String {
        c.owners
            .iter()
            .map(|o| o.display_name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn last_sync(&self, c: &ConnectorView) -> String {
        c.last_sync
            .as_ref()
            .and_then(|s| {
                s.get("synced_at")
                    .and_then(|v| v.as_str())
                    .or_else(|| s.get("status").and_then(|v| v.as_str()))
            })
            .unwrap_or("never")
            .to_string()
    }
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
) -> Result<ConnectorsPage, WebError> {
    let mut tx = who.tx(&state).await?;
    let page = connectors::list(&mut tx, None, 200).await?;
    let mut views = Vec::with_capacity(page.items.len());
    for row in page.items {
        views.push(connector_view(&mut tx, row).await?);
    }
    tx.commit().await?;
    Ok(ConnectorsPage {
        nav: Nav::new(&who, "connectors"),
        connectors: views,
        can_add: who.role.can_manage_connectors(),
    })
}
