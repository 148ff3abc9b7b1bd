//! Who decides: the requester's manager from Entra, multi-stage progression with "N of
//! them" stages, the fallback to Super Administrators when a stage resolves to nobody, and
//! a denial in a later stage ending the request.

use crate::support::Env;
use latchkey_access::policy::{ApproverRule, RequesterMode, Requesters, Stage};
use latchkey_access::{AccessError, NewAsk, Policy};
use latchkey_core::Role;
use latchkey_store::access_requests;
use std::time::Duration;
use uuid::Uuid;

fn two_stage_policy(first: Vec<ApproverRule>, second: Vec<ApproverRule>, required: u32) -> Policy {
    Policy {
        max_duration_seconds: 3600,
        default_duration_seconds: 600,
        decision_timeout_seconds: 600,
        reminder_before_seconds: 0,
        approval_stages: vec![
            Stage {
                approvers: first,
                required: 1,
            },
            Stage {
                approvers: second,
                required,
            },
        ],
        ..Policy::default()
    }
}

fn ask(entitlement: Uuid) -> NewAsk {
    NewAsk {
        entitlement_id: entitlement,
        duration_seconds: Some(600),
        justification: "OPS-7 incident".into(),
        ..NewAsk::default()
    }
}

/// `(user, manager)` object ids of member users outside `group` whose manager is a live,
/// enabled member user other than themselves.
fn users_with_managers(env: &Env, group: Uuid) -> Vec<(Uuid, Uuid)> {
    let outsiders = env.outsiders(group);
    env.sim
        .truth_users()
        .into_iter()
        .filter(|u| outsiders.contains(&u.id))
        .filter_map(|u| u.manager_id.map(|m| (u.id, m)))
        .filter(|(u, m)| u != m && outsiders.contains(m))
        .collect()
}

/// `(round, stage, email, why)` of every approver asked so far.
async fn approvers(env: &Env, id: Uuid) -> Vec<(i32, i32, String, String)> {
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    access_requests::approvers(&mut tx, id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.round, a.stage, a.email, a.why))
        .collect()
}

#[tokio::test]
async fn the_managers_stage_then_two_of_two_named_approvers() {
    let env = Env::new(311).await;
    let (gid, group) = env.group(0).await;
    let ent = env.members_of(group).await;
    let pairs = users_with_managers(&env, gid);
    let (requester_entra, manager_entra) = *pairs.first().expect("a user with a manager");
    let others: Vec<Uuid> = env
        .outsiders(gid)
        .into_iter()
        .filter(|u| *u != requester_entra && *u != manager_entra)
        .collect();
    let (_, requester) = env.person("req", Role::Member, requester_entra).await;
    let (_, manager) = env.person("boss", Role::Member, manager_entra).await;
    let (a1_id, a1) = env.person("sec1", Role::Member, others[0]).await;
    let (a2_id, a2) = env.person("sec2", Role::Member, others[1]).await;
    let (_, bystander) = env.person("bystander", Role::Member, others[2]).await;
    env.policy(
        ent,
        two_stage_policy(
            vec![ApproverRule::Manager],
            vec![
                ApproverRule::User { user_id: a1_id.0 },
                ApproverRule::User { user_id: a2_id.0 },
            ],
            2,
        ),
        None,
    )
    .await;

    let id = env
        .access
        .ask(env.org, &requester, ask(ent))
        .await
        .unwrap()
        .request
        .id;
    // Stage 1 is the requester's manager as Entra knows it, and only them.
    assert_eq!(
        approvers(&env, id).await,
        [(0, 0, "boss@contoso.test".into(), "manager".into())]
    );
    let mail = env.mail().await;
    assert!(
        mail.iter()
            .any(|(to, s, _)| to == "boss@contoso.test" && s.starts_with("Approval needed")),
        "{mail:?}"
    );
    assert!(
        !mail.iter().any(|(to, _, _)| to.starts_with("sec")),
        "stage 2 is not asked before stage 1 is done: {mail:?}"
    );
    for (who, caller) in [("bystander", &bystander), ("a stage-2 approver", &a1)] {
        let refused = env.access.approve(env.org, caller, id, "").await;
        assert!(
            matches!(&refused, Err(AccessError::Forbidden(m)) if m.contains("current stage")),
            "{who}: {refused:?}"
        );
    }

    let after_manager = env
        .access
        .approve(env.org, &manager, id, "fine by me")
        .await
        .unwrap();
    assert_eq!(after_manager.state, "pending");
    assert_eq!(after_manager.stage, 1);
    let asked = approvers(&env, id).await;
    assert_eq!(
        asked[1..],
        [
            (0, 1, "sec1@contoso.test".into(), "named approver".into()),
            (0, 1, "sec2@contoso.test".into(), "named approver".into()),
        ]
    );
    let mail = env.mail().await;
    for to in ["sec1@contoso.test", "sec2@contoso.test"] {
        assert!(
            mail.iter()
                .any(|(t, s, _)| t == to && s.starts_with("Approval needed")),
            "{to} is asked once stage 1 is done: {mail:?}"
        );
    }
    // The manager's decision was for stage 1; stage 2 is not theirs.
    let again = env.access.approve(env.org, &manager, id, "").await;
    assert!(matches!(again, Err(AccessError::Forbidden(_))), "{again:?}");

    // One of two: still pending; the same person twice does not count twice.
    let one = env.access.approve(env.org, &a1, id, "ok").await.unwrap();
    assert_eq!((one.state.as_str(), one.stage), ("pending", 1));
    let twice = env.access.approve(env.org, &a1, id, "ok again").await;
    assert!(
        matches!(&twice, Err(AccessError::Conflict(m)) if m.contains("already decided")),
        "{twice:?}"
    );
    assert!(!env.in_group(gid, requester_entra));

    env.access.approve(env.org, &a2, id, "ok").await.unwrap();
    env.wait_state(id, "active", Duration::from_secs(20)).await;
    assert!(env.in_group(gid, requester_entra), "granted in the tenant");
    let events = env.events(id).await;
    assert_eq!(
        events[..4],
        [
            "requested",
            "stage_approved",
            "approved",
            "provisioning_started"
        ]
    );
}

#[tokio::test]
async fn a_stage_nobody_can_decide_falls_to_super_admins_and_a_later_denial_ends_it() {
    let env = Env::new(312).await;
    let (gid, group) = env.group(0).await;
    let ent = env.members_of(group).await;
    let pairs = users_with_managers(&env, gid);
    let (requester_entra, _manager_not_signed_in) = *pairs.first().expect("a user with a manager");
    let others: Vec<Uuid> = env
        .outsiders(gid)
        .into_iter()
        .filter(|u| *u != requester_entra && !pairs.iter().any(|(_, m)| m == u))
        .collect();
    let (_, requester) = env.person("req", Role::Member, requester_entra).await;
    let (a1_id, a1) = env.person("sec1", Role::Member, others[0]).await;
    env.policy(
        ent,
        two_stage_policy(
            vec![ApproverRule::Manager],
            vec![ApproverRule::User { user_id: a1_id.0 }],
            1,
        ),
        None,
    )
    .await;

    let id = env
        .access
        .ask(env.org, &requester, ask(ent))
        .await
        .unwrap()
        .request
        .id;
    // The manager has never signed in to Latchkey: the organization's Super Administrator
    // decides stage 1, and says why they were asked.
    let asked = approvers(&env, id).await;
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!((asked[0].0, asked[0].1), (0, 0));
    assert!(asked[0].3.starts_with("Super Administrator"), "{asked:?}");

    env.access
        .approve(env.org, &env.admin_caller(), id, "on behalf of the manager")
        .await
        .unwrap();
    let denied = env
        .access
        .deny(env.org, &a1, id, "not during the freeze")
        .await
        .unwrap();
    assert_eq!(denied.state, "denied");
    assert_eq!(
        env.events(id).await,
        ["requested", "stage_approved", "denied"]
    );
    let mail = env.mail().await;
    assert!(
        mail.iter().any(|(to, s, body)| to == "req@contoso.test"
            && s.starts_with("Denied")
            && body.contains("not during the freeze")),
        "{mail:?}"
    );
    // Nothing was provisioned.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!env.in_group(gid, requester_entra));
    assert!(env.get(id).await.provision_task_id.is_none());
}

/// Enabled member users of the tenant.
fn members(env: &Env) -> Vec<Uuid> {
    env.sim
        .truth_users()
        .into_iter()
        .filter(|u| u.user_type == "Member" && u.account_enabled)
        .map(|u| u.id)
        .collect()
}

#[tokio::test]
async fn groups_decide_who_may_ask_who_approves_and_who_is_approved_automatically() {
    let env = Env::new(314).await;
    let (gid0, target) = env.group(0).await;
    let (gid1, trusted) = env.group(1).await;
    let (gid2, approvers_group) = env.group(2).await;
    let ent = env.members_of(target).await;
    let people = members(&env);
    let in_group = |g: Uuid| env.sim.group_members(g).unwrap_or_default();
    let (m0, m1, m2) = (in_group(gid0), in_group(gid1), in_group(gid2));
    let owners: Vec<Uuid> = env
        .sim
        .group_owners(gid0)
        .unwrap_or_default()
        .into_iter()
        .filter(|o| people.contains(o))
        .collect();
    let owner = *owners.first().expect("the target group has a user owner");
    let insider = *people
        .iter()
        .find(|u| m1.contains(u) && !m0.contains(u) && **u != owner)
        .expect("a trusted-group member outside the target group");
    let outsider = *people
        .iter()
        .find(|u| !m1.contains(u) && !m0.contains(u) && !m2.contains(u) && **u != owner)
        .expect("someone in none of the groups");
    let group_approver = *people
        .iter()
        .find(|u| m2.contains(u) && ![owner, insider, outsider].contains(u))
        .expect("an approvers-group member");
    let (_, insider_c) = env.person("insider", Role::Member, insider).await;
    let (_, outsider_c) = env.person("outsider", Role::Member, outsider).await;
    env.person("owner", Role::Member, owner).await;
    let (_, group_approver_c) = env.person("approver", Role::Member, group_approver).await;

    let mut policy = two_stage_policy(
        vec![
            ApproverRule::AppOwners,
            ApproverRule::Group {
                group_id: approvers_group,
            },
        ],
        vec![],
        1,
    );
    policy.approval_stages.truncate(1);
    policy.requesters = Requesters {
        mode: RequesterMode::Groups,
        group_ids: vec![trusted],
    };
    env.policy(ent, policy.clone(), None).await;

    // Only members of the named group may ask.
    let refused = env.access.ask(env.org, &outsider_c, ask(ent)).await;
    assert!(
        matches!(&refused, Err(AccessError::Forbidden(m)) if m.contains("members of the groups")),
        "{refused:?}"
    );
    let id = env
        .access
        .ask(env.org, &insider_c, ask(ent))
        .await
        .unwrap()
        .request
        .id;
    // Approvers: the group's owner in Entra and the approvers group's (signed-in) members.
    let mut asked: Vec<(String, String)> = approvers(&env, id)
        .await
        .into_iter()
        .map(|(_, _, email, why)| (email, why))
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        [
            (
                "approver@contoso.test".to_string(),
                "group member".to_string()
            ),
            ("owner@contoso.test".to_string(), "app owner".to_string()),
        ]
    );
    env.access
        .approve(env.org, &group_approver_c, id, "")
        .await
        .unwrap();
    env.wait_state(id, "active", Duration::from_secs(20)).await;
    assert!(env.in_group(gid0, insider));

    // Trusted group → approved automatically; anyone else waits for a person.
    let (gid3, other) = env.group(3).await;
    let ent3 = env.members_of(other).await;
    let mut auto = policy;
    auto.requesters = Requesters::default();
    auto.auto_approve.requester_group_ids = vec![trusted];
    env.policy(ent3, auto, None).await;
    let fast = env
        .access
        .ask(env.org, &insider_c, ask(ent3))
        .await
        .unwrap()
        .request
        .id;
    assert_eq!(env.events(fast).await[..2], ["requested", "auto_approved"]);
    let slow = env
        .access
        .ask(env.org, &outsider_c, ask(ent3))
        .await
        .unwrap()
        .request;
    assert_eq!(slow.state, "pending");
    env.wait_state(fast, "active", Duration::from_secs(20))
        .await;
    assert!(env.in_group(gid3, insider));
    assert!(!env.in_group(gid3, outsider));
}
