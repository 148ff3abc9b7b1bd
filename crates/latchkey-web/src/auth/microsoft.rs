//! "Sign in with Microsoft" for organization members (OpenID Connect code + PKCE against
//! Latchkey's multi-tenant app; the protocol side is `latchkey_entra::signin`).
//!
//! 1. `POST /auth/microsoft` (the login page's button, pre-session CSRF token): a single-use
//!    `state`, a `nonce` and a PKCE verifier are stored (hashed state, ten minutes) and bound to
//!    this browser by a random value in an HttpOnly, SameSite=Lax cookie (Lax: it must come back
//!    on Microsoft's top-level redirect); then off to the authorize endpoint.
//! 2. `GET /auth/microsoft/callback?code&state`: the state is consumed first, whatever else the
//!    query says (unknown, replayed, expired or another browser's state ends here); then the
//!    code is redeemed with the verifier and the id_token validated.
//! 3. The token's `tid` must be a tenant an organization connected. One organization: signed in.
//!    Several: the person chooses (`POST /auth/microsoft/choose`, a single-use choice bound to
//!    the same browser); Microsoft proved they belong to that tenant, which every one of those
//!    organizations connected.
//! 4. In the organization, the person is the user linked to `tid` + `oid`
//!    (`user_entra_identities`); the first sign-in creates a `member` user with the token's
//!    email (or username) and links it. Never by email alone: a matching email of an existing
//!    account is refused with the way out, not linked. A new session id is issued (no fixation)
//!    and `user.created` / `user.signed_in` are audited.
//!
//! An account not (yet) among the synced accounts may sign in: Microsoft's signature on `tid`
//! and `oid` is the proof of membership, and a sync would only confirm what the token says.
//! The event records `account_synced: false`, and requests for access wait for the sync that
//! brings the account in.

use crate::auth::{SignedIn, session};
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use latchkey_core::{DisplayName, Email, OrgId, Role, UserId};
use latchkey_crypto::{constant_time_eq, random_token, sha256_hex};
use latchkey_entra::signin::{AuthorizeRequest, Pkce, SignInError, VerifiedIdentity};
use latchkey_store::audit::{self, Actor, NewEvent};
use latchkey_store::{StoreError, identities, signin, users};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

const STATE_LIFETIME: time::Duration = time::Duration::minutes(10);
const CHOICE_LIFETIME: time::Duration = time::Duration::minutes(10);

fn browser_cookie_name(state: &AppState) -> &'static str {
    if state.config.secure_cookies() {
        "__Host-latchkey_signin"
    } else {
        "latchkey_signin"
    }
}

pub fn redirect_uri(state: &AppState) -> url::Url {
    state
        .config
        .public_url
        .join("auth/microsoft/callback")
        .expect("the public URL is a valid base")
}

/// The origin of the login authority, which the login page's CSP `form-action` must allow
/// (the button's POST is answered with a redirect there). `None` without the app.
pub fn authority_origin(state: &AppState) -> Option<String> {
    let client = state.signin.as_ref()?;
    url::Url::parse(&client.authority())
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

/// Why a sign-in with Microsoft ended without a session, for the page that says so.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "Sign in with Microsoft is not available on this deployment: it has no Latchkey Entra app configured. Sign in with your email and password."
    )]
    NotAvailable,
    #[error(
        "This sign-in link is not one Latchkey issued (or it was altered). Start again with Sign in with Microsoft."
    )]
    UnknownState,
    #[error("This sign-in link was already used. Start again with Sign in with Microsoft.")]
    Replayed,
    #[error(
        "This sign-in took too long (a sign-in must finish within ten minutes). Start again with Sign in with Microsoft."
    )]
    Expired,
    #[error(
        "This sign-in was started in another browser (or its cookies were cleared). Start again with Sign in with Microsoft in this browser."
    )]
    OtherBrowser,
    #[error("Microsoft did not return a sign-in code. Start again with Sign in with Microsoft.")]
    NoCode,
    #[error("{0}")]
    Microsoft(#[from] SignInError),
    #[error(
        "Your Microsoft account belongs to a tenant ({0}) that no organization has connected to Latchkey. Ask your Latchkey administrator to connect it (Connectors > Add connector > Microsoft Entra ID), or sign in with your email and password."
    )]
    TenantNotConnected(String),
    #[error("That organization is not one you can sign in to with this Microsoft account.")]
    NotAnOption,
    #[error(
        "Your Latchkey account is disabled. Ask a Super Administrator of your organization to enable it."
    )]
    Disabled,
    #[error(
        "Microsoft did not tell Latchkey an email address for your account, so no Latchkey account can be made for it. Ask your administrator to invite you instead."
    )]
    NoEmail,
    #[error(
        "A Latchkey account with the email {0} already exists, but it is not linked to this Microsoft account (Latchkey never links accounts by email alone). Sign in with that account's password and link this Microsoft account under Your account; from then on Sign in with Microsoft works for it."
    )]
    EmailTaken(String),
    #[error(
        "You are no longer signed in to Latchkey as the person who asked to link this Microsoft account. Sign in again, then link it from Your account."
    )]
    LinkSessionChanged,
    #[error(
        "This Microsoft account is already linked to another Latchkey account ({0}) in your organization. Nothing was changed; ask a Super Administrator if that is wrong."
    )]
    LinkedToSomeoneElse(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Web(#[from] WebError),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::NotAvailable => StatusCode::NOT_FOUND,
            Refusal::TenantNotConnected(_) | Refusal::Disabled | Refusal::NotAnOption => {
                StatusCode::FORBIDDEN
            }
            Refusal::EmailTaken(_) | Refusal::LinkedToSomeoneElse(_) => StatusCode::CONFLICT,
            Refusal::LinkSessionChanged => StatusCode::FORBIDDEN,
            Refusal::Microsoft(SignInError::Network(_)) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "signin_refused.html")]
pub struct RefusedPage {
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Store(e) => WebError::from(e).into_response(),
            Refusal::Web(e) => e.into_response(),
            other => {
                tracing::warn!(reason = %other, "sign in with Microsoft refused");
                (
                    other.status(),
                    RefusedPage {
                        message: other.to_string(),
                    },
                )
                    .into_response()
            }
        }
    }
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    csrf_token: String,
    next: Option<String>,
    login_hint: Option<String>,
}

/// The query parameters of `/auth/microsoft/callback`.
pub struct CallbackParams(Vec<(String, String)>);

impl CallbackParams {
    pub fn parse(query: &str) -> Self {
        CallbackParams(
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of `name`; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// `POST /auth/microsoft`: a fresh state bound to this browser, then the authorize endpoint.
pub async fn start(
    State(state): State<AppState>,
    jar: CookieJar,
    Form(form): Form<StartForm>,
) -> Result<Response, Refusal> {
    csrf::verify_presession(&state, &jar, &form.csrf_token)?;
    let next = crate::views::safe_next(form.next.as_deref());
    begin(&state, jar, &next, form.login_hint.as_deref(), None).await
}

#[derive(Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    csrf_token: String,
}

/// Where a linking round trip ends.
pub const LINKED_PAGE: &str = "/settings/account?linked=1";

/// `POST /auth/microsoft/link`: the signed-in person links their Microsoft account (the
/// round trip is the sign-in's, its state remembering who asked).
pub async fn start_link(
    State(state): State<AppState>,
    jar: CookieJar,
    who: SignedIn,
    Form(form): Form<LinkForm>,
) -> Result<Response, Refusal> {
    csrf::verify_session(&who, &form.csrf_token)?;
    begin(
        &state,
        jar,
        LINKED_PAGE,
        None,
        Some((who.org_id, who.user_id)),
    )
    .await
}

/// A fresh state bound to this browser, then the authorize endpoint.
async fn begin(
    state: &AppState,
    jar: CookieJar,
    next: &str,
    login_hint: Option<&str>,
    link: Option<(OrgId, UserId)>,
) -> Result<Response, Refusal> {
    let client = state.signin.clone().ok_or(Refusal::NotAvailable)?;
    // One binding value per browser, reused by parallel tabs and renewed with each start.
    let browser = jar
        .get(browser_cookie_name(state))
        .map(|c| c.value().to_string())
        .filter(|v| v.len() >= 43)
        .unwrap_or_else(|| random_token(32));
    let raw_state = random_token(32);
    let nonce = random_token(32);
    let pkce = Pkce::generate();
    signin::create_state(
        &state.store,
        signin::NewState {
            state_hash: &sha256_hex(raw_state.as_bytes()),
            browser_hash: &sha256_hex(browser.as_bytes()),
            pkce_verifier: &pkce.verifier,
            nonce: &nonce,
            next_path: next,
            expires_at: time::OffsetDateTime::now_utc() + STATE_LIFETIME,
            link,
        },
    )
    .await?;
    let url = client.authorize_url(&AuthorizeRequest {
        redirect_uri: &redirect_uri(state),
        state: &raw_state,
        nonce: &nonce,
        code_challenge: &pkce.challenge,
        login_hint,
    });
    let cookie = Cookie::build((browser_cookie_name(state), browser))
        .path("/")
        .http_only(true)
        .secure(state.config.secure_cookies())
        .same_site(SameSite::Lax)
        .max_age(STATE_LIFETIME)
        .build();
    Ok((jar.add(cookie), Redirect::to(url.as_str())).into_response())
}

/// The browser's binding value, hashed as stored; `None` without the cookie.
fn browser_hash(state: &AppState, jar: &CookieJar) -> Option<String> {
    jar.get(browser_cookie_name(state))
        .map(|c| sha256_hex(c.value().as_bytes()))
}

fn same_browser(state: &AppState, jar: &CookieJar, stored: &str) -> bool {
    browser_hash(state, jar).is_some_and(|h| constant_time_eq(h.as_bytes(), stored.as_bytes()))
}

#[derive(Template, WebTemplate)]
#[template(path = "signin_choose.html")]
pub struct ChoosePage {
    csrf_token: String,
    choice: String,
    who: String,
    orgs: Vec<signin::TenantOrg>,
}

/// `GET /auth/microsoft/callback`.
pub async fn callback(
    State(state): State<AppState>,
    jar: CookieJar,
    who: Option<SignedIn>,
    RawQuery(query): RawQuery,
) -> Result<Response, Refusal> {
    let params = CallbackParams::parse(&query.unwrap_or_default());
    let get = |k: &str| params.get(k);
    let raw_state = get("state").ok_or(Refusal::UnknownState)?;
    let st = match signin::consume_state(&state.store, &sha256_hex(raw_state.as_bytes())).await {
        Ok(s) => s,
        Err(StoreError::NotFound) => return Err(Refusal::UnknownState),
        Err(e) => return Err(e.into()),
    };
    if st.already_used {
        return Err(Refusal::Replayed);
    }
    if !same_browser(&state, &jar, &st.browser_hash) {
        return Err(Refusal::OtherBrowser);
    }
    if st.expired {
        return Err(Refusal::Expired);
    }
    if let Some(error) = get("error") {
        return Err(
            SignInError::from_provider(error, get("error_description").unwrap_or("")).into(),
        );
    }
    let code = get("code").ok_or(Refusal::NoCode)?;
    let client = state.signin.clone().ok_or(Refusal::NotAvailable)?;
    let verifier = st.pkce_verifier.clone().unwrap_or_default();
    let identity = client
        .complete(code, &redirect_uri(&state), &verifier, &st.nonce)
        .await?;
    if let (Some(org), Some(user)) = (st.link_org_id, st.link_user_id) {
        // Linking: still the same person signed in, in this browser.
        let same = who
            .as_ref()
            .is_some_and(|w| w.org_id.0 == org && w.user_id.0 == user);
        if !same {
            return Err(Refusal::LinkSessionChanged);
        }
        return link(
            &state,
            jar,
            OrgId(org),
            UserId(user),
            &identity,
            &st.next_path,
        )
        .await;
    }
    let orgs = signin::orgs_for_tenant(&state.store, &identity.tenant_id).await?;
    match orgs.as_slice() {
        [] => Err(Refusal::TenantNotConnected(identity.tenant_id)),
        [only] => finish(&state, jar, OrgId(only.org_id), &identity, &st.next_path).await,
        several => {
            let choice = random_token(32);
            let ids: Vec<Uuid> = several.iter().map(|o| o.org_id).collect();
            let browser = browser_hash(&state, &jar).unwrap_or_default();
            signin::create_choice(
                &state.store,
                signin::NewChoice {
                    token_hash: &sha256_hex(choice.as_bytes()),
                    browser_hash: &browser,
                    tenant_id: &identity.tenant_id,
                    object_id: &identity.object_id,
                    // The username (UPN) stands in for a missing email, as at a first sign-in.
                    email: identity.email.as_deref().or(identity.username.as_deref()),
                    display_name: identity.name.as_deref(),
                    org_ids: &ids,
                    next_path: &st.next_path,
                    expires_at: time::OffsetDateTime::now_utc() + CHOICE_LIFETIME,
                },
            )
            .await?;
            let (jar, csrf_token) = csrf::issue_presession(&state, jar);
            let page = ChoosePage {
                csrf_token,
                choice,
                who: identity
                    .username
                    .clone()
                    .or(identity.name.clone())
                    .unwrap_or_default(),
                orgs: several.to_vec(),
            };
            Ok((jar, page).into_response())
        }
    }
}

#[derive(Deserialize)]
pub struct ChooseForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    choice: String,
    org_id: Uuid,
}

/// `POST /auth/microsoft/choose`: the organization picked on the chooser.
pub async fn choose(
    State(state): State<AppState>,
    jar: CookieJar,
    Form(form): Form<ChooseForm>,
) -> Result<Response, Refusal> {
    csrf::verify_presession(&state, &jar, &form.csrf_token)?;
    if form.choice.is_empty() {
        return Err(Refusal::UnknownState);
    }
    let c = match signin::consume_choice(&state.store, &sha256_hex(form.choice.as_bytes())).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => return Err(Refusal::UnknownState),
        Err(e) => return Err(e.into()),
    };
    if c.already_used {
        return Err(Refusal::Replayed);
    }
    if !same_browser(&state, &jar, &c.browser_hash) {
        return Err(Refusal::OtherBrowser);
    }
    if c.expired {
        return Err(Refusal::Expired);
    }
    if !c.org_ids.contains(&form.org_id) {
        return Err(Refusal::NotAnOption);
    }
    // The tenant must still be connected to the chosen organization.
    let still = signin::orgs_for_tenant(&state.store, &c.tenant_id).await?;
    if !still.iter().any(|o| o.org_id == form.org_id) {
        return Err(Refusal::NotAnOption);
    }
    let identity = VerifiedIdentity {
        tenant_id: c.tenant_id,
        object_id: c.object_id,
        username: None,
        email: c.email,
        name: c.display_name,
    };
    finish(&state, jar, OrgId(form.org_id), &identity, &c.next_path).await
}

/// Links `identity` to `user` of `org` (their own request, verified by Microsoft): the tenant
/// must be one the organization connected, and the Entra account not another person's.
/// Linking again in the same tenant replaces the earlier account. Audited.
async fn link(
    state: &AppState,
    jar: CookieJar,
    org: OrgId,
    user: UserId,
    identity: &VerifiedIdentity,
    next: &str,
) -> Result<Response, Refusal> {
    let connected = signin::orgs_for_tenant(&state.store, &identity.tenant_id).await?;
    if !connected.iter().any(|o| o.org_id == org.0) {
        return Err(Refusal::TenantNotConnected(identity.tenant_id.clone()));
    }
    let mut tx = state.store.org_tx(org).await?;
    match identities::find_user(&mut tx, &identity.tenant_id, &identity.object_id).await? {
        Some(other) if other != user => {
            let holder = users::get(&mut tx, other).await?;
            return Err(Refusal::LinkedToSomeoneElse(holder.email));
        }
        _ => {}
    }
    let me = users::get(&mut tx, user).await?;
    let previous = identities::for_user(&mut tx, user)
        .await?
        .into_iter()
        .find(|i| i.tenant_id == identity.tenant_id.to_lowercase())
        .map(|i| i.object_id);
    identities::link(&mut tx, user, &identity.tenant_id, &identity.object_id).await?;
    let synced = signin::account_synced(&mut tx, &identity.tenant_id, &identity.object_id).await?;
    audit::append(
        &mut tx,
        &NewEvent {
            actor: &Actor::user(user.0, &me.email),
            action: "user.microsoft_linked",
            target_kind: "user",
            target_id: Some(user.0.to_string()),
            details: json!({
                "tenant_id": identity.tenant_id,
                "object_id": identity.object_id,
                "replaced_object_id": previous,
                "account_synced": synced,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(org_id = %org, user_id = %user, "Microsoft account linked");
    let mut done = Cookie::build((browser_cookie_name(state), ""))
        .path("/")
        .build();
    done.make_removal();
    Ok((jar.add(done), Redirect::to(next)).into_response())
}

/// Signs `identity` in to `org`: the linked user, or a new member linked to it.
async fn finish(
    state: &AppState,
    jar: CookieJar,
    org: OrgId,
    identity: &VerifiedIdentity,
    next: &str,
) -> Result<Response, Refusal> {
    let mut tx = state.store.org_tx(org).await?;
    let synced = signin::account_synced(&mut tx, &identity.tenant_id, &identity.object_id).await?;
    let (user, email) = match identities::find_user(
        &mut tx,
        &identity.tenant_id,
        &identity.object_id,
    )
    .await?
    {
        Some(id) => {
            let u = users::get(&mut tx, id).await?;
            if u.disabled_at.is_some() {
                return Err(Refusal::Disabled);
            }
            (id, u.email)
        }
        None => {
            let raw = identity
                .email
                .as_deref()
                .or(identity.username.as_deref())
                .ok_or(Refusal::NoEmail)?;
            let email = Email::parse(raw).map_err(|_| Refusal::NoEmail)?;
            let name = identity
                .name
                .as_deref()
                .and_then(|n| DisplayName::parse(n).ok())
                .or_else(|| DisplayName::parse(email.as_str()).ok())
                .ok_or(Refusal::NoEmail)?;
            let created = match users::create(&mut tx, &email, &name, Role::Member).await {
                Ok(u) => u,
                Err(StoreError::Conflict { .. }) => {
                    return Err(Refusal::EmailTaken(email.as_str().to_string()));
                }
                Err(e) => return Err(e.into()),
            };
            let id = UserId(created.id);
            identities::link(&mut tx, id, &identity.tenant_id, &identity.object_id).await?;
            audit::append(
                &mut tx,
                &NewEvent {
                    actor: &Actor::user(created.id, email.as_str()),
                    action: "user.created",
                    target_kind: "user",
                    target_id: Some(created.id.to_string()),
                    details: json!({
                        "method": "microsoft",
                        "role": Role::Member.as_str(),
                        "email": email.as_str(),
                        "tenant_id": identity.tenant_id,
                        "object_id": identity.object_id,
                        "account_synced": synced,
                    }),
                },
            )
            .await?;
            tracing::info!(org_id = %org, user_id = %id, "member created at first sign in with Microsoft");
            (id, email.as_str().to_string())
        }
    };
    audit::append(
        &mut tx,
        &NewEvent {
            actor: &Actor::user(user.0, &email),
            action: "user.signed_in",
            target_kind: "user",
            target_id: Some(user.0.to_string()),
            details: json!({
                "method": "microsoft",
                "tenant_id": identity.tenant_id,
                "object_id": identity.object_id,
                "account_synced": synced,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    let cookie = session::start(state, org, user).await?;
    tracing::info!(org_id = %org, user_id = %user, "signed in with Microsoft");
    let mut done = Cookie::build((browser_cookie_name(state), ""))
        .path("/")
        .build();
    done.make_removal();
    Ok((jar.add(cookie).add(done), Redirect::to(next)).into_response())
}
