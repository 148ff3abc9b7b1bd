//! "Sign in with Microsoft" over real HTTP against the simulated tenant: first and repeated
//! sign-ins, tenants no organization connected, the organization chooser, and the OAuth attacks
//! (state replayed, forged, expired, from another browser; tenant tampering; code injection
//! across PKCE; id_tokens with a wrong audience, issuer, nonce, lifetime, signature or algorithm).
//! Every refusal is a clear 4xx and leaves no session behind.

use crate::support::{Browser, PASSWORD, TestApp, csrf_token, location};
use latchkey_core::OrgId;
use latchkey_entra::OutboundPolicy;
use latchkey_entra::onboarding::LatchkeyApp;
use latchkey_entra_sim::{ConsentOutcome, IdTokenTamper, SignAlg, SimConfig, SimHandle, SimServer};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use uuid::Uuid;

struct SignIn {
    app: TestApp,
    sim: SimHandle,
    /// Talks to the simulated tenant (its pages set no cookies).
    idp: reqwest::Client,
}

impl SignIn {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut sim_config = SimConfig::small(23);
        sim_config.latchkey_app.redirect_uris = vec![
            format!("{base}/auth/microsoft/callback"),
            format!("{base}/connectors/oauth/callback"),
        ];
        let sim = SimServer::start(sim_config).await.unwrap();
        let lk = sim.latchkey_app();
        let entra_app = LatchkeyApp {
            client_id: latchkey_entra::ClientId::parse(&lk.client_id.to_string()).unwrap(),
            client_secret: latchkey_crypto::SecretString::from(lk.client_secret.clone()),
        };
        let db = latchkey_store::testing::TestDb::new().await;
        let keys = std::sync::Arc::new(
            latchkey_crypto::KeyRing::parse(&latchkey_crypto::generate_key_entry("k1")).unwrap(),
        );
        let authority = url::Url::parse(sim.base_url()).unwrap();
        let app = TestApp::serve_on(listener, db, keys, |c| {
            c.outbound_policy = OutboundPolicy::INSECURE_DEV;
            c.entra_app = Some(entra_app);
            c.entra_login_authority = Some(authority);
        })
        .await;
        let idp = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap();
        SignIn { app, sim, idp }
    }

    fn tenant(&self) -> String {
        self.sim.tenant_id().to_string()
    }

    /// Enabled member accounts of the tenant (not its admin, who consents elsewhere).
    fn member(&self, n: usize) -> latchkey_entra_sim::TruthUser {
        self.sim
            .truth_users()
            .into_iter()
            .skip(1)
            .filter(|u| u.account_enabled && u.user_type == "Member")
            .nth(n)
            .expect("enough enabled members")
    }

    /// `org` has a connector whose connection test proved `tenant`.
    async fn connect(&self, org: OrgId, tenant: &str) {
        let sys = self.app.store().system();
        let app_id = Uuid::now_v7();
        sqlx::query("INSERT INTO apps (id, org_id, name, kind) VALUES ($1, $2, 'Microsoft Entra ID', 'managed')")
            .bind(app_id)
            .bind(org.0)
            .execute(sys)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO connectors (id, org_id, app_id, kind, display_name, status, settings, capabilities)
             VALUES ($1, $2, $3, 'entra', 'Contoso', 'connected', $4, $5)",
        )
        .bind(Uuid::now_v7())
        .bind(org.0)
        .bind(app_id)
        .bind(json!({"auth": {"mode": "client_secret", "tenant_id": tenant}}))
        .bind(json!({"tenant": {"id": tenant, "display_name": "Contoso", "verified_domains": []}}))
        .execute(sys)
        .await
        .unwrap();
    }

    /// Latchkey's login page → `POST /auth/microsoft`; returns the authorize URL.
    async fn begin(&self, b: &Browser, upn: &str) -> String {
        let r = b
            .submit("/login", "/auth/microsoft", &[("login_hint", upn)])
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let to = location(&r);
        assert!(to.starts_with(self.sim.base_url()), "{to}");
        to
    }

    /// The tenant signs the person in and redirects back: the callback URL.
    async fn authorize(&self, url: &str) -> String {
        let r = self.idp.get(url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{}", r.text().await.unwrap());
        location(&r)
    }

    async fn callback(&self, b: &Browser, url: &str) -> reqwest::Response {
        b.client.get(url).send().await.unwrap()
    }

    /// The whole round trip in one browser; the callback's response.
    async fn sign_in(&self, b: &Browser, upn: &str) -> reqwest::Response {
        let url = self.begin(b, upn).await;
        let back = self.authorize(&url).await;
        self.callback(b, &back).await
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(self.app.store().system())
            .await
            .unwrap()
    }

    async fn sessions(&self) -> i64 {
        self.count("SELECT count(*) FROM sessions").await
    }
}

fn query_param(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != name)
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(name, value);
    u.to_string()
}

fn session_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok())
        .find_map(|c| c.strip_prefix("latchkey_session="))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
        .filter(|v| !v.is_empty())
}

async fn signed_in(b: &Browser) -> bool {
    b.get("/dashboard").await.status() == StatusCode::OK
}

async fn refused(r: reqwest::Response, status: StatusCode, says: &str) {
    assert_eq!(r.status(), status);
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("latchkey_session=")),
        "a refusal sets no session cookie"
    );
    let body = r.text().await.unwrap();
    assert!(body.contains(says), "expected {says:?} in {body}");
}

#[tokio::test]
async fn first_sign_in_creates_a_linked_member_and_the_next_reuses_it() {
    let t = SignIn::start().await;
    let (org, _) = t.app.org("acme").await;
    t.connect(org, &t.tenant()).await;
    let person = t.member(0);
    let upn = person.user_principal_name.to_lowercase();

    // The login page offers the button; its CSP lets the form lead to the tenant.
    let r = t.app.browser().get("/login").await;
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains(&format!("form-action 'self' {}", t.sim.base_url())),
        "{csp}"
    );
    assert!(r.text().await.unwrap().contains("Sign in with Microsoft"));

    // Session fixation: a session the browser already had is not the one it gets.
    let b = t.app.browser();
    let (_, login_page) = b.get_text("/login").await;
    let presession = csrf_token(&login_page).unwrap();
    let r = b.login("admin@acme.example", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let before = session_cookie(&r).expect("local sign-in sets a session");
    let r = b
        .post(
            "/auth/microsoft",
            &[
                ("csrf_token", presession.as_str()),
                ("login_hint", upn.as_str()),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let authorize = location(&r);
    assert_eq!(query_param(&authorize, "code_challenge_method"), "S256");
    assert_eq!(query_param(&authorize, "response_mode"), "query");
    assert_eq!(query_param(&authorize, "code_challenge").len(), 43);
    assert!(!query_param(&authorize, "nonce").is_empty());
    let back = t.authorize(&authorize).await;
    let r = t.callback(&b, &back).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/dashboard");
    let after = session_cookie(&r).expect("a new session cookie");
    assert_ne!(after, before, "a fresh session id at sign-in");
    let (_, page) = b.get_text("/dashboard").await;
    assert!(
        page.contains(&person.display_name),
        "signed in as the person"
    );

    let user: (Uuid, String, String) =
        sqlx::query_as("SELECT id, role, org_id::text FROM users WHERE email = $1")
            .bind(&upn)
            .fetch_one(t.app.store().system())
            .await
            .unwrap();
    assert_eq!(user.1, "member");
    assert_eq!(user.2, org.0.to_string());
    let mut tx = t.app.store().org_tx(org).await.unwrap();
    let links = latchkey_store::identities::for_user(&mut tx, latchkey_core::UserId(user.0))
        .await
        .unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].tenant_id, t.tenant());
    assert_eq!(links[0].object_id, person.id.to_string());
    let filter = latchkey_store::audit::Filter {
        target_kind: None,
        target_id: None,
        action_prefix: None,
    };
    let events = latchkey_store::audit::list(&mut tx, &filter, None, 50)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let actions: Vec<&str> = events.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["user.signed_in", "user.created"], "newest first");
    assert_eq!(events.items[1].details["account_synced"], false);
    assert_eq!(events.items[1].details["object_id"], person.id.to_string());
    assert_eq!(events.items[1].actor.id, Some(user.0));

    // Once a sync has seen the account, sign-ins record it.
    sqlx::query(
        "INSERT INTO resources (id, org_id, connector_id, type, external_id, display_name, last_seen_run)
         SELECT gen_random_uuid(), org_id, id, 'user', $1, 'Person', gen_random_uuid() FROM connectors",
    )
    .bind(person.id.to_string())
    .execute(t.app.store().system())
    .await
    .unwrap();

    // Again, from another browser: the same person, no second account.
    let b2 = t.app.browser();
    let r = t.sign_in(&b2, &upn).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(signed_in(&b2).await);
    assert_eq!(
        t.count(&format!("SELECT count(*) FROM users WHERE email = '{upn}'"))
            .await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM user_entra_identities").await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM audit_events WHERE action = 'user.signed_in'")
            .await,
        2
    );
    assert_eq!(
        t.count("SELECT count(*) FROM audit_events WHERE action = 'user.signed_in' AND details->>'account_synced' = 'true'")
            .await,
        1
    );
    // The JWKS was fetched once for both sign-ins.
    let jwks = t
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/discovery/v2.0/keys"))
        .count();
    assert_eq!(jwks, 1);

    // A disabled member is refused, even with a valid Microsoft sign-in.
    let mut tx = t.app.store().org_tx(org).await.unwrap();
    latchkey_store::users::set_disabled(&mut tx, latchkey_core::UserId(user.0), true)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let b3 = t.app.browser();
    refused(
        t.sign_in(&b3, &upn).await,
        StatusCode::FORBIDDEN,
        "Your Latchkey account is disabled",
    )
    .await;
    assert!(!signed_in(&b3).await);

    // An email already used by another account is never linked by email: a clear refusal.
    let other = t.member(1);
    let other_upn = other.user_principal_name.to_lowercase();
    let (org2, _) = t.app.org("globex").await;
    t.app
        .person(org2, &other_upn, latchkey_core::Role::ConnectorAdmin)
        .await;
    let b4 = t.app.browser();
    refused(
        t.sign_in(&b4, &other_upn).await,
        StatusCode::CONFLICT,
        "already exists, but it is not linked",
    )
    .await;
    assert!(!signed_in(&b4).await);
    // Local password accounts keep working.
    let b5 = t.app.browser();
    assert_eq!(
        b5.login(&other_upn, PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_tenant_no_organization_connected_is_refused_clearly() {
    let t = SignIn::start().await;
    let (org, _) = t.app.org("acme").await;
    // Another tenant is connected; a connector that only names this tenant without ever
    // having connected does not count either.
    t.connect(org, &Uuid::new_v4().to_string()).await;
    let sys = t.app.store().system();
    sqlx::query(
        "UPDATE connectors SET status = 'pending_consent', capabilities = NULL, settings = $1",
    )
    .bind(json!({"auth": {"mode": "oauth", "tenant_id": t.tenant()}}))
    .execute(sys)
    .await
    .unwrap();
    let b = t.app.browser();
    let r = t.sign_in(&b, &t.member(0).user_principal_name).await;
    refused(
        r,
        StatusCode::FORBIDDEN,
        "no organization has connected to Latchkey",
    )
    .await;
    assert!(!signed_in(&b).await);
    assert_eq!(t.sessions().await, 0);
    assert_eq!(t.count("SELECT count(*) FROM users").await, 1);

    // Without the app configured there is no button and no endpoint.
    let plain = TestApp::spawn().await;
    let pb = plain.browser();
    let (_, html) = pb.get_text("/login").await;
    assert!(!html.contains("Sign in with Microsoft"));
    let token = csrf_token(&html).unwrap();
    let r = pb
        .post("/auth/microsoft", &[("csrf_token", token.as_str())])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn several_organizations_let_the_person_choose() {
    let t = SignIn::start().await;
    let (acme, _) = t.app.org("acme").await;
    let (globex, _) = t.app.org("globex").await;
    let (initech, _) = t.app.org("initech").await;
    t.connect(acme, &t.tenant()).await;
    t.connect(globex, &t.tenant()).await;
    let upn = t.member(0).user_principal_name.to_lowercase();
    let b = t.app.browser();
    let r = t.sign_in(&b, &upn).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("Choose your organization"));
    assert!(
        html.contains(">acme<") && html.contains(">globex<"),
        "{html}"
    );
    assert!(!html.contains("initech"));
    assert!(!signed_in(&b).await, "not signed in before choosing");
    let csrf = csrf_token(&html).unwrap();
    let marker = "name=\"choice\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    let choice = html[start..start + html[start..].find('"').unwrap()].to_string();

    // An organization that is not on offer is refused (and uses the choice up).
    let r = b
        .post(
            "/auth/microsoft/choose",
            &[
                ("csrf_token", csrf.as_str()),
                ("choice", choice.as_str()),
                ("org_id", initech.0.to_string().as_str()),
            ],
        )
        .await;
    refused(r, StatusCode::FORBIDDEN, "not one you can sign in to").await;

    // Again: from another browser the choice is worthless.
    let r = t.sign_in(&b, &upn).await;
    let html = r.text().await.unwrap();
    let start = html.find(marker).unwrap() + marker.len();
    let choice = html[start..start + html[start..].find('"').unwrap()].to_string();
    let thief = t.app.browser();
    let (_, login) = thief.get_text("/login").await;
    let thief_csrf = csrf_token(&login).unwrap();
    let r = thief
        .post(
            "/auth/microsoft/choose",
            &[
                ("csrf_token", thief_csrf.as_str()),
                ("choice", choice.as_str()),
                ("org_id", globex.0.to_string().as_str()),
            ],
        )
        .await;
    refused(r, StatusCode::BAD_REQUEST, "another browser").await;
    assert!(!signed_in(&thief).await);

    // Once more, and choose Globex.
    let r = t.sign_in(&b, &upn).await;
    let html = r.text().await.unwrap();
    let csrf = csrf_token(&html).unwrap();
    let start = html.find(marker).unwrap() + marker.len();
    let choice = html[start..start + html[start..].find('"').unwrap()].to_string();
    let globex_id = globex.0.to_string();
    let form = [
        ("csrf_token", csrf.as_str()),
        ("choice", choice.as_str()),
        ("org_id", globex_id.as_str()),
    ];
    let r = b.post("/auth/microsoft/choose", &form).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, page) = b.get_text("/dashboard").await;
    assert!(page.contains("globex"));
    let orgs: Vec<Uuid> = sqlx::query_scalar("SELECT org_id FROM users WHERE email = $1")
        .bind(&upn)
        .fetch_all(t.app.store().system())
        .await
        .unwrap();
    assert_eq!(orgs, [globex.0]);
    // A choice is single use.
    let r = b.post("/auth/microsoft/choose", &form).await;
    refused(r, StatusCode::BAD_REQUEST, "already used").await;
}

#[tokio::test]
async fn state_attacks_are_refused_without_a_session() {
    let t = SignIn::start().await;
    let (org, _) = t.app.org("acme").await;
    t.connect(org, &t.tenant()).await;
    let upn = t.member(0).user_principal_name;

    // The start needs the login form's token.
    let b = t.app.browser();
    let r = b
        .post("/auth/microsoft", &[("login_hint", upn.as_str())])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Forged: a state Latchkey never issued, with a real code from the tenant.
    let real = t.authorize(&t.begin(&b, &upn).await).await;
    let forged = with_param(&real, "state", "forged-state-value-forged-state-value-0123");
    refused(
        t.callback(&b, &forged).await,
        StatusCode::BAD_REQUEST,
        "not one Latchkey issued",
    )
    .await;
    let missing = real.replace(&format!("state={}", query_param(&real, "state")), "");
    refused(
        t.callback(&b, &missing).await,
        StatusCode::BAD_REQUEST,
        "not one Latchkey issued",
    )
    .await;
    assert_eq!(t.sessions().await, 0);

    // Cross-session: started in one browser, finished in another.
    let victim = t.app.browser();
    let attacker_callback = t.authorize(&t.begin(&b, &upn).await).await;
    refused(
        t.callback(&victim, &attacker_callback).await,
        StatusCode::BAD_REQUEST,
        "started in another browser",
    )
    .await;
    assert!(!signed_in(&victim).await);
    // ...and a browser with no Latchkey cookies at all.
    let bare = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let cb = t.authorize(&t.begin(&b, &upn).await).await;
    refused(
        bare.get(&cb).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        "another browser",
    )
    .await;
    assert_eq!(t.sessions().await, 0);

    // Expired: the state outlived its ten minutes.
    let cb = t.authorize(&t.begin(&b, &upn).await).await;
    sqlx::query(
        "UPDATE signin_states SET expires_at = now() - interval '1 minute' WHERE used_at IS NULL",
    )
    .execute(t.app.store().system())
    .await
    .unwrap();
    refused(
        t.callback(&b, &cb).await,
        StatusCode::BAD_REQUEST,
        "took too long",
    )
    .await;
    assert_eq!(t.sessions().await, 0);
    // Housekeeping wipes the verifiers of states that expired unused.
    sqlx::query(
        "UPDATE signin_states SET expires_at = now() - interval '1 minute' WHERE used_at IS NULL",
    )
    .execute(t.app.store().system())
    .await
    .unwrap();
    assert!(
        t.count("SELECT count(*) FROM signin_states WHERE pkce_verifier IS NOT NULL")
            .await
            > 0
    );
    latchkey_store::signin::purge_old(t.app.store())
        .await
        .unwrap();
    assert_eq!(
        t.count("SELECT count(*) FROM signin_states WHERE pkce_verifier IS NOT NULL")
            .await,
        0
    );

    // Code injection: the attacker's code (bound to the attacker's PKCE challenge) delivered
    // with the victim's own state fails at the token endpoint.
    let attacker = t.app.browser();
    let attackers_code = query_param(&t.authorize(&t.begin(&attacker, &upn).await).await, "code");
    let victims = t.authorize(&t.begin(&b, &upn).await).await;
    let injected = with_param(&victims, "code", &attackers_code);
    refused(
        t.callback(&b, &injected).await,
        StatusCode::BAD_REQUEST,
        "AADSTS501481",
    )
    .await;
    assert_eq!(t.sessions().await, 0);

    // A sign-in the person declined at Microsoft.
    let cb = t.authorize(&t.begin(&b, &upn).await).await;
    let declined = format!(
        "{}?error=access_denied&error_description=AADSTS65004%3A+User+declined+to+consent.&state={}",
        cb.split('?').next().unwrap(),
        query_param(&cb, "state")
    );
    refused(
        t.callback(&b, &declined).await,
        StatusCode::BAD_REQUEST,
        "Microsoft did not sign you in (AADSTS65004)",
    )
    .await;

    // Replayed: a callback that worked once is refused the second time.
    let cb = t.authorize(&t.begin(&b, &upn).await).await;
    assert_eq!(t.callback(&b, &cb).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(t.sessions().await, 1);
    refused(
        t.callback(&b, &cb).await,
        StatusCode::BAD_REQUEST,
        "already used",
    )
    .await;
    assert_eq!(t.sessions().await, 1, "the replay made no session");
    let verifiers = t
        .count("SELECT count(*) FROM signin_states WHERE used_at IS NOT NULL AND pkce_verifier IS NOT NULL")
        .await;
    assert_eq!(verifiers, 0, "used states keep no PKCE verifier");
}

#[tokio::test]
async fn the_tenant_comes_only_from_the_validated_id_token() {
    let t = SignIn::start().await;
    let (org, _) = t.app.org("acme").await;
    t.connect(org, &t.tenant()).await;
    let (other_org, _) = t.app.org("globex").await;
    let other_tenant = Uuid::new_v4().to_string();
    t.connect(other_org, &other_tenant).await;
    let upn = t.member(0).user_principal_name.to_lowercase();

    // A `tenant` (or `tid`) parameter added to the callback changes nothing.
    let b = t.app.browser();
    let cb = t.authorize(&t.begin(&b, &upn).await).await;
    let tampered = with_param(
        &with_param(&cb, "tenant", &other_tenant),
        "tid",
        &other_tenant,
    );
    assert_eq!(
        t.callback(&b, &tampered).await.status(),
        StatusCode::SEE_OTHER
    );
    let org_of: Uuid = sqlx::query_scalar("SELECT org_id FROM users WHERE email = $1")
        .bind(&upn)
        .fetch_one(t.app.store().system())
        .await
        .unwrap();
    assert_eq!(org_of, org.0);

    // A login_hint naming someone else's tenant or a tenant segment in the URL do not help
    // either: the person signs in to the tenant they belong to. A sign-in that lands in a
    // tenant nobody connected (the simulated tenant's other tenant) is refused.
    t.sim.set_consent_outcome(ConsentOutcome::WrongTenant);
    let b2 = t.app.browser();
    refused(
        t.sign_in(&b2, &t.member(1).user_principal_name).await,
        StatusCode::FORBIDDEN,
        "no organization has connected",
    )
    .await;
    assert!(!signed_in(&b2).await);
}

#[tokio::test]
async fn forged_and_altered_id_tokens_are_refused() {
    let t = SignIn::start().await;
    let (org, _) = t.app.org("acme").await;
    t.connect(org, &t.tenant()).await;
    let upn = t.member(0).user_principal_name;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let tid = t.tenant();
    let base = t.sim.base_url().to_string();
    let claims = |v: Value| v.as_object().unwrap().clone();
    let cases: Vec<(&str, IdTokenTamper, &str)> = vec![
        (
            "wrong audience",
            IdTokenTamper {
                claims: claims(json!({"aud": Uuid::new_v4()})),
                alg: SignAlg::Rs256,
            },
            "issued for another application",
        ),
        (
            "issuer of another host",
            IdTokenTamper {
                claims: claims(json!({"iss": format!("https://evil.example/{tid}/v2.0")})),
                alg: SignAlg::Rs256,
            },
            "not issued by Microsoft for its own tenant",
        ),
        (
            "issuer of another tenant than tid",
            IdTokenTamper {
                claims: claims(json!({"iss": format!("{base}/{}/v2.0", Uuid::new_v4())})),
                alg: SignAlg::Rs256,
            },
            "not issued by Microsoft for its own tenant",
        ),
        (
            "tid swapped to another tenant (issuer kept)",
            IdTokenTamper {
                claims: claims(json!({"tid": Uuid::new_v4()})),
                alg: SignAlg::Rs256,
            },
            "not issued by Microsoft for its own tenant",
        ),
        (
            "wrong nonce",
            IdTokenTamper {
                claims: claims(json!({"nonce": "someone-elses-nonce"})),
                alg: SignAlg::Rs256,
            },
            "(nonce)",
        ),
        (
            "no nonce",
            IdTokenTamper {
                claims: claims(json!({"nonce": null})),
                alg: SignAlg::Rs256,
            },
            "(nonce)",
        ),
        (
            "expired",
            IdTokenTamper {
                claims: claims(json!({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})),
                alg: SignAlg::Rs256,
            },
            "has expired",
        ),
        (
            "not valid yet",
            IdTokenTamper {
                claims: claims(json!({"nbf": now + 3600, "exp": now + 7200})),
                alg: SignAlg::Rs256,
            },
            "not valid yet",
        ),
        (
            "no oid",
            IdTokenTamper {
                claims: claims(json!({"oid": null})),
                alg: SignAlg::Rs256,
            },
            "lacks the oid claim",
        ),
        (
            "bad signature",
            IdTokenTamper {
                claims: Default::default(),
                alg: SignAlg::BadSignature,
            },
            "signature is not valid",
        ),
        (
            "alg none",
            IdTokenTamper {
                claims: Default::default(),
                alg: SignAlg::None,
            },
            "uses the none algorithm",
        ),
        (
            "HS256 keyed with the public key",
            IdTokenTamper {
                claims: Default::default(),
                alg: SignAlg::Hs256PublicKey,
            },
            "uses the HS256 algorithm",
        ),
        (
            "a key the JWKS does not publish",
            IdTokenTamper {
                claims: Default::default(),
                alg: SignAlg::UnknownKid,
            },
            "key Microsoft does not publish",
        ),
    ];
    for (name, tamper, says) in cases {
        let b = t.app.browser();
        let url = t.begin(&b, &upn).await;
        let cb = t.authorize(&url).await;
        t.sim.tamper_next_id_token(tamper);
        let r = t.callback(&b, &cb).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name}");
        let body = r.text().await.unwrap();
        assert!(body.contains(says), "{name}: expected {says:?} in {body}");
        assert!(!signed_in(&b).await, "{name}");
    }
    assert_eq!(t.sessions().await, 0);
    assert_eq!(
        t.count("SELECT count(*) FROM users").await,
        1,
        "only the admin"
    );
    // Unknown kids do not make Latchkey hammer the JWKS: one fetch for all of the above.
    let jwks = t
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/discovery/v2.0/keys"))
        .count();
    assert_eq!(jwks, 1);

    // Tokens signed by the tenant's key for arbitrary claims (`/_sim/sign`) are only as good as
    // their claims: the sign-in client refuses one for another audience outright.
    let client = latchkey_entra::signin::SignInClient::new(
        latchkey_entra::Endpoints::from_settings(None, Some(&base), OutboundPolicy::INSECURE_DEV)
            .unwrap(),
        LatchkeyApp {
            client_id: latchkey_entra::ClientId::parse(&t.sim.latchkey_app().client_id.to_string())
                .unwrap(),
            client_secret: latchkey_crypto::SecretString::from("unused".to_string()),
        },
    )
    .unwrap();
    let good = json!({
        "aud": t.sim.latchkey_app().client_id, "iss": format!("{base}/{tid}/v2.0"),
        "iat": now, "nbf": now, "exp": now + 600, "tid": tid, "oid": Uuid::new_v4(),
        "nonce": "n-1", "preferred_username": "x@contoso.example",
    });
    let token = t.sim.sign_claims(&good, SignAlg::Rs256).unwrap();
    let who = client.validate_id_token(&token, "n-1").await.unwrap();
    assert_eq!(who.tenant_id, tid);
    let mut other = good.clone();
    other["aud"] = json!("00000003-0000-0000-c000-000000000000");
    let token = t.sim.sign_claims(&other, SignAlg::Rs256).unwrap();
    assert!(client.validate_id_token(&token, "n-1").await.is_err());
}

/// The same state attacks against the connector admin-consent callback.
#[tokio::test]
async fn admin_consent_callback_refuses_state_attacks() {
    let t = SignIn::start().await;
    let (org, _) = t.app.org("acme").await;
    let (_, _, token) = t.app.api_token(org, latchkey_core::Role::SuperAdmin).await;
    let r = t
        .app
        .api()
        .post(t.app.url("/api/v1/connectors"))
        .bearer_auth(&token)
        .json(&json!({
            "display_name": "Contoso via OAuth", "app": {"new": {"name": "Microsoft Entra ID"}},
            "settings": {"auth": {"mode": "oauth", "tenant_id": t.tenant()}, "graph_domain": t.sim.base_url()}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = t.app.browser();
    assert_eq!(
        admin.login("admin@acme.example", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let consent_page = format!("/connectors/{id}/consent");
    // Login with Microsoft → the tenant's admin-consent page → the callback URL.
    async fn round_trip(t: &SignIn, b: &Browser, page: &str) -> String {
        let r = b.submit(page, page, &[]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        t.authorize(&location(&r)).await
    }

    // Forged state.
    let cb = round_trip(&t, &admin, &consent_page).await;
    let forged = with_param(&cb, "state", "forged-state-value-forged-state-value-0123");
    refused(
        t.callback(&admin, &forged).await,
        StatusCode::BAD_REQUEST,
        "not one Latchkey issued",
    )
    .await;

    // Another session of the same person, and a Super Administrator of another organization.
    let cb = round_trip(&t, &admin, &consent_page).await;
    let same_person_elsewhere = t.app.browser();
    same_person_elsewhere
        .login("admin@acme.example", PASSWORD)
        .await;
    refused(
        t.callback(&same_person_elsewhere, &cb).await,
        StatusCode::BAD_REQUEST,
        "started in another browser session",
    )
    .await;
    let (_, _) = t.app.org("globex").await;
    let outsider = t.app.browser();
    outsider.login("admin@globex.example", PASSWORD).await;
    let cb = round_trip(&t, &admin, &consent_page).await;
    refused(
        t.callback(&outsider, &cb).await,
        StatusCode::BAD_REQUEST,
        "started in another browser session",
    )
    .await;

    // Expired.
    let cb = round_trip(&t, &admin, &consent_page).await;
    sqlx::query(
        "UPDATE oauth_states SET expires_at = now() - interval '1 minute' WHERE used_at IS NULL",
    )
    .execute(t.app.store().system())
    .await
    .unwrap();
    refused(
        t.callback(&admin, &cb).await,
        StatusCode::BAD_REQUEST,
        "expired",
    )
    .await;

    // Tenant tampering: the callback claims another tenant.
    let cb = round_trip(&t, &admin, &consent_page).await;
    let tampered = with_param(&cb, "tenant", &Uuid::new_v4().to_string());
    refused(
        t.callback(&admin, &tampered).await,
        StatusCode::BAD_REQUEST,
        "but this connector is for tenant",
    )
    .await;

    // The real one works once; its replay is refused.
    let cb = round_trip(&t, &admin, &consent_page).await;
    let r = t.callback(&admin, &cb).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    refused(
        t.callback(&admin, &cb).await,
        StatusCode::BAD_REQUEST,
        "already used",
    )
    .await;
}

/// The browser-binding cookie's flags, and session fixation: a session id planted in the
/// browser before sign-in is never the one that becomes signed in.
#[tokio::test]
async fn binding_cookie_flags_and_no_session_fixation() {
    let t = SignIn::start().await;
    let (org, _) = t.app.org("acme").await;
    t.connect(org, &t.tenant()).await;
    let upn = t.member(0).user_principal_name;
    let raw = t.app.api();
    let cookie_of = |r: &reqwest::Response, name: &str| -> Option<String> {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|c| c.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(str::to_string)
    };
    let value = |set_cookie: &str| {
        set_cookie
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string()
    };
    let r = raw.get(t.app.url("/login")).send().await.unwrap();
    let csrf_cookie = value(&cookie_of(&r, "latchkey_csrf").unwrap());
    let token = csrf_token(&r.text().await.unwrap()).unwrap();
    let planted = "planted-by-an-attacker-0123456789abcdefghijkl";
    let r = raw
        .post(t.app.url("/auth/microsoft"))
        .header("origin", &t.app.base)
        .header("sec-fetch-site", "same-origin")
        .header(
            "cookie",
            format!("latchkey_csrf={csrf_cookie}; latchkey_session={planted}"),
        )
        .form(&[("csrf_token", token.as_str()), ("login_hint", upn.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let binding = cookie_of(&r, "latchkey_signin").expect("the binding cookie");
    let lower = binding.to_lowercase();
    for flag in ["httponly", "samesite=lax", "path=/", "max-age=600"] {
        assert!(lower.contains(flag), "{flag} in {binding}");
    }
    let back = t.authorize(&location(&r)).await;
    let r = raw
        .get(&back)
        .header(
            "cookie",
            format!(
                "latchkey_signin={}; latchkey_session={planted}",
                value(&binding)
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = value(&cookie_of(&r, "latchkey_session").unwrap());
    assert_ne!(session, planted);
    assert!(
        cookie_of(&r, "latchkey_signin").is_some_and(|c| c.to_lowercase().contains("max-age=0")),
        "the binding cookie is cleared"
    );
    let with = |s: &str| {
        raw.get(t.app.url("/dashboard"))
            .header("cookie", format!("latchkey_session={s}"))
            .send()
    };
    assert_eq!(with(planted).await.unwrap().status(), StatusCode::SEE_OTHER);
    assert_eq!(with(&session).await.unwrap().status(), StatusCode::OK);

    // Over https the binding cookie is Secure and __Host- prefixed.
    let https = TestApp::spawn_with(
        |c| {
            c.public_url = url::Url::parse("https://latchkey.example.com/").unwrap();
            c.outbound_policy = OutboundPolicy::INSECURE_DEV;
            c.entra_app = Some(LatchkeyApp {
                client_id: latchkey_entra::ClientId::parse(
                    &t.sim.latchkey_app().client_id.to_string(),
                )
                .unwrap(),
                client_secret: latchkey_crypto::SecretString::from("s".to_string()),
            });
            c.entra_login_authority = Some(url::Url::parse(t.sim.base_url()).unwrap());
        },
        latchkey_crypto::generate_key_entry("k1"),
    )
    .await;
    let r = raw.get(https.url("/login")).send().await.unwrap();
    let csrf_cookie = value(&cookie_of(&r, "__Host-latchkey_csrf").unwrap());
    let token = csrf_token(&r.text().await.unwrap()).unwrap();
    let r = raw
        .post(https.url("/auth/microsoft"))
        .header("origin", "https://latchkey.example.com")
        .header("cookie", format!("__Host-latchkey_csrf={csrf_cookie}"))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let binding = cookie_of(&r, "__Host-latchkey_signin").expect("prefixed binding cookie");
    assert!(binding.to_lowercase().contains("secure"), "{binding}");
    assert!(
        location(&r).contains(
            "redirect_uri=https%3A%2F%2Flatchkey.example.com%2Fauth%2Fmicrosoft%2Fcallback"
        ),
        "{}",
        location(&r)
    );
}

/// The administrator who created the organization with a password (same email as their
/// Microsoft account) links their Microsoft account from Your account; afterwards Sign in
/// with Microsoft signs them in as themselves. Linking needs the same person still signed
/// in, refuses an account linked to someone else and a tenant the organization did not
/// connect, and is audited.
#[tokio::test]
async fn a_password_account_links_its_microsoft_account_then_signs_in_with_it() {
    let t = SignIn::start().await;
    let (org, _) = t.app.org("acme").await;
    t.connect(org, &t.tenant()).await;
    let person = t.member(0);
    let upn = person.user_principal_name.to_lowercase();
    let me = t
        .app
        .person(org, &upn, latchkey_core::Role::SuperAdmin)
        .await;

    // Before linking, Microsoft sign-in refuses (never by email alone) and says the way out.
    let stranger = t.app.browser();
    refused(
        t.sign_in(&stranger, &upn).await,
        StatusCode::CONFLICT,
        "link this Microsoft account under Your account",
    )
    .await;

    let b = t.app.browser();
    assert_eq!(
        b.login(&upn, PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let r = b.get("/settings/account").await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains(&format!("form-action 'self' {}", t.sim.base_url())),
        "{csp}"
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("No Microsoft account is linked to you yet."),
        "{page}"
    );
    assert!(page.contains("Link your Microsoft account"));

    // A forged form (no CSRF token) starts nothing.
    let r = b
        .post("/auth/microsoft/link", &[("csrf_token", "forged")])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Signed out, the link endpoint is not there for you.
    let r = t
        .app
        .browser()
        .post("/auth/microsoft/link", &[("csrf_token", "x")])
        .await;
    assert!(
        matches!(
            r.status(),
            StatusCode::SEE_OTHER | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ),
        "{}",
        r.status()
    );

    let r = b
        .submit("/settings/account", "/auth/microsoft/link", &[])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = t
        .authorize(&with_param(&location(&r), "login_hint", &upn))
        .await;
    let r = t.callback(&b, &back).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/settings/account?linked=1");
    let (_, page) = b.get_text("/settings/account?linked=1").await;
    assert!(page.contains("Your Microsoft account is linked."));
    assert!(page.contains(&person.id.to_string()), "{page}");
    let mut tx = t.app.store().org_tx(org).await.unwrap();
    let links = latchkey_store::identities::for_user(&mut tx, me)
        .await
        .unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].object_id, person.id.to_string());
    let events = latchkey_store::audit::list(
        &mut tx,
        &latchkey_store::audit::Filter {
            target_kind: None,
            target_id: Some(me.0.to_string()),
            action_prefix: Some("user.microsoft_linked".into()),
        },
        None,
        10,
    )
    .await
    .unwrap()
    .items;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].details["object_id"], person.id.to_string());
    tx.commit().await.unwrap();

    // Now Sign in with Microsoft is this same Super Administrator, not a new member.
    let fresh = t.app.browser();
    let r = t.sign_in(&fresh, &upn).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let users: i64 = t
        .count(&format!(
            "SELECT count(*) FROM users WHERE org_id = '{}'",
            org.0
        ))
        .await;
    assert_eq!(
        users, 2,
        "the admin who signed up and the linked person; nobody new"
    );
    let (_, page) = fresh.get_text("/settings/account").await;
    assert!(page.contains("Super Administrator"), "{page}");

    // Someone else cannot link the same Microsoft account.
    let other = t
        .app
        .person(org, "other@acme.example", latchkey_core::Role::Member)
        .await;
    let ob = t.app.browser();
    assert_eq!(
        ob.login("other@acme.example", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let r = ob
        .submit("/settings/account", "/auth/microsoft/link", &[])
        .await;
    let back = t
        .authorize(&with_param(&location(&r), "login_hint", &upn))
        .await;
    let r = t.callback(&ob, &back).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("already linked to another Latchkey account")
    );
    let mut tx = t.app.store().org_tx(org).await.unwrap();
    assert!(
        latchkey_store::identities::for_user(&mut tx, other)
            .await
            .unwrap()
            .is_empty()
    );
    tx.commit().await.unwrap();

    // The person signed out (or another signed in) between start and callback: refused.
    let r = ob
        .submit("/settings/account", "/auth/microsoft/link", &[])
        .await;
    let authorize = location(&r);
    let r = ob.submit("/settings/account", "/logout", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back = t
        .authorize(&with_param(
            &authorize,
            "login_hint",
            &t.member(1).user_principal_name,
        ))
        .await;
    let r = t.callback(&ob, &back).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("no longer signed in"));
    let mut tx = t.app.store().org_tx(org).await.unwrap();
    assert!(
        latchkey_store::identities::for_user(&mut tx, other)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A tenant the organization did not connect cannot be linked.
#[tokio::test]
async fn linking_an_account_of_an_unconnected_tenant_is_refused() {
    let t = SignIn::start().await;
    let (org, admin) = t.app.org("acme").await;
    let b = t.app.browser();
    assert_eq!(
        b.login("admin@acme.example", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let r = b
        .submit("/settings/account", "/auth/microsoft/link", &[])
        .await;
    let back = t
        .authorize(&with_param(
            &location(&r),
            "login_hint",
            &t.member(0).user_principal_name,
        ))
        .await;
    let r = t.callback(&b, &back).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("no organization has connected")
    );
    let mut tx = t.app.store().org_tx(org).await.unwrap();
    assert!(
        latchkey_store::identities::for_user(&mut tx, admin)
            .await
            .unwrap()
            .is_empty()
    );
}
