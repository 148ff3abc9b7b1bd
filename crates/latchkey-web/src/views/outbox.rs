//! The email outbox (demo only: it has no SMTP server), so messages can be read in the browser.

use crate::auth::SignedIn;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::Nav;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use latchkey_store::outbox::{self, Email};

#[derive(Template, WebTemplate)]
#[template(path = "outbox.html")]
pub struct OutboxPage {
    nav: Nav,
    emails: Vec<Email>,
}

pub async fn show(State(state): State<AppState>, who: SignedIn) -> Result<OutboxPage, WebError> {
    if !state.config.show_outbox {
        return Err(WebError::NotFound);
    }
    let mut tx = who.tx(&state).await?;
    let emails = outbox::recent(&mut tx, 100).await?;
    tx.commit().await?;
    Ok(OutboxPage {
        nav: Nav::new(&who, "outbox"),
        emails,
    })
}
