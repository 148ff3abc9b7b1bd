//! The Microsoft Graph HTTP client: query building, paging to the very end, retries within a
//! budget, token refresh on 401, typed errors, request statistics and `$batch`.
//!
//! Rules it follows (from the reference connector's bugs, see `DESIGN.md` "Graph hygiene"):
//! * `@odata.nextLink` is followed as given until it is absent — a short or empty page is not the end;
//!   a link to any other host than the configured Graph base is refused (it would carry our token).
//! * an advanced query ([`Query::advanced`]) sends `$count=true` and `ConsistencyLevel: eventual`,
//!   and the header is re-sent on every page (Graph's links do not carry headers).
//! * 429/503/504 (and 500/502) are retried after `Retry-After` (integer or fractional seconds, or an
//!   HTTP date), with exponential backoff and jitter when it is absent, bounded per request
//!   ([`RetryPolicy::max_attempts`]) and in total per client ([`RetryPolicy::retry_budget`]).
//!   A `Retry-After` pauses the whole client (every task sharing it), not just the request that
//!   got it: retrying the others into a drained token bucket only prolongs the throttling.
//! * a 401 gets one fresh token and one more try (a token that expired mid-run).
//! * tokens, secrets and `$skiptoken`s are never logged ([`redact_url`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use url::Url;

use crate::auth::{AuthError, TokenProvider};
use crate::endpoints::Endpoints;

/// The Graph API version a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ApiVersion {
    #[default]
    #[serde(rename = "v1.0")]
    V1,
    #[serde(rename = "beta")]
    Beta,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
        }
    }
}

/// A Graph request: version, path and OData query options.
///
/// ```
/// use latchkey_entra::graph::Query;
/// let q = Query::v1("groups")
///     .select(&["id", "displayName", "onPremisesSyncEnabled"])
///     .filter("onPremisesSyncEnabled ne true")
///     .advanced() // ne needs $count=true + ConsistencyLevel: eventual
///     .top(999);
/// assert_eq!(q.path_and_query(), "groups?$select=id,displayName,onPremisesSyncEnabled&$filter=onPremisesSyncEnabled%20ne%20true&$count=true&$top=999");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    version: ApiVersion,
    path: String,
    params: Vec<(String, String)>,
    eventual: bool,
    permission: Option<String>,
}

impl Query {
    /// `path` is relative to the version root, e.g. `users` or `groups/{id}/members`.
    pub fn new(version: ApiVersion, path: impl Into<String>) -> Self {
        Query {
            version,
            path: path.into().trim_matches('/').to_string(),
            params: Vec::new(),
            eventual: false,
            permission: None,
        }
    }
    pub fn v1(path: impl Into<String>) -> Self {
        Self::new(ApiVersion::V1, path)
    }
    pub fn beta(path: impl Into<String>) -> Self {
        Self::new(ApiVersion::Beta, path)
    }

    fn set(mut self, key: &str, value: String) -> Self {
        self.params.retain(|(k, _)| k != key);
        self.params.push((key.to_string(), value));
        self
    }

    pub fn select(self, fields: &[&str]) -> Self {
        self.set("$select", fields.join(","))
    }
    /// Page size (Graph allows 1..=999 on directory collections; 500 with `signInActivity`).
    pub fn top(self, n: u32) -> Self {
        self.set("$top", n.to_string())
    }
    pub fn filter(self, expr: impl Into<String>) -> Self {
        self.set("$filter", expr.into())
    }
    pub fn orderby(self, expr: impl Into<String>) -> Self {
        self.set("$orderby", expr.into())
    }
    pub fn expand(self, expr: impl Into<String>) -> Self {
        self.set("$expand", expr.into())
    }
    /// `$search` (always needs `ConsistencyLevel: eventual`).
    pub fn search(mut self, expr: impl Into<String>) -> Self {
        self.eventual = true;
        self.set("$search", expr.into())
    }
    /// Advanced query capabilities: `$count=true` plus `ConsistencyLevel: eventual` on every page.
    /// Needed for `ne`, `not`, `endsWith`, `$filter` with `$orderby`, and to get `@odata.count`.
    pub fn advanced(mut self) -> Self {
        self.eventual = true;
        self.set("$count", "true".into())
    }
    /// Any other query option (e.g. `$skiptoken`, `$deltatoken`).
    pub fn param(self, key: &str, value: impl Into<String>) -> Self {
        self.set(key, value.into())
    }
    /// The application permission this call needs, named in [`GraphError::PermissionMissing`] if
    /// Graph refuses it (otherwise guessed from the path).
    pub fn needs_permission(mut self, permission: impl Into<String>) -> Self {
        self.permission = Some(permission.into());
        self
    }

    pub fn version(&self) -> ApiVersion {
        self.version
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn is_advanced(&self) -> bool {
        self.eventual
    }

    /// `path?query`, relative to the version root (the form `$batch` wants, without the leading slash).
    pub fn path_and_query(&self) -> String {
        if self.params.is_empty() {
            return self.path.clone();
        }
        let q: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{}={}", encode_query(k), encode_query(v)))
            .collect();
        format!("{}?{}", self.path, q.join("&"))
    }

    fn url(&self, base: &Url) -> Result<Url, GraphError> {
        if self.path.contains(['?', '#', '\\'])
            || self
                .path
                .split('/')
                .any(|s| s == ".." || s == "." || s.is_empty())
        {
            return Err(GraphError::InvalidRequest(format!(
                "'{}' is not a Graph path",
                self.path
            )));
        }
        let s = format!(
            "{}/{}/{}",
            base.as_str().trim_end_matches('/'),
            self.version.as_str(),
            self.path_and_query()
        );
        let url = Url::parse(&s).map_err(|e| {
            GraphError::InvalidRequest(format!("'{}' is not a Graph path: {e}", self.path))
        })?;
        if !url
            .path()
            .starts_with(&format!("/{}/", self.version.as_str()))
        {
            return Err(GraphError::InvalidRequest(format!(
                "'{}' is not a Graph path",
                self.path
            )));
        }
        Ok(url)
    }
}

/// An OData string literal: `O'Brien` becomes `'O''Brien'`. Use it for every value put into a
/// `$filter`, so that input cannot change the filter's meaning.
pub fn odata_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Percent-encodes a query key or value, keeping the characters OData expressions use literally.
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'$'
            | b','
            | b'('
            | b')'
            | b'\''
            | b':'
            | b'@'
            | b'/'
            | b'*'
            | b'!' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Where the next page is: an `@odata.nextLink` (or the first page's URL) plus whether
/// `ConsistencyLevel: eventual` must be sent with it. Serialisable, so a sync can checkpoint it and
/// resume with [`GraphClient::page`]. It contains a `$skiptoken`: store it, do not log it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageCursor {
    pub url: String,
    #[serde(default)]
    pub eventual: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
}

impl fmt::Debug for PageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = Url::parse(&self.url)
            .map(|u| redact_url(&u))
            .unwrap_or_else(|_| "[unparseable]".into());
        f.debug_struct("PageCursor")
            .field("url", &shown)
            .field("eventual", &self.eventual)
            .finish()
    }
}

/// One page of a collection.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The next page, or `None` on the last page.
    pub next: Option<PageCursor>,
    /// `@odata.count` (first page of an advanced query only).
    pub count: Option<u64>,
    /// `@odata.deltaLink` on the last page of a delta query: where the next incremental run starts.
    pub delta_link: Option<PageCursor>,
}

#[derive(Deserialize)]
struct RawPage<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.count", default)]
    count: Option<u64>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

/// Reads one page of a collection as Graph sends it (`value`, `@odata.nextLink`,
/// `@odata.count`, `@odata.deltaLink`). The links must point at `endpoints`' Graph (they are
/// followed with the connector's token); they inherit `cursor`'s consistency and permission.
pub fn decode_page<T: DeserializeOwned>(
    body: &[u8],
    cursor: &PageCursor,
    endpoints: &Endpoints,
) -> Result<Page<T>, GraphError> {
    let raw: RawPage<T> =
        serde_json::from_slice(body).map_err(|e| GraphError::Decode(e.to_string()))?;
    let follow = |link: Option<String>| -> Result<Option<PageCursor>, GraphError> {
        link.map(|l| {
            Ok(PageCursor {
                url: checked_link(endpoints, &l)?.to_string(),
                eventual: cursor.eventual,
                permission: cursor.permission.clone(),
            })
        })
        .transpose()
    };
    Ok(Page {
        items: raw.value,
        next: follow(raw.next_link)?,
        count: raw.count,
        delta_link: follow(raw.delta_link)?,
    })
}

/// The answers of a `$batch` (`{"responses": [{"id", "status", "headers", "body"}]}`), whatever
/// their status. Answers without a string id cannot be matched to a request and are left out;
/// a status that is not an HTTP status reads as 0 (an error).
pub fn decode_batch(body: &[u8]) -> Result<Vec<BatchResponse>, GraphError> {
    // Answers are sliced out of the envelope and their bodies kept as JSON text: a page is
    // parsed once, by whoever reads it, into what it needs (an envelope of 20 pages parsed into
    // `Value`s would be the largest thing a sync holds).
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow, default)]
        responses: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        id: Option<Value>,
        #[serde(default)]
        status: Option<Value>,
        #[serde(default)]
        headers: Option<Value>,
        #[serde(default)]
        body: Option<Box<RawValue>>,
    }
    let parsed: Envelope =
        serde_json::from_slice(body).map_err(|e| GraphError::Decode(e.to_string()))?;
    let Some(items) = parsed
        .responses
        .and_then(|r| serde_json::from_str::<Vec<&RawValue>>(r.get()).ok())
    else {
        return Ok(Vec::new());
    };
    Ok(items
        .into_iter()
        .filter_map(|raw| {
            let item: Answer = serde_json::from_str(raw.get()).ok()?;
            let id = item.id.as_ref().and_then(Value::as_str)?.to_string();
            let status = item
                .status
                .as_ref()
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (100..=599).contains(s))
                .unwrap_or(0);
            let headers = item
                .headers
                .as_ref()
                .and_then(Value::as_object)
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let body = item.body.filter(|b| b.get() != "null");
            Some(BatchResponse {
                id,
                status,
                headers,
                body,
            })
        })
        .collect())
}

/// A link from Graph (a next or delta link, or a stored cursor), accepted only on `endpoints`' Graph.
fn checked_link(endpoints: &Endpoints, link: &str) -> Result<Url, GraphError> {
    let url = Url::parse(link)
        .map_err(|e| GraphError::Decode(format!("unreadable @odata.nextLink: {e}")))?;
    if !endpoints.is_graph_url(&url) {
        return Err(GraphError::UnsafeLink {
            host: url.host_str().unwrap_or("?").to_string(),
        });
    }
    Ok(url)
}

/// Retry limits of one client (one connector's job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request when it fails transiently (5xx, network), the first included.
    pub max_attempts: u32,
    /// Attempts per request while Graph answers 429. Under sustained throttling of many
    /// concurrent tasks a request may lose several rounds; the retry budget is the real bound.
    pub max_throttled_attempts: u32,
    /// Total time this client may spend waiting between retries, over all its requests.
    pub retry_budget: Duration,
    /// First backoff when Graph sends no `Retry-After`; doubled each attempt, with jitter.
    pub base_delay: Duration,
    /// Longest backoff without `Retry-After`.
    pub max_delay: Duration,
    /// Longest one attempt may take (sending, waiting, reading the body); a request that
    /// times out is retried like a 5xx.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            max_throttled_attempts: 50,
            retry_budget: Duration::from_secs(15 * 60),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(100),
        }
    }
}

/// Counters of one client's traffic (for sync-run stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStats {
    /// HTTP requests sent to Graph (each retry and each `$batch` counts once).
    pub requests: u64,
    /// 429 responses, including 429s of items inside `$batch`.
    pub throttled: u64,
    /// 5xx responses and network failures.
    pub transient_failures: u64,
    /// Requests (or batch items) sent again after a throttle or transient failure.
    pub retries: u64,
    /// New tokens fetched because Graph answered 401.
    pub token_refreshes: u64,
    /// Total time spent waiting before retries, in milliseconds.
    pub retry_wait_ms: u64,
}

#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    throttled: AtomicU64,
    transient: AtomicU64,
    retries: AtomicU64,
    refreshes: AtomicU64,
    retry_wait_ms: AtomicU64,
}

/// A failed Graph call, typed by what the caller (and the person reading it) should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// No token: the identity platform refused the credentials.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Graph refused even a freshly issued token.
    #[error(
        "Microsoft Graph rejected the access token even after a new one was obtained ({message}): check that the Microsoft Graph domain and the login authority belong to the same cloud."
    )]
    TokenRejected { message: String },
    /// 403 `Authorization_RequestDenied`.
    #[error("{}", permission_message(permission.as_deref(), request))]
    PermissionMissing {
        /// The application permission the call needs, when known.
        permission: Option<String>,
        /// `GET users` — method and path, no query.
        request: String,
        message: String,
    },
    /// The tenant lacks the Entra ID licence a feature needs.
    #[error("{}", premium_message(code, request))]
    NotPremium {
        code: String,
        request: String,
        message: String,
    },
    /// 429 after the retries allowed.
    #[error(
        "Microsoft Graph kept throttling requests (HTTP 429) after {attempts} attempt(s){}: the job will be retried later.",
        retry_after.map(|d| format!("; it asked to wait {:.1} s more than the retry budget allows", d.as_secs_f64())).unwrap_or_default()
    )]
    Throttled {
        retry_after: Option<Duration>,
        attempts: u32,
    },
    /// 5xx or a network failure after the retries allowed.
    #[error(
        "Microsoft Graph is temporarily unavailable ({message}) after {attempts} attempt(s): the job will be retried later."
    )]
    Transient {
        status: Option<u16>,
        message: String,
        attempts: u32,
    },
    /// 404.
    #[error("Not found in Microsoft Graph ({code}): {message}")]
    NotFound { code: String, message: String },
    /// Any other 4xx, with Graph's own code and message.
    #[error("Microsoft Graph refused the request (HTTP {status} {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// A link in a response pointed somewhere else than the configured Graph host.
    #[error(
        "Microsoft Graph returned a link to another host ({host}); it was not followed, so that the access token is not sent there."
    )]
    UnsafeLink { host: String },
    /// A response body that is not what Graph sends.
    #[error("Microsoft Graph sent a response that could not be read: {0}")]
    Decode(String),
    /// A request this client will not send (bad path, too many batch items).
    #[error("Invalid Graph request: {0}")]
    InvalidRequest(String),
}

fn permission_message(permission: Option<&str>, request: &str) -> String {
    match permission {
        Some(p) => format!(
            "Missing permission {p} needed to {request}: add it in Entra > App registrations > API permissions and grant admin consent."
        ),
        None => format!(
            "Microsoft Graph denied {request} (Authorization_RequestDenied): check the app's API permissions in Entra > App registrations and grant admin consent."
        ),
    }
}

fn premium_message(code: &str, request: &str) -> String {
    if code.eq_ignore_ascii_case("AadPremiumLicenseRequired") {
        format!(
            "{request} needs a Microsoft Entra ID P2 (or ID Governance) licence, which this tenant does not have (AadPremiumLicenseRequired)."
        )
    } else {
        format!(
            "{request} needs a Microsoft Entra ID P1 or P2 licence, which this tenant does not have ({code})."
        )
    }
}

impl GraphError {
    /// Worth retrying later without changing anything (the job, not the person, should act).
    pub fn is_transient(&self) -> bool {
        match self {
            GraphError::Auth(e) => e.is_transient(),
            GraphError::Throttled { .. } | GraphError::Transient { .. } => true,
            _ => false,
        }
    }
    /// Graph's error code, when there is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::NotPremium { code, .. }
            | GraphError::NotFound { code, .. }
            | GraphError::Refused { code, .. } => Some(code),
            GraphError::PermissionMissing { .. } => Some("Authorization_RequestDenied"),
            GraphError::TokenRejected { .. } => Some("InvalidAuthenticationToken"),
            GraphError::Throttled { .. } => Some("TooManyRequests"),
            _ => None,
        }
    }
    /// Graph's message, when there is one (e.g. to recognise "already exist" on a provisioning call).
    pub fn graph_message(&self) -> Option<&str> {
        match self {
            GraphError::PermissionMissing { message, .. }
            | GraphError::NotPremium { message, .. }
            | GraphError::NotFound { message, .. }
            | GraphError::Refused { message, .. } => Some(message),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self, GraphError::NotFound { .. })
    }

    /// Graph refused an add because it is already there ("One or more added object references
    /// already exist ...", "Permission being assigned already exists on the object", "Another object
    /// with the same value ... already exists"): provisioning treats a grant like this as done.
    pub fn is_already_exists(&self) -> bool {
        match self {
            GraphError::Refused {
                status: 400 | 409,
                message,
                ..
            } => {
                let m = message.to_ascii_lowercase();
                m.contains("already exist")
            }
            _ => false,
        }
    }

    /// Graph refused a removal because it is already gone (404, or "One or more removed object
    /// references do not exist ..."): provisioning treats a revoke like this as done.
    pub fn is_already_absent(&self) -> bool {
        match self {
            GraphError::NotFound { .. } => true,
            GraphError::Refused {
                status: 400,
                message,
                ..
            } => message
                .to_ascii_lowercase()
                .contains("removed object references do not exist"),
            _ => false,
        }
    }
}

#[derive(Deserialize, Default)]
struct ErrorEnvelope {
    #[serde(default)]
    error: ErrorBody,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

fn parse_error_body(body: &[u8]) -> (String, String) {
    let env: ErrorEnvelope = serde_json::from_slice(body).unwrap_or_default();
    (env.error.code, env.error.message)
}

/// Maps a non-success, non-retried Graph answer.
pub fn map_error(
    status: u16,
    body: &[u8],
    method: &Method,
    path: &str,
    query: Option<&str>,
    hint: Option<&str>,
) -> GraphError {
    let (code, message) = parse_error_body(body);
    let request = format!("{method} {path}");
    if code.eq_ignore_ascii_case("AadPremiumLicenseRequired")
        || code.eq_ignore_ascii_case("Authentication_RequestFromNonPremiumTenantOrB2CTenant")
    {
        return GraphError::NotPremium {
            code,
            request,
            message,
        };
    }
    match status {
        403 => GraphError::PermissionMissing {
            permission: hint
                .map(str::to_string)
                .or_else(|| needed_permission(method, path, query).map(str::to_string)),
            request,
            message,
        },
        404 => GraphError::NotFound {
            code: if code.is_empty() {
                "NotFound".into()
            } else {
                code
            },
            message,
        },
        _ => GraphError::Refused {
            status,
            code: if code.is_empty() {
                format!("HTTP{status}")
            } else {
                code
            },
            message: if message.is_empty() {
                StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("")
                    .to_string()
            } else {
                message
            },
        },
    }
}

/// The application permission (from the customer guide's sets) a Graph call needs, by method and
/// path relative to the version root. `None` when not known.
pub fn needed_permission(method: &Method, path: &str, query: Option<&str>) -> Option<&'static str> {
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.split('(').next().unwrap_or(s).to_ascii_lowercase())
        .collect();
    let has = |name: &str| segs.iter().any(|s| s == name);
    let has_prefix = |p: &str| segs.iter().any(|s| s.starts_with(p));
    let write = *method != Method::GET && *method != Method::HEAD;
    let sign_in = query.is_some_and(|q| q.to_ascii_lowercase().contains("signinactivity"));
    Some(match segs.first()?.as_str() {
        "users" if sign_in => "AuditLog.Read.All",
        "users" if has("assignlicense") || write => "User.ReadWrite.All",
        "users" if has("mailboxsettings") => "MailboxSettings.Read",
        "users" => "User.Read.All",
        "groups" if has("members") && write => "GroupMember.ReadWrite.All",
        "groups" if has("members") => "GroupMember.Read.All",
        "groups" if write => "Group.ReadWrite.All",
        "groups" => "Group.Read.All",
        "serviceprincipals" | "applications" if has("synchronization") => {
            "Synchronization.ReadWrite.All"
        }
        "serviceprincipals" if (has("approleassignedto") || has("approleassignments")) && write => {
            "AppRoleAssignment.ReadWrite.All"
        }
        "serviceprincipals" | "applications" if write => "Application.ReadWrite.All",
        "serviceprincipals" | "applications" => "Application.Read.All",
        "rolemanagement" if has_prefix("roleeligibilityschedule") && !write => {
            "RoleEligibilitySchedule.Read.Directory"
        }
        "rolemanagement" if has_prefix("roleassignmentschedule") && !write => {
            "RoleAssignmentSchedule.Read.Directory"
        }
        "rolemanagement" if write => "RoleManagement.ReadWrite.Directory",
        "rolemanagement" | "directoryroles" => "RoleManagement.Read.Directory",
        "auditlogs" => "AuditLog.Read.All",
        "organization" | "subscribedskus" | "directoryobjects" | "domains" => "Directory.Read.All",
        _ => return None,
    })
}

/// A URL for logs: path and query keys, with the values of anything that may carry a credential or
/// a paging token replaced by `***`.
pub fn redact_url(url: &Url) -> String {
    const SENSITIVE: [&str; 12] = [
        "skiptoken",
        "deltatoken",
        "code",
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "client_secret",
        "secret",
        "password",
        "sig",
        "state",
    ];
    let mut out = format!("{}{}", url.origin().ascii_serialization(), url.path());
    if let Some(q) = url.query() {
        let parts: Vec<String> = q
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let key = k.replace("%24", "$");
                let bare = key.trim_start_matches('$').to_ascii_lowercase();
                if SENSITIVE
                    .iter()
                    .any(|s| bare == *s || bare.ends_with("token") || bare.contains("secret"))
                {
                    format!("{k}=***")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

/// A transport error without its URL (reqwest's includes the full URL, skiptokens and all).
pub(crate) fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response was cut off"
    } else {
        "request failed"
    };
    let mut inner = String::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        inner = s.to_string();
        src = s.source();
    }
    if inner.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {inner}")
    }
}

/// A successful answer to [`GraphClient::send`].
#[derive(Debug, Clone)]
pub struct GraphResponse {
    pub status: u16,
    /// The JSON body (`None` for 204 and empty bodies).
    pub body: Option<Value>,
    /// `Location`, when Graph sent one (created resources).
    pub location: Option<String>,
}

/// One request inside a `$batch`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRequest {
    pub id: String,
    pub method: Method,
    /// Relative to the version root, e.g. `users/{id}?$select=id`.
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<Value>,
}

impl BatchRequest {
    /// A GET of `query` (its version must match the batch's); advanced queries carry their header.
    pub fn get(id: impl Into<String>, query: &Query) -> Self {
        let mut headers = BTreeMap::new();
        if query.eventual {
            headers.insert("ConsistencyLevel".to_string(), "eventual".to_string());
        }
        BatchRequest {
            id: id.into(),
            method: Method::GET,
            url: query.path_and_query(),
            headers,
            body: None,
        }
    }

    /// Any method with an optional JSON body.
    pub fn new(id: impl Into<String>, method: Method, query: &Query, body: Option<Value>) -> Self {
        let mut r = Self::get(id, query);
        r.method = method;
        if body.is_some() {
            r.headers
                .insert("Content-Type".to_string(), "application/json".to_string());
        }
        r.body = body;
        r
    }
}

/// One answer inside a `$batch` (successful: 2xx). The body stays JSON text until read.
#[derive(Debug, Clone)]
pub struct BatchResponse {
    pub id: String,
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Option<Box<RawValue>>,
}

impl BatchResponse {
    /// The body read as `T` (no body reads as JSON `null`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, GraphError> {
        serde_json::from_str(self.body.as_deref().map_or("null", RawValue::get))
            .map_err(|e| GraphError::Decode(e.to_string()))
    }

    /// The body as a JSON value, if there is one.
    pub fn value(&self) -> Option<Value> {
        self.json::<Option<Value>>().ok().flatten()
    }
}

/// A Microsoft Graph client for one connector. Cheap to clone (shared token cache, statistics and
/// retry budget); `Send + Sync`, so one client can serve many concurrent tasks of a job.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    tokens: Arc<TokenProvider>,
    policy: RetryPolicy,
    stats: Stats,
    budget_used_ms: AtomicU64,
    jitter: AtomicU64,
    /// No request leaves before this instant (set from `Retry-After`).
    paused_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field(
                "graph_base",
                &self.inner.tokens.endpoints().graph_base().as_str(),
            )
            .field("tenant", self.inner.tokens.tenant())
            .field("policy", &self.inner.policy)
            .finish()
    }
}

enum Attempt {
    Done(StatusCode, HeaderMap, Bytes),
    /// An answer that must not be retried (a body over [`MAX_RESPONSE_BYTES`]).
    Fatal(GraphError),
    /// A transport failure; `sent` when the request may have reached Graph (not a connect error).
    Failed {
        err: GraphError,
        sent: bool,
    },
}

/// Whether sending `method` twice has the effect of sending it once. A POST that may have reached
/// Graph is not repeated after a network error or an ambiguous 5xx (500/502/504): repeating
/// "create user" could create two. 429 and 503 mean "not processed" and are retried for all.
/// (A `$batch` is a POST, but repeatable when none of its items is.)
fn idempotent(method: &Method) -> bool {
    *method != Method::POST
}

impl GraphClient {
    /// `http` should come from [`crate::endpoints::http_client`]; the Graph base comes from the
    /// token provider's endpoints.
    pub fn new(http: reqwest::Client, tokens: Arc<TokenProvider>) -> Self {
        Self::with_policy(http, tokens, RetryPolicy::default())
    }

    pub fn with_policy(
        http: reqwest::Client,
        tokens: Arc<TokenProvider>,
        policy: RetryPolicy,
    ) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        GraphClient {
            inner: Arc::new(Inner {
                http,
                tokens,
                policy,
                stats: Stats::default(),
                budget_used_ms: AtomicU64::new(0),
                jitter: AtomicU64::new(seed | 1),
                paused_until: std::sync::Mutex::new(None),
            }),
        }
    }

    pub fn tokens(&self) -> &Arc<TokenProvider> {
        &self.inner.tokens
    }

    /// Counters since the client was created.
    pub fn stats(&self) -> RequestStats {
        let s = &self.inner.stats;
        RequestStats {
            requests: s.requests.load(Ordering::Relaxed),
            throttled: s.throttled.load(Ordering::Relaxed),
            transient_failures: s.transient.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            token_refreshes: s.refreshes.load(Ordering::Relaxed),
            retry_wait_ms: s.retry_wait_ms.load(Ordering::Relaxed),
        }
    }

    fn base(&self) -> &Url {
        self.inner.tokens.endpoints().graph_base()
    }

    /// The body of a `.../members/$ref`-style call: `{"@odata.id": "{graph base}/v1.0/directoryObjects/{id}"}`,
    /// on the connector's own Graph host (a national cloud's, not always graph.microsoft.com).
    pub fn directory_object_ref(&self, object_id: &uuid::Uuid) -> Value {
        serde_json::json!({
            "@odata.id": format!("{}/v1.0/directoryObjects/{}", self.base().as_str().trim_end_matches('/'), object_id.hyphenated())
        })
    }

    /// The cursor of the first page of `query`.
    pub fn cursor(&self, query: &Query) -> Result<PageCursor, GraphError> {
        Ok(PageCursor {
            url: query.url(self.base())?.to_string(),
            eventual: query.eventual,
            permission: query.permission.clone(),
        })
    }

    /// GETs one page (the first page's cursor from [`GraphClient::cursor`], or a checkpointed one).
    pub async fn page<T: DeserializeOwned>(
        &self,
        cursor: &PageCursor,
    ) -> Result<Page<T>, GraphError> {
        // Cursors come back from storage and delta links: check the host like any nextLink.
        let url = self.checked_link(&cursor.url)?;
        let body = self
            .execute(
                Method::GET,
                url,
                cursor.eventual,
                None,
                cursor.permission.as_deref(),
                true,
            )
            .await?
            .2;
        decode_page(&body, cursor, self.inner.tokens.endpoints())
    }

    /// The pages of a collection, fetched one at a time as the stream is polled, until Graph sends
    /// no `@odata.nextLink`. Only the current page is held in memory. The stream ends after the
    /// first error.
    pub fn pages<T>(&self, query: Query) -> BoxStream<'static, Result<Page<T>, GraphError>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.pages_from(self.cursor(&query))
    }

    /// Like [`GraphClient::pages`], resuming at a checkpointed cursor.
    pub fn pages_from<T>(
        &self,
        start: Result<PageCursor, GraphError>,
    ) -> BoxStream<'static, Result<Page<T>, GraphError>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let client = self.clone();
        stream::try_unfold(Some(start), move |state| {
            let client = client.clone();
            async move {
                match state {
                    None => Ok(None),
                    Some(Err(e)) => Err(e),
                    Some(Ok(cursor)) => {
                        let page: Page<T> = client.page(&cursor).await?;
                        let next = page.next.clone().map(Ok);
                        Ok(Some((page, next)))
                    }
                }
            }
        })
        .boxed()
    }

    /// The items of a collection across all its pages.
    pub fn items<T>(&self, query: Query) -> BoxStream<'static, Result<T, GraphError>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.pages::<T>(query)
            .map_ok(|p| stream::iter(p.items.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// GETs a single resource (or a whole non-paged response) as `T`.
    pub async fn get<T: DeserializeOwned>(&self, query: &Query) -> Result<T, GraphError> {
        let url = query.url(self.base())?;
        let body = self
            .execute(
                Method::GET,
                url,
                query.eventual,
                None,
                query.permission.as_deref(),
                true,
            )
            .await?
            .2;
        serde_json::from_slice(&body).map_err(|e| GraphError::Decode(e.to_string()))
    }

    /// Sends any method with an optional JSON body; retries and maps errors like GETs.
    pub async fn send(
        &self,
        method: Method,
        query: &Query,
        body: Option<&Value>,
    ) -> Result<GraphResponse, GraphError> {
        let url = query.url(self.base())?;
        let repeatable = idempotent(&method);
        let (status, headers, bytes) = self
            .execute(
                method,
                url,
                query.eventual,
                body,
                query.permission.as_deref(),
                repeatable,
            )
            .await?;
        let body = if bytes.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&bytes).map_err(|e| GraphError::Decode(e.to_string()))?)
        };
        Ok(GraphResponse {
            status: status.as_u16(),
            body,
            location: headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        })
    }

    /// `POST /$batch` with up to 20 requests. Items answered 429/503/504 are sent again (after the
    /// longest `Retry-After` among them) within the retry limits; the result has one entry per
    /// request, in request order, each the item's success or its typed error.
    pub async fn batch(
        &self,
        version: ApiVersion,
        requests: Vec<BatchRequest>,
    ) -> Result<Vec<Result<BatchResponse, GraphError>>, GraphError> {
        if requests.len() > 20 {
            return Err(GraphError::InvalidRequest(format!(
                "$batch takes at most 20 requests, not {}",
                requests.len()
            )));
        }
        let repeatable = requests.iter().all(|r| idempotent(&r.method));
        let mut ids: Vec<&str> = requests.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != requests.len() {
            return Err(GraphError::InvalidRequest(
                "$batch request ids must be unique".into(),
            ));
        }
        let url = Query::new(version, "$batch").url(self.base())?;
        let mut results: Vec<Option<Result<BatchResponse, GraphError>>> =
            vec![None; requests.len()];
        let mut pending: Vec<usize> = (0..requests.len()).collect();
        let mut attempt = 0u32;
        while !pending.is_empty() {
            attempt += 1;
            let payload = serde_json::json!({
                "requests": pending.iter().map(|&i| {
                    let r = &requests[i];
                    let mut v = serde_json::json!({"id": r.id, "method": r.method.as_str(), "url": format!("/{}", r.url.trim_start_matches('/'))});
                    if !r.headers.is_empty() { v["headers"] = serde_json::json!(r.headers); }
                    if let Some(b) = &r.body { v["body"] = b.clone(); }
                    v
                }).collect::<Vec<_>>()
            });
            let (_, _, bytes) = self
                .execute(
                    Method::POST,
                    url.clone(),
                    false,
                    Some(&payload),
                    None,
                    repeatable,
                )
                .await?;
            let mut responses: HashMap<String, BatchResponse> = HashMap::new();
            for answer in decode_batch(&bytes)? {
                // The first answer for an id is the one taken.
                responses.entry(answer.id.clone()).or_insert(answer);
            }
            drop(bytes);
            let mut retry: Vec<usize> = Vec::new();
            let mut wait: Option<Duration> = None;
            let mut last_status = 0u16;
            for &i in &pending {
                let r = &requests[i];
                let Some(item) = responses.remove(&r.id) else {
                    results[i] = Some(Err(GraphError::Decode(format!(
                        "$batch answer has no response for request '{}'",
                        r.id
                    ))));
                    continue;
                };
                let BatchResponse {
                    status,
                    headers,
                    body,
                    ..
                } = item;
                if (200..300).contains(&status) {
                    results[i] = Some(Ok(BatchResponse {
                        id: r.id.clone(),
                        status,
                        headers,
                        body,
                    }));
                    continue;
                }
                if matches!(status, 429 | 503)
                    || (matches!(status, 500 | 502 | 504) && idempotent(&r.method))
                {
                    if status == 429 {
                        self.inner.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.inner.stats.transient.fetch_add(1, Ordering::Relaxed);
                    }
                    let ra = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                        .and_then(|(_, v)| parse_retry_after(v));
                    wait = match (wait, ra) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                    last_status = status;
                    retry.push(i);
                    continue;
                }
                let bytes = body
                    .as_ref()
                    .map(|b| b.get().as_bytes().to_vec())
                    .unwrap_or_default();
                let (path, query) = r
                    .url
                    .split_once('?')
                    .map(|(p, q)| (p, Some(q)))
                    .unwrap_or((r.url.as_str(), None));
                results[i] = Some(Err(map_error(
                    status,
                    &bytes,
                    &r.method,
                    path.trim_start_matches('/'),
                    query,
                    None,
                )));
            }
            if retry.is_empty() {
                break;
            }
            let limit = if last_status == 429 {
                self.inner.policy.max_throttled_attempts
            } else {
                self.inner.policy.max_attempts
            };
            let delay = match wait {
                Some(_) => Duration::ZERO,
                None => self.backoff(attempt),
            };
            if attempt >= limit
                || !match wait {
                    Some(ra) => self.pause_all(ra),
                    None => self.take_budget(delay),
                }
            {
                for &i in &retry {
                    results[i] = Some(Err(if last_status == 429 {
                        GraphError::Throttled {
                            retry_after: wait,
                            attempts: attempt,
                        }
                    } else {
                        GraphError::Transient {
                            status: Some(last_status),
                            message: format!("HTTP {last_status} inside $batch"),
                            attempts: attempt,
                        }
                    }));
                }
                break;
            }
            self.inner
                .stats
                .retries
                .fetch_add(retry.len() as u64, Ordering::Relaxed);
            tracing::debug!(
                items = retry.len(),
                delay_ms = delay.as_millis() as u64,
                "retrying $batch items"
            );
            tokio::time::sleep(delay).await;
            pending = retry;
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(GraphError::Decode("$batch item was not answered".into())))
            })
            .collect())
    }

    /// Refuses a link (nextLink) that leaves the configured Graph host.
    fn checked_link(&self, link: &str) -> Result<Url, GraphError> {
        checked_link(self.inner.tokens.endpoints(), link)
    }

    /// Reserves `delay` from the client's retry budget; false when it would overrun it.
    fn take_budget(&self, delay: Duration) -> bool {
        let ms = delay.as_millis() as u64;
        let limit = self.inner.policy.retry_budget.as_millis() as u64;
        let mut cur = self.inner.budget_used_ms.load(Ordering::Relaxed);
        loop {
            if cur.saturating_add(ms) > limit {
                return false;
            }
            match self.inner.budget_used_ms.compare_exchange_weak(
                cur,
                cur + ms,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.inner
                        .stats
                        .retry_wait_ms
                        .fetch_add(ms, Ordering::Relaxed);
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Waits while the client is paused by a `Retry-After`.
    async fn wait_if_paused(&self) {
        loop {
            let until = *self
                .inner
                .paused_until
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match until {
                Some(t) if t > std::time::Instant::now() => {
                    tokio::time::sleep_until(t.into()).await
                }
                _ => return,
            }
        }
    }

    /// Pauses every request of this client for `retry_after` (plus up to 10 % jitter, so that
    /// the waiting requests do not all return in the same millisecond). The retry budget is charged
    /// with the wall-clock time the pause is extended by, once for all waiting requests. False when
    /// the budget does not allow it.
    fn pause_all(&self, retry_after: Duration) -> bool {
        let delay = retry_after.mul_f64(1.0 + 0.1 * self.unit_random());
        let now = std::time::Instant::now();
        let target = now + delay;
        let mut until = self
            .inner
            .paused_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let current = until.filter(|t| *t > now).unwrap_or(now);
        if target <= current {
            return true;
        }
        if !self.take_budget(target - current) {
            return false;
        }
        *until = Some(target);
        true
    }

    fn unit_random(&self) -> f64 {
        // xorshift: jitter needs spread, not cryptographic quality.
        let mut x = self.inner.jitter.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.inner.jitter.store(x, Ordering::Relaxed);
        (x % 1000) as f64 / 1000.0
    }

    /// Exponential backoff with jitter in [d/2, d].
    fn backoff(&self, attempt: u32) -> Duration {
        let p = &self.inner.policy;
        let exp = p
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let d = exp.min(p.max_delay);
        d.mul_f64(0.5 + 0.5 * self.unit_random())
    }

    async fn execute(
        &self,
        method: Method,
        url: Url,
        eventual: bool,
        body: Option<&Value>,
        hint: Option<&str>,
        repeatable: bool,
    ) -> Result<(StatusCode, HeaderMap, Bytes), GraphError> {
        let version_prefix = url
            .path()
            .trim_start_matches('/')
            .split_once('/')
            .map(|(v, _)| v.len() + 2)
            .unwrap_or(0);
        let rel_path = url.path().get(version_prefix..).unwrap_or("").to_string();
        let shown = redact_url(&url);
        let mut attempt = 0u32;
        let mut failures = 0u32;
        let mut throttles = 0u32;
        let mut refreshed = false;
        loop {
            attempt += 1;
            self.wait_if_paused().await;
            // The cached token (renewed when it ages during long retry waits, or after a 401).
            let token = self.inner.tokens.token().await?;
            let outcome = self.attempt(&method, &url, eventual, body, &token).await;
            let (status, headers, bytes) = match outcome {
                Attempt::Done(s, h, b) => (s, h, b),
                Attempt::Fatal(err) => return Err(err),
                Attempt::Failed { err, sent } => {
                    self.inner.stats.transient.fetch_add(1, Ordering::Relaxed);
                    failures += 1;
                    let delay = self.backoff(failures);
                    if (sent && !repeatable)
                        || failures >= self.inner.policy.max_attempts
                        || !self.take_budget(delay)
                    {
                        return Err(match err {
                            GraphError::Transient {
                                status, message, ..
                            } => GraphError::Transient {
                                status,
                                message,
                                attempts: attempt,
                            },
                            other => other,
                        });
                    }
                    tracing::warn!(request = %shown, attempt, error = %err, "Graph request failed; retrying");
                    self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            if status.is_success() {
                return Ok((status, headers, bytes));
            }
            let code = status.as_u16();
            if code == 401 {
                let (_, message) = parse_error_body(&bytes);
                if refreshed {
                    return Err(GraphError::TokenRejected { message });
                }
                refreshed = true;
                self.inner.stats.refreshes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(request = %shown, "Graph rejected the access token; fetching a new one");
                self.inner.tokens.refresh(&token).await?;
                continue;
            }
            if matches!(code, 429 | 500 | 502 | 503 | 504) {
                let throttled = code == 429;
                let exhausted = if throttled {
                    self.inner.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    throttles += 1;
                    throttles >= self.inner.policy.max_throttled_attempts
                } else {
                    self.inner.stats.transient.fetch_add(1, Ordering::Relaxed);
                    failures += 1;
                    failures >= self.inner.policy.max_attempts
                };
                let retry_after = headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let ambiguous = !matches!(code, 429 | 503) && !repeatable;
                // With Retry-After the whole client pauses; without it this request backs off.
                let delay = match retry_after {
                    Some(_) => Duration::ZERO,
                    None => self.backoff(failures.max(throttles)),
                };
                if ambiguous
                    || exhausted
                    || !match retry_after {
                        Some(ra) => self.pause_all(ra),
                        None => self.take_budget(delay),
                    }
                {
                    return Err(if throttled {
                        GraphError::Throttled {
                            retry_after,
                            attempts: attempt,
                        }
                    } else {
                        let (gcode, message) = parse_error_body(&bytes);
                        GraphError::Transient {
                            status: Some(code),
                            message: if gcode.is_empty() {
                                format!("HTTP {code}")
                            } else {
                                format!("HTTP {code} {gcode}: {message}")
                            },
                            attempts: attempt,
                        }
                    });
                }
                tracing::debug!(request = %shown, status = code, attempt, delay_ms = retry_after.unwrap_or(delay).as_millis() as u64, "Graph asked to retry");
                self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                continue;
            }
            let err = map_error(code, &bytes, &method, &rel_path, url.query(), hint);
            tracing::debug!(request = %shown, status = code, error = %err, "Graph refused the request");
            return Err(err);
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        eventual: bool,
        body: Option<&Value>,
        token: &crate::auth::AccessToken,
    ) -> Attempt {
        self.inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token.bearer())
            .header(http::header::ACCEPT, "application/json")
            .header("client-request-id", uuid::Uuid::new_v4().to_string())
            .timeout(self.inner.policy.attempt_timeout);
        if eventual {
            req = req.header("ConsistencyLevel", "eventual");
        }
        if let Some(b) = body {
            req = req.json(b);
        } else if *method == Method::POST {
            req = req.header(http::header::CONTENT_LENGTH, "0");
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Failed {
                    sent: !e.is_connect(),
                    err: GraphError::Transient {
                        status: None,
                        message: describe_reqwest_error(&e),
                        attempts: 0,
                    },
                };
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        match read_bounded(resp).await {
            Ok(Some(b)) => Attempt::Done(status, headers, b),
            Ok(None) => Attempt::Fatal(GraphError::Decode(format!(
                "the answer to {method} {} is larger than {} MiB",
                redact_url(url),
                MAX_RESPONSE_BYTES >> 20
            ))),
            Err(e) => Attempt::Failed {
                sent: true,
                err: GraphError::Transient {
                    status: Some(status.as_u16()),
                    message: describe_reqwest_error(&e),
                    attempts: 0,
                },
            },
        }
    }
}

/// The largest response body read from Graph. A page of 999 users or a `$batch` of 20 pages is
/// a few MiB; anything far beyond that is not Graph, and reading it whole would let a hostile
/// host exhaust a worker's memory.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// The body, or `None` once it passes [`MAX_RESPONSE_BYTES`] (read no further).
async fn read_bounded(mut resp: reqwest::Response) -> Result<Option<Bytes>, reqwest::Error> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Ok(None);
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// `Retry-After` as seconds (integer or fractional, as Graph sends) or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = (when - time::OffsetDateTime::now_utc()).as_seconds_f64();
    Some(Duration::from_secs_f64(secs.clamp(0.0, 86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_encode_odata_options() {
        let q = Query::v1("users")
            .select(&["id", "signInActivity"])
            .filter("startswith(displayName,'A B')")
            .top(500);
        assert_eq!(
            q.path_and_query(),
            "users?$select=id,signInActivity&$filter=startswith(displayName,'A%20B')&$top=500"
        );
        assert!(!q.is_advanced());
        let q = Query::beta("auditLogs/directoryAudits")
            .filter("activityDateTime ge 2024-01-01T00:00:00+00:00");
        assert!(
            q.path_and_query().contains("00%2B00:00"),
            "{}",
            q.path_and_query()
        );
        let base = Url::parse("https://graph.microsoft.com").unwrap();
        assert_eq!(
            q.url(&base).unwrap().path(),
            "/beta/auditLogs/directoryAudits"
        );
        assert!(Query::v1("users/../../x").url(&base).is_err());
        assert!(Query::v1("users?x=1").url(&base).is_err());
        let s = Query::v1("users").search("\"displayName:ann\"");
        assert!(s.is_advanced());
    }

    #[test]
    fn odata_strings_are_quoted() {
        assert_eq!(odata_string("O'Brien"), "'O''Brien'");
        let q = Query::v1("users").filter(format!(
            "userPrincipalName eq {}",
            odata_string("a'b@x.com")
        ));
        assert_eq!(
            q.path_and_query(),
            "users?$filter=userPrincipalName%20eq%20'a''b@x.com'"
        );
    }

    #[test]
    fn idempotency_helpers_recognise_graph_messages() {
        let e = |status: u16, message: &str| GraphError::Refused {
            status,
            code: "Request_BadRequest".into(),
            message: message.into(),
        };
        assert!(e(400, "One or more added object references already exist for the following modified properties: 'members'.").is_already_exists());
        assert!(
            e(
                400,
                "Permission being assigned already exists on the object"
            )
            .is_already_exists()
        );
        assert!(
            !e(
                400,
                "Cannot Update a mail-enabled security groups and or distribution list."
            )
            .is_already_exists()
        );
        assert!(e(400, "One or more removed object references do not exist for the following modified properties: 'members'.").is_already_absent());
        assert!(
            GraphError::NotFound {
                code: "Request_ResourceNotFound".into(),
                message: String::new()
            }
            .is_already_absent()
        );
        assert!(!e(400, "x").is_already_absent());
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("10"), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_retry_after("2.128"),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        let past = parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(past, Some(Duration::ZERO));
    }

    #[test]
    fn permissions_are_named_for_known_calls() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            needed_permission(&get, "users", None),
            Some("User.Read.All")
        );
        assert_eq!(
            needed_permission(&get, "users", Some("$select=id,signInActivity")),
            Some("AuditLog.Read.All")
        );
        assert_eq!(
            needed_permission(&post, "groups/abc/members/$ref", None),
            Some("GroupMember.ReadWrite.All")
        );
        assert_eq!(
            needed_permission(&get, "groups/abc/members", None),
            Some("GroupMember.Read.All")
        );
        assert_eq!(
            needed_permission(&post, "servicePrincipals/x/appRoleAssignedTo", None),
            Some("AppRoleAssignment.ReadWrite.All")
        );
        assert_eq!(
            needed_permission(
                &get,
                "servicePrincipals(appId='x')/synchronization/jobs",
                None
            ),
            Some("Synchronization.ReadWrite.All")
        );
        assert_eq!(
            needed_permission(
                &get,
                "roleManagement/directory/roleEligibilitySchedules",
                None
            ),
            Some("RoleEligibilitySchedule.Read.Directory")
        );
        assert_eq!(
            needed_permission(&post, "roleManagement/directory/roleAssignments", None),
            Some("RoleManagement.ReadWrite.Directory")
        );
        assert_eq!(
            needed_permission(&get, "auditLogs/directoryAudits", None),
            Some("AuditLog.Read.All")
        );
        assert_eq!(needed_permission(&get, "me", None), None);
    }

    #[test]
    fn errors_are_typed_and_readable() {
        let denied = br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}"#;
        let e = map_error(
            403,
            denied,
            &Method::POST,
            "groups/g/members/$ref",
            None,
            None,
        );
        assert_eq!(
            e.to_string(),
            "Missing permission GroupMember.ReadWrite.All needed to POST groups/g/members/$ref: add it in Entra > App registrations > API permissions and grant admin consent."
        );
        assert!(!e.is_transient());
        let np = br#"{"error":{"code":"Authentication_RequestFromNonPremiumTenantOrB2CTenant","message":"Neither tenant is B2C or tenant doesn't have premium license"}}"#;
        assert!(matches!(
            map_error(403, np, &Method::GET, "users", None, None),
            GraphError::NotPremium { .. }
        ));
        let p2 = br#"{"error":{"code":"AadPremiumLicenseRequired","message":"x"}}"#;
        let e = map_error(
            400,
            p2,
            &Method::GET,
            "roleManagement/directory/roleEligibilitySchedules",
            None,
            None,
        );
        assert!(e.to_string().contains("P2"), "{e}");
        let nf = br#"{"error":{"code":"Request_ResourceNotFound","message":"Resource 'x' does not exist"}}"#;
        assert!(map_error(404, nf, &Method::GET, "users/x", None, None).is_not_found());
        let bad = br#"{"error":{"code":"Request_BadRequest","message":"One or more added object references already exist for the following modified properties: 'members'."}}"#;
        let e = map_error(400, bad, &Method::POST, "groups/g/members/$ref", None, None);
        assert_eq!(e.code(), Some("Request_BadRequest"));
        assert!(e.graph_message().unwrap().contains("already exist"));
        assert!(
            GraphError::Throttled {
                retry_after: None,
                attempts: 3
            }
            .is_transient()
        );
        assert!(
            map_error(400, b"not json", &Method::GET, "x", None, None)
                .to_string()
                .contains("HTTP400")
        );
    }

    #[test]
    fn redaction_hides_tokens_but_keeps_the_shape() {
        let u = Url::parse("https://graph.microsoft.com/v1.0/users?$select=id&$top=999&$skiptoken=RFNwdAIAAQAAAD&code=abc&client_secret=zzz").unwrap();
        let r = redact_url(&u);
        assert_eq!(
            r,
            "https://graph.microsoft.com/v1.0/users?$select=id&$top=999&$skiptoken=***&code=***&client_secret=***"
        );
        let u =
            Url::parse("https://graph.microsoft.com/v1.0/users/delta?%24deltatoken=abc").unwrap();
        assert!(redact_url(&u).ends_with("%24deltatoken=***"));
    }

    #[test]
    fn batch_answers_keep_only_what_can_be_matched_and_real_statuses() {
        let body = br#"{"responses": [
            {"id": "0", "status": 200, "headers": {"Retry-After": "1", "X": 5}, "body": {"value": []}},
            {"id": "1", "status": 65736},
            {"id": 2, "status": 200},
            {"id": "3", "status": -1, "body": null}
        ]}"#;
        let answers = decode_batch(body).unwrap();
        let seen: Vec<(&str, u16)> = answers.iter().map(|a| (a.id.as_str(), a.status)).collect();
        // 65736 would wrap to 200 as a u16: it is no status at all.
        assert_eq!(seen, [("0", 200), ("1", 0), ("3", 0)]);
        assert_eq!(answers[0].headers.len(), 1);
        assert!(answers[2].body.is_none());
        assert!(decode_batch(b"{\"responses\": 1}").unwrap().is_empty());
        assert!(matches!(
            decode_batch(b"{\"respo"),
            Err(GraphError::Decode(_))
        ));
    }

    #[test]
    fn decoded_pages_follow_links_only_on_the_connectors_graph() {
        let e = Endpoints::global();
        let first = PageCursor {
            url: "https://graph.microsoft.com/v1.0/users".into(),
            eventual: true,
            permission: None,
        };
        let ok = br#"{"value": [1, 2], "@odata.nextLink": "https://graph.microsoft.com/v1.0/users?$skiptoken=x"}"#;
        let page = decode_page::<u8>(ok, &first, &e).unwrap();
        assert_eq!(page.items, [1, 2]);
        assert!(
            page.next.unwrap().eventual,
            "the next page keeps the consistency level"
        );
        let away = br#"{"value": [], "@odata.deltaLink": "http://169.254.169.254/v1.0/users"}"#;
        assert!(matches!(
            decode_page::<u8>(away, &first, &e),
            Err(GraphError::UnsafeLink { .. })
        ));
    }
}
