//! The onboarding connection test against the simulated tenant.

use latchkey_entra::probe::{FeatureState, Level, ProbeOptions, Purpose, Verdict, probe};
use latchkey_entra_sim::{Faults, SYNC_PERMISSIONS, SimConfig};
use secrecy::SecretString;

use crate::{T, connect_with, fast_retries, settings};

#[tokio::test]
async fn a_healthy_tenant_is_connected() {
    let t = T::new().await;
    let r = probe(
        &t.conn.graph,
        &ProbeOptions {
            provisioning: true,
            fetch_sign_in_activity: true,
            schedule_scim_provisioning: true,
            disable_audit_feed: false,
        },
    )
    .await;
    assert_eq!(r.verdict, Verdict::Connected, "{r:#?}");
    assert!(r.verdict.is_usable());
    let tenant = r.tenant.as_ref().unwrap();
    assert_eq!(tenant.id, t.sim.tenant_id().to_string());
    assert_eq!(tenant.display_name, "Contoso");
    assert_eq!(
        tenant.default_domain.as_deref(),
        Some(t.sim.domain().as_str())
    );
    assert!(tenant.verified_domains.contains(&t.sim.initial_domain()));
    assert!(r.permissions.missing.is_empty());
    assert_eq!(r.permissions.needed.len(), 18);
    let f = r.features.as_ref().unwrap();
    assert_eq!(
        (f.sign_in_activity.state, f.pim.state, f.audit_feed.state),
        (
            FeatureState::Available,
            FeatureState::Available,
            FeatureState::Available
        )
    );
    assert!(
        r.summary.starts_with("Connected to Contoso"),
        "{}",
        r.summary
    );
    // The simulator has no /applications endpoint: the expiry is unknown, which is not a warning.
    let secret = r.client_secret.as_ref().unwrap();
    assert_eq!(secret.expires_at, None);
    assert!(
        r.messages.iter().all(|m| m.level == Level::Info),
        "{:?}",
        r.messages
    );
    assert!(r.requests.requests >= 5);
    // Serialisable for the job result and the API.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["verdict"], "connected");
    assert_eq!(json["features"]["pim"]["state"], "available");
    assert!(
        !json
            .to_string()
            .contains(&t.sim.customer_app().client_secret)
    );
}

#[tokio::test]
async fn sync_only_permissions_are_missing_for_provisioning() {
    let t = T::with(SimConfig::small(7).with_permissions(SYNC_PERMISSIONS.iter().copied())).await;
    let sync = probe(&t.conn.graph, &ProbeOptions::default()).await;
    assert_eq!(
        sync.verdict,
        Verdict::Connected,
        "the sync set is enough for sync: {sync:#?}"
    );

    let r = probe(
        &t.conn.graph,
        &ProbeOptions {
            provisioning: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.verdict, Verdict::MissingPermissions);
    assert!(!r.verdict.is_usable());
    let missing: Vec<&str> = r
        .permissions
        .missing
        .iter()
        .map(|m| m.permission.as_str())
        .collect();
    // Read permissions granted in the sync set do not cover their ReadWrite forms.
    assert!(
        missing.contains(&"GroupMember.ReadWrite.All"),
        "{missing:?}"
    );
    assert!(missing.contains(&"Synchronization.ReadWrite.All"));
    assert!(!missing.contains(&"AuditLog.Read.All"));
    assert!(
        r.permissions
            .missing
            .iter()
            .all(|m| m.needed_for == vec![Purpose::Provisioning])
    );
    assert!(r.messages.iter().any(|m| m.level == Level::Error
        && m.text == "Missing permission GroupMember.ReadWrite.All needed for provisioning: add it in Entra > App registrations > API permissions and grant admin consent."));
    assert!(
        r.summary.contains("GroupMember.ReadWrite.All"),
        "{}",
        r.summary
    );
    assert_eq!(r.tenant.as_ref().unwrap().display_name, "Contoso");

    // SCIM scheduling alone adds Synchronization.ReadWrite.All to the sync set.
    let r = probe(
        &t.conn.graph,
        &ProbeOptions {
            schedule_scim_provisioning: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.verdict, Verdict::MissingPermissions);
    let m: Vec<_> = r
        .permissions
        .missing
        .iter()
        .map(|m| (m.permission.as_str(), m.needed_for.clone()))
        .collect();
    assert_eq!(
        m,
        vec![(
            "Synchronization.ReadWrite.All",
            vec![Purpose::ScimProvisioning]
        )]
    );
}

#[tokio::test]
async fn no_permissions_at_all_is_explained() {
    let t = T::with(SimConfig::small(7).with_permissions(Vec::<String>::new())).await;
    let r = probe(&t.conn.graph, &ProbeOptions::default()).await;
    assert_eq!(r.verdict, Verdict::MissingPermissions);
    assert!(r.permissions.granted.is_empty());
    assert_eq!(r.permissions.missing.len(), 16);
    assert!(
        r.messages
            .iter()
            .any(|m| m.text.contains("no application permissions granted")),
        "{:?}",
        r.messages
    );
    let f = r.features.as_ref().unwrap();
    assert_eq!(f.sign_in_activity.state, FeatureState::NoPermission);
}

#[tokio::test]
async fn sign_in_failures_fail_the_test_with_the_field_to_fix() {
    let t = T::with(SimConfig::small(7).with_faults(Faults {
        expired_secret: true,
        ..Faults::default()
    }))
    .await;
    let r = probe(&t.conn.graph, &ProbeOptions::default()).await;
    assert_eq!(r.verdict, Verdict::Failed);
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.field.as_deref(), Some("client_secret"));
    assert!(!f.transient);
    assert!(
        r.summary
            .starts_with("The client secret has expired (AADSTS7000222)"),
        "{}",
        r.summary
    );
    assert_eq!(r.requests.requests, 0, "no Graph request without a token");

    let mut s = settings(&t.sim);
    s.client_secret = SecretString::from("not-the-secret".to_string());
    let r = probe(
        &connect_with(&s, fast_retries()).graph,
        &ProbeOptions::default(),
    )
    .await;
    assert_eq!(r.failure.unwrap().field.as_deref(), Some("client_secret"));
    assert!(r.summary.contains("AADSTS7000215"));

    let mut s = settings(&t.sim);
    s.tenant_id = "fabrikam.onmicrosoft.com".into();
    let r = probe(
        &connect_with(&s, fast_retries()).graph,
        &ProbeOptions::default(),
    )
    .await;
    assert_eq!(r.verdict, Verdict::Failed);
    assert_eq!(r.failure.unwrap().field.as_deref(), Some("tenant_id"));
    assert!(r.summary.contains("AADSTS90002"));
}

#[tokio::test]
async fn a_tenant_without_premium_connects_with_warnings() {
    let faults = Faults {
        premium_p1: false,
        premium_p2: false,
        audit_unavailable: true,
        ..Faults::default()
    };
    let t = T::with(SimConfig::small(7).with_faults(faults)).await;
    let r = probe(
        &t.conn.graph,
        &ProbeOptions {
            fetch_sign_in_activity: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.verdict, Verdict::ConnectedWithWarnings, "{r:#?}");
    assert!(r.verdict.is_usable());
    let f = r.features.as_ref().unwrap();
    assert_eq!(f.sign_in_activity.state, FeatureState::Unlicensed);
    assert_eq!(f.pim.state, FeatureState::Unlicensed);
    assert_eq!(f.audit_feed.state, FeatureState::Unlicensed);
    let warnings: Vec<&str> = r
        .messages
        .iter()
        .filter(|m| m.level == Level::Warning)
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("sign-in activity needs Microsoft Entra ID P1 or P2"))
    );
    assert!(warnings.iter().any(|w| w.contains("PIM")));
    assert!(r.summary.contains("3 warnings"), "{}", r.summary);

    // Options that do not need the features: only the PIM note remains.
    let r = probe(
        &t.conn.graph,
        &ProbeOptions {
            disable_audit_feed: true,
            ..Default::default()
        },
    )
    .await;
    let warnings = r
        .messages
        .iter()
        .filter(|m| m.level == Level::Warning)
        .count();
    assert_eq!(warnings, 1, "{:?}", r.messages);
}

#[tokio::test]
async fn probing_survives_throttling() {
    let faults = Faults {
        throttle: latchkey_entra_sim::Throttle::EveryN { n: 2 },
        retry_after_secs: 0.05,
        ..Faults::default()
    };
    let t = T::with(SimConfig::small(7).with_faults(faults)).await;
    let r = probe(&t.conn.graph, &ProbeOptions::default()).await;
    assert_eq!(r.verdict, Verdict::Connected, "{r:#?}");
    assert!(r.requests.throttled > 0);
}

#[test]
fn permission_sets_match_the_customer_guide_as_the_simulator_reads_it() {
    assert_eq!(
        latchkey_entra::probe::SYNC_PERMISSIONS,
        latchkey_entra_sim::SYNC_PERMISSIONS
    );
    assert_eq!(
        latchkey_entra::probe::PROVISIONING_PERMISSIONS,
        latchkey_entra_sim::PROVISIONING_PERMISSIONS
    );
}
