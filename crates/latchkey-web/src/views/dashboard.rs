//! The home page after sign-in.

use super::Nav;
use crate::auth::SignedIn;
use askama::Template;
use askama_web::WebTemplate;
use axum::response::{IntoResponse, Redirect};

#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    nav: Nav,
}

pub async fn show(who: SignedIn) -> impl IntoResponse {
    DashboardPage {
        nav: Nav::new(&who, "dashboard"),
    }
}

pub async fn root(who: Option<SignedIn>) -> Redirect {
    Redirect::to(if who.is_some() {
        "/dashboard"
    } else {
        "/login"
    })
}
