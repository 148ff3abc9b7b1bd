//! Encrypted secrets in Postgres: no plaintext stored, bound to their row, rotatable.

use latchkey_core::OrgId;
use latchkey_crypto::{ExposeSecret, KeyRing, SecretString, generate_key_entry};
use latchkey_store::StoreError;
use latchkey_store::secrets::{self, SecretRef};
use latchkey_store::testing::{TestDb, org};
use uuid::Uuid;

#[tokio::test]
async fn stored_encrypted_and_bound_to_row() {
    let db = TestDb::new().await;
    let ring = KeyRing::parse(&generate_key_entry("k1")).unwrap();
    let a = org(&db.store, "alpha").await;
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
    let b = org(&db.store, "beta").await;
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
    let a = org(&db.store, "alpha").await;
    let b = org(&db.store, "beta").await;
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

/// Key rotation under load, as an operator does it: processes restart one by one with the new
/// key first (so for a while some still write under the old one), `keys rotate` runs while
/// secrets are written and read, and is run again until nothing is left under the old key;
/// then the old key is dropped. Nothing is lost: every secret opens with the new key alone and
/// holds the last value written to it (a rotation never puts back an older value over a
/// newer write).
#[tokio::test]
async fn rotation_under_concurrent_writes_loses_nothing() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    let db = TestDb::new().await;
    let old_entry = generate_key_entry("old");
    let old = Arc::new(KeyRing::parse(&old_entry).unwrap());
    let new =
        Arc::new(KeyRing::parse(&format!("{},{old_entry}", generate_key_entry("new"))).unwrap());
    let orgs = [org(&db.store, "alpha").await, org(&db.store, "beta").await];
    let at = |owner_id: Uuid| SecretRef {
        owner_table: "connectors",
        owner_id,
        field: "client_secret",
    };
    // 300 secrets under the old key.
    let mut rows: Vec<(OrgId, Uuid)> = Vec::new();
    for (n, o) in orgs.iter().enumerate() {
        let mut tx = db.store.org_tx(*o).await.unwrap();
        for i in 0..150 {
            let id = Uuid::now_v7();
            secrets::put(
                &mut tx,
                &old,
                at(id),
                &SecretString::from(format!("v0-{n}-{i}")),
            )
            .await
            .unwrap();
            rows.push((*o, id));
        }
        tx.commit().await.unwrap();
    }
    let last: Arc<Mutex<HashMap<Uuid, String>>> = Arc::new(Mutex::new(
        rows.iter()
            .enumerate()
            .map(|(k, (_, id))| (*id, format!("v0-{}-{}", k / 150, k % 150)))
            .collect(),
    ));
    let rows = Arc::new(Mutex::new(rows));

    // Four writers: two still on the old key ring, two restarted with the new one. Each
    // updates existing secrets and adds new ones, and reads what it wrote.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (store, ring) = (
            db.store.clone(),
            if w < 2 { old.clone() } else { new.clone() },
        );
        let (last, rows, stop, written) =
            (last.clone(), rows.clone(), stop.clone(), written.clone());
        let mut mine: Vec<(OrgId, Uuid)> = rows
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(k, _)| *k as u64 % 4 == w)
            .map(|(_, r)| *r)
            .collect();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                // Each writer keeps to its own secrets (a quarter of the first ones and those
                // it adds), as one connector's settings are saved by one request at a time.
                let (o, id) = if n.is_multiple_of(5) {
                    let o = orgs[(n % 2) as usize];
                    let id = Uuid::now_v7();
                    rows.lock().unwrap().push((o, id));
                    mine.push((o, id));
                    (o, id)
                } else {
                    mine[((n * 7919) % mine.len() as u64) as usize]
                };
                let value = format!("w{w}-{n}");
                let mut tx = store.org_tx(o).await.unwrap();
                secrets::put(&mut tx, &ring, at(id), &SecretString::from(value.clone()))
                    .await
                    .unwrap();
                let read = secrets::get(&mut tx, &ring, at(id)).await.unwrap();
                assert_eq!(read.expose_secret(), value);
                tx.commit().await.unwrap();
                last.lock().unwrap().insert(id, value);
                written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            n
        }));
    }
    // `keys rotate` while they write (small batches, so it interleaves with them).
    // At least three passes, and until the writers have written a few hundred times.
    let mut rotated = 0;
    let mut passes = 0;
    let started = std::time::Instant::now();
    while passes < 3
        || (written.load(std::sync::atomic::Ordering::Relaxed) < 300
            && started.elapsed() < std::time::Duration::from_secs(20))
    {
        rotated += secrets::rotate_all(&db.store, &new, 7)
            .await
            .unwrap()
            .rotated;
        passes += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut writes = 0;
    for w in writers {
        writes += w.await.unwrap();
    }
    assert!(
        rotated > 0 && writes >= 300,
        "rotated {rotated}, writes {writes}"
    );

    // Every process now runs with the new ring: rotate until the old key protects nothing.
    let report = secrets::rotate_all(&db.store, &new, 50).await.unwrap();
    assert_eq!(report.failed, 0);
    let by_key = secrets::count_by_key(&db.store).await.unwrap();
    let rows = rows.lock().unwrap().clone();
    assert_eq!(by_key, vec![("new".to_string(), rows.len() as i64)]);

    // The old key is dropped: every secret opens with the new key alone, with its last value.
    let new_only = KeyRing::parse(&format!("new:{}", b64(new.active().bytes()))).unwrap();
    let last = last.lock().unwrap().clone();
    for (o, id) in rows {
        let mut tx = db.store.org_tx(o).await.unwrap();
        let got = secrets::get(&mut tx, &new_only, at(id)).await.unwrap();
        assert_eq!(got.expose_secret(), last[&id], "secret {id}");
    }
    println!(
        "rotation under load: {writes} writes during {passes} rotation passes, {rotated} re-encrypted while they ran"
    );
}
