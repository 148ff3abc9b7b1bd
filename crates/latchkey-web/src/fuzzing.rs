//! Entry points for the `cargo fuzz` targets in `fuzz/` (not part of the product's API).
//!
//! Each function runs the product's own parsing and validation on untrusted bytes, exactly as
//! a request handler would before it touches the database, and panics when a promise the
//! product makes about bad input is broken: every refusal is a 4xx with words for the person,
//! never a panic or a 5xx, and what validation accepts can be used (stored, reread, turned into
//! URLs) without failing later.

use crate::api::ApiJson;
use crate::api::access_requests::{self, CommentBody, ExtendBody};
use crate::api::api_clients;
use crate::api::connectors::{CreateBody, PatchBody};
use crate::api::provisioning::GrantBody;
use crate::api::sync::StartSync;
use crate::auth::microsoft::{CallbackParams, Refusal};
use crate::connectors::consent::callback_state;
use crate::error::ApiError;
use crate::provisioning::{AccountInput, parse_expires_at};
use crate::views::connectors::settings::SettingsForm;
use axum::extract::{Form, FromRequest};
use axum::http::{Request, header};
use axum::response::IntoResponse;
use latchkey_access::config::AccessConfig;
use latchkey_access::policy::Policy;
use latchkey_core::{DisplayName, Role};
use latchkey_crypto::sha256_hex;
use latchkey_entra::consent::{ConsentError, parse_admin_consent_callback};
use latchkey_entra::onboarding::{EntraSettings, SettingsInput, admin_consent_url, validate};
use latchkey_entra::provision::accounts::check;
use latchkey_entra::signin::SignInError;
use latchkey_entra::{ClientId, OutboundPolicy, TenantId};
use latchkey_reviews::CreateCampaign;
use latchkey_reviews::Problem;
use serde::de::DeserializeOwned;
use std::sync::OnceLock;

/// Extractors are async; the bodies here are already in memory, so one current-thread runtime
/// runs them to completion.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
    .block_on(f)
}

fn request(content_type: &str, body: &[u8]) -> Request<axum::body::Body> {
    Request::builder()
        .method("POST")
        .uri("/fuzz")
        .header(header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(body.to_vec()))
        .expect("a valid request")
}

fn assert_refusal(status: http::StatusCode, what: &str) {
    assert!(
        status.is_client_error(),
        "{what}: bad input answered {status}, not a 4xx"
    );
}

/// The connector Settings form (`POST /connectors/{id}/settings`, urlencoded) as the page
/// reads it, then the same validation the API uses. Returns in how many of the four cases
/// (two outbound policies, new or stored settings) the input was accepted.
pub fn settings_form(body: &[u8]) -> usize {
    let req = request("application/x-www-form-urlencoded", body);
    match block_on(Form::<SettingsForm>::from_request(req, &())) {
        Ok(Form(form)) => settings(&form.to_input()),
        Err(rejection) => {
            assert_refusal(rejection.into_response().status(), "settings form");
            0
        }
    }
}

/// Connector settings as JSON (the `settings` member of the API's create and patch bodies).
pub fn settings_json(body: &[u8]) -> usize {
    serde_json::from_slice::<SettingsInput>(body).map_or(0, |input| settings(&input))
}

/// Validates `input` as a new connector's settings and as a change to stored ones, under both
/// outbound policies. Accepted settings must survive storage and produce their endpoints,
/// tenant and (for OAuth) the admin-consent URL.
fn settings(input: &SettingsInput) -> usize {
    let stored: EntraSettings = serde_json::from_value(serde_json::json!({
        "auth": {"mode": "client_secret", "tenant_id": "contoso.onmicrosoft.com",
                 "client_id": "11111111-2222-3333-4444-555555555555"},
        "graph_domain": "graph.microsoft.com",
    }))
    .expect("valid stored settings");
    let mut accepted = 0;
    for policy in [OutboundPolicy::STRICT, OutboundPolicy::INSECURE_DEV] {
        for (current, secret_stored) in [(None, false), (Some(&stored), true)] {
            let Ok(valid) = validate(input, current, secret_stored, policy) else {
                continue;
            };
            let s = valid.settings;
            let reread: EntraSettings =
                serde_json::from_value(serde_json::to_value(&s).expect("settings serialise"))
                    .expect("stored settings read back");
            assert_eq!(reread, s, "settings change on the way through storage");
            let endpoints = s
                .endpoints(policy)
                .expect("validated settings have endpoints");
            let tenant = s.tenant().expect("validated settings have a tenant");
            let _ = endpoints.token_url(&tenant);
            let app = ClientId::parse("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee").expect("a client id");
            let redirect = url::Url::parse("https://latchkey.example/connectors/oauth/callback")
                .expect("a URL");
            let _ = admin_consent_url(&endpoints, &tenant, app, &redirect, "state");
            accepted += 1;
        }
    }
    accepted
}

/// The admin-consent callback's query string: the web's reading of `state` (checked first,
/// against the stored hash) and the full reading of the answer must agree.
pub fn consent_callback(query: &str) {
    let state = callback_state(query);
    if let Some(s) = &state {
        assert_eq!(sha256_hex(s.as_bytes()).len(), 64);
    }
    match parse_admin_consent_callback(query) {
        Ok(cb) => {
            assert_eq!(
                Some(&cb.state),
                state.as_ref(),
                "the state checked is not the state read"
            );
            for t in [
                "contoso.onmicrosoft.com",
                "72f988bf-86f1-41af-91ab-2d7cd011db47",
            ] {
                let _ = cb.claims_tenant(&TenantId::parse(t).expect("a tenant"));
            }
        }
        Err(e) => {
            if e == ConsentError::MissingState {
                assert!(state.is_none(), "a state was there but called missing");
            }
            assert!(!e.to_string().is_empty());
        }
    }
}

/// The `Sign in with Microsoft` callback's query string: what is read from it, and the page a
/// provider error becomes (rendered, and a 4xx).
pub fn signin_callback(query: &str) {
    let params = CallbackParams::parse(query);
    if let Some(state) = params.get("state") {
        assert!(!state.is_empty());
        let _ = sha256_hex(state.as_bytes());
    }
    let _ = params.get("code");
    if let Some(error) = params.get("error") {
        let e = SignInError::from_provider(error, params.get("error_description").unwrap_or(""));
        assert!(!e.to_string().is_empty());
        let status = Refusal::from(e).into_response().status();
        assert_refusal(status, "sign-in callback error");
    }
}

/// The request bodies of the API, selected by `which`, through the API's JSON extractor and
/// then whatever validation needs no database.
pub const API_BODIES: &[&str] = &[
    "POST /connectors",
    "PATCH /connectors/{id}",
    "PUT /entitlements/{id}/policy",
    "POST /review-campaigns",
    "POST /review-campaigns/{id}/items",
    "POST /connectors/{id}/syncs",
    "POST /connectors/{id}/grants",
    "POST /connectors/{id}/accounts",
    "POST /api-clients",
    "POST /access-requests",
    "POST /access-requests/{id}/extend",
    "POST /access-requests/{id}/approve",
];

pub fn api_body(which: u8, body: &[u8]) {
    match which as usize % API_BODIES.len() {
        0 => {
            if let Some(b) = json::<CreateBody>(body) {
                let _ = b.display_name.trim().chars().count();
                if let Some(s) = &b.settings {
                    settings(s);
                }
            }
        }
        1 => {
            if let Some(b) = json::<PatchBody>(body)
                && let Some(s) = &b.settings
            {
                settings(s);
            }
        }
        2 => {
            if let Some(p) = json::<Policy>(body) {
                let _ = p.validate(&AccessConfig::default());
                let _ = p.check_justification("INC-1234 restore the backup");
                assert_eq!(Policy::from_value(&p.to_value()), p, "policy round trip");
            }
        }
        3 => {
            if let Some(c) = json::<CreateCampaign>(body) {
                problems(c.check(time::OffsetDateTime::now_utc()));
            }
        }
        4 => {
            let _ = json::<crate::api::review_campaigns::DecideBody>(body);
        }
        5 => {
            let _ = json::<StartSync>(body);
        }
        6 => {
            if let Some(b) = json::<GrantBody>(body)
                && let Some(at) = &b.expires_at
                && let Err(e) = parse_expires_at(at)
            {
                assert_refusal(ApiError::from(e).status, "expires_at");
            }
        }
        7 => {
            if let Some(a) = json::<AccountInput>(body) {
                let _ = check(&a.to_new_account(None), &["contoso.com".to_string()]);
            }
        }
        8 => {
            if let Some(b) = json::<api_clients::CreateBody>(body) {
                let _ = DisplayName::parse(b.name.as_deref().unwrap_or(""));
                let _ = b.role.as_deref().unwrap_or("").parse::<Role>();
            }
        }
        9 => {
            let _ = json::<access_requests::CreateBody>(body);
        }
        10 => optional::<ExtendBody>(body),
        _ => optional::<CommentBody>(body),
    }
}

/// A JSON body through [`ApiJson`]: `None` when refused (always a 4xx).
fn json<T: DeserializeOwned + Send>(body: &[u8]) -> Option<T> {
    match block_on(ApiJson::<T>::from_request(
        request("application/json", body),
        &(),
    )) {
        Ok(ApiJson(v)) => Some(v),
        Err(e) => {
            assert_refusal(e.status, "API body");
            None
        }
    }
}

/// The optional bodies of the access-request decisions (no body means the defaults).
fn optional<T: DeserializeOwned + Default>(body: &[u8]) {
    if let Err(e) = crate::api::body_or_default::<T>(body) {
        assert_refusal(e.status, "optional API body");
    }
}

fn problems(ps: Vec<Problem>) {
    for p in ps {
        assert!(!p.message.is_empty(), "a problem without words");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_settings_form_passes_and_hostile_ones_are_refused_cleanly() {
        let ok = b"mode=client_secret&tenant_id=contoso.onmicrosoft.com&client_id=11111111-2222-3333-4444-555555555555&client_secret=s&graph_domain=graph.microsoft.com";
        assert_eq!(settings_form(ok), 4);
        let loopback = b"mode=oauth&tenant_id=72f988bf-86f1-41af-91ab-2d7cd011db47&graph_domain=http://127.0.0.1:1";
        assert_eq!(
            settings_form(loopback),
            2,
            "loopback only with the development flag"
        );
        assert_eq!(settings_form(b"%FF%FE=\xff&&&provisioning"), 0);
        let json = br#"{"auth":{"mode":"oauth","tenant_id":"contoso.com"},"graph_domain":"graph.microsoft.us"}"#;
        assert_eq!(settings_json(json), 4);
        assert_eq!(settings_json(b"{\"auth\":7}"), 0);
    }

    #[test]
    fn callbacks_read_state_as_the_handlers_do() {
        consent_callback("?admin_consent=True&tenant=x&state=abc");
        consent_callback("error=access_denied&error_description=AADSTS65004%3A+declined&state=");
        signin_callback("error=invalid_request&error_description=AADSTS9%0Anext&state=s");
        let p = CallbackParams::parse("state=&state=b&code=c");
        assert_eq!(
            p.get("state"),
            None,
            "the first state counts, and empty is none"
        );
        assert_eq!(p.get("code"), Some("c"));
    }

    #[test]
    fn every_api_body_refuses_garbage_with_a_4xx() {
        for which in 0..API_BODIES.len() as u8 {
            for body in [&b""[..], b"{", b"[]", b"{\"x\":1}", b"null", b"\xff\xfe"] {
                api_body(which, body);
            }
        }
        let err = block_on(ApiJson::<StartSync>::from_request(
            request("application/json", b"{\"kind\":\"sideways\"}"),
            &(),
        ))
        .err()
        .expect("an unknown kind is refused");
        assert_eq!(err.status, http::StatusCode::UNPROCESSABLE_ENTITY);
    }
}
