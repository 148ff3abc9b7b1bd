//! Encrypted secrets in Postgres: no plaintext stored, bound to their row, rotatable.

use latchkey_core::{DisplayName, Email, OrgId};
use latchkey_crypto::{ExposeSecret, KeyRing, SecretString, generate_key_entry};
use latchkey_store::secrets::{self, SecretRef};
use latchkey_store::testing::TestDb;
use latchkey_store::{StoreError, orgs};
use uuid::Uuid;

async fn org(db: &TestDb, name: &str) -> OrgId {
    orgs::create_with_admin(
        &db.store,
        &DisplayName::parse(name).unwrap(),
        &Email::parse(&format!("admin@{name}.example")).unwrap(),
        &DisplayName::parse("Admin").unwrap(),
        "h",
    )
    .await
    .unwrap()
    .0
}

#[tokio::test]
async fn stored_encrypted_and_bound_to_row() {
    let db = TestDb::new().await;
    let ring = KeyRing::parse(&generate_key_entry("k1")).unwrap();
    let a = org(&db, "alpha").await;
    let row = Uuid::now_v7();
    let at = SecretRef {
        owner_table: "connectors",
        owner_id: row,
        field: "client_secret",
    };
    let plaintext = "Zq8~plaintext-client-secret-value";

    let mut tx = db.store.org_tx(a).await.unwrap();
    secrets::put(
        &mut tx,
        &ring,
        at,
        &SecretString::from(plaintext.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(
        secrets::get(&mut tx, &ring, at)
            .await
            .unwrap()
            .expose_secret(),
        plaintext
    );
    tx.commit().await.unwrap();

    let raw: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM encrypted_secrets")
        .fetch_one(db.store.system())
        .await
        .unwrap();
    assert!(!raw.windows(9).any(|w| w == b"plaintext"));

    // Copy the ciphertext to another row: it must not decrypt there.
    let other = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO encrypted_secrets (id, org_id, owner_table, owner_id, field, key_id, nonce, ciphertext)
         SELECT $1, org_id, owner_table, $2, field, key_id, nonce, ciphertext FROM encrypted_secrets",
    )
    .bind(Uuid::now_v7())
    .bind(other)
    .execute(db.store.system())
    .await
    .unwrap();
    let mut tx = db.store.org_tx(a).await.unwrap();
    let copied = SecretRef {
        owner_id: other,
        ..at
    };
    assert!(matches!(
        secrets::get(&mut tx, &ring, copied).await,
        Err(StoreError::Crypto(_))
    ));

    // Another organization cannot even see it.
    let b = org(&db, "beta").await;
    let mut tx = db.store.org_tx(b).await.unwrap();
    assert!(matches!(
        secrets::get(&mut tx, &ring, at).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn rotation_reencrypts_everything_and_is_resumable() {
    let db = TestDb::new().await;
    let old_entry = generate_key_entry("old");
    let old = KeyRing::parse(&old_entry).unwrap();
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let mut refs = vec![];
    for (o, n) in [(a, 7), (b, 5)] {
        let mut tx = db.store.org_tx(o).await.unwrap();
        for i in 0..n {
            let at = SecretRef {
                owner_table: "connectors",
                owner_id: Uuid::now_v7(),
                field: "client_secret",
            };
            secrets::put(
                &mut tx,
                &old,
                at,
                &SecretString::from(format!("secret-{o}-{i}")),
            )
            .await
            .unwrap();
            refs.push((o, at.owner_id, format!("secret-{o}-{i}")));
        }
        tx.commit().await.unwrap();
    }

    let new = KeyRing::parse(&format!("{},{old_entry}", generate_key_entry("new"))).unwrap();
    let report = secrets::rotate_all(&db.store, &new, 5).await.unwrap();
    assert_eq!(
        (report.rotated, report.already_current, report.failed),
        (12, 0, 0)
    );
    // A second run (e.g. after an interruption) finds nothing left to do.
    let again = secrets::rotate_all(&db.store, &new, 5).await.unwrap();
    assert_eq!((again.rotated, again.already_current), (0, 12));
    assert_eq!(
        secrets::count_by_key(&db.store).await.unwrap(),
        vec![("new".to_string(), 12)]
    );

    // The old key can now be dropped: everything still opens with the new key alone.
    let new_only = KeyRing::parse(&format!("new:{}", b64(new.active().bytes()))).unwrap();
    for (o, owner_id, expected) in refs {
        let mut tx = db.store.org_tx(o).await.unwrap();
        let at = SecretRef {
            owner_table: "connectors",
            owner_id,
            field: "client_secret",
        };
        assert_eq!(
            secrets::get(&mut tx, &new_only, at)
                .await
                .unwrap()
                .expose_secret(),
            expected
        );
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
