//! The end-of-sync sweep removes what its run did not see, but never what a sync that started
//! after it saw (a self-hosted connector's run is finished by a worker job, which may come after
//! the connector has already uploaded its next sync).

use latchkey_store::resources::{self, ResourceRow};
use latchkey_store::testing::{TestDb, org};
use latchkey_store::{apps, connectors, sync_runs};
use serde_json::json;
use uuid::Uuid;

fn user(key: &str) -> ResourceRow {
    ResourceRow {
        rtype: "user",
        key: key.to_string(),
        external_id: key.to_string(),
        display_name: key.to_string(),
        profile: json!({}),
    }
}

#[tokio::test]
async fn a_sweep_leaves_what_a_later_run_saw() {
    let db = TestDb::new().await;
    let org = org(&db.store, "Sweep").await;
    let mut tx = db.store.org_tx(org).await.unwrap();
    let app = apps::create_managed(&mut tx, "Entra ID").await.unwrap();
    let connector = connectors::create(
        &mut tx,
        connectors::NewConnector {
            app_id: app.id,
            kind: "entra",
            display_name: "Tenant",
            created_by: None,
        },
    )
    .await
    .unwrap()
    .id;
    tx.commit().await.unwrap();

    // Three runs, each started in a transaction of its own (started_at is its start time).
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = Uuid::now_v7();
        let mut tx = db.store.org_tx(org).await.unwrap();
        sync_runs::start(&mut tx, run, connector, "full")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        runs.push(run);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (older, this, later) = (runs[0], runs[1], runs[2]);
    let mut tx = db.store.org_tx(org).await.unwrap();
    // `gone` was last seen by an older run; `kept` by this one; `newer` and `both` by the
    // run that started after it and already wrote its rows.
    resources::upsert_resources(&mut tx, connector, older, &[user("gone"), user("both")])
        .await
        .unwrap();
    resources::upsert_resources(&mut tx, connector, this, &[user("kept"), user("both")])
        .await
        .unwrap();
    resources::upsert_resources(&mut tx, connector, later, &[user("newer"), user("both")])
        .await
        .unwrap();
    let swept = resources::sweep(&mut tx, connector, this, &[])
        .await
        .unwrap();
    assert_eq!(
        swept.resources, 1,
        "only what older runs saw and this one did not"
    );
    let mut current: Vec<String> = resources::list_resources(
        &mut tx,
        connector,
        &resources::ResourceFilter::default(),
        None,
        10,
    )
    .await
    .unwrap()
    .items
    .into_iter()
    .map(|r| r.external_id)
    .collect();
    current.sort();
    assert_eq!(current, ["both", "kept", "newer"]);
    tx.commit().await.unwrap();
}
