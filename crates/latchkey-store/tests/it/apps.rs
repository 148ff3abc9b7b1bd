//! Apps: many managed apps per organization; discovered apps found once per source and id.

use latchkey_store::apps;
use latchkey_store::testing::{TestDb, org};
use uuid::Uuid;

#[tokio::test]
async fn managed_and_discovered_apps() {
    let db = TestDb::new().await;
    let org = org(&db.store, "Acme").await;
    let mut tx = db.store.org_tx(org).await.unwrap();
    let a = apps::create_managed(&mut tx, "Entra ID").await.unwrap();
    let b = apps::create_managed(&mut tx, "Entra ID (EU)")
        .await
        .unwrap();
    assert_ne!(a.id, b.id);

    let source = Uuid::now_v7();
    let first = apps::upsert_discovered(&mut tx, source, "sp-1", "Salesforce", None)
        .await
        .unwrap();
    let again =
        apps::upsert_discovered(&mut tx, source, "sp-1", "Salesforce (renamed)", Some("CRM"))
            .await
            .unwrap();
    assert_eq!(first, again, "found once per source and external id");
    let other = apps::upsert_discovered(&mut tx, Uuid::now_v7(), "sp-1", "Salesforce", None)
        .await
        .unwrap();
    assert_ne!(first, other, "another connector's discovery is another app");
    let discovered = apps::list(&mut tx, "discovered").await.unwrap();
    assert_eq!(discovered.len(), 2);
    assert!(
        discovered
            .iter()
            .any(|d| d.name == "Salesforce (renamed)" && d.description.as_deref() == Some("CRM"))
    );

    let adopted = apps::adopt(&mut tx, first).await.unwrap();
    assert_eq!(adopted.kind, "managed");
    assert_eq!(apps::list(&mut tx, "managed").await.unwrap().len(), 3);
    assert!(
        apps::adopt(&mut tx, first).await.is_err(),
        "only discovered apps are adopted"
    );
}
