//! The lifecycle end to end against the simulated tenant: ask → approve → verified in Entra →
//! expiry → removal verified; denial, self-approval refused, illegal transitions refused,
//! automatic approval and early release, extension, break-glass, and catch-up after the
//! worker was down at expiry.

use crate::support::Env;
use latchkey_access::policy::{ApproverRule, Emergency, Risk, Stage};
use latchkey_access::{AccessError, NewAsk, Policy, lifecycle};
use latchkey_core::Role;
use latchkey_store::{access_requests, audit};
use std::time::Duration;

fn short(max: i64) -> Policy {
    Policy {
        max_duration_seconds: max,
        default_duration_seconds: max.min(60),
        decision_timeout_seconds: 600,
        reminder_before_seconds: 0,
        ..Policy::default()
    }
}

fn ask(entitlement: uuid::Uuid, secs: i64) -> NewAsk {
    NewAsk {
        entitlement_id: entitlement,
        duration_seconds: Some(secs),
        justification: "OPS-1 deploy fix".into(),
        ..NewAsk::default()
    }
}

#[tokio::test]
async fn request_approve_verified_expire_and_removal_verified() {
    let env = Env::new(101).await;
    let (gid, group) = env.group(0).await;
    let ent = env.members_of(group).await;
    let out = env.outsiders(gid);
    let (requester_entra, approver_entra) = (out[0], out[1]);
    let (_, requester) = env.person("requester", Role::Member, requester_entra).await;
    let (approver_id, approver) = env.person("approver", Role::Member, approver_entra).await;
    let mut policy = short(3600);
    policy.reminder_before_seconds = 2;
    env.policy(ent, policy, Some(approver_id)).await;

    let asked = env
        .access
        .ask(env.org, &requester, ask(ent, 4))
        .await
        .unwrap();
    let id = asked.request.id;
    assert_eq!(asked.request.state, "pending");
    assert!(!env.in_group(gid, requester_entra));
    // The approver is asked, with a link to the decision page.
    let mail = env.mail().await;
    assert!(
        mail.iter()
            .any(|(to, subject, body)| to == "approver@contoso.test"
                && subject.starts_with("Approval needed")
                && body.contains(&format!("/access/requests/{id}"))),
        "{mail:?}"
    );

    env.access
        .approve(env.org, &approver, id, "ok for the fix")
        .await
        .unwrap();
    let active = env.wait_state(id, "active", Duration::from_secs(20)).await;
    assert!(env.in_group(gid, requester_entra), "granted in the tenant");
    let granted = active.granted_at.unwrap();
    assert_eq!(
        active.expires_at.unwrap() - granted,
        time::Duration::seconds(4)
    );
    assert!(
        granted >= active.created_at,
        "the window starts at verification"
    );

    let ended = env.wait_state(id, "expired", Duration::from_secs(30)).await;
    assert!(
        !env.in_group(gid, requester_entra),
        "removed from the tenant"
    );
    assert_eq!(ended.end_reason.as_deref(), Some("expired"));
    assert_eq!(
        env.events(id).await,
        [
            "requested",
            "approved",
            "provisioning_started",
            "granted",
            "expiry_started",
            "expired"
        ]
    );
    let subjects: Vec<String> = env
        .mail()
        .await
        .into_iter()
        .filter(|(to, _, _)| to == "requester@contoso.test")
        .map(|(_, s, _)| s)
        .collect();
    for want in ["Approved", "Access granted", "Expires soon", "Expired"] {
        assert!(
            subjects.iter().any(|s| s.starts_with(want)),
            "{want} not in {subjects:?}"
        );
    }

    // Every transition is an audit event, and the chain is intact.
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let page = audit::list(
        &mut tx,
        &audit::Filter {
            target_id: Some(id.to_string()),
            ..Default::default()
        },
        None,
        100,
    )
    .await
    .unwrap();
    let actions: Vec<&str> = page.items.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "access_request.created",
            "access_request.approved",
            "access_request.provisioning_started",
            "access_request.granted",
            "access_request.reminded",
            "access_request.expiry_started",
            "access_request.expired"
        ]
    );
    assert!(audit::verify_chain(&mut tx).await.unwrap().intact());
}

#[tokio::test]
async fn denial_self_approval_and_illegal_transitions_are_refused() {
    let env = Env::new(102).await;
    let (gid, group) = env.group(0).await;
    let ent = env.members_of(group).await;
    let out = env.outsiders(gid);
    let (requester_id, requester) = env.person("requester", Role::Member, out[0]).await;
    let (_, approver) = env.person("approver", Role::Member, out[1]).await;
    let (_, stranger) = env.person("stranger", Role::Member, out[2]).await;
    // The requester is named as an approver too: self-approval is still refused.
    let mut policy = short(3600);
    policy.approval_stages = vec![Stage {
        approvers: vec![
            ApproverRule::User {
                user_id: requester_id.0,
            },
            ApproverRule::User {
                user_id: approver.user.unwrap().0,
            },
        ],
        required: 1,
    }];
    env.policy(ent, policy, None).await;

    // Asking without the required justification, or for too long, changes nothing.
    let mut bad = ask(ent, 60);
    bad.justification = " ".into();
    assert!(matches!(
        env.access.ask(env.org, &requester, bad).await,
        Err(AccessError::Invalid(p)) if p[0].field == "justification"
    ));
    assert!(matches!(
        env.access.ask(env.org, &requester, ask(ent, 3601)).await,
        Err(AccessError::Invalid(p)) if p[0].field == "duration_seconds"
    ));

    let id = env
        .access
        .ask(env.org, &requester, ask(ent, 60))
        .await
        .unwrap()
        .request
        .id;
    // A second ask while one is pending is a conflict.
    assert!(matches!(
        env.access.ask(env.org, &requester, ask(ent, 60)).await,
        Err(AccessError::Conflict(_))
    ));
    let own = env
        .access
        .approve(env.org, &requester, id, "")
        .await
        .unwrap_err();
    assert!(
        matches!(&own, AccessError::Forbidden(m) if m.contains("own request")),
        "{own:?}"
    );
    assert!(matches!(
        env.access.approve(env.org, &stranger, id, "").await,
        Err(AccessError::Forbidden(_))
    ));
    assert!(matches!(
        env.access.release(env.org, &requester, id, "").await,
        Err(AccessError::Conflict(_))
    ));
    assert!(matches!(
        env.access
            .extend(env.org, &requester, id, Some(60), "more")
            .await,
        Err(AccessError::Conflict(_))
    ));

    let denied = env
        .access
        .deny(env.org, &approver, id, "not without a ticket")
        .await
        .unwrap();
    assert_eq!(denied.state, "denied");
    // A final state allows nothing.
    for result in [
        env.access.approve(env.org, &approver, id, "").await,
        env.access.deny(env.org, &approver, id, "").await,
        env.access.cancel(env.org, &requester, id, "").await,
        env.access.release(env.org, &requester, id, "").await,
    ] {
        assert!(
            matches!(result, Err(AccessError::Conflict(_))),
            "{result:?}"
        );
    }
    assert_eq!(env.events(id).await, ["requested", "denied"]);
    assert!(
        env.mail()
            .await
            .iter()
            .any(|(to, s, b)| to == "requester@contoso.test"
                && s.starts_with("Denied")
                && b.contains("not without a ticket"))
    );
    assert!(!env.in_group(gid, out[0]));

    // Asking again after a denial is a new request; cancelling it ends it.
    let again = env
        .access
        .ask(env.org, &requester, ask(ent, 60))
        .await
        .unwrap()
        .request;
    assert_ne!(again.id, id);
    let c = env
        .access
        .cancel(env.org, &requester, again.id, "not needed")
        .await
        .unwrap();
    assert_eq!(c.state, "cancelled");
}

#[tokio::test]
async fn auto_approval_extension_release_and_emergency() {
    let env = Env::new(103).await;
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
    let (approver_id, approver) = env.person("approver", Role::Member, out[1]).await;

    // Low risk, approved automatically.
    let mut low = short(3600);
    low.risk = Risk::Low;
    low.auto_approve.when_low_risk = true;
    env.policy(ent, low, Some(approver_id)).await;
    let id = env
        .access
        .ask(env.org, &requester, ask(ent, 600))
        .await
        .unwrap()
        .request
        .id;
    let active = env.wait_state(id, "active", Duration::from_secs(20)).await;
    assert!(env.in_group(gid, out[0]));
    assert_eq!(
        env.events(id).await[..2],
        ["requested".to_string(), "auto_approved".into()]
    );

    // Asking again for what is held extends it (automatically approved here too).
    let asked = env
        .access
        .ask(env.org, &requester, ask(ent, 300))
        .await
        .unwrap();
    assert!(asked.extended_existing);
    assert_eq!(asked.request.id, id);
    let extended = env.get(id).await;
    assert_eq!(
        extended.expires_at.unwrap() - active.expires_at.unwrap(),
        time::Duration::seconds(300)
    );

    // Release early: removed from the tenant, then `revoked`.
    env.access
        .release(env.org, &requester, id, "done")
        .await
        .unwrap();
    let r = env.wait_state(id, "revoked", Duration::from_secs(20)).await;
    assert_eq!(r.end_reason.as_deref(), Some("released"));
    assert!(!env.in_group(gid, out[0]));

    // An extension that needs approval.
    let mut policy = short(3600);
    policy.emergency = Emergency {
        enabled: true,
        max_duration_seconds: Some(120),
    };
    env.policy(ent2, policy, Some(approver_id)).await;
    let id2 = env
        .access
        .ask(env.org, &requester, ask(ent2, 600))
        .await
        .unwrap()
        .request
        .id;
    env.access
        .approve(env.org, &approver, id2, "")
        .await
        .unwrap();
    let before = env.wait_state(id2, "active", Duration::from_secs(20)).await;
    let pending = env
        .access
        .extend(env.org, &requester, id2, Some(600), "still on it")
        .await
        .unwrap();
    assert_eq!(pending.round, 1);
    assert!(pending.extension_requested_at.is_some());
    assert_eq!(
        pending.expires_at, before.expires_at,
        "nothing changes before approval"
    );
    env.access
        .approve(env.org, &approver, id2, "fine")
        .await
        .unwrap();
    let after = env.get(id2).await;
    assert_eq!(
        after.expires_at.unwrap() - before.expires_at.unwrap(),
        time::Duration::seconds(600)
    );
    assert!(after.extension_requested_at.is_none());
    // An administrator revokes it early.
    env.access
        .release(env.org, &env.admin_caller(), id2, "incident over")
        .await
        .unwrap();
    let r = env
        .wait_state(id2, "revoked", Duration::from_secs(20))
        .await;
    assert_eq!(r.end_reason.as_deref(), Some("revoked"));

    // Break-glass: at once, owners alerted, flagged for review; capped at its own maximum.
    let mut e = ask(ent2, 600);
    e.emergency = true;
    assert!(matches!(
        env.access.ask(env.org, &requester, e.clone()).await,
        Err(AccessError::Invalid(p)) if p[0].field == "duration_seconds"
    ));
    e.duration_seconds = Some(120);
    let em = env
        .access
        .ask(env.org, &requester, e)
        .await
        .unwrap()
        .request;
    assert!(em.needs_review);
    assert_eq!(env.events(em.id).await[1], "emergency_approved");
    env.wait_state(em.id, "active", Duration::from_secs(20))
        .await;
    assert!(env.in_group(gid2, out[0]));
    assert!(
        env.mail()
            .await
            .iter()
            .any(|(to, s, _)| to.starts_with("admin") && s.starts_with("Emergency access used"))
    );
    let reviewed = env
        .access
        .mark_reviewed(env.org, &env.admin_caller(), em.id, "justified")
        .await
        .unwrap();
    assert!(!reviewed.needs_review && reviewed.reviewed_at.is_some());
}

#[tokio::test]
async fn an_expiry_missed_while_no_worker_ran_is_carried_out_when_one_runs_again() {
    let mut env = Env::new(104).await;
    let (gid, group) = env.group(0).await;
    let ent = env.members_of(group).await;
    let out = env.outsiders(gid);
    let (_, requester) = env.person("requester", Role::Member, out[0]).await;
    let mut low = short(3600);
    low.risk = Risk::Low;
    low.auto_approve.when_low_risk = true;
    env.policy(ent, low, None).await;
    let id = env
        .access
        .ask(env.org, &requester, ask(ent, 2))
        .await
        .unwrap()
        .request
        .id;
    let active = env.wait_state(id, "active", Duration::from_secs(20)).await;

    env.stop_worker();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The scheduled expiry jobs are lost too (as if the queue had been wiped): only the
    // sweep's catch-up is left.
    sqlx::query("DELETE FROM jobs WHERE kind = 'access.advance' AND status = 'queued'")
        .execute(env.store().system())
        .await
        .unwrap();
    let wait = active.expires_at.unwrap() - time::OffsetDateTime::now_utc();
    tokio::time::sleep(wait.try_into().unwrap_or_default()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.get(id).await.state, "active");
    assert!(
        env.in_group(gid, out[0]),
        "nobody removed it while no worker ran"
    );

    // The sweep finds it overdue and starts the removal; a worker carries it out.
    let n = lifecycle::sweep(env.store(), &env.access.config)
        .await
        .unwrap();
    assert!(n >= 1);
    env.start_worker();
    let r = env.wait_state(id, "expired", Duration::from_secs(30)).await;
    assert!(r.ended_at.unwrap() > r.expires_at.unwrap());
    assert!(!env.in_group(gid, out[0]));
    let mut tx = env.store().org_tx(env.org).await.unwrap();
    let steps = access_requests::transitions(&mut tx, id).await.unwrap();
    let expiry = steps.iter().find(|t| t.event == "expiry_started").unwrap();
    assert_eq!(expiry.actor_label, "expiry");
}
