//! Microsoft Graph (`/v1.0` and `/beta`): authentication, faults, error envelope and dispatch by path.

mod batch;
mod delta;
mod manager;
mod misc;
mod out;
mod read;
mod roles;
mod write;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::config::Throttle;
use crate::json::{fmt_ts, now};
use crate::rng::hash_unit;
use crate::server::{State, TokenInfo, json_response};

/// Marks a request dispatched from inside `$batch`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InBatch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ver {
    V1,
    Beta,
}

impl Ver {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ver::V1 => "v1.0",
            Ver::Beta => "beta",
        }
    }
}

/// A Graph error, rendered in Graph's envelope with the request's ids.
#[derive(Debug, Clone)]
pub(crate) struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<f64>,
}

pub(crate) type GResult = Result<Response, GraphError>;

impl GraphError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }
    pub(crate) fn unsupported_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }
    pub(crate) fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }
    pub(crate) fn denied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }
    pub(crate) fn segment(seg: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Resource not found for the segment '{seg}'."),
        )
    }
    fn unauthenticated(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    }

    fn render(&self, request_id: &str, client_request_id: &str) -> Response {
        let date = fmt_ts(now()).trim_end_matches('Z').to_string();
        let body = if self.code == "TooManyRequests" {
            json!({"error": {"code": self.code, "innerError": {"code": "429", "date": date, "message": "Please retry after", "request-id": request_id, "status": "429"}, "message": self.message}})
        } else {
            json!({"error": {"code": self.code, "message": self.message, "innerError": {"date": date, "request-id": request_id, "client-request-id": client_request_id}}})
        };
        let mut resp = json_response(self.status, body.to_string().into_bytes());
        if let Some(ra) = self.retry_after {
            let v = if ra.fract() == 0.0 {
                format!("{}", ra as u64)
            } else {
                format!("{ra}")
            };
            if let Ok(h) = v.parse() {
                resp.headers_mut().insert(http::header::RETRY_AFTER, h);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED
            && let Ok(h) = "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"".parse()
        {
            resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, h);
        }
        resp
    }
}

/// One Graph request after authentication.
pub(crate) struct GReq {
    pub ver: Ver,
    pub method: Method,
    /// Percent-decoded path segments after the version.
    pub segs: Vec<String>,
    /// The path after the version as received (for building next links).
    pub raw_path: String,
    pub raw_query: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub base: String,
    pub token: Arc<TokenInfo>,
    pub in_batch: bool,
}

impl GReq {
    /// A query option by name, with or without `$` (case-insensitive, like Graph).
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.trim_start_matches('$').eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn eventual(&self) -> bool {
        self.headers
            .get("consistencylevel")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("eventual"))
    }
    pub(crate) fn count_true(&self) -> bool {
        self.param("count")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
    /// Advanced query capabilities are on: `ConsistencyLevel: eventual` and `$count=true`.
    pub(crate) fn advanced(&self) -> bool {
        self.eventual() && self.count_true()
    }
    pub(crate) fn require(&self, perms: &[&str]) -> Result<(), GraphError> {
        if self.token.has_any(perms) {
            Ok(())
        } else {
            Err(GraphError::denied())
        }
    }
    pub(crate) fn context(&self, what: &str) -> String {
        format!("{}/{}/$metadata#{}", self.base, self.ver.as_str(), what)
    }
    /// The request's URL with `$skiptoken` replaced: Graph's `@odata.nextLink`.
    pub(crate) fn next_link(&self, token: &str) -> String {
        let kept: Vec<&str> = self
            .raw_query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let k = p.split('=').next().unwrap_or("");
                let k = k.replace("%24", "$");
                !k.eq_ignore_ascii_case("$skiptoken") && !k.eq_ignore_ascii_case("skiptoken")
            })
            .collect();
        let mut q = kept.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        format!(
            "{}/{}/{}?{}$skiptoken={}",
            self.base,
            self.ver.as_str(),
            self.raw_path,
            q,
            token
        )
    }
    pub(crate) fn json_body(&self) -> Result<serde_json::Value, GraphError> {
        if self.body.is_empty() {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Empty Payload. JSON content expected.",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", format!("Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format. ({e})"))
        })
    }
    /// The app that made the request, for audit records.
    pub(crate) fn actor(&self) -> Option<(Uuid, String, Uuid)> {
        Some((
            self.token.app_id,
            self.token.app_name.clone(),
            self.token.sp_id,
        ))
    }
}

pub(crate) async fn entry_v1(st: AxState<Arc<State>>, req: Request) -> Response {
    entry(st.0, Ver::V1, req).await
}

pub(crate) async fn entry_beta(st: AxState<Arc<State>>, req: Request) -> Response {
    entry(st.0, Ver::Beta, req).await
}

fn decode_seg(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let plus_safe = s.replace('+', "%2B");
    url::form_urlencoded::parse(format!("x={plus_safe}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// Splits `servicePrincipals(appId='...')` into `servicePrincipals` + `(appId='...')`.
fn split_key_segment(seg: &str) -> Vec<String> {
    if let Some(pos) = seg.find('(')
        && pos > 0
        && seg.ends_with(')')
        && !seg.contains("()")
    {
        return vec![seg[..pos].to_string(), seg[pos..].to_string()];
    }
    vec![seg.to_string()]
}

async fn entry(st: Arc<State>, ver: Ver, req: Request) -> Response {
    // Request ids: unique per server, without a random-number syscall on the hot path.
    let n = st.request_ids.fetch_add(1, Ordering::Relaxed);
    let request_id = Uuid::from_u128(
        ((crate::rng::mix(st.seed ^ n) as u128) << 64) | crate::rng::mix(n) as u128,
    )
    .to_string();
    let (parts, body) = req.into_parts();
    let client_request_id = parts
        .headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    let in_batch = parts.extensions.get::<InBatch>().is_some();
    let result = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(bytes) => handle(&st, ver, parts, bytes, in_batch).await,
        Err(_) => Err(GraphError::bad_request(
            "The request body could not be read.",
        )),
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => e.render(&request_id, &client_request_id),
    };
    let h = resp.headers_mut();
    if let Ok(v) = request_id.parse() {
        h.insert("request-id", v);
    }
    if let Ok(v) = client_request_id.parse() {
        h.insert("client-request-id", v);
    }
    resp
}

fn authenticate(st: &State, headers: &HeaderMap) -> Result<Arc<TokenInfo>, GraphError> {
    let raw = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let tok = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .unwrap_or("")
        .trim();
    if tok.is_empty() {
        return Err(GraphError::unauthenticated("Access token is empty."));
    }
    match st.token(tok) {
        Some(info) => {
            if info.exp <= now() {
                Err(GraphError::unauthenticated(
                    "Lifetime validation failed, the token is expired.",
                ))
            } else {
                Ok(info)
            }
        }
        None => {
            if crate::jwt::peek_claims(tok).is_some() {
                Err(GraphError::unauthenticated(
                    "Access token validation failure. Invalid audience.",
                ))
            } else {
                Err(GraphError::unauthenticated(
                    "CompactToken parsing failed with error code: 80049217",
                ))
            }
        }
    }
}

/// Injected faults: transient 503/504 by a seeded draw, then 429 by the configured throttle.
fn faults(st: &State, r: &GReq) -> Result<(), GraphError> {
    let f = st.faults();
    let n = st.graph_count.fetch_add(1, Ordering::Relaxed) + 1;
    if f.transient_rate > 0.0 && hash_unit(st.seed, n) < f.transient_rate {
        let mut e = if hash_unit(st.seed ^ 0x5a5a, n) < 0.5 {
            GraphError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                "Service unavailable. Please try again later.",
            )
        } else {
            GraphError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "gatewayTimeout",
                "The gateway did not receive a timely response from the upstream service.",
            )
        };
        if e.status == StatusCode::SERVICE_UNAVAILABLE {
            e.retry_after = Some(f.retry_after_secs);
        }
        return Err(e);
    }
    let throttled = |ra: f64| {
        let mut e = GraphError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Please retry again later.",
        );
        e.retry_after = Some(ra);
        e
    };
    match f.throttle {
        Throttle::Off => Ok(()),
        Throttle::EveryN { n: every } => {
            if every > 0 && n.is_multiple_of(every) {
                Err(throttled(f.retry_after_secs))
            } else {
                Ok(())
            }
        }
        Throttle::TokenBucket { scale } => {
            let users = st.read().users.len();
            // Identity & access limits per app per tenant, per 10 s, by tenant size.
            let per_10s = if users < 50 {
                3500.0
            } else if users <= 500 {
                5000.0
            } else {
                8000.0
            } * scale;
            let writes_per_150s = 3000.0 * scale;
            let write = r.method != Method::GET;
            let mut cost: f64 = if r.method == Method::GET {
                let collection = r.segs.len() % 2 == 1
                    || r.segs
                        .last()
                        .is_some_and(|s| s == "members" || s == "delta");
                let mut c = if collection { 2.0 } else { 1.0 };
                if r.param("select").is_some() {
                    c -= 1.0;
                }
                if r.param("expand").is_some() {
                    c += 1.0;
                }
                if r.param("select")
                    .is_some_and(|s| s.to_ascii_lowercase().contains("signinactivity"))
                {
                    c *= 2.0;
                }
                c
            } else {
                1.0
            };
            cost = cost.max(1.0);
            let mut buckets = st.buckets();
            let b = buckets.entry(r.token.app_id).or_default();
            let t = Instant::now();
            match b.last {
                None => {
                    b.tokens = per_10s;
                    b.writes = writes_per_150s;
                }
                Some(last) => {
                    let dt = t.duration_since(last).as_secs_f64();
                    b.tokens = (b.tokens + dt * per_10s / 10.0).min(per_10s);
                    b.writes = (b.writes + dt * writes_per_150s / 150.0).min(writes_per_150s);
                }
            }
            b.last = Some(t);
            if b.tokens < cost {
                let wait = ((cost - b.tokens) / (per_10s / 10.0) * 1000.0).ceil() / 1000.0;
                return Err(throttled(wait.max(0.001)));
            }
            if write && b.writes < 1.0 {
                let wait = ((1.0 - b.writes) / (writes_per_150s / 150.0) * 1000.0).ceil() / 1000.0;
                return Err(throttled(wait.max(0.001)));
            }
            b.tokens -= cost;
            if write {
                b.writes -= 1.0;
            }
            Ok(())
        }
    }
}

async fn handle(
    st: &Arc<State>,
    ver: Ver,
    parts: http::request::Parts,
    body: Bytes,
    in_batch: bool,
) -> GResult {
    let token = authenticate(st, &parts.headers)?;
    let prefix = format!("/{}/", ver.as_str());
    let path = parts.uri.path();
    let raw_path = path
        .strip_prefix(&prefix)
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    let segs: Vec<String> = raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .flat_map(|s| split_key_segment(&decode_seg(s)))
        .collect();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let query: Vec<(String, String)> = url::form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let base = st.base_for(&parts.headers);
    let r = GReq {
        ver,
        method: parts.method,
        segs,
        raw_path,
        raw_query,
        query,
        headers: parts.headers,
        body,
        base,
        token,
        in_batch,
    };
    faults(st, &r)?;
    if r.segs.first().map(String::as_str) == Some("$batch") {
        if r.in_batch {
            return Err(GraphError::bad_request(
                "Nested $batch requests are not supported.",
            ));
        }
        return batch::batch(st, &r).await;
    }
    dispatch(st, &r)
}

fn dispatch(st: &State, r: &GReq) -> GResult {
    let segs: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    let m = &r.method;
    let get = *m == Method::GET;
    let post = *m == Method::POST;
    let del = *m == Method::DELETE;
    let patch = *m == Method::PATCH;
    match segs.as_slice() {
        ["me", ..] => Err(GraphError::bad_request(
            "/me request is only valid with delegated authentication flow.",
        )),
        ["users"] if get => read::list_users(st, r),
        ["users"] if post => write::create_user(st, r),
        ["users", "$count"] if get => read::count(st, r, "users"),
        ["users", "delta" | "delta()"] if get => delta::users_delta(st, r),
        ["users", id] if get => read::get_user(st, r, id),
        ["users", id] if patch => write::update_user(st, r, id),
        ["users", id] if del => write::delete_user(st, r, id),
        ["users", id, "assignLicense"] if post => write::assign_license(st, r, id),
        ["users", id, "revokeSignInSessions"] if post => write::revoke_sessions(st, r, id),
        ["users", id, "memberOf"] if get => read::member_of(st, r, id),
        ["users", id, "appRoleAssignments"] if get => read::user_app_role_assignments(st, r, id),
        ["users", id, "manager"] if get => read::manager(st, r, id),
        ["users", id, "manager", "$ref"] if *m == Method::PUT => manager::set_manager(st, r, id),
        ["users", id, "licenseDetails"] if get => misc::license_details(st, r, id),
        ["groups"] if get => read::list_groups(st, r),
        ["groups", "$count"] if get => read::count(st, r, "groups"),
        ["groups", "delta" | "delta()"] if get => delta::groups_delta(st, r),
        ["groups", id] if get => read::get_group(st, r, id),
        ["groups", id] if patch => write::patch_group(st, r, id),
        ["groups", id, "transitiveMembers"] if get => read::transitive_members(st, r, id),
        ["groups", id, rel @ ("members" | "owners")] if get => {
            read::list_links(st, r, "groups", id, rel, None)
        }
        ["groups", id, rel @ ("members" | "owners"), "$count"] if get => {
            read::count_links(st, r, "groups", id, rel)
        }
        ["groups", id, rel @ ("members" | "owners"), cast]
            if get && cast.starts_with("microsoft.graph.") =>
        {
            read::list_links(st, r, "groups", id, rel, Some(cast))
        }
        ["groups", id, rel @ ("members" | "owners"), "$ref"] if post => {
            write::add_link(st, r, "groups", id, rel)
        }
        ["groups", id, rel @ ("members" | "owners"), mid, "$ref"] if del => {
            write::remove_link(st, r, "groups", id, rel, mid)
        }
        ["servicePrincipals"] if get => read::list_sps(st, r),
        ["servicePrincipals", "$count"] if get => read::count(st, r, "servicePrincipals"),
        ["servicePrincipals", id] if get => read::get_sp(st, r, id),
        ["servicePrincipals", id, "owners"] if get => {
            read::list_links(st, r, "servicePrincipals", id, "owners", None)
        }
        ["servicePrincipals", id, "owners", "$ref"] if post => {
            write::add_link(st, r, "servicePrincipals", id, "owners")
        }
        ["servicePrincipals", id, "owners", mid, "$ref"] if del => {
            write::remove_link(st, r, "servicePrincipals", id, "owners", mid)
        }
        ["servicePrincipals", id, "appRoleAssignedTo"] if get => read::list_assigned_to(st, r, id),
        ["servicePrincipals", id, "appRoleAssignedTo"] if post => {
            write::create_assignment(st, r, id)
        }
        ["servicePrincipals", id, "appRoleAssignedTo", aid] if del => {
            write::delete_assignment(st, r, id, aid)
        }
        ["servicePrincipals", id, "synchronization", "jobs"] if get => misc::sync_jobs(st, r, id),
        ["servicePrincipals", id, "synchronization", "jobs", job] if get => {
            misc::sync_job(st, r, id, job)
        }
        [
            "servicePrincipals",
            id,
            "synchronization",
            "jobs",
            job,
            "schema",
        ] if get => misc::sync_schema(st, r, id, job),
        [
            "servicePrincipals",
            id,
            "synchronization",
            "jobs",
            job,
            "start",
        ] if post => misc::sync_start(st, r, id, job),
        [
            "servicePrincipals",
            id,
            "synchronization",
            "jobs",
            job,
            "provisionOnDemand",
        ] if post => misc::provision_on_demand(st, r, id, job),
        ["directoryObjects", id] if get => read::get_directory_object(st, r, id),
        ["directoryRoles"] if get => roles::directory_roles(st, r),
        ["directoryRoles", id] if get => roles::directory_role(st, r, id),
        ["directoryRoles", id, "members"] if get => roles::directory_role_members(st, r, id),
        ["roleManagement", "directory", rest @ ..] => roles::role_management(st, r, rest),
        ["subscribedSkus"] if get => misc::subscribed_skus(st, r, None),
        ["subscribedSkus", id] if get => misc::subscribed_skus(st, r, Some(id)),
        ["organization"] if get => misc::organization(st, r, None),
        ["organization", id] if get => misc::organization(st, r, Some(id)),
        ["auditLogs", "directoryAudits"] if get => misc::directory_audits(st, r, None),
        ["auditLogs", "directoryAudits", id] if get => misc::directory_audits(st, r, Some(id)),
        [] => Ok(json_response(
            StatusCode::OK,
            json!({"@odata.context": r.context(""), "value": []})
                .to_string()
                .into_bytes(),
        )),
        [first, ..] => {
            let known = [
                "users",
                "groups",
                "servicePrincipals",
                "directoryObjects",
                "directoryRoles",
                "roleManagement",
                "subscribedSkus",
                "organization",
                "auditLogs",
            ];
            if known.contains(first) {
                Err(GraphError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Request_BadRequest",
                    format!(
                        "The method '{}' is not supported for this resource.",
                        r.method
                    ),
                ))
            } else {
                Err(GraphError::segment(first))
            }
        }
    }
}

pub(crate) fn no_content() -> Response {
    (StatusCode::NO_CONTENT, Body::empty()).into_response()
}

/// Permission sets for each kind of call (any one suffices).
pub(crate) mod perms {
    pub const USER_READ: &[&str] = &[
        "User.Read.All",
        "User.ReadWrite.All",
        "User.ReadBasic.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const USER_WRITE: &[&str] = &["User.ReadWrite.All", "Directory.ReadWrite.All"];
    pub const USER_ENABLE: &[&str] = &[
        "User.EnableDisableAccount.All",
        "User.ReadWrite.All",
        "Directory.ReadWrite.All",
    ];
    pub const USER_REVOKE: &[&str] = &[
        "User.RevokeSessions.All",
        "User.ReadWrite.All",
        "Directory.ReadWrite.All",
    ];
    pub const AUDIT_READ: &[&str] = &["AuditLog.Read.All"];
    pub const GROUP_READ: &[&str] = &[
        "Group.Read.All",
        "Group.ReadWrite.All",
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const GROUP_MEMBER_WRITE: &[&str] = &[
        "GroupMember.ReadWrite.All",
        "Group.ReadWrite.All",
        "Directory.ReadWrite.All",
    ];
    pub const SP_READ: &[&str] = &[
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const SP_WRITE: &[&str] = &["Application.ReadWrite.All", "Directory.ReadWrite.All"];
    pub const APP_ROLE_WRITE: &[&str] =
        &["AppRoleAssignment.ReadWrite.All", "Directory.ReadWrite.All"];
    pub const ROLE_READ: &[&str] = &[
        "RoleManagement.Read.Directory",
        "RoleManagement.Read.All",
        "RoleManagement.ReadWrite.Directory",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    pub const ROLE_WRITE: &[&str] = &["RoleManagement.ReadWrite.Directory"];
    pub const PIM_ELIGIBILITY_READ: &[&str] = &[
        "RoleEligibilitySchedule.Read.Directory",
        "RoleEligibilitySchedule.ReadWrite.Directory",
        "RoleManagement.Read.Directory",
        "RoleManagement.Read.All",
        "RoleManagement.ReadWrite.Directory",
    ];
    pub const PIM_ASSIGNMENT_READ: &[&str] = &[
        "RoleAssignmentSchedule.Read.Directory",
        "RoleAssignmentSchedule.ReadWrite.Directory",
        "RoleManagement.Read.Directory",
        "RoleManagement.Read.All",
        "RoleManagement.ReadWrite.Directory",
    ];
    pub const PIM_ELIGIBILITY_WRITE: &[&str] = &[
        "RoleEligibilitySchedule.ReadWrite.Directory",
        "RoleManagement.ReadWrite.Directory",
    ];
    pub const PIM_ASSIGNMENT_WRITE: &[&str] = &[
        "RoleAssignmentSchedule.ReadWrite.Directory",
        "RoleManagement.ReadWrite.Directory",
    ];
    pub const ORG_READ: &[&str] = &[
        "Organization.Read.All",
        "Organization.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "User.Read.All",
    ];
    pub const LICENSE_WRITE: &[&str] = &[
        "LicenseAssignment.ReadWrite.All",
        "User.ReadWrite.All",
        "Directory.ReadWrite.All",
    ];
    pub const SYNC_READ: &[&str] = &["Synchronization.Read.All", "Synchronization.ReadWrite.All"];
    pub const SYNC_WRITE: &[&str] = &["Synchronization.ReadWrite.All"];
}
