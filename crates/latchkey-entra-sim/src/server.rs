//! The HTTP server: shared state, router, request log, and the start/stop API used by tests and the CLI.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{any, get, post};
use http::HeaderMap;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::config::{ConsentOutcome, Faults, LatchkeyAppConfig, SimConfig};
use crate::error::SimError;
use crate::jwt::Signer;
use crate::model::Directory;
use crate::truth::{Change, ChangeOutcome, GroundTruth};

/// Credentials of an app registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppCredentials {
    pub client_id: Uuid,
    pub client_secret: String,
}

/// One request the simulator received (login or Graph; introspection calls are not logged).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RequestLogEntry {
    pub seq: u64,
    pub time: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    /// Relevant request headers: `consistencylevel`, `client-request-id`, `prefer`, `content-type`,
    /// and `authorization` reduced to its scheme.
    pub headers: BTreeMap<String, String>,
    /// Set for requests that arrived inside a `$batch`.
    pub in_batch: bool,
    pub duration_ms: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    pub app_id: Uuid,
    pub app_name: String,
    pub sp_id: Uuid,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub exp: i64,
}

impl TokenInfo {
    pub(crate) fn has_any(&self, perms: &[&str]) -> bool {
        perms.iter().any(|p| {
            self.roles
                .iter()
                .chain(&self.scopes)
                .any(|r| r.eq_ignore_ascii_case(p))
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub client_id: Uuid,
    pub redirect_uri: String,
    pub challenge: Option<(String, String)>,
    pub nonce: Option<String>,
    pub scope: String,
    pub user: u32,
    pub tenant: Uuid,
    pub expires: i64,
    pub used: bool,
}

pub(crate) struct ConsentState {
    pub outcome: ConsentOutcome,
    pub customer_permissions: Vec<String>,
    pub latchkey_consented: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Bucket {
    pub tokens: f64,
    pub writes: f64,
    pub last: Option<Instant>,
}

pub(crate) struct State {
    pub dir: RwLock<Directory>,
    pub faults: RwLock<Faults>,
    pub consent: RwLock<ConsentState>,
    pub tokens: RwLock<HashMap<String, Arc<TokenInfo>>>,
    pub codes: Mutex<HashMap<String, AuthCode>>,
    pub refresh: Mutex<HashMap<String, AuthCode>>,
    pub log: Mutex<VecDeque<RequestLogEntry>>,
    pub log_seq: AtomicU64,
    pub log_capacity: usize,
    pub graph_count: AtomicU64,
    pub request_ids: AtomicU64,
    pub buckets: Mutex<HashMap<Uuid, Bucket>>,
    pub signer: Arc<Signer>,
    pub seed: u64,
    pub base_url: String,
    pub customer: AppCredentials,
    pub customer_sp: u32,
    pub latchkey: LatchkeyAppConfig,
    pub admin_user: u32,
    pub other_tenant: Uuid,
    pub batch_router: std::sync::OnceLock<Router>,
    /// What to do to the next id_token (tests of a relying party's validation).
    pub id_token_tamper: Mutex<Option<crate::signin::IdTokenTamper>>,
    /// Answers tests hold back ([`SimHandle::hold`]).
    pub holds: Arc<crate::hold::Holds>,
}

fn unpoison<T>(r: Result<T, std::sync::PoisonError<T>>) -> T {
    r.unwrap_or_else(|e| e.into_inner())
}

impl State {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Directory> {
        unpoison(self.dir.read())
    }
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Directory> {
        unpoison(self.dir.write())
    }
    pub(crate) fn faults(&self) -> Faults {
        unpoison(self.faults.read()).clone()
    }
    pub(crate) fn set_faults(&self, f: Faults) {
        *unpoison(self.faults.write()) = f;
    }
    pub(crate) fn consent(&self) -> RwLockReadGuard<'_, ConsentState> {
        unpoison(self.consent.read())
    }
    pub(crate) fn consent_mut(&self) -> RwLockWriteGuard<'_, ConsentState> {
        unpoison(self.consent.write())
    }
    pub(crate) fn token(&self, t: &str) -> Option<Arc<TokenInfo>> {
        unpoison(self.tokens.read()).get(t).cloned()
    }
    pub(crate) fn store_token(&self, t: String, info: TokenInfo) {
        let mut tokens = unpoison(self.tokens.write());
        // Long-running simulators (demo, benchmarks) must not grow without bound.
        if tokens.len() >= 10_000 {
            let now = crate::json::now();
            tokens.retain(|_, i| i.exp > now);
        }
        tokens.insert(t, Arc::new(info));
    }
    pub(crate) fn codes(&self) -> std::sync::MutexGuard<'_, HashMap<String, AuthCode>> {
        unpoison(self.codes.lock())
    }
    pub(crate) fn refresh_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, AuthCode>> {
        unpoison(self.refresh.lock())
    }
    pub(crate) fn tamper(&self) -> std::sync::MutexGuard<'_, Option<crate::signin::IdTokenTamper>> {
        unpoison(self.id_token_tamper.lock())
    }
    pub(crate) fn buckets(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Bucket>> {
        unpoison(self.buckets.lock())
    }

    pub(crate) fn log_request(&self, mut e: RequestLogEntry) {
        e.seq = self.log_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut log = unpoison(self.log.lock());
        if log.len() >= self.log_capacity.max(1) {
            log.pop_front();
        }
        log.push_back(e);
    }

    pub(crate) fn requests(&self, since: u64) -> Vec<RequestLogEntry> {
        unpoison(self.log.lock())
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect()
    }

    pub(crate) fn clear_requests(&self) {
        unpoison(self.log.lock()).clear();
    }

    /// The base URL as the client addressed us, so links work for `localhost` and `127.0.0.1` alike.
    pub(crate) fn base_for(&self, headers: &HeaderMap) -> String {
        match headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
        {
            Some(h) if !h.is_empty() => format!("http://{h}"),
            _ => self.base_url.clone(),
        }
    }
}

pub(crate) fn relevant_headers(h: &HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in [
        "consistencylevel",
        "client-request-id",
        "prefer",
        "content-type",
    ] {
        if let Some(v) = h.get(name).and_then(|v| v.to_str().ok()) {
            out.insert(name.to_string(), v.to_string());
        }
    }
    if let Some(v) = h
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let scheme = v.split_whitespace().next().unwrap_or("").to_string();
        out.insert("authorization".to_string(), scheme);
    }
    out
}

async fn log_and_delay(AxState(st): AxState<Arc<State>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_sim") {
        return next.run(req).await;
    }
    let start = Instant::now();
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers = relevant_headers(req.headers());
    let in_batch = req.extensions().get::<crate::graph::InBatch>().is_some();
    let latency = st.faults().latency_ms;
    if latency > 0 && !in_batch {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let resp = next.run(req).await;
    let (held_method, held_path) = (method.clone(), path.clone());
    st.log_request(RequestLogEntry {
        seq: 0,
        time: crate::json::fmt_ts(crate::json::now()),
        method,
        path,
        query,
        status: resp.status().as_u16(),
        headers,
        in_batch,
        duration_ms: start.elapsed().as_secs_f64() * 1000.0,
    });
    // Inside a `$batch` too: the whole batch answer waits.
    st.holds.wait(&held_method, &held_path).await;
    resp
}

fn router(st: Arc<State>) -> Router {
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(crate::identity::token))
        .route("/{tenant}/oauth2/token", post(crate::identity::token))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(crate::identity::authorize),
        )
        .route(
            "/{tenant}/v2.0/adminconsent",
            get(crate::identity::admin_consent_v2),
        )
        .route(
            "/{tenant}/adminconsent",
            get(crate::identity::admin_consent_v1),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(crate::identity::openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(crate::identity::jwks))
        .route("/{tenant}/discovery/keys", get(crate::identity::jwks))
        .route("/v1.0/{*rest}", any(crate::graph::entry_v1))
        .route("/beta/{*rest}", any(crate::graph::entry_beta))
        .merge(crate::introspect::routes())
        .merge(crate::signin::routes())
        .layer(axum::middleware::from_fn_with_state(
            st.clone(),
            log_and_delay,
        ))
        .with_state(st.clone());
    let _ = st.batch_router.set(app.clone());
    app
}

/// Starts simulated tenants.
pub struct SimServer;

impl SimServer {
    /// Generates the tenant from `config` and serves it on 127.0.0.1 (port 0 = any free port),
    /// on the current Tokio runtime.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(SimError::Bind)?;
        Self::start_on(listener, config).await
    }

    /// Like [`SimServer::start`], on a listener the caller bound.
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        config: SimConfig,
    ) -> Result<SimHandle, SimError> {
        let addr = listener.local_addr().map_err(SimError::Bind)?;
        let base_url = format!("http://{addr}");
        let signer = crate::jwt::signer()?;
        let cfg = config.clone();
        let generated = tokio::task::spawn_blocking(move || crate::tenant::generate(&cfg))
            .await
            .map_err(|_| SimError::InvalidChange("tenant generation panicked".into()))?;
        let mut other = crate::rng::Rng::new(config.seed).fork(77);
        let state = Arc::new(State {
            customer: AppCredentials {
                client_id: generated.customer_client_id,
                client_secret: generated.customer_secret.clone(),
            },
            customer_sp: generated.customer_sp,
            admin_user: generated.admin_user,
            dir: RwLock::new(generated.dir),
            faults: RwLock::new(config.faults.clone()),
            consent: RwLock::new(ConsentState {
                outcome: config.consent,
                customer_permissions: config.granted_permissions.clone(),
                latchkey_consented: false,
            }),
            tokens: RwLock::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
            log: Mutex::new(VecDeque::new()),
            log_seq: AtomicU64::new(0),
            log_capacity: config.request_log_capacity,
            graph_count: AtomicU64::new(0),
            request_ids: AtomicU64::new(1),
            buckets: Mutex::new(HashMap::new()),
            signer,
            seed: config.seed,
            base_url: base_url.clone(),
            latchkey: config.latchkey_app.clone(),
            other_tenant: other.uuid(),
            batch_router: std::sync::OnceLock::new(),
            id_token_tamper: Mutex::new(None),
            holds: Arc::default(),
        });
        let app = router(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service())
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(SimHandle {
            state,
            addr,
            base_url,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running simulated tenant. Dropping it stops the server.
pub struct SimHandle {
    state: Arc<State>,
    addr: SocketAddr,
    base_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`: both the login authority host and the Graph base.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The login authority for this tenant: `{base_url}/{tenant_id}`.
    pub fn authority(&self) -> String {
        format!("{}/{}", self.base_url, self.tenant_id())
    }
    /// The scope a client-credentials request should ask for: `{base_url}/.default`.
    pub fn graph_scope(&self) -> String {
        format!("{}/.default", self.base_url)
    }
    pub fn tenant_id(&self) -> Uuid {
        self.state.read().tenant_id
    }
    /// The tenant's default verified domain (users' UPN suffix).
    pub fn domain(&self) -> String {
        self.state.read().domain.clone()
    }
    /// The tenant's initial `*.onmicrosoft.com` domain.
    pub fn initial_domain(&self) -> String {
        self.state.read().initial_domain.clone()
    }
    /// The customer's own app registration (client-secret mode).
    pub fn customer_app(&self) -> AppCredentials {
        self.state.customer.clone()
    }
    /// Latchkey's multi-tenant app (OAuth / admin-consent mode).
    pub fn latchkey_app(&self) -> LatchkeyAppConfig {
        self.state.latchkey.clone()
    }
    pub fn faults(&self) -> Faults {
        self.state.faults()
    }
    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults)
    }
    pub fn update_faults(&self, f: impl FnOnce(&mut Faults)) {
        let mut cur = self.state.faults();
        f(&mut cur);
        self.state.set_faults(cur);
    }
    pub fn set_consent_outcome(&self, outcome: ConsentOutcome) {
        self.state.consent_mut().outcome = outcome;
    }
    /// Application permissions granted to the customer app; affects tokens issued afterwards.
    pub fn set_granted_permissions<I, S>(&self, perms: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.state.consent_mut().customer_permissions = perms.into_iter().map(Into::into).collect();
    }
    /// Whether an admin has consented to Latchkey's multi-tenant app in this tenant.
    pub fn latchkey_consented(&self) -> bool {
        self.state.consent().latchkey_consented
    }
    /// Counts of everything in the directory.
    pub fn truth(&self) -> GroundTruth {
        crate::truth::ground_truth(&self.state)
    }
    /// Ground truth of one group's members (object ids), or `None` if there is no such group.
    pub fn group_members(&self, group_id: Uuid) -> Option<Vec<Uuid>> {
        crate::truth::group_members(&self.state, group_id)
    }
    /// Ground truth of one group's owners (object ids).
    pub fn group_owners(&self, group_id: Uuid) -> Option<Vec<Uuid>> {
        let d = self.state.read();
        let gi = d.find_group(&group_id.to_string())?;
        Some(d.groups[gi].owners.iter().map(|m| d.obj_id(*m)).collect())
    }
    /// Every live user, in directory order.
    pub fn truth_users(&self) -> Vec<crate::truth::TruthUser> {
        crate::truth::users(&self.state.read(), 0, usize::MAX)
    }
    /// Every live group, in directory order.
    pub fn truth_groups(&self) -> Vec<crate::truth::TruthGroup> {
        crate::truth::groups(&self.state.read(), 0, usize::MAX)
    }
    /// App role assignments on a service principal: `(assignment id, principal id, app role id)`.
    pub fn app_role_assignments(
        &self,
        service_principal_id: Uuid,
    ) -> Option<Vec<(String, Uuid, Uuid)>> {
        let d = self.state.read();
        let si = d.find_sp(&service_principal_id.to_string())?;
        Some(
            d.sps[si]
                .assigned_to
                .iter()
                .filter(|a| !d.is_deleted(a.principal))
                .map(|a| (a.id.clone(), d.obj_id(a.principal), a.app_role_id))
                .collect(),
        )
    }
    /// Ground truth of a user's manager (object id), `None` for no such user or no manager.
    pub fn user_manager(&self, user_id: Uuid) -> Option<Uuid> {
        let d = self.state.read();
        let ui = d.find_user(&user_id.to_string())?;
        d.users[ui].manager.map(|m| d.users[m as usize].id)
    }
    /// Ground truth of the tenant's apps an organization would want to manage: live,
    /// non-Microsoft enterprise applications with single sign-on or a provisioning
    /// (synchronization) job. Object ids, sorted.
    pub fn discoverable_apps(&self) -> Vec<Uuid> {
        let d = self.state.read();
        let mut ids: Vec<Uuid> = d
            .sps
            .iter()
            .filter(|s| {
                s.deleted.is_none()
                    && s.sp_type == crate::model::SpType::Application
                    && !s.first_party
                    && (s.sso_mode.is_some() || !s.sync_jobs.is_empty())
            })
            .map(|s| s.id)
            .collect();
        ids.sort();
        ids
    }
    /// Ground truth of `principal`'s active assignment of the directory role `role_id`:
    /// `None` when there is none, else its end (Unix seconds; `None` for permanent).
    pub fn role_assignment_end(&self, role_id: Uuid, principal: Uuid) -> Option<Option<i64>> {
        let d = self.state.read();
        let role = d.roles.iter().position(|r| r.id == role_id)?;
        let p = d.lookup(&principal)?;
        d.active_assignments(crate::json::now())
            .find(|a| a.role as usize == role && a.principal == p)
            .map(|a| a.end)
    }
    /// When the user's sign-in sessions were last revoked (`signInSessionsValidFromDateTime`,
    /// Unix seconds), `None` for no such user.
    pub fn user_sessions_valid_from(&self, user_id: Uuid) -> Option<i64> {
        let d = self.state.read();
        let ui = d.find_user(&user_id.to_string())?;
        Some(d.users[ui].sessions_valid_from)
    }
    /// Makes the tenant's password policy stricter: passwords shorter than `chars` are refused
    /// as not complex enough (Graph's answer to a weak password).
    pub fn set_password_min_length(&self, chars: usize) {
        self.state.write().password_min_length = chars;
    }
    /// Whether `password` is the one the account was created with through Graph (`false` for
    /// seeded accounts and unknown ids).
    pub fn user_password_is(&self, user_id: Uuid, password: &str) -> bool {
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(password.as_bytes()).into();
        self.state.read().passwords.get(&user_id) == Some(&digest)
    }
    /// `provisionOnDemand` calls received so far.
    pub fn provision_on_demand_calls(&self) -> Vec<crate::model::ProvisionOnDemandCall> {
        self.state.read().provision_calls.clone()
    }
    /// Holds back answers to `method path` (exact path, e.g. `/v1.0/users/delta`): each is
    /// computed from the directory as it is when the request arrives (alone or inside a
    /// `$batch`, whose whole answer then waits), then kept until the
    /// returned hold is released or dropped.
    pub fn hold(&self, method: &str, path: &str) -> crate::hold::ResponseHold {
        self.state.holds.add(method, path)
    }
    /// Requests received so far (oldest first).
    pub fn requests(&self) -> Vec<RequestLogEntry> {
        self.state.requests(0)
    }
    pub fn clear_requests(&self) {
        self.state.clear_requests()
    }
    /// The Graph writes received so far (`METHOD path`, oldest first): every request to
    /// `/v1.0` or `/beta` that is not a read, including those inside a `$batch` (the `$batch`
    /// envelope itself is not one). What tests of refusals assert is empty.
    pub fn graph_writes(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.method != "GET"
                    && (r.path.starts_with("/v1.0/") || r.path.starts_with("/beta/"))
                    && !r.path.ends_with("/$batch")
            })
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
    /// Changes the directory out of band, as an admin in the portal would (shows up in delta and the audit log).
    pub fn apply(&self, change: Change) -> Result<ChangeOutcome, SimError> {
        crate::truth::apply_change(&self.state, change)
    }
    /// Signs arbitrary claims with this tenant's key (or as `alg` says): tokens to attack a
    /// relying party with.
    pub fn sign_claims(
        &self,
        claims: &serde_json::Value,
        alg: crate::signin::SignAlg,
    ) -> Result<String, SimError> {
        crate::signin::sign_as(&self.state, claims, alg)
    }
    /// Alters the next id_token the token endpoint issues (then back to normal).
    pub fn tamper_next_id_token(&self, tamper: crate::signin::IdTokenTamper) {
        *self.state.tamper() = Some(tamper);
    }
    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub(crate) fn json_response(status: http::StatusCode, body: Vec<u8>) -> Response {
    Response::builder()
        .status(status)
        .header(
            http::header::CONTENT_TYPE,
            "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
        )
        .body(Body::from(body))
        .unwrap_or_default()
}
