//! CSRF protection, two layers deep. The outer layer is tower-http's `CsrfLayer`
//! (`Sec-Fetch-Site` / `Origin` checks, see router.rs). The inner one is a synchronizer
//! token in every state-changing form: the session's token once signed in, and a
//! double-submit cookie for the forms that come before a session (sign-up, sign-in,
//! accepting an invitation).

use crate::auth::SignedIn;
use crate::error::WebError;
use crate::state::AppState;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use latchkey_crypto::{constant_time_eq, random_token};

pub fn verify_session(who: &SignedIn, submitted: &str) -> Result<(), WebError> {
    if !submitted.is_empty() && constant_time_eq(who.csrf_token.as_bytes(), submitted.as_bytes()) {
        Ok(())
    } else {
        Err(WebError::Csrf)
    }
}

/// The token for a pre-session form: reuses the browser's cookie when it has one.
pub fn issue_presession(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
    if let Some(existing) = jar.get(state.config.csrf_cookie_name()) {
        let v = existing.value().to_string();
        if v.len() >= 32 {
            return (jar, v);
        }
    }
    let token = random_token(32);
    let cookie = Cookie::build((state.config.csrf_cookie_name(), token.clone()))
        .path("/")
        .http_only(true)
        .secure(state.config.secure_cookies())
        .same_site(SameSite::Strict)
        .build();
    (jar.add(cookie), token)
}

pub fn verify_presession(
    state: &AppState,
    jar: &CookieJar,
    submitted: &str,
) -> Result<(), WebError> {
    match jar.get(state.config.csrf_cookie_name()) {
        Some(c)
            if !submitted.is_empty()
                && constant_time_eq(c.value().as_bytes(), submitted.as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(WebError::Csrf),
    }
}
