//! A directory role granted just in time through PIM carries its end in Entra too (a
//! safety net after Latchkey's own expiry); an approved extension moves that end out, so
//! Entra never takes the access away before Latchkey would.

use crate::support::Env;
use latchkey_access::{NewAsk, Policy};
use latchkey_core::Role;
use latchkey_store::connectors;
use latchkey_store::resources::{self, ResourceFilter};
use std::time::Duration;
use uuid::Uuid;

/// A directory role's stored resource, its role definition id and its `assigned` entitlement.
async fn a_role(env: &Env) -> (Uuid, Uuid) {
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let filter = ResourceFilter {
        types: vec!["role".into()],
        ..ResourceFilter::default()
    };
    let roles = resources::list_resources(&mut tx, env.connector, &filter, None, 50)
        .await
        .unwrap()
        .items;
    let role = roles.first().expect("synced directory roles");
    let assigned =
        resources::list_entitlements(&mut tx, env.connector, Some(role.id), None, None, 10)
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.slug == "assigned")
            .expect("an `assigned` entitlement");
    (role.external_id.parse().unwrap(), assigned.id)
}

#[tokio::test]
async fn an_extension_moves_the_pim_schedules_end_in_entra() {
    let env = Env::new(313).await;
    let (role_id, ent) = a_role(&env).await;
    // What a connection test records for a tenant with Entra ID P2: roles go through PIM.
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    connectors::set_capabilities(
        &mut tx,
        env.connector,
        &serde_json::json!({"features": {"pim": {"state": "available"}}}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (gid, _) = env.group(0).await;
    // The requester must not hold the role already (the generated tenant gives some users
    // directory roles, and which role is "first" depends on the sync's write order).
    let out: Vec<Uuid> = env
        .outsiders(gid)
        .into_iter()
        .filter(|u| env.sim.role_assignment_end(role_id, *u).is_none())
        .collect();
    let (requester_entra, approver_entra) = (out[0], out[1]);
    let (_, requester) = env.person("req", Role::Member, requester_entra).await;
    let (approver_id, approver) = env.person("approver", Role::Member, approver_entra).await;
    env.policy(
        ent,
        Policy {
            max_duration_seconds: 7200,
            default_duration_seconds: 600,
            decision_timeout_seconds: 600,
            reminder_before_seconds: 0,
            ..Policy::default()
        },
        Some(approver_id),
    )
    .await;
    assert_eq!(env.sim.role_assignment_end(role_id, requester_entra), None);

    let id = env
        .access
        .ask(
            env.org,
            &requester,
            NewAsk {
                entitlement_id: ent,
                duration_seconds: Some(600),
                justification: "OPS-9 rotate keys".into(),
                ..NewAsk::default()
            },
        )
        .await
        .unwrap()
        .request
        .id;
    env.access
        .approve(env.org, &approver, id, "")
        .await
        .unwrap();
    let active = env.wait_state(id, "active", Duration::from_secs(20)).await;
    let expires = active.expires_at.unwrap().unix_timestamp();
    let end = env
        .sim
        .role_assignment_end(role_id, requester_entra)
        .expect("assigned in Entra")
        .expect("time-bound through PIM");
    assert!(
        end >= expires && end <= expires + 400,
        "Entra ends it shortly after Latchkey's expiry ({end} vs {expires})"
    );

    env.access
        .extend(
            env.org,
            &requester,
            id,
            Some(3600),
            "the rotation takes longer",
        )
        .await
        .unwrap();
    env.access
        .approve(env.org, &approver, id, "ok")
        .await
        .unwrap();
    let extended = env.get(id).await.expires_at.unwrap().unix_timestamp();
    assert_eq!(extended - expires, 3600);
    // The end in Entra follows (the grant task with the new end runs on the worker).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now_end = env
            .sim
            .role_assignment_end(role_id, requester_entra)
            .expect("still assigned")
            .expect("still time-bound");
        if now_end >= extended {
            assert!(now_end <= extended + 400, "{now_end} vs {extended}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Entra still ends the access at {now_end}, before Latchkey's new expiry {extended}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(env.get(id).await.state, "active");

    // Released early: removed from Entra and verified.
    env.access
        .release(env.org, &requester, id, "done")
        .await
        .unwrap();
    let ended = env.wait_state(id, "revoked", Duration::from_secs(20)).await;
    assert_eq!(ended.end_reason.as_deref(), Some("released"));
    assert_eq!(env.sim.role_assignment_end(role_id, requester_entra), None);
}
