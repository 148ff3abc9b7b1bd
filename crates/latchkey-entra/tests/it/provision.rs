//! Provisioning of group members and owners against the simulated tenant: refusals decided
//! before any Graph call, idempotent writes, translated Graph refusals, and verification by
//! reading back (including a change that shows up late and one that never does).

use std::time::Duration;

use latchkey_entra::graph::Query;
use latchkey_entra::provision::{
    self, GroupRel, Object, Operation, ProvisionError, Refusal, Request, Step, Verification,
    VerifyPolicy,
};
use latchkey_entra::sync::map;
use latchkey_entra_sim::Change;
use latchkey_entra_sim::GroupKind;
use serde_json::{Value, json};
use uuid::Uuid;

use super::T;

fn quick() -> VerifyPolicy {
    VerifyPolicy {
        timeout: Duration::from_secs(3),
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
    }
}

/// The group as the sync stores it (same mapping), read from Graph.
async fn stored_group(t: &T, id: Uuid) -> Object {
    let fields = map::GROUP_FIELDS.to_vec();
    let v: Value = t
        .conn
        .graph
        .get(&Query::v1(format!("groups/{id}")).select(&fields))
        .await
        .unwrap();
    let (row, _) = map::group(&v).unwrap();
    Object {
        rtype: row.rtype.into(),
        external_id: row.external_id,
        display_name: row.display_name,
        profile: row.profile,
    }
}

fn user_obj(id: Uuid, name: &str) -> Object {
    Object {
        rtype: "user".into(),
        external_id: id.to_string(),
        display_name: name.into(),
        profile: json!({}),
    }
}

fn group_of(t: &T, kind: GroupKind) -> Uuid {
    t.sim
        .truth_groups()
        .into_iter()
        .find(|g| g.kind == kind)
        .unwrap_or_else(|| panic!("the small tenant has a {kind:?} group"))
        .id
}

/// A member user of the tenant (not a guest, not on-premises) who is not in `group`.
fn outsider(t: &T, group: Uuid) -> Uuid {
    let members = t.sim.group_members(group).unwrap();
    let owners = t.sim.group_owners(group).unwrap();
    t.sim
        .truth_users()
        .into_iter()
        .find(|u| {
            u.user_type == "Member"
                && !u.on_premises_sync_enabled
                && !members.contains(&u.id)
                && !owners.contains(&u.id)
        })
        .unwrap()
        .id
}

fn req(op: Operation, resource: Object, slug: &str, principal: Object) -> Request {
    Request {
        operation: op,
        resource,
        slug: slug.into(),
        principal,
        inherited_via: None,
        current_holders: None,
        grant_external_id: None,
        pim: None,
        end: None,
    }
}

#[tokio::test]
async fn grant_and_revoke_membership_idempotently_and_verified() {
    let t = T::new().await;
    let gid = group_of(&t, GroupKind::Security);
    let uid = outsider(&t, gid);
    let group = stored_group(&t, gid).await;
    let grant = req(
        Operation::Grant,
        group.clone(),
        "members",
        user_obj(uid, "U"),
    );
    let step = provision::plan(&grant, true).unwrap();
    assert_eq!(
        step,
        Step::AddGroupLink {
            group: gid,
            rel: GroupRel::Members,
            principal: uid
        }
    );

    let applied = provision::apply(&t.conn.graph, &step, "G").await.unwrap();
    assert!(!applied.already);
    assert!(t.sim.group_members(gid).unwrap().contains(&uid));
    assert!(matches!(
        provision::verify(&t.conn.graph, &step, quick()).await,
        Verification::Verified { reads: 1 }
    ));

    // A retried job: Graph says "already exist", which is success, and nothing doubles.
    let before = t.sim.group_members(gid).unwrap().len();
    let again = provision::apply(&t.conn.graph, &step, "G").await.unwrap();
    assert!(again.already);
    assert_eq!(t.sim.group_members(gid).unwrap().len(), before);

    let revoke = req(Operation::Revoke, group, "members", user_obj(uid, "U"));
    let step = provision::plan(&revoke, true).unwrap();
    assert!(
        !provision::apply(&t.conn.graph, &step, "G")
            .await
            .unwrap()
            .already
    );
    assert!(!t.sim.group_members(gid).unwrap().contains(&uid));
    assert!(matches!(
        provision::verify(&t.conn.graph, &step, quick()).await,
        Verification::Verified { .. }
    ));
    // Revoking again: "not found" is success.
    assert!(
        provision::apply(&t.conn.graph, &step, "G")
            .await
            .unwrap()
            .already
    );
}

#[tokio::test]
async fn grant_and_revoke_ownership() {
    let t = T::new().await;
    let gid = group_of(&t, GroupKind::Security);
    let uid = outsider(&t, gid);
    let group = stored_group(&t, gid).await;
    let step = provision::plan(
        &req(
            Operation::Grant,
            group.clone(),
            "owners",
            user_obj(uid, "U"),
        ),
        true,
    )
    .unwrap();
    provision::apply(&t.conn.graph, &step, "G").await.unwrap();
    assert!(t.sim.group_owners(gid).unwrap().contains(&uid));
    assert!(matches!(
        provision::verify(&t.conn.graph, &step, quick()).await,
        Verification::Verified { .. }
    ));
    let mut revoke = req(Operation::Revoke, group, "owners", user_obj(uid, "U"));
    revoke.current_holders = Some(t.sim.group_owners(gid).unwrap().len() as i64);
    let step = provision::plan(&revoke, true).unwrap();
    provision::apply(&t.conn.graph, &step, "G").await.unwrap();
    assert!(!t.sim.group_owners(gid).unwrap().contains(&uid));
}

#[tokio::test]
async fn refusals_are_decided_without_any_graph_write() {
    let t = T::new().await;
    let sec = group_of(&t, GroupKind::Security);
    let uid = outsider(&t, sec);
    let user = user_obj(uid, "Adele");
    let mut groups = Vec::new();
    for kind in [
        GroupKind::MailEnabledSecurity,
        GroupKind::Distribution,
        GroupKind::DynamicSecurity,
        GroupKind::OnPremisesSecurity,
        GroupKind::Microsoft365,
        GroupKind::RoleAssignable,
        GroupKind::Security,
    ] {
        groups.push((kind, stored_group(&t, group_of(&t, kind)).await));
    }
    let g = |k: GroupKind| groups.iter().find(|(x, _)| *x == k).unwrap().1.clone();
    t.sim.clear_requests();

    let exchange = "Microsoft Graph cannot change membership of mail-enabled security groups or distribution lists; manage it in Exchange";
    for (kind, slug) in [
        (GroupKind::MailEnabledSecurity, "members"),
        (GroupKind::Distribution, "members"),
        (GroupKind::MailEnabledSecurity, "owners"),
    ] {
        for op in [Operation::Grant, Operation::Revoke] {
            let e = provision::plan(&req(op, g(kind), slug, user.clone()), true).unwrap_err();
            assert!(
                matches!(e, Refusal::ExchangeManaged { .. }),
                "{kind:?}: {e}"
            );
            assert!(e.to_string().contains(exchange), "{e}");
        }
    }
    let e = provision::plan(
        &req(
            Operation::Grant,
            g(GroupKind::DynamicSecurity),
            "members",
            user.clone(),
        ),
        true,
    )
    .unwrap_err();
    assert!(e.to_string().contains("dynamic membership"), "{e}");
    // Owners of a dynamic group are not rule-driven.
    provision::plan(
        &req(
            Operation::Grant,
            g(GroupKind::DynamicSecurity),
            "owners",
            user.clone(),
        ),
        true,
    )
    .unwrap();
    let e = provision::plan(
        &req(
            Operation::Revoke,
            g(GroupKind::OnPremisesSecurity),
            "members",
            user.clone(),
        ),
        true,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("on-premises Active Directory"),
        "{e}"
    );

    // Principals of a kind the entitlement does not accept.
    let as_principal = |o: &Object| o.clone();
    let nested = as_principal(&g(GroupKind::Security));
    let e = provision::plan(
        &req(
            Operation::Grant,
            g(GroupKind::Microsoft365),
            "members",
            nested.clone(),
        ),
        true,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("accepts only users as members"),
        "{e}"
    );
    let e = provision::plan(
        &req(
            Operation::Grant,
            g(GroupKind::RoleAssignable),
            "members",
            nested.clone(),
        ),
        true,
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not accept groups"), "{e}");
    let e = provision::plan(
        &req(
            Operation::Grant,
            g(GroupKind::Security),
            "owners",
            nested.clone(),
        ),
        true,
    )
    .unwrap_err();
    assert!(matches!(e, Refusal::PrincipalKind { .. }), "{e}");
    let role = Object {
        rtype: "role".into(),
        external_id: Uuid::new_v4().to_string(),
        display_name: "Global Administrator".into(),
        profile: json!({}),
    };
    let e = provision::plan(
        &req(Operation::Grant, g(GroupKind::Security), "members", role),
        true,
    )
    .unwrap_err();
    assert!(e.to_string().contains("is a directory role"), "{e}");

    // The last owner.
    let mut last = req(
        Operation::Revoke,
        g(GroupKind::Security),
        "owners",
        user.clone(),
    );
    last.current_holders = Some(1);
    let e = provision::plan(&last, true).unwrap_err();
    assert!(e.to_string().contains("last owner"), "{e}");

    // Inherited grants are revoked at their group.
    let mut inherited = req(
        Operation::Revoke,
        g(GroupKind::Security),
        "members",
        user.clone(),
    );
    inherited.inherited_via = Some("group:abc".into());
    assert!(matches!(
        provision::plan(&inherited, true).unwrap_err(),
        Refusal::Inherited { .. }
    ));

    // Provisioning disabled: refused whatever the request.
    let e = provision::plan(
        &req(
            Operation::Grant,
            g(GroupKind::Security),
            "members",
            user.clone(),
        ),
        false,
    )
    .unwrap_err();
    assert_eq!(e, Refusal::ProvisioningDisabled);
    assert!(e.to_string().contains("Provisioning is turned off"));

    assert!(
        t.sim.graph_writes().is_empty(),
        "no write reached Graph: {:?}",
        t.sim.graph_writes()
    );
    assert!(t.graph_requests().is_empty(), "not even a read");
}

#[tokio::test]
async fn graph_refusals_of_a_stale_model_read_like_the_plan() {
    let t = T::new().await;
    let gid = group_of(&t, GroupKind::MailEnabledSecurity);
    let uid = outsider(&t, group_of(&t, GroupKind::Security));
    let step = Step::AddGroupLink {
        group: gid,
        rel: GroupRel::Members,
        principal: uid,
    };
    let e = provision::apply(&t.conn.graph, &step, "Finance DL")
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        ProvisionError::Refused(Refusal::ExchangeManaged { .. })
    ));
    assert!(!e.is_transient());
    assert!(e.to_string().contains("manage it in Exchange"), "{e}");
    assert!(!t.sim.group_members(gid).unwrap().contains(&uid));
}

#[tokio::test]
async fn verification_waits_for_replication_and_fails_when_nothing_happens() {
    let t = T::new().await;
    let gid = group_of(&t, GroupKind::Security);
    let uid = outsider(&t, gid);
    let step = Step::AddGroupLink {
        group: gid,
        rel: GroupRel::Members,
        principal: uid,
    };
    // The change becomes visible only after a while (replication delay).
    let late = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        t.sim
            .apply(Change::AddMember {
                group_id: gid,
                member_id: uid,
            })
            .unwrap();
    };
    let (verified, ()) = tokio::join!(provision::verify(&t.conn.graph, &step, quick()), late);
    match verified {
        Verification::Verified { reads } => assert!(reads > 1, "it had to read again"),
        other => panic!("expected verified, got {other:?}"),
    }

    // A write Graph accepted that never takes effect: bounded wait, then a reason.
    let other = outsider(&t, gid);
    let step = Step::AddGroupLink {
        group: gid,
        rel: GroupRel::Members,
        principal: other,
    };
    let started = std::time::Instant::now();
    match provision::verify(&t.conn.graph, &step, quick()).await {
        Verification::Failed { why, reads } => {
            assert!(why.contains("did not appear"), "{why}");
            assert!(reads >= 2);
        }
        other => panic!("expected failure, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// An enterprise application of the tenant with a role only users and groups may hold, and a
/// managed identity.
async fn app_and_identity(t: &T) -> (Uuid, Uuid, Uuid) {
    let apps: Vec<Value> = futures::TryStreamExt::try_collect(
        t.conn.graph.items::<Value>(
            Query::v1("servicePrincipals")
                .filter("servicePrincipalType eq 'Application'")
                .select(&["id", "appRoles", "appOwnerOrganizationId"])
                .top(999),
        ),
    )
    .await
    .unwrap();
    let tenant = t.sim.tenant_id().to_string();
    let (app, role) = apps
        .iter()
        .filter(|a| a["appOwnerOrganizationId"] == tenant.as_str())
        .find_map(|a| {
            a["appRoles"].as_array()?.iter().find_map(|r| {
                (r["allowedMemberTypes"] == json!(["User"])).then(|| {
                    (
                        Uuid::parse_str(a["id"].as_str().unwrap()).unwrap(),
                        Uuid::parse_str(r["id"].as_str().unwrap()).unwrap(),
                    )
                })
            })
        })
        .expect("an app with a users-only role");
    let mi: Vec<Value> = futures::TryStreamExt::try_collect(
        t.conn.graph.items::<Value>(
            Query::v1("servicePrincipals")
                .filter("servicePrincipalType eq 'ManagedIdentity'")
                .select(&["id"]),
        ),
    )
    .await
    .unwrap();
    let mi = Uuid::parse_str(mi[0]["id"].as_str().unwrap()).unwrap();
    (app, role, mi)
}

fn app_obj(id: Uuid) -> Object {
    Object {
        rtype: "enterprise_application".into(),
        external_id: id.to_string(),
        display_name: "Contoso HR".into(),
        profile: json!({}),
    }
}

#[tokio::test]
async fn app_role_assignments_and_app_owners() {
    let t = T::new().await;
    let (app, role, mi) = app_and_identity(&t).await;
    let uid = t
        .sim
        .truth_users()
        .into_iter()
        .find(|u| {
            u.user_type == "Member"
                && !t
                    .sim
                    .app_role_assignments(app)
                    .unwrap()
                    .iter()
                    .any(|a| a.1 == u.id)
        })
        .unwrap()
        .id;
    let slug = format!("assignment:{role}");
    let step = provision::plan(
        &req(Operation::Grant, app_obj(app), &slug, user_obj(uid, "U")),
        true,
    )
    .unwrap();
    let applied = provision::apply(&t.conn.graph, &step, "Contoso HR")
        .await
        .unwrap();
    assert!(!applied.already);
    let held = |t: &T| {
        t.sim
            .app_role_assignments(app)
            .unwrap()
            .into_iter()
            .filter(|a| a.1 == uid && a.2 == role)
            .collect::<Vec<_>>()
    };
    assert_eq!(held(&t).len(), 1);
    assert_eq!(applied.external_id.as_deref(), Some(held(&t)[0].0.as_str()));
    assert!(matches!(
        provision::verify(&t.conn.graph, &step, quick()).await,
        Verification::Verified { .. }
    ));
    // Again: "already exists", the same assignment id, still one assignment.
    let again = provision::apply(&t.conn.graph, &step, "Contoso HR")
        .await
        .unwrap();
    assert!(again.already);
    assert_eq!(again.external_id, applied.external_id);
    assert_eq!(held(&t).len(), 1);

    let revoke = provision::plan(
        &req(Operation::Revoke, app_obj(app), &slug, user_obj(uid, "U")),
        true,
    )
    .unwrap();
    assert!(
        !provision::apply(&t.conn.graph, &revoke, "Contoso HR")
            .await
            .unwrap()
            .already
    );
    assert!(held(&t).is_empty());
    assert!(matches!(
        provision::verify(&t.conn.graph, &revoke, quick()).await,
        Verification::Verified { .. }
    ));
    assert!(
        provision::apply(&t.conn.graph, &revoke, "Contoso HR")
            .await
            .unwrap()
            .already
    );

    // A users-only role for a managed identity: refused before any write.
    t.sim.clear_requests();
    let identity = Object {
        rtype: "managed_identity".into(),
        external_id: mi.to_string(),
        display_name: "build-agent".into(),
        profile: json!({}),
    };
    let step = provision::plan(
        &req(Operation::Grant, app_obj(app), &slug, identity.clone()),
        true,
    )
    .unwrap();
    let e = provision::apply(&t.conn.graph, &step, "Contoso HR")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ProvisionError::Refused(Refusal::AppRoleNotAssignable { .. })
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("cannot be assigned to a service principal"),
        "{e}"
    );
    assert!(
        t.sim.graph_writes().is_empty(),
        "{:?}",
        t.sim.graph_writes()
    );
    // A role (not a principal) cannot be assigned at all.
    let role_obj = Object {
        rtype: "license".into(),
        external_id: Uuid::new_v4().to_string(),
        display_name: "E5".into(),
        profile: json!({}),
    };
    assert!(matches!(
        provision::plan(&req(Operation::Grant, app_obj(app), &slug, role_obj), true),
        Err(Refusal::PrincipalKind { .. })
    ));

    // App owners: a managed identity may own an app; a group may not.
    let step = provision::plan(
        &req(Operation::Grant, app_obj(app), "owners", identity.clone()),
        true,
    )
    .unwrap();
    provision::apply(&t.conn.graph, &step, "Contoso HR")
        .await
        .unwrap();
    assert!(matches!(
        provision::verify(&t.conn.graph, &step, quick()).await,
        Verification::Verified { .. }
    ));
    let mut rm = req(Operation::Revoke, app_obj(app), "owners", identity);
    rm.current_holders = Some(2);
    let step = provision::plan(&rm, true).unwrap();
    provision::apply(&t.conn.graph, &step, "Contoso HR")
        .await
        .unwrap();
    assert!(matches!(
        provision::verify(&t.conn.graph, &step, quick()).await,
        Verification::Verified { .. }
    ));
    let group = stored_group(&t, group_of(&t, GroupKind::Security)).await;
    assert!(matches!(
        provision::plan(&req(Operation::Grant, app_obj(app), "owners", group), true),
        Err(Refusal::PrincipalKind { .. })
    ));
}

fn licence_obj(sku: Uuid) -> Object {
    Object {
        rtype: "license".into(),
        external_id: sku.to_string(),
        display_name: "ENTERPRISEPACK".into(),
        profile: json!({}),
    }
}

#[tokio::test]
async fn licences_need_a_usage_location_and_a_free_seat() {
    let t = T::new().await;
    let skus: Value = t
        .conn
        .graph
        .get(&Query::v1("subscribedSkus"))
        .await
        .unwrap();
    let skus = skus["value"].as_array().unwrap();
    let left = |s: &Value| {
        s["prepaidUnits"]["enabled"].as_i64().unwrap() - s["consumedUnits"].as_i64().unwrap()
    };
    let sku_of = |s: &Value| Uuid::parse_str(s["skuId"].as_str().unwrap()).unwrap();
    let free = sku_of(skus.iter().find(|s| left(s) > 1).expect("a SKU with seats"));
    let full = sku_of(
        skus.iter()
            .find(|s| left(s) <= 0)
            .expect("a SKU with no seat left"),
    );
    let users = t.sim.truth_users();
    let located = users
        .iter()
        .find(|u| {
            u.user_type == "Member"
                && !u.on_premises_sync_enabled
                && u.usage_location.is_some()
                && !u.licenses.contains(&free)
                && !u.licenses.contains(&full)
        })
        .unwrap();
    let nowhere = users
        .iter()
        .find(|u| u.usage_location.is_none() && !u.licenses.contains(&free))
        .expect("a user without usage location");

    let grant = req(
        Operation::Grant,
        licence_obj(free),
        "assigned",
        user_obj(located.id, "Adele"),
    );
    let step = provision::plan(&grant, true).unwrap();
    assert!(
        !provision::apply(&t.conn.graph, &step, "E3")
            .await
            .unwrap()
            .already
    );
    let holds = |t: &T, u: Uuid, s: Uuid| {
        t.sim
            .truth_users()
            .into_iter()
            .find(|x| x.id == u)
            .unwrap()
            .licenses
            .contains(&s)
    };
    assert!(holds(&t, located.id, free));
    assert!(matches!(
        provision::verify(&t.conn.graph, &step, quick()).await,
        Verification::Verified { .. }
    ));
    assert!(
        provision::apply(&t.conn.graph, &step, "E3")
            .await
            .unwrap()
            .already
    );
    let revoke = req(
        Operation::Revoke,
        licence_obj(free),
        "assigned",
        user_obj(located.id, "Adele"),
    );
    let step = provision::plan(&revoke, true).unwrap();
    provision::apply(&t.conn.graph, &step, "E3").await.unwrap();
    assert!(!holds(&t, located.id, free));
    assert!(matches!(
        provision::verify(&t.conn.graph, &step, quick()).await,
        Verification::Verified { .. }
    ));
    assert!(
        provision::apply(&t.conn.graph, &step, "E3")
            .await
            .unwrap()
            .already
    );

    // Refusals, with no licence write.
    t.sim.clear_requests();
    let step = provision::plan(
        &req(
            Operation::Grant,
            licence_obj(free),
            "assigned",
            user_obj(nowhere.id, "Nowhere"),
        ),
        true,
    )
    .unwrap();
    let e = provision::apply(&t.conn.graph, &step, "E3")
        .await
        .unwrap_err();
    assert!(
        matches!(e, ProvisionError::Refused(Refusal::NoUsageLocation { .. })),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains(&nowhere.user_principal_name),
        "names the user: {text}"
    );
    assert!(
        text.contains("Usage location"),
        "says how to fix it: {text}"
    );
    let step = provision::plan(
        &req(
            Operation::Grant,
            licence_obj(full),
            "assigned",
            user_obj(located.id, "Adele"),
        ),
        true,
    )
    .unwrap();
    let e = provision::apply(&t.conn.graph, &step, "Visio")
        .await
        .unwrap_err();
    assert!(
        matches!(e, ProvisionError::Refused(Refusal::NoSeats { .. })),
        "{e}"
    );
    assert!(
        t.sim.graph_writes().is_empty(),
        "{:?}",
        t.sim.graph_writes()
    );
    // Licences go to users only.
    let group = stored_group(&t, group_of(&t, GroupKind::Security)).await;
    assert!(matches!(
        provision::plan(
            &req(Operation::Grant, licence_obj(free), "assigned", group),
            true
        ),
        Err(Refusal::PrincipalKind { .. })
    ));
}

#[tokio::test]
async fn directory_roles_active_and_eligible_through_pim_or_role_assignments() {
    let t = T::new().await;
    let defs: Value = t
        .conn
        .graph
        .get(&Query::v1("roleManagement/directory/roleDefinitions"))
        .await
        .unwrap();
    let role_def = defs["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["displayName"] == "Helpdesk Administrator")
        .or_else(|| defs["value"].as_array().unwrap().last())
        .unwrap()
        .clone();
    let role_id = Uuid::parse_str(role_def["id"].as_str().unwrap()).unwrap();
    let role = Object {
        rtype: "role".into(),
        external_id: role_id.to_string(),
        display_name: role_def["displayName"].as_str().unwrap().into(),
        profile: json!({}),
    };
    let mut candidates = Vec::new();
    for u in t.sim.truth_users() {
        if u.user_type == "Member"
            && provision::find_role_grant(&t.conn.graph, role_id, u.id, false)
                .await
                .unwrap()
                .is_none()
            && provision::find_role_grant(&t.conn.graph, role_id, u.id, true)
                .await
                .unwrap()
                .is_none()
        {
            candidates.push(u.id);
        }
        if candidates.len() == 2 {
            break;
        }
    }
    let user = user_obj(candidates[0], "Megan");
    let roled = |op, slug: &str, pim: Option<bool>| {
        let mut r = req(op, role.clone(), slug, user.clone());
        r.pim = pim;
        r
    };

    // Active, without PIM: a role assignment; repeated and revoked idempotently.
    for pim in [None, Some(true)] {
        let step = provision::plan(&roled(Operation::Grant, "assigned", pim), true).unwrap();
        assert!(matches!(step, Step::AssignRole { via_pim, .. } if via_pim == (pim == Some(true))));
        let end = time::OffsetDateTime::now_utc() + time::Duration::hours(8);
        let end = end
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        assert!(
            !provision::apply_until(&t.conn.graph, &step, "Helpdesk", Some(&end))
                .await
                .unwrap()
                .already
        );
        assert!(matches!(
            provision::verify(&t.conn.graph, &step, quick()).await,
            Verification::Verified { .. }
        ));
        assert!(
            provision::apply(&t.conn.graph, &step, "Helpdesk")
                .await
                .unwrap()
                .already
        );
        let step = provision::plan(&roled(Operation::Revoke, "assigned", pim), true).unwrap();
        assert!(
            !provision::apply(&t.conn.graph, &step, "Helpdesk")
                .await
                .unwrap()
                .already
        );
        assert!(matches!(
            provision::verify(&t.conn.graph, &step, quick()).await,
            Verification::Verified { .. }
        ));
        assert!(
            provision::apply(&t.conn.graph, &step, "Helpdesk")
                .await
                .unwrap()
                .already
        );
    }

    // Eligible through PIM.
    let step = provision::plan(&roled(Operation::Grant, "eligible", Some(true)), true).unwrap();
    provision::apply(&t.conn.graph, &step, "Helpdesk")
        .await
        .unwrap();
    assert!(matches!(
        provision::verify(&t.conn.graph, &step, quick()).await,
        Verification::Verified { .. }
    ));
    assert!(
        provision::apply(&t.conn.graph, &step, "Helpdesk")
            .await
            .unwrap()
            .already
    );
    let step = provision::plan(&roled(Operation::Revoke, "eligible", Some(true)), true).unwrap();
    provision::apply(&t.conn.graph, &step, "Helpdesk")
        .await
        .unwrap();
    assert!(matches!(
        provision::verify(&t.conn.graph, &step, quick()).await,
        Verification::Verified { .. }
    ));

    // Eligible without P2: refused from the connection test's finding, with no call at all…
    t.sim.clear_requests();
    let e = provision::plan(&roled(Operation::Grant, "eligible", Some(false)), true).unwrap_err();
    assert!(matches!(e, Refusal::NeedsP2 { .. }));
    assert!(e.to_string().contains("Microsoft Entra ID P2"), "{e}");
    assert!(t.graph_requests().is_empty());
    // …and from Graph's answer when the finding is unknown.
    t.sim.update_faults(|f| f.premium_p2 = false);
    let step = provision::plan(&roled(Operation::Grant, "eligible", None), true).unwrap();
    let e = provision::apply(&t.conn.graph, &step, "Helpdesk")
        .await
        .unwrap_err();
    assert!(
        matches!(e, ProvisionError::Refused(Refusal::NeedsP2 { .. })),
        "{e}"
    );

    // Only role-assignable groups hold roles.
    let plain = stored_group(&t, group_of(&t, GroupKind::Security)).await;
    let mut r = req(Operation::Grant, role.clone(), "assigned", plain);
    r.pim = Some(true);
    assert!(matches!(
        provision::plan(&r, true),
        Err(Refusal::PrincipalKind { .. })
    ));
    let assignable = stored_group(&t, group_of(&t, GroupKind::RoleAssignable)).await;
    let r = req(Operation::Grant, role, "assigned", assignable);
    provision::plan(&r, true).unwrap();
}

#[tokio::test]
async fn accounts_are_created_with_a_one_time_password_and_deprovisioned() {
    use latchkey_crypto::ExposeSecret;
    use latchkey_entra::provision::accounts::{
        AccountError, NewAccount, create_account, deprovision, generate_password,
    };
    let t = T::new().await;
    // Generated passwords are long, varied and never the same twice.
    let (a, b) = (generate_password(), generate_password());
    assert_ne!(a.expose_secret(), b.expose_secret());
    assert!(a.expose_secret().len() >= 32);

    let upn = format!("new.hire@{}", t.sim.domain());
    let new = NewAccount {
        user_principal_name: upn.clone(),
        display_name: "New Hire".into(),
        mail_nickname: "new.hire".into(),
        department: Some("Finance".into()),
        usage_location: Some("GB".into()),
        ..Default::default()
    };
    let password = generate_password();
    let created = create_account(&t.conn.graph, &new, &password)
        .await
        .unwrap();
    assert_eq!(created.user_principal_name, upn);
    assert!(
        t.sim.user_password_is(created.id, password.expose_secret()),
        "the tenant got the password the caller kept"
    );
    let user = t
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.id == created.id)
        .expect("the account exists in the tenant");
    assert!(user.account_enabled);
    assert_eq!(user.usage_location.as_deref(), Some("GB"));
    // The password is not echoed anywhere in the request log's query strings.
    assert!(t.sim.requests().iter().all(|r| {
        !r.query
            .clone()
            .unwrap_or_default()
            .contains(created.password.expose_secret())
    }));

    let e = create_account(&t.conn.graph, &new, &generate_password())
        .await
        .unwrap_err();
    assert_eq!(e, AccountError::DuplicateUpn(upn.clone()));
    assert!(e.to_string().contains("already exists"));
    let e = create_account(
        &t.conn.graph,
        &NewAccount {
            user_principal_name: "someone@not-ours.example".into(),
            ..new.clone()
        },
        &generate_password(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AccountError::UnverifiedDomain(_)), "{e}");
    let e = create_account(
        &t.conn.graph,
        &NewAccount {
            display_name: " ".into(),
            ..new.clone()
        },
        &generate_password(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AccountError::Invalid(_)));

    // Deprovision: sign-in disabled and sessions revoked; deleted only when asked.
    t.sim.clear_requests();
    let d = deprovision(&t.conn.graph, created.id, false).await.unwrap();
    assert!(!d.gone);
    let user = t
        .sim
        .truth_users()
        .into_iter()
        .find(|u| u.id == created.id)
        .unwrap();
    assert!(!user.account_enabled);
    assert!(
        t.graph_requests().iter().any(|r| r.method == "POST"
            && r.path.ends_with("/revokeSignInSessions")
            && r.status == 200),
        "sessions revoked"
    );
    assert!(
        deprovision(&t.conn.graph, created.id, true)
            .await
            .unwrap()
            .gone
    );
    assert!(!t.sim.truth_users().iter().any(|u| u.id == created.id));
    // Already gone: success.
    assert!(
        deprovision(&t.conn.graph, created.id, true)
            .await
            .unwrap()
            .gone
    );
}
