//! The audit trail: a per-organization hash chain that detects any change after the fact.

use latchkey_core::OrgId;
use latchkey_store::Store;
use latchkey_store::audit::{self, Actor, Filter, NewEvent};
use latchkey_store::testing::{TestDb, org};
use serde_json::json;

async fn record(store: &Store, org: OrgId, n: usize) {
    let actor = Actor::system("test");
    for i in 0..n {
        let mut tx = store.org_tx(org).await.unwrap();
        audit::append(
            &mut tx,
            &NewEvent {
                actor: &actor,
                action: "policy.updated",
                target_kind: "entitlement",
                target_id: Some(format!("e{}", i % 3)),
                details: json!({"step": i, "nested": {"b": true, "a": "x"}}),
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
}

async fn check(store: &Store, org: OrgId) -> audit::ChainCheck {
    let mut tx = store.org_tx(org).await.unwrap();
    audit::verify_chain(&mut tx).await.unwrap()
}

#[tokio::test]
async fn chain_is_intact_ordered_and_paged() {
    let db = TestDb::new().await;
    let a = org(&db.store, "Acme").await;
    record(&db.store, a, 5).await;
    let c = check(&db.store, a).await;
    assert_eq!(c.events, 5);
    assert!(c.intact(), "{c:?}");

    let mut tx = db.store.org_tx(a).await.unwrap();
    let first = audit::list(&mut tx, &Filter::default(), None, 2)
        .await
        .unwrap();
    assert_eq!(
        first.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5, 4]
    );
    let cursor = audit::parse_cursor(first.next_cursor.as_deref().unwrap()).unwrap();
    let rest = audit::list(&mut tx, &Filter::default(), Some(cursor), 10)
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    assert!(rest.next_cursor.is_none());
    let about_e1 = audit::list(
        &mut tx,
        &Filter {
            target_kind: Some("entitlement".into()),
            target_id: Some("e1".into()),
            action_prefix: Some("policy.".into()),
        },
        None,
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        about_e1.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5, 2]
    );
    assert!(audit::parse_cursor("garbage").is_err());
}

#[tokio::test]
async fn concurrent_appends_make_one_chain() {
    let db = TestDb::new().await;
    let a = org(&db.store, "Acme").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move { record(&store, a, 5).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = check(&db.store, a).await;
    assert_eq!(c.events, 40);
    assert!(c.intact(), "{c:?}");
}

#[tokio::test]
async fn tampering_with_any_row_is_detected() {
    let db = TestDb::new().await;
    let a = org(&db.store, "Acme").await;
    // Each way of tampering, on a fresh chain of 6, must be caught at the row it touched.
    let tamperings: [(&str, i64); 5] = [
        (
            "UPDATE audit_events SET actor_label = 'someone else' WHERE seq = 3",
            3,
        ),
        (
            "UPDATE audit_events SET details = '{\"step\": 99}' WHERE seq = 6",
            6,
        ),
        (
            "UPDATE audit_events SET occurred_at = occurred_at - interval '1 day' WHERE seq = 1",
            1,
        ),
        ("DELETE FROM audit_events WHERE seq = 4", 5),
        (
            // Recomputing one row's hash does not help: the next row still points at the old one.
            "UPDATE audit_events SET action = 'policy.deleted', hash = md5('x') || md5('y') WHERE seq = 2",
            2,
        ),
    ];
    for (sql, broken_at) in tamperings {
        sqlx::query("DELETE FROM audit_events")
            .execute(db.store.system())
            .await
            .unwrap();
        record(&db.store, a, 6).await;
        assert!(check(&db.store, a).await.intact());
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(db.store.system())
            .await
            .unwrap();
        let c = check(&db.store, a).await;
        assert_eq!(c.broken_at, Some(broken_at), "{sql}");
    }
}

#[tokio::test]
async fn organizations_have_separate_chains_and_cannot_rewrite_them() {
    let db = TestDb::new().await;
    let a = org(&db.store, "Acme").await;
    let b = org(&db.store, "Globex").await;
    record(&db.store, a, 3).await;
    record(&db.store, b, 2).await;
    assert_eq!(check(&db.store, a).await.events, 3);
    assert_eq!(check(&db.store, b).await.events, 2);

    let mut tx = db.store.org_tx(b).await.unwrap();
    let seen = audit::list(&mut tx, &Filter::default(), None, 50)
        .await
        .unwrap();
    assert_eq!(seen.items.len(), 2, "B sees only its own events");
    drop(tx);

    for sql in [
        "UPDATE audit_events SET actor_label = 'x'",
        "DELETE FROM audit_events",
    ] {
        let mut tx = db.store.org_tx(a).await.unwrap();
        let err = sqlx::query(sql).execute(tx.conn()).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "the application role may only append: {err}"
        );
    }
}

#[tokio::test]
async fn entra_identities_link_one_account_to_one_user() {
    use latchkey_store::{identities, users};
    let db = TestDb::new().await;
    let a = org(&db.store, "Acme").await;
    let mut tx = db.store.org_tx(a).await.unwrap();
    let admin = latchkey_core::UserId(users::list(&mut tx, None, 10).await.unwrap().items[0].id);
    identities::link(&mut tx, admin, "TENANT-1", "OID-1")
        .await
        .unwrap();
    assert_eq!(
        identities::find_user(&mut tx, "tenant-1", "oid-1")
            .await
            .unwrap(),
        Some(admin)
    );
    identities::link(&mut tx, admin, "tenant-1", "oid-2")
        .await
        .unwrap();
    let linked = identities::for_user(&mut tx, admin).await.unwrap();
    assert_eq!(
        linked.len(),
        1,
        "one account per tenant: re-linking replaces"
    );
    assert_eq!(linked[0].object_id, "oid-2");
    assert_eq!(
        identities::find_user(&mut tx, "tenant-1", "oid-1")
            .await
            .unwrap(),
        None
    );
}
