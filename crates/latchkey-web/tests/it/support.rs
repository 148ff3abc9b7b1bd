//! `TestApp`: spawns the app and drives it like a browser or an API client would.

use latchkey_core::{DisplayName, Email, OrgId, Role, UserId};
use latchkey_crypto::KeyRing;
use latchkey_store::testing::TestDb;
use latchkey_store::{Store, orgs};
use latchkey_web::{AppState, WebConfig};
use reqwest::redirect::Policy;
use reqwest::{Client, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub base: String,
    pub db: TestDb,
    pub keys: Arc<KeyRing>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}, latchkey_crypto::generate_key_entry("k1")).await
    }

    pub async fn spawn_with(tune: impl FnOnce(&mut WebConfig), key_spec: String) -> Self {
        let db = TestDb::new().await;
        let keys = Arc::new(KeyRing::parse(&key_spec).unwrap());
        Self::serve(db, keys, tune).await
    }

    /// A second server on the same database (e.g. after key rotation or a restart).
    pub async fn serve(db: TestDb, keys: Arc<KeyRing>, tune: impl FnOnce(&mut WebConfig)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_on(listener, db, keys, tune).await
    }

    /// Serves on a listener bound by the caller (who needed its address first).
    pub async fn serve_on(
        listener: tokio::net::TcpListener,
        db: TestDb,
        keys: Arc<KeyRing>,
        tune: impl FnOnce(&mut WebConfig),
    ) -> Self {
        let addr: SocketAddr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let mut config = WebConfig::new(url::Url::parse(&format!("{base}/")).unwrap());
        tune(&mut config);
        let state = AppState::new(db.store.clone(), keys.clone(), config);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(latchkey_web::serve(listener, state, async move {
            let _ = rx.await;
        }));
        TestApp {
            base,
            db,
            keys,
            _shutdown: tx,
        }
    }

    pub fn store(&self) -> &Store {
        &self.db.store
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A browser: cookie jar, no automatic redirects (tests look at them).
    pub fn browser(&self) -> Browser {
        Browser {
            client: Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: self.base.clone(),
        }
    }

    pub fn api(&self) -> Client {
        Client::builder().redirect(Policy::none()).build().unwrap()
    }

    /// An organization with a Super Administrator `admin@<slug>.example`, made as the CLI does.
    pub async fn org(&self, slug: &str) -> (OrgId, UserId) {
        let hash =
            latchkey_web::auth::password::hash(&latchkey_core::Password::parse(PASSWORD).unwrap())
                .await
                .unwrap();
        orgs::create_with_admin(
            self.store(),
            &DisplayName::parse(slug).unwrap(),
            &Email::parse(&format!("admin@{slug}.example")).unwrap(),
            &DisplayName::parse(&format!("Admin of {slug}")).unwrap(),
            &hash,
        )
        .await
        .unwrap()
    }

    /// A person with a password and `role` in `org`.
    pub async fn person(&self, org: OrgId, email: &str, role: Role) -> UserId {
        let mut tx = self.store().org_tx(org).await.unwrap();
        let user = latchkey_store::users::create(
            &mut tx,
            &Email::parse(email).unwrap(),
            &DisplayName::parse("Person").unwrap(),
            role,
        )
        .await
        .unwrap();
        let hash =
            latchkey_web::auth::password::hash(&latchkey_core::Password::parse(PASSWORD).unwrap())
                .await
                .unwrap();
        latchkey_store::users::set_password_hash(&mut tx, UserId(user.id), &hash)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        UserId(user.id)
    }

    /// API client credentials and a fresh access token.
    pub async fn api_token(&self, org: OrgId, role: Role) -> (String, String, String) {
        let (_, creds) = latchkey_web::api::api_clients::create_client(
            self.store(),
            org,
            &DisplayName::parse("test client").unwrap(),
            role,
            None,
        )
        .await
        .unwrap();
        let token = self.token(&creds.client_id, &creds.client_secret).await;
        (creds.client_id, creds.client_secret, token)
    }

    pub async fn token(&self, client_id: &str, secret: &str) -> String {
        let resp = self
            .api()
            .post(self.url("/api/v1/auth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body: serde_json::Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }
}

pub struct Browser {
    pub client: Client,
    pub base: String,
}

impl Browser {
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let r = self.get(path).await;
        let s = r.status();
        (s, r.text().await.unwrap())
    }

    /// Posts a form as a same-origin browser would (with `Origin` and `Sec-Fetch-Site`).
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Loads `page`, takes its CSRF token, then posts `form` (plus the token) to `action`.
    pub async fn submit(&self, page: &str, action: &str, form: &[(&str, &str)]) -> Response {
        let (_, html) = self.get_text(page).await;
        let token = csrf_token(&html).unwrap_or_else(|| panic!("no csrf token on {page}"));
        let mut fields = form.to_vec();
        fields.push(("csrf_token", &token));
        self.post(action, &fields).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.submit(
            "/login",
            "/login",
            &[("email", email), ("password", password)],
        )
        .await
    }
}

pub fn csrf_token(html: &str) -> Option<String> {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

pub fn location(resp: &Response) -> String {
    resp.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The Entra job handlers every test worker runs: connection test, sync and provisioning, the
/// latter with a short read-back wait so verification takes milliseconds, not minutes.
pub fn entra_handlers(keys: Arc<KeyRing>) -> latchkey_jobs::Registry {
    use latchkey_entra::OutboundPolicy;
    use latchkey_entra::provision::{ProvisionHandler, VerifyPolicy};
    use std::time::Duration;
    latchkey_jobs::Registry::new()
        .with(latchkey_entra::onboarding::ConnectionTestHandler::new(
            keys.clone(),
            None,
            OutboundPolicy::INSECURE_DEV,
        ))
        .with(latchkey_entra::sync::SyncHandler::new(
            keys.clone(),
            None,
            OutboundPolicy::INSECURE_DEV,
        ))
        .with(latchkey_entra::sync::agent_finish::AgentSyncFinishHandler)
        .with(
            ProvisionHandler::new(keys, None, OutboundPolicy::INSECURE_DEV).with_verify(
                VerifyPolicy {
                    timeout: Duration::from_secs(3),
                    first_delay: Duration::from_millis(50),
                    max_delay: Duration::from_millis(400),
                },
            ),
        )
}
