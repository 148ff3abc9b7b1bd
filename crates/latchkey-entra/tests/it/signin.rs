//! "Sign in with Microsoft", the protocol side: the whole code + PKCE round trip against the
//! simulated tenant, and the signing-key cache (one fetch, unknown kids refetched at a limited
//! rate, never through a redirect, never from a loopback authority without the dev flag).

use std::time::Duration;

use latchkey_entra::onboarding::LatchkeyApp;
use latchkey_entra::signin::{AuthorizeRequest, Pkce, Rejected, SignInClient, SignInError};
use latchkey_entra::{ClientId, Endpoints, OutboundPolicy};
use latchkey_entra_sim::{SignAlg, SimConfig, SimHandle, SimServer};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:8080/auth/microsoft/callback";

fn app(sim: &SimHandle) -> LatchkeyApp {
    let lk = sim.latchkey_app();
    LatchkeyApp {
        client_id: ClientId::parse(&lk.client_id.to_string()).unwrap(),
        client_secret: SecretString::from(lk.client_secret.clone()),
    }
}

fn client(sim: &SimHandle, authority: &str) -> SignInClient {
    let endpoints =
        Endpoints::from_settings(None, Some(authority), OutboundPolicy::INSECURE_DEV).unwrap();
    SignInClient::new(endpoints, app(sim)).unwrap()
}

fn claims(sim: &SimHandle) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    json!({
        "aud": sim.latchkey_app().client_id,
        "iss": format!("{}/{}/v2.0", sim.base_url(), sim.tenant_id()),
        "iat": now, "nbf": now, "exp": now + 600,
        "tid": sim.tenant_id(), "oid": uuid::Uuid::new_v4(), "nonce": "n-1",
    })
}

async fn start() -> SimHandle {
    let mut config = SimConfig::small(31);
    config.latchkey_app.redirect_uris.push(REDIRECT.into());
    SimServer::start(config).await.unwrap()
}

#[tokio::test]
async fn code_with_pkce_yields_the_chosen_person() {
    let sim = start().await;
    let c = client(&sim, sim.base_url());
    let person = sim
        .truth_users()
        .into_iter()
        .skip(3)
        .find(|u| u.account_enabled)
        .unwrap();
    let pkce = Pkce::generate();
    let redirect = Url::parse(REDIRECT).unwrap();
    let url = c.authorize_url(&AuthorizeRequest {
        redirect_uri: &redirect,
        state: "s-1",
        nonce: "n-1",
        code_challenge: &pkce.challenge,
        login_hint: Some(&person.user_principal_name),
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(url.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let back = Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    // The simulated tenant enforces PKCE: another verifier is refused at the token endpoint.
    let wrong = c
        .redeem_code(&code, &redirect, &Pkce::generate().verifier)
        .await;
    assert!(
        matches!(
            wrong,
            Err(SignInError::Provider {
                code: Some(501481),
                ..
            })
        ),
        "{wrong:?}"
    );
    // The refused attempt did not use the code up.
    let who = c
        .complete(&code, &redirect, &pkce.verifier, "n-1")
        .await
        .unwrap();
    assert_eq!(who.tenant_id, sim.tenant_id().to_string());
    assert_eq!(who.object_id, person.id.to_string());
    assert_eq!(
        who.username.as_deref(),
        Some(person.user_principal_name.as_str())
    );
    // The same code twice: the tenant refuses.
    let again = c.complete(&code, &redirect, &pkce.verifier, "n-1").await;
    assert!(
        matches!(again, Err(SignInError::Provider { .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn signing_keys_are_cached_and_refetched_at_a_limited_rate() {
    let sim = start().await;
    let c = client(&sim, sim.base_url());
    let good = sim.sign_claims(&claims(&sim), SignAlg::Rs256).unwrap();
    let unknown = sim.sign_claims(&claims(&sim), SignAlg::UnknownKid).unwrap();
    c.validate_id_token(&good, "n-1").await.unwrap();
    c.validate_id_token(&good, "n-1").await.unwrap();
    assert_eq!(c.keys().fetches(), 1, "cached");
    for _ in 0..3 {
        let e = c.validate_id_token(&unknown, "n-1").await.unwrap_err();
        assert!(
            matches!(e, SignInError::Rejected(Rejected::UnknownKey)),
            "{e}"
        );
    }
    assert_eq!(
        c.keys().fetches(),
        1,
        "unknown kids wait for the refetch interval"
    );

    // With the interval elapsed (zero here), an unknown kid triggers one fetch each time: keys
    // that Microsoft rolls over are picked up without a restart.
    let eager = client(&sim, sim.base_url()).with_refetch_interval(Duration::ZERO);
    eager.validate_id_token(&good, "n-1").await.unwrap();
    assert!(eager.validate_id_token(&unknown, "n-1").await.is_err());
    assert!(eager.validate_id_token(&unknown, "n-1").await.is_err());
    assert_eq!(eager.keys().fetches(), 3);
    assert_eq!(
        eager.keys().url().as_str(),
        format!("{}/organizations/discovery/v2.0/keys", sim.base_url())
    );
}

#[tokio::test]
async fn signing_keys_come_only_from_an_allowed_authority_and_never_via_a_redirect() {
    let sim = start().await;
    // Without the development flag a loopback (or private, or metadata) authority is refused
    // before any request.
    for authority in [
        sim.base_url().to_string(),
        "https://169.254.169.254".into(),
        "https://10.0.0.1".into(),
        "https://[::ffff:127.0.0.1]".into(),
        "https://2130706433".into(),
    ] {
        assert!(
            Endpoints::from_settings(None, Some(&authority), OutboundPolicy::STRICT).is_err(),
            "{authority}"
        );
    }
    // An authority whose JWKS answers with a redirect to the real keys: not followed.
    let jwks = format!("{}/organizations/discovery/v2.0/keys", sim.base_url());
    let router = axum::Router::new().route(
        "/organizations/discovery/v2.0/keys",
        axum::routing::get(move || {
            let to = jwks.clone();
            async move { (axum::http::StatusCode::FOUND, [("location", to)]) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let c = client(&sim, &base);
    let good = sim.sign_claims(&claims(&sim), SignAlg::Rs256).unwrap();
    let e = c.validate_id_token(&good, "n-1").await.unwrap_err();
    assert!(
        matches!(&e, SignInError::Network(m) if m.contains("302")),
        "{e}"
    );
}
