//! Client-credentials tokens against the simulated identity platform.

use std::sync::Arc;
use std::time::Duration;

use latchkey_entra::{AuthError, Connection, OutboundPolicy, TenantId};
use latchkey_entra_sim::{Faults, SimConfig, SimServer, default_permissions};
use secrecy::SecretString;

use crate::{T, connect_with, fast_retries, settings};

#[tokio::test]
async fn token_is_acquired_cached_and_carries_the_granted_roles() {
    let t = T::new().await;
    let tok = t.conn.tokens.token().await.expect("token");
    let mut roles = tok.roles().to_vec();
    roles.sort();
    assert_eq!(roles, default_permissions());
    assert_eq!(
        tok.claims().tid.as_deref(),
        Some(t.sim.tenant_id().to_string().as_str())
    );
    // Cached: more calls, no more token requests.
    for _ in 0..5 {
        t.conn.tokens.token().await.unwrap();
    }
    assert_eq!(t.token_requests(), 1);
    assert_eq!(t.conn.tokens.tokens_acquired(), 1);
    // Nothing secret in Debug output.
    let dbg = format!("{tok:?} {:?}", t.conn.tokens);
    assert!(!dbg.contains(&t.sim.customer_app().client_secret), "{dbg}");
    assert!(!dbg.contains("eyJ"), "{dbg}");
}

#[tokio::test]
async fn concurrent_callers_share_one_token_request() {
    let t = T::with(SimConfig::small(7).with_faults(Faults {
        latency_ms: 100,
        ..Faults::default()
    }))
    .await;
    let tokens = t.conn.tokens.clone();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let tokens = Arc::clone(&tokens);
            tokio::spawn(async move { tokens.token().await.map(|t| t.roles().len()) })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap() > 0);
    }
    assert_eq!(t.token_requests(), 1);
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_before_it_expires() {
    let t = T::with(SimConfig::small(7).with_faults(Faults {
        token_lifetime_secs: 4,
        ..Faults::default()
    }))
    .await;
    t.conn.tokens.token().await.unwrap();
    t.conn.tokens.token().await.unwrap();
    assert_eq!(t.conn.tokens.tokens_acquired(), 1);
    // Lifetime 4 s: refreshed a quarter of the lifetime early, i.e. after 3 s.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    t.conn.tokens.token().await.unwrap();
    assert_eq!(t.conn.tokens.tokens_acquired(), 2);
    assert_eq!(t.token_requests(), 2);
}

#[tokio::test]
async fn a_verified_domain_works_as_the_tenant() {
    let sim = SimServer::start(SimConfig::small(7)).await.unwrap();
    let mut s = settings(&sim);
    s.tenant_id = sim.initial_domain().to_uppercase();
    let conn = connect_with(&s, fast_retries());
    assert!(matches!(conn.tokens.tenant(), TenantId::Domain(_)));
    conn.tokens.token().await.expect("domain tenant signs in");
}

async fn auth_error(
    edit: impl FnOnce(&mut latchkey_entra::ConnectionSettings),
    faults: Faults,
) -> AuthError {
    let sim = SimServer::start(SimConfig::small(7).with_faults(faults))
        .await
        .unwrap();
    let mut s = settings(&sim);
    edit(&mut s);
    let conn = connect_with(&s, fast_retries());
    conn.tokens.token().await.expect_err("sign-in must fail")
}

#[tokio::test]
async fn wrong_secret_is_reported_as_such() {
    let e = auth_error(
        |s| s.client_secret = SecretString::from("wrong~secret".to_string()),
        Faults::default(),
    )
    .await;
    assert_eq!(e, AuthError::InvalidSecret { code: 7000215 });
    assert_eq!(e.field(), Some("client_secret"));
    assert!(e.to_string().contains("not its Secret ID"), "{e}");
    assert!(!e.is_transient());
}

#[tokio::test]
async fn expired_secret_is_reported_with_what_to_do() {
    let e = auth_error(
        |_| {},
        Faults {
            expired_secret: true,
            ..Faults::default()
        },
    )
    .await;
    assert_eq!(
        e.to_string(),
        "The client secret has expired (AADSTS7000222): create a new secret in Entra > App registrations > Certificates & secrets and paste it here."
    );
}

#[tokio::test]
async fn unknown_tenant_and_unknown_app() {
    let e = auth_error(
        |s| s.tenant_id = "00000000-1111-2222-3333-444444444444".into(),
        Faults::default(),
    )
    .await;
    assert!(
        matches!(e, AuthError::TenantNotFound { ref tenant } if tenant == "00000000-1111-2222-3333-444444444444"),
        "{e:?}"
    );
    assert_eq!(e.field(), Some("tenant_id"));
    assert_eq!(e.aadsts_code(), Some(90002));

    let e = auth_error(
        |s| s.client_id = "99999999-8888-7777-6666-555555555555".into(),
        Faults::default(),
    )
    .await;
    assert!(matches!(e, AuthError::AppNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("AADSTS700016"), "{e}");
}

#[tokio::test]
async fn an_unreachable_authority_is_a_transient_network_error() {
    // Bind and drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = latchkey_entra::ConnectionSettings {
        tenant_id: "contoso.onmicrosoft.com".into(),
        client_id: "11111111-2222-3333-4444-555555555555".into(),
        client_secret: SecretString::from("x~y".to_string()),
        graph_domain: Some(format!("http://127.0.0.1:{port}")),
        login_authority: None,
    };
    let conn = Connection::connect(&s, OutboundPolicy::INSECURE_DEV)
        .await
        .unwrap();
    let e = conn.tokens.token().await.unwrap_err();
    assert!(matches!(e, AuthError::Network { .. }), "{e:?}");
    assert!(e.is_transient());
    // Strict mode refuses the same settings before any request.
    let err = Connection::connect(&s, OutboundPolicy::STRICT)
        .await
        .unwrap_err();
    assert_eq!(err.field_errors()[0].field, "graph_domain");
}
