//! Sign-in sessions: a random token in an HttpOnly cookie, its hash in Postgres, idle and
//! absolute expiry, a fresh token at every sign-in (no fixation), deletion at sign-out.

use crate::error::WebError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use latchkey_core::{OrgId, Role, SessionId, UserId};
use latchkey_crypto::{random_token, sha256_hex};
use latchkey_store::{OrgTx, sessions};
use time::OffsetDateTime;

/// A signed-in person, available to any handler that names it as an argument.
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub session_id: SessionId,
    pub org_id: OrgId,
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub org_name: String,
    /// The synchronizer token every form of this session must send back.
    pub csrf_token: String,
}

impl SignedIn {
    pub fn require(&self, allowed: bool, why: &'static str) -> Result<(), WebError> {
        if allowed {
            Ok(())
        } else {
            Err(WebError::Forbidden(why))
        }
    }

    pub async fn tx(&self, state: &AppState) -> Result<OrgTx, WebError> {
        Ok(state.store.org_tx(self.org_id).await?)
    }
}

fn to_time(d: std::time::Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::DAY)
}

/// Starts a session for a person who just proved who they are. Returns the cookie to set.
pub async fn start(
    state: &AppState,
    org: OrgId,
    user: UserId,
) -> Result<Cookie<'static>, WebError> {
    let token = random_token(32);
    let now = OffsetDateTime::now_utc();
    let mut tx = state.store.org_tx(org).await?;
    sessions::create(
        &mut tx,
        sessions::NewSession {
            user_id: user,
            token_hash: &sha256_hex(token.as_bytes()),
            csrf_token: &random_token(32),
            idle_expires_at: now + to_time(state.config.session_idle),
            absolute_expires_at: now + to_time(state.config.session_absolute),
        },
    )
    .await?;
    latchkey_store::users::record_login(&mut tx, user).await?;
    tx.commit().await?;
    Ok(session_cookie(state, token))
}

fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build((state.config.session_cookie_name(), value))
        .path("/")
        .http_only(true)
        .secure(state.config.secure_cookies())
        .same_site(SameSite::Lax)
        .build()
}

/// Ends the session and returns a cookie that clears it in the browser.
pub async fn end(state: &AppState, who: &SignedIn) -> Result<Cookie<'static>, WebError> {
    let mut tx = who.tx(state).await?;
    sessions::delete(&mut tx, who.session_id).await?;
    tx.commit().await?;
    let mut c = session_cookie(state, String::new());
    c.make_removal();
    Ok(c)
}

async fn load(parts: &mut Parts, state: &AppState) -> Result<Option<SignedIn>, WebError> {
    let jar = CookieJar::from_headers(&parts.headers);
    let Some(cookie) = jar.get(state.config.session_cookie_name()) else {
        return Ok(None);
    };
    let Some(row) = sessions::lookup(&state.store, &sha256_hex(cookie.value().as_bytes())).await?
    else {
        return Ok(None);
    };
    let who = SignedIn {
        session_id: SessionId(row.session_id),
        org_id: OrgId(row.org_id),
        user_id: UserId(row.user_id),
        email: row.email,
        display_name: row.display_name,
        role: row.role,
        org_name: row.org_name,
        csrf_token: row.csrf_token,
    };
    // Slide the idle expiry, at most once a minute per session to spare the database.
    let now = OffsetDateTime::now_utc();
    if now - row.last_seen_at > time::Duration::MINUTE {
        let mut tx = who.tx(state).await?;
        sessions::touch(
            &mut tx,
            who.session_id,
            now + to_time(state.config.session_idle),
        )
        .await?;
        tx.commit().await?;
    }
    let span = tracing::Span::current();
    span.record("org_id", tracing::field::display(who.org_id));
    span.record("user_id", tracing::field::display(who.user_id));
    Ok(Some(who))
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match load(parts, state).await? {
            Some(who) => Ok(who),
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                Err(WebError::SignInRequired { next })
            }
        }
    }
}

impl OptionalFromRequestParts<AppState> for SignedIn {
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        load(parts, state).await
    }
}
