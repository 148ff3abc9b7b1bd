//! The vault reveal page: a created account's password, shown once to the person who asked
//! for it (or the connector's owners) with a copy button; afterwards, who revealed it and when.

use crate::auth::SignedIn;
use crate::csrf;
use crate::error::WebError;
use crate::provisioning::{Asker, RevealRefused, may_reveal, reveal};
use crate::state::AppState;
use crate::views::{Nav, when};
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_crypto::ExposeSecret;
use latchkey_store::vault::{self, VaultItem};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Template, WebTemplate)]
#[template(path = "vault.html")]
pub struct VaultPage {
    nav: Nav,
    item: VaultItem,
    may: bool,
    /// Set only in the answer to the reveal itself.
    password: Option<String>,
}

impl VaultPage {
    fn revealed_at(&self) -> String {
        self.item.revealed_at.map(when).unwrap_or_default()
    }
}

fn asker(who: &SignedIn) -> Asker {
    Asker::user(who.org_id, who.user_id, who.role)
}

fn no_store(page: VaultPage, status: StatusCode) -> Response {
    let mut resp = (status, page).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
) -> Result<Response, WebError> {
    let mut tx = who.tx(&state).await?;
    let item = vault::get(&mut tx, id).await?;
    let may = may_reveal(&mut tx, &asker(&who), &item).await?;
    tx.commit().await?;
    Ok(no_store(
        VaultPage {
            nav: Nav::new(&who, "connectors"),
            item,
            may,
            password: None,
        },
        StatusCode::OK,
    ))
}

#[derive(Deserialize)]
pub struct RevealForm {
    #[serde(default)]
    csrf_token: String,
}

pub async fn submit(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<RevealForm>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    match reveal(&state, &asker(&who), id).await {
        Ok((item, secret)) => Ok(no_store(
            VaultPage {
                nav: Nav::new(&who, "connectors"),
                item,
                may: true,
                password: Some(secret.expose_secret().to_string()),
            },
            StatusCode::OK,
        )),
        Err(RevealRefused::Gone(item)) => Ok(no_store(
            VaultPage {
                nav: Nav::new(&who, "connectors"),
                item: *item,
                may: true,
                password: None,
            },
            StatusCode::GONE,
        )),
        Err(RevealRefused::NotFound) => Err(WebError::NotFound),
        Err(RevealRefused::Forbidden(why)) => Err(WebError::Forbidden(why)),
        Err(RevealRefused::Store(e)) => Err(e.into()),
    }
}
