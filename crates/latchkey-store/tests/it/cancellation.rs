//! A caller dropped while its transaction is starting (a client that disconnects, a timeout)
//! must not leave the pool a connection stuck inside a transaction.

use latchkey_core::OrgId;
use latchkey_store::testing::TestDb;
use latchkey_store::{DbConfig, Store};
use std::time::Duration;
use uuid::Uuid;

/// Whether the pool's connection runs statements on their own again (outside a transaction an
/// error does not affect the next statement; inside a left-over one, the next fails with 25P02).
async fn clean(store: &Store) -> Result<(), String> {
    let mut conn = store.system().acquire().await.map_err(|e| e.to_string())?;
    let _ = sqlx::query("SELECT 1/0").execute(&mut *conn).await;
    sqlx::query("SELECT 1")
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn transactions_cancelled_while_starting_leave_the_pool_clean() {
    let db = TestDb::new().await;
    // One connection: every attempt and every check use the same session.
    let store = Store::connect(&DbConfig {
        max_connections: 1,
        ..DbConfig::new(db.url.clone())
    })
    .await
    .unwrap();
    let org = OrgId(Uuid::new_v4());
    let mut cut = 0;
    // Cancel after 0 µs, 5 µs, … up to 3 ms: some land while BEGIN is on the wire.
    for micros in (0..3000).step_by(5) {
        let wait = Duration::from_micros(micros);
        if micros % 2 == 0 {
            cut += usize::from(tokio::time::timeout(wait, store.org_tx(org)).await.is_err());
        } else {
            cut += usize::from(tokio::time::timeout(wait, store.system_tx()).await.is_err());
        }
        if let Err(e) = clean(&store).await {
            panic!("after a start cancelled at {micros} µs the connection is stuck: {e}");
        }
    }
    assert!(cut > 0, "no attempt was cancelled");
    // And the store still works as usual.
    let mut tx = store.org_tx(org).await.unwrap();
    sqlx::query("SELECT 1").execute(tx.conn()).await.unwrap();
    tx.commit().await.unwrap();
}
