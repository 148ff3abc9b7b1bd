//! Settings > Your account: who you are here, and the Microsoft accounts linked to you. A
//! person with a Latchkey password (e.g. the administrator who created the organization)
//! links their Entra account here, so that they can request access and be found as a
//! manager or owner; the round trip is the sign-in's (`auth::microsoft::start_link`).

use super::Nav;
use crate::auth::SignedIn;
use crate::error::WebError;
use crate::state::AppState;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use latchkey_store::{identities, signin, users};
use serde::Deserialize;

pub struct LinkedAccount {
    pub tenant_id: String,
    pub object_id: String,
    pub linked_at: String,
    /// The account is among the synced accounts of a connector of the organization.
    pub synced: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
pub struct AccountPage {
    nav: Nav,
    email: String,
    display_name: String,
    role_label: &'static str,
    has_password: bool,
    linked: Vec<LinkedAccount>,
    /// The deployment has Latchkey's Entra app, so linking is possible.
    can_link: bool,
    notice: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct AccountQuery {
    linked: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Query(q): Query<AccountQuery>,
) -> Result<Response, WebError> {
    let mut tx = who.tx(&state).await?;
    let me = users::get(&mut tx, who.user_id).await?;
    let mut linked = Vec::new();
    for i in identities::for_user(&mut tx, who.user_id).await? {
        let synced = signin::account_synced(&mut tx, &i.tenant_id, &i.object_id).await?;
        linked.push(LinkedAccount {
            linked_at: i
                .linked_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            tenant_id: i.tenant_id,
            object_id: i.object_id,
            synced,
        });
    }
    tx.commit().await?;
    let page = AccountPage {
        nav: Nav::new(&who, "account"),
        email: me.email,
        display_name: me.display_name,
        role_label: me.role.label(),
        has_password: me.has_password,
        linked,
        can_link: state.signin.is_some(),
        notice: q
            .linked
            .is_some()
            .then_some("Your Microsoft account is linked."),
    };
    // The link button's POST is answered with a redirect to the login authority.
    Ok(super::login::with_csp(&state, page.into_response()))
}
