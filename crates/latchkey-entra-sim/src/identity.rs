//! The identity platform: token endpoint (client credentials, authorization code + PKCE, refresh),
//! authorize, admin consent, OpenID discovery and JWKS — with Entra's real error bodies.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State as AxState};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;
use uuid::Uuid;

use crate::config::ConsentOutcome;
use crate::json::{fmt_ts, now};
use crate::model::{MICROSOFT_TENANT, ObjRef, ServicePrincipal, SpType};
use crate::server::{AuthCode, State, TokenInfo};

type St = AxState<Arc<State>>;

/// Where the tenant segment of a login URL points.
enum TenantRef {
    This,
    /// `common` / `organizations` / `consumers`: resolved by who signs in.
    Multi(String),
}

fn resolve_tenant(st: &State, t: &str) -> Option<TenantRef> {
    let lower = t.to_ascii_lowercase();
    if matches!(lower.as_str(), "common" | "organizations") {
        return Some(TenantRef::Multi(lower));
    }
    let d = st.read();
    if Uuid::parse_str(t).ok() == Some(d.tenant_id)
        || lower == d.domain.to_ascii_lowercase()
        || lower == d.initial_domain.to_ascii_lowercase()
    {
        return Some(TenantRef::This);
    }
    None
}

/// Entra's token-endpoint error body.
pub(crate) fn login_error(
    base: &str,
    status: StatusCode,
    error: &str,
    code: u32,
    desc: String,
) -> Response {
    let trace = Uuid::new_v4();
    let corr = Uuid::new_v4();
    let ts = fmt_ts(now()).replace('T', " ");
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {desc}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {ts}"),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": format!("{base}/error?code={code}"),
    });
    (
        status,
        [(
            http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        body.to_string(),
    )
        .into_response()
}

fn tenant_not_found(base: &str, t: &str) -> Response {
    login_error(
        base,
        StatusCode::BAD_REQUEST,
        "invalid_tenant",
        90002,
        format!(
            "Tenant '{t}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

fn app_not_found(base: &str, app: &str, domain: &str) -> Response {
    login_error(
        base,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700016,
        format!(
            "Application with identifier '{app}' was not found in the directory '{domain}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        ),
    )
}

/// An HTML error page, as the login UI shows when it cannot redirect back.
fn error_page(code: u32, msg: &str) -> Response {
    let esc = msg
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let html = format!(
        "<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body><h1>Sign in</h1><p>Sorry, but we're having trouble signing you in.</p><p id=\"error\">AADSTS{code}: {esc}</p></body></html>"
    );
    (
        StatusCode::BAD_REQUEST,
        [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

fn redirect(url: String) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header(http::header::LOCATION, url)
        .body(Body::empty())
        .unwrap_or_default()
}

fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", s.finish())
}

fn parse_form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let b = v.strip_prefix("Basic ")?;
    let raw = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .ok()?,
    )
    .ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

/// Which app a client id names, from this tenant's point of view.
enum Client {
    Customer,
    Latchkey { consented: bool },
    Unknown,
}

fn client_kind(st: &State, id: &str) -> Client {
    let Ok(id) = Uuid::parse_str(id) else {
        return Client::Unknown;
    };
    if id == st.customer.client_id {
        Client::Customer
    } else if id == st.latchkey.client_id {
        Client::Latchkey {
            consented: st.consent().latchkey_consented,
        }
    } else {
        Client::Unknown
    }
}

fn graph_resource_ok(resource: &str) -> bool {
    let r = resource.trim_end_matches('/');
    if r.eq_ignore_ascii_case("00000003-0000-0000-c000-000000000000") {
        return true;
    }
    match url::Url::parse(r) {
        Ok(u) => matches!(
            u.host_str(),
            Some(
                "graph.microsoft.com"
                    | "graph.microsoft.us"
                    | "dod-graph.microsoft.us"
                    | "microsoftgraph.chinacloudapi.cn"
                    | "127.0.0.1"
                    | "localhost"
                    | "[::1]"
            )
        ),
        Err(_) => false,
    }
}

pub(crate) async fn token(
    st: St,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let base = st.base_for(&headers);
    let tref = match resolve_tenant(&st, &tenant) {
        Some(t) => t,
        None => return tenant_not_found(&base, &tenant),
    };
    let form = parse_form(&body);
    let (mut client_id, mut secret) = (
        form.get("client_id").cloned(),
        form.get("client_secret").cloned(),
    );
    if let Some((id, s)) = basic_auth(&headers) {
        client_id.get_or_insert(id);
        secret.get_or_insert(s);
    }
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    let Some(client_id) = client_id else {
        return login_error(
            &base,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.".into(),
        );
    };
    let domain = st.read().initial_domain.clone();
    let client = client_kind(&st, &client_id);
    let (app_id, expected_secret, app_name) = match client {
        Client::Customer => (
            st.customer.client_id,
            st.customer.client_secret.clone(),
            "Latchkey Connector".to_string(),
        ),
        Client::Latchkey { consented } => {
            if grant == "client_credentials" && !consented {
                return app_not_found(&base, &client_id, &domain);
            }
            (
                st.latchkey.client_id,
                st.latchkey.client_secret.clone(),
                st.latchkey.display_name.clone(),
            )
        }
        Client::Unknown => return app_not_found(&base, &client_id, &domain),
    };
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return login_error(&base, StatusCode::UNAUTHORIZED, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".into());
    };
    if secret != expected_secret {
        return login_error(
            &base,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{app_id}'."
            ),
        );
    }
    let faults = st.faults();
    if matches!(client, Client::Customer) && faults.expired_secret {
        return login_error(
            &base,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000222,
            format!(
                "The provided client secret keys for app '{app_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
            ),
        );
    }
    match grant {
        "client_credentials" => {
            if matches!(tref, TenantRef::Multi(_)) {
                return login_error(&base, StatusCode::BAD_REQUEST, "invalid_request", 7000212, "The tenant is not specified. Client credential flows must use a tenant-specific authority.".into());
            }
            let Some(scope) = form.get("scope").filter(|s| !s.trim().is_empty()) else {
                return login_error(
                    &base,
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'scope'.".into(),
                );
            };
            let scopes: Vec<&str> = scope.split_whitespace().collect();
            if scopes.len() != 1 {
                return login_error(
                    &base,
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    70011,
                    format!(
                        "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                    ),
                );
            }
            let Some(resource) = scopes[0].strip_suffix("/.default") else {
                return login_error(
                    &base,
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    1002012,
                    format!(
                        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                    ),
                );
            };
            if !graph_resource_ok(resource) {
                let org = st.read().org_name.clone();
                return login_error(
                    &base,
                    StatusCode::BAD_REQUEST,
                    "invalid_resource",
                    500011,
                    format!(
                        "The resource principal named {resource} was not found in the tenant named {org}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
                    ),
                );
            }
            let roles = match client {
                Client::Customer => st.consent().customer_permissions.clone(),
                _ => st.latchkey.permissions.clone(),
            };
            let sp_id = app_sp_id(&st, app_id);
            match issue_access_token(&st, app_id, &app_name, sp_id, roles, vec![], None) {
                Ok((tok, lifetime)) => token_ok(json!({
                    "token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": tok
                })),
                Err(e) => server_error(&base, e),
            }
        }
        "authorization_code" => redeem_code(&st, &base, &form, app_id, &app_name),
        "refresh_token" => {
            let Some(rt) = form.get("refresh_token") else {
                return login_error(
                    &base,
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'refresh_token'."
                        .into(),
                );
            };
            let code = st.refresh_tokens().get(rt).cloned();
            match code {
                Some(c) if c.client_id == app_id => {
                    issue_user_tokens(&st, &base, &c, app_id, &app_name)
                }
                _ => login_error(
                    &base,
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.".into(),
                ),
            }
        }
        "" => login_error(
            &base,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.".into(),
        ),
        other => login_error(
            &base,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        ),
    }
}

fn token_ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [
            (
                http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            ),
            (http::header::CACHE_CONTROL, "no-store, no-cache"),
        ],
        v.to_string(),
    )
        .into_response()
}

fn server_error(base: &str, e: crate::error::SimError) -> Response {
    login_error(
        base,
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        90000,
        e.to_string(),
    )
}

fn app_sp_id(st: &State, app_id: Uuid) -> Uuid {
    let d = st.read();
    d.app_ids
        .get(&app_id)
        .map(|&i| d.sps[i as usize].id)
        .unwrap_or(app_id)
}

fn issue_access_token(
    st: &State,
    app_id: Uuid,
    app_name: &str,
    sp_id: Uuid,
    roles: Vec<String>,
    scopes: Vec<String>,
    user: Option<(Uuid, String, String, Uuid)>,
) -> Result<(String, u64), crate::error::SimError> {
    let lifetime = st.faults().token_lifetime_secs;
    let iat = now();
    let exp = iat + lifetime as i64;
    let tid = user
        .as_ref()
        .map(|u| u.3)
        .unwrap_or_else(|| st.read().tenant_id);
    let mut claims = json!({
        "aud": "https://graph.microsoft.com",
        "iss": format!("https://sts.windows.net/{tid}/"),
        "iat": iat, "nbf": iat, "exp": exp,
        "appid": app_id, "app_displayname": app_name,
        "appidacr": "1",
        "tid": tid,
        "uti": Uuid::new_v4().simple().to_string(),
        "ver": "1.0",
    });
    let obj = claims.as_object_mut().expect("claims object");
    match &user {
        Some((oid, upn, name, _)) => {
            obj.insert("idtyp".into(), "user".into());
            obj.insert("oid".into(), json!(oid));
            obj.insert("sub".into(), json!(oid));
            obj.insert("upn".into(), json!(upn));
            obj.insert("name".into(), json!(name));
            obj.insert("scp".into(), json!(scopes.join(" ")));
        }
        None => {
            obj.insert("idtyp".into(), "app".into());
            obj.insert("oid".into(), json!(sp_id));
            obj.insert("sub".into(), json!(sp_id));
            if !roles.is_empty() {
                obj.insert("roles".into(), json!(roles));
            }
        }
    }
    let tok = st.signer.sign(&claims)?;
    st.store_token(
        tok.clone(),
        TokenInfo {
            app_id,
            app_name: app_name.to_string(),
            sp_id,
            roles,
            scopes,
            exp,
        },
    );
    Ok((tok, lifetime))
}

fn redeem_code(
    st: &State,
    base: &str,
    form: &HashMap<String, String>,
    app_id: Uuid,
    app_name: &str,
) -> Response {
    let Some(code) = form.get("code") else {
        return login_error(
            base,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'code'.".into(),
        );
    };
    let mut codes = st.codes();
    let Some(c) = codes.get_mut(code) else {
        return login_error(
            base,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid.".into(),
        );
    };
    if c.used {
        return login_error(base, StatusCode::BAD_REQUEST, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.".into());
    }
    if c.expires <= now() {
        return login_error(base, StatusCode::BAD_REQUEST, "invalid_grant", 70008, "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.".into());
    }
    if c.client_id != app_id {
        return login_error(
            base,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            70000,
            "Provided grant is invalid or malformed.".into(),
        );
    }
    if form.get("redirect_uri").map(String::as_str) != Some(c.redirect_uri.as_str()) {
        return login_error(base, StatusCode::BAD_REQUEST, "invalid_grant", 500112, "The reply address does not match the reply address provided when requesting the authorization code.".into());
    }
    if let Some((challenge, method)) = &c.challenge {
        let ok = match form.get("code_verifier") {
            Some(v) if method == "S256" => {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(sha2::Sha256::digest(v.as_bytes()))
                    == *challenge
            }
            Some(v) => v == challenge,
            None => false,
        };
        if !ok {
            return login_error(base, StatusCode::BAD_REQUEST, "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request.".into());
        }
    }
    c.used = true;
    let c = c.clone();
    drop(codes);
    issue_user_tokens(st, base, &c, app_id, app_name)
}

fn issue_user_tokens(
    st: &State,
    base: &str,
    c: &AuthCode,
    app_id: Uuid,
    app_name: &str,
) -> Response {
    let (oid, upn, name) = {
        let d = st.read();
        let u = d.user(c.user as usize);
        (u.id, u.upn.to_string(), u.display_name.to_string())
    };
    let scopes: Vec<String> = c.scope.split_whitespace().map(str::to_string).collect();
    let delegated: Vec<String> = scopes
        .iter()
        .filter(|s| {
            !matches!(
                s.as_str(),
                "openid" | "profile" | "email" | "offline_access"
            )
        })
        .map(|s| s.rsplit('/').next().unwrap_or(s).to_string())
        .filter(|s| s != ".default")
        .collect();
    let (tok, lifetime) = match issue_access_token(
        st,
        app_id,
        app_name,
        app_id,
        vec![],
        delegated.clone(),
        Some((oid, upn.clone(), name.clone(), c.tenant)),
    ) {
        Ok(t) => t,
        Err(e) => return server_error(base, e),
    };
    let mut body = json!({
        "token_type": "Bearer",
        "scope": if delegated.is_empty() { "openid profile".to_string() } else { delegated.join(" ") },
        "expires_in": lifetime, "ext_expires_in": lifetime,
        "access_token": tok,
    });
    if scopes.iter().any(|s| s == "openid") {
        let iat = now();
        let mut claims = json!({
            "aud": app_id, "iss": format!("{base}/{}/v2.0", c.tenant),
            "iat": iat, "nbf": iat, "exp": iat + 3600,
            "name": name, "oid": oid, "preferred_username": upn,
            "sub": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(format!("{oid}{app_id}").as_bytes())[..24]),
            "tid": c.tenant, "ver": "2.0", "uti": Uuid::new_v4().simple().to_string(),
        });
        if let Some(n) = &c.nonce {
            claims["nonce"] = json!(n);
        }
        let alg = crate::signin::take_tamper(st, &mut claims);
        match crate::signin::sign_as(st, &claims, alg) {
            Ok(t) => body["id_token"] = json!(t),
            Err(e) => return server_error(base, e),
        }
    }
    if scopes.iter().any(|s| s == "offline_access") {
        let rt = format!("0.A{}", Uuid::new_v4().simple());
        st.refresh_tokens().insert(rt.clone(), c.clone());
        body["refresh_token"] = json!(rt);
    }
    token_ok(body)
}

fn consent_latchkey(st: &State) {
    let mut c = st.consent_mut();
    if c.latchkey_consented {
        return;
    }
    c.latchkey_consented = true;
    drop(c);
    let mut d = st.write();
    if d.app_ids.contains_key(&st.latchkey.client_id) {
        return;
    }
    let id = d.new_id();
    let i = d.sps.len();
    let app_id = st.latchkey.client_id;
    d.sps.push(ServicePrincipal {
        id,
        app_id,
        display_name: st.latchkey.display_name.clone(),
        sp_type: SpType::Application,
        owner_org: Some(Uuid::from_u128(0x1a7c_4e3e_0000_4000_8000_0000_0000_0001)),
        account_enabled: true,
        app_roles: vec![],
        tags: vec!["WindowsAzureActiveDirectoryIntegratedApp".into()],
        names: vec![app_id.to_string()],
        alternative_names: vec![],
        homepage: None,
        description: None,
        assignment_required: false,
        first_party: false,
        sso_mode: None,
        owners: vec![],
        assigned_to: vec![],
        sync_jobs: vec![],
        created: now(),
        deleted: None,
    });
    d.ids.insert(id, ObjRef::sp(i));
    d.app_ids.insert(app_id, i as u32);
    let target = d.target(ObjRef::sp(i));
    d.audit(
        "ApplicationManagement",
        "Consent to application",
        "Assign",
        None,
        vec![target],
    );
}

/// Validates the client id and redirect URI of a front-channel request; `Err` is the page to show.
fn front_channel_check(
    st: &State,
    q: &HashMap<String, String>,
) -> Result<(Uuid, String), Box<Response>> {
    let client_id = q.get("client_id").cloned().unwrap_or_default();
    let domain = st.read().initial_domain.clone();
    let app = match client_kind(st, &client_id) {
        Client::Unknown => {
            return Err(Box::new(error_page(
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory '{domain}'."
                ),
            )));
        }
        Client::Customer => st.customer.client_id,
        Client::Latchkey { .. } => st.latchkey.client_id,
    };
    let Some(redirect_uri) = q.get("redirect_uri").cloned() else {
        return Err(Box::new(error_page(
            900144,
            "The request body must contain the following parameter: 'redirect_uri'.",
        )));
    };
    let allowed = app == st.latchkey.client_id && st.latchkey.redirect_uris.contains(&redirect_uri);
    if !allowed {
        return Err(Box::new(error_page(
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal."
            ),
        )));
    }
    Ok((app, redirect_uri))
}

pub(crate) async fn authorize(
    st: St,
    Path(tenant): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if resolve_tenant(&st, &tenant).is_none() {
        return error_page(90002, &format!("Tenant '{tenant}' not found."));
    }
    let (app, redirect_uri) = match front_channel_check(&st, &q) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let state = q.get("state").cloned().unwrap_or_default();
    let err = |e: &str, d: &str| {
        redirect(with_params(
            &redirect_uri,
            &[("error", e), ("error_description", d), ("state", &state)],
        ))
    };
    if q.get("response_type").map(String::as_str) != Some("code") {
        return err(
            "unsupported_response_type",
            "AADSTS700054: response_type 'code' is required for this simulated flow.",
        );
    }
    let challenge = match (
        q.get("code_challenge"),
        q.get("code_challenge_method").map(String::as_str),
    ) {
        (Some(c), Some("S256")) => Some((c.clone(), "S256".to_string())),
        (Some(c), None | Some("plain")) => Some((c.clone(), "plain".to_string())),
        (Some(_), Some(_)) => {
            return err(
                "invalid_request",
                "AADSTS501491: Invalid size of Code_Challenge parameter or unsupported code_challenge_method.",
            );
        }
        (None, _) => None,
    };
    let outcome = st.consent().outcome;
    let tenant_id = match outcome {
        ConsentOutcome::Deny => {
            return err(
                "access_denied",
                "AADSTS65004: User declined to consent to access the app.",
            );
        }
        ConsentOutcome::WrongTenant => st.other_tenant,
        ConsentOutcome::Grant => st.read().tenant_id,
    };
    let user = match crate::signin::pick_user(&st, &format!("/{tenant}/oauth2/v2.0/authorize"), &q)
    {
        Ok(u) => u,
        Err(page) => return *page,
    };
    if outcome == ConsentOutcome::Grant
        && q.get("prompt").map(String::as_str) == Some("admin_consent")
        && app == st.latchkey.client_id
    {
        consent_latchkey(&st);
    }
    let code = format!("1.A{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let mut codes = st.codes();
    if codes.len() >= 10_000 {
        let t = now();
        codes.retain(|_, c| c.expires > t && !c.used);
    }
    codes.insert(
        code.clone(),
        AuthCode {
            client_id: app,
            redirect_uri: redirect_uri.clone(),
            challenge,
            nonce: q.get("nonce").cloned(),
            scope: q.get("scope").cloned().unwrap_or_else(|| "openid".into()),
            user,
            tenant: tenant_id,
            expires: now() + 600,
            used: false,
        },
    );
    drop(codes);
    let mut params = vec![("code", code.as_str()), ("state", state.as_str())];
    let sid = Uuid::new_v4().to_string();
    params.push(("session_state", &sid));
    redirect(with_params(&redirect_uri, &params))
}

fn admin_consent(st: &State, tenant: &str, q: &HashMap<String, String>, v2: bool) -> Response {
    if resolve_tenant(st, tenant).is_none() {
        return error_page(90002, &format!("Tenant '{tenant}' not found."));
    }
    if v2 && q.get("scope").is_none_or(|s| s.trim().is_empty()) {
        return error_page(
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    }
    let (app, redirect_uri) = match front_channel_check(st, q) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let state = q.get("state").cloned().unwrap_or_default();
    match st.consent().outcome {
        ConsentOutcome::Deny => {
            return if v2 {
                redirect(with_params(
                    &redirect_uri,
                    &[
                        ("admin_consent", "True"),
                        ("error", "consent_required"),
                        (
                            "error_description",
                            "AADSTS65004: The resource owner or authorization server denied the request.",
                        ),
                        ("state", &state),
                    ],
                ))
            } else {
                redirect(with_params(
                    &redirect_uri,
                    &[
                        ("error", "permission_denied"),
                        ("error_description", "The admin canceled the request"),
                        ("state", &state),
                    ],
                ))
            };
        }
        ConsentOutcome::WrongTenant => {
            let other = st.other_tenant.to_string();
            return redirect(consent_ok(
                &redirect_uri,
                &other,
                &state,
                v2.then(|| q.get("scope").cloned().unwrap_or_default()),
            ));
        }
        ConsentOutcome::Grant => {}
    }
    if app == st.latchkey.client_id {
        consent_latchkey(st);
    }
    let tid = st.read().tenant_id.to_string();
    redirect(consent_ok(
        &redirect_uri,
        &tid,
        &state,
        v2.then(|| q.get("scope").cloned().unwrap_or_default()),
    ))
}

fn consent_ok(redirect_uri: &str, tenant: &str, state: &str, scope: Option<String>) -> String {
    match scope {
        Some(scope) => with_params(
            redirect_uri,
            &[
                ("admin_consent", "True"),
                ("tenant", tenant),
                ("scope", &scope),
                ("state", state),
            ],
        ),
        None => with_params(
            redirect_uri,
            &[
                ("tenant", tenant),
                ("state", state),
                ("admin_consent", "True"),
            ],
        ),
    }
}

pub(crate) async fn admin_consent_v1(
    st: St,
    Path(tenant): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    admin_consent(&st, &tenant, &q, false)
}

pub(crate) async fn admin_consent_v2(
    st: St,
    Path(tenant): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    admin_consent(&st, &tenant, &q, true)
}

pub(crate) async fn openid_configuration(
    st: St,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let base = st.base_for(&headers);
    let (seg, issuer_tid) = match resolve_tenant(&st, &tenant) {
        None => return tenant_not_found(&base, &tenant),
        Some(TenantRef::Multi(m)) => (m, "{tenantid}".to_string()),
        Some(TenantRef::This) => {
            let t = st.read().tenant_id.to_string();
            (t.clone(), t)
        }
    };
    let doc = json!({
        "token_endpoint": format!("{base}/{seg}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{seg}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{issuer_tid}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{base}/oidc/userinfo"),
        "authorization_endpoint": format!("{base}/{seg}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{seg}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{seg}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": base.trim_start_matches("http://"),
        "rbac_url": "https://pas.windows.net",
    });
    (
        StatusCode::OK,
        [(
            http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        doc.to_string(),
    )
        .into_response()
}

pub(crate) async fn jwks(st: St, Path(tenant): Path<String>, headers: HeaderMap) -> Response {
    let base = st.base_for(&headers);
    let issuer = match resolve_tenant(&st, &tenant) {
        None => return tenant_not_found(&base, &tenant),
        Some(TenantRef::Multi(_)) => format!("{base}/{{tenantid}}/v2.0"),
        Some(TenantRef::This) => format!("{base}/{}/v2.0", st.read().tenant_id),
    };
    (
        StatusCode::OK,
        [(
            http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        st.signer.jwks(&issuer).to_string(),
    )
        .into_response()
}

/// Microsoft's own tenant id, re-exported for tests that check first-party apps.
pub const MICROSOFT_SERVICES_TENANT: Uuid = MICROSOFT_TENANT;
