//! The OAuth connector mode: admin consent to Latchkey's multi-tenant app in the simulated tenant.

use latchkey_entra::consent::{ConsentError, admin_consent_url, parse_admin_consent_callback};
use latchkey_entra::endpoints::http_client;
use latchkey_entra::probe::{ProbeOptions, Verdict, probe};
use latchkey_entra::{
    AuthError, ClientCredentials, Connection, Endpoints, OutboundPolicy, TenantId,
};
use latchkey_entra_sim::{ConsentOutcome, SimConfig, SimHandle, SimServer};
use secrecy::SecretString;
use url::Url;

use crate::fast_retries;

struct Oauth {
    sim: SimHandle,
    endpoints: Endpoints,
    tenant: TenantId,
    creds: ClientCredentials,
}

async fn oauth() -> Oauth {
    let sim = SimServer::start(SimConfig::small(7)).await.unwrap();
    let endpoints =
        Endpoints::from_settings(Some(sim.base_url()), None, OutboundPolicy::INSECURE_DEV).unwrap();
    let tenant = TenantId::parse(&sim.tenant_id().to_string()).unwrap();
    let app = sim.latchkey_app();
    let creds = ClientCredentials {
        tenant: tenant.clone(),
        client_id: app.client_id.into(),
        client_secret: SecretString::from(app.client_secret.clone()),
    };
    Oauth {
        sim,
        endpoints,
        tenant,
        creds,
    }
}

/// Follows the consent URL as the admin's browser would, returning the callback's query.
async fn consent(o: &Oauth) -> String {
    let app = o.sim.latchkey_app();
    let redirect = Url::parse(&app.redirect_uris[0]).unwrap();
    let url = admin_consent_url(
        &o.endpoints,
        &o.tenant,
        app.client_id.into(),
        &redirect,
        "state-123",
    );
    let resp = http_client(OutboundPolicy::INSECURE_DEV)
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302, "the identity platform redirects back");
    let location = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(redirect.as_str()));
    location.query().unwrap_or("").to_string()
}

#[tokio::test]
async fn consent_then_a_token_then_connected() {
    let o = oauth().await;
    let conn = Connection::new(o.endpoints.clone(), o.creds.clone(), fast_retries()).unwrap();
    // Before consent the app does not exist in the tenant.
    let before = conn.tokens.token().await.unwrap_err();
    assert!(
        matches!(before, AuthError::AppNotFound { .. }),
        "{before:?}"
    );

    let cb = parse_admin_consent_callback(&consent(&o).await).unwrap();
    assert_eq!(cb.state, "state-123");
    assert_eq!(cb.claims_tenant(&o.tenant), Some(true));
    assert!(o.sim.latchkey_consented());

    let conn = Connection::new(o.endpoints.clone(), o.creds.clone(), fast_retries()).unwrap();
    let r = probe(
        &conn.graph,
        &ProbeOptions {
            provisioning: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.verdict, Verdict::Connected, "{r:#?}");
}

#[tokio::test]
async fn declined_consent_says_what_to_do() {
    let o = oauth().await;
    o.sim.set_consent_outcome(ConsentOutcome::Deny);
    let err = parse_admin_consent_callback(&consent(&o).await).unwrap_err();
    assert!(
        matches!(
            err,
            ConsentError::Declined {
                code: Some(65004),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("Login with Microsoft"));
}

#[tokio::test]
async fn consent_in_another_tenant_is_caught() {
    let o = oauth().await;
    o.sim.set_consent_outcome(ConsentOutcome::WrongTenant);
    let cb = parse_admin_consent_callback(&consent(&o).await).unwrap();
    assert_eq!(cb.claims_tenant(&o.tenant), Some(false));
    // And even if the claim were believed, no token for the entered tenant exists.
    let conn = Connection::new(o.endpoints.clone(), o.creds.clone(), fast_retries()).unwrap();
    let r = probe(&conn.graph, &ProbeOptions::default()).await;
    assert_eq!(r.verdict, Verdict::Failed);
    assert!(r.summary.contains("AADSTS700016"), "{}", r.summary);
}
