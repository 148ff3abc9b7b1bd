//! Decisions that race: two approvers at once (one of one needed; two of two needed), an
//! approval racing the decision timeout, an extension's approval racing the expiry. The
//! request row is locked by every change, so exactly one outcome wins and the loser is told.

use crate::support::Env;
use latchkey_access::policy::{ApproverRule, Risk, Stage};
use latchkey_access::{AccessError, NewAsk, Policy, lifecycle};
use latchkey_core::Role;
use std::time::Duration;

fn ask(entitlement: uuid::Uuid, secs: i64) -> NewAsk {
    NewAsk {
        entitlement_id: entitlement,
        duration_seconds: Some(secs),
        justification: "race".into(),
        ..NewAsk::default()
    }
}

#[tokio::test]
async fn racing_decisions_have_exactly_one_outcome() {
    let mut env = Env::new(201).await;
    // Decisions only: nothing runs in the background while the races happen.
    env.stop_worker();
    let (gid, group) = env.group(0).await;
    let ent = env.members_of(group).await;
    let (gid2, group2) = env.group(1).await;
    let ent2 = env.members_of(group2).await;
    let out: Vec<_> = env
        .outsiders(gid)
        .into_iter()
        .filter(|u| !env.in_group(gid2, *u))
        .collect();
    let (_, requester) = env.person("requester", Role::Member, out[0]).await;
    let (a_id, a) = env.person("alice", Role::Member, out[1]).await;
    let (b_id, b) = env.person("bob", Role::Member, out[2]).await;
    let (_, requester2) = env.person("requester2", Role::Member, out[3]).await;
    let stage = |required| Stage {
        approvers: vec![
            ApproverRule::User { user_id: a_id.0 },
            ApproverRule::User { user_id: b_id.0 },
        ],
        required,
    };

    // Any one of two: both approve at the same moment; one approval decides, the other is told.
    env.policy(
        ent,
        Policy {
            approval_stages: vec![stage(1)],
            decision_timeout_seconds: 600,
            ..Policy::default()
        },
        None,
    )
    .await;
    let id = env
        .access
        .ask(env.org, &requester, ask(ent, 60))
        .await
        .unwrap()
        .request
        .id;
    let (ra, rb) = tokio::join!(
        env.access.approve(env.org, &a, id, "a"),
        env.access.approve(env.org, &b, id, "b")
    );
    let oks = [ra.is_ok(), rb.is_ok()].iter().filter(|x| **x).count();
    assert_eq!(oks, 1, "{ra:?} {rb:?}");
    let loser = if ra.is_ok() { rb } else { ra };
    assert!(matches!(loser, Err(AccessError::Conflict(_))), "{loser:?}");
    assert_eq!(env.get(id).await.state, "provisioning");
    assert_eq!(
        env.events(id).await,
        ["requested", "approved", "provisioning_started"]
    );

    // Two of two: both approvals count, and provisioning starts once.
    env.policy(
        ent2,
        Policy {
            approval_stages: vec![stage(2)],
            decision_timeout_seconds: 600,
            ..Policy::default()
        },
        None,
    )
    .await;
    let id2 = env
        .access
        .ask(env.org, &requester2, ask(ent2, 60))
        .await
        .unwrap()
        .request
        .id;
    let (ra, rb) = tokio::join!(
        env.access.approve(env.org, &a, id2, "a"),
        env.access.approve(env.org, &b, id2, "b")
    );
    assert!(ra.is_ok() && rb.is_ok(), "{ra:?} {rb:?}");
    let r = env.get(id2).await;
    assert_eq!(r.state, "provisioning");
    assert_eq!(
        env.events(id2).await,
        ["requested", "approved", "provisioning_started"]
    );
    assert!(matches!(
        env.access.approve(env.org, &a, id2, "again").await,
        Err(AccessError::Conflict(_))
    ));
}

#[tokio::test]
async fn approval_racing_the_timeout_and_extension_racing_the_expiry() {
    let env = Env::new(202).await;
    let (gid, group) = env.group(0).await;
    let ent = env.members_of(group).await;
    let out = env.outsiders(gid);
    let (_, requester) = env.person("requester", Role::Member, out[0]).await;
    let (a_id, a) = env.person("alice", Role::Member, out[1]).await;

    // The decision time limit is one second; the approval and the timeout race for it.
    env.policy(
        ent,
        Policy {
            decision_timeout_seconds: 1,
            max_duration_seconds: 3600,
            reminder_before_seconds: 0,
            ..Policy::default()
        },
        Some(a_id),
    )
    .await;
    for round in 0..3 {
        let id = env
            .access
            .ask(env.org, &requester, ask(ent, 3))
            .await
            .unwrap()
            .request
            .id;
        // Around the deadline: either side may get the row first.
        tokio::time::sleep(Duration::from_millis(950 + 50 * round)).await;
        let (approved, advanced) = tokio::join!(
            env.access.approve(env.org, &a, id, "just in time"),
            lifecycle::advance(env.store(), &env.access.config, env.org, id)
        );
        advanced.unwrap();
        let r = env.get(id).await;
        let events = env.events(id).await;
        match approved {
            Ok(_) => {
                assert_ne!(r.state, "timed_out", "round {round}: {events:?}");
                assert_eq!(events[1], "approved");
                assert!(!events.contains(&"timed_out".to_string()));
                // Let it run out so the next round can ask again.
                env.wait_state(id, "expired", Duration::from_secs(30)).await;
            }
            Err(e) => {
                assert!(
                    matches!(e, AccessError::Conflict(_)),
                    "round {round}: {e:?}"
                );
                assert_eq!(r.state, "timed_out");
                assert_eq!(events, ["requested", "timed_out"]);
            }
        }
    }

    // An extension asked just before expiry, approved while the expiry fires.
    let mut p = Policy {
        risk: Risk::Medium,
        max_duration_seconds: 3600,
        decision_timeout_seconds: 600,
        reminder_before_seconds: 0,
        ..Policy::default()
    };
    p.approval_stages = vec![Stage {
        approvers: vec![ApproverRule::User { user_id: a_id.0 }],
        required: 1,
    }];
    env.policy(ent, p, None).await;
    let id = env
        .access
        .ask(env.org, &requester, ask(ent, 2))
        .await
        .unwrap()
        .request
        .id;
    env.access.approve(env.org, &a, id, "").await.unwrap();
    let active = env.wait_state(id, "active", Duration::from_secs(20)).await;
    env.access
        .extend(env.org, &requester, id, Some(600), "need more")
        .await
        .unwrap();
    let wait = active.expires_at.unwrap() - time::OffsetDateTime::now_utc();
    tokio::time::sleep(wait.try_into().unwrap_or_default()).await;
    let (approved, advanced) = tokio::join!(
        env.access.approve(env.org, &a, id, "ok"),
        lifecycle::advance(env.store(), &env.access.config, env.org, id)
    );
    advanced.unwrap();
    let events = env.events(id).await;
    match approved {
        Ok(_) => {
            // The extension won: the window moved and no removal started before it.
            let pos_ext = events
                .iter()
                .position(|e| e == "extension_approved")
                .unwrap();
            assert!(
                events
                    .iter()
                    .position(|e| e == "expiry_started")
                    .is_none_or(|p| p > pos_ext)
            );
        }
        Err(e) => {
            // The expiry won: the extension was refused and the access ends.
            assert!(matches!(e, AccessError::Conflict(_)), "{e:?}");
            assert!(!events.contains(&"extension_approved".to_string()));
            env.wait_state(id, "expired", Duration::from_secs(30)).await;
        }
    }
}
