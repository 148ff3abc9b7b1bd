//! Row-level security is the second wall: even a query without an org filter sees only
//! its own organization's rows.

use latchkey_core::{DisplayName, Email, Role};
use latchkey_store::testing::{TestDb, org};
use latchkey_store::{orgs, users};

#[tokio::test]
async fn unfiltered_queries_still_see_only_their_org() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let b = org(&db.store, "beta").await;

    let mut tx = db.store.org_tx(a).await.unwrap();
    users::create(
        &mut tx,
        &Email::parse("member@alpha.example").unwrap(),
        &DisplayName::parse("M").unwrap(),
        Role::Member,
    )
    .await
    .unwrap();
    // Deliberately wrong: no org filter at all.
    let emails: Vec<String> = sqlx::query_scalar("SELECT email FROM users ORDER BY email")
        .fetch_all(tx.conn())
        .await
        .unwrap();
    assert_eq!(emails, vec!["admin@alpha.example", "member@alpha.example"]);
    let org_count: i64 = sqlx::query_scalar("SELECT count(*) FROM orgs")
        .fetch_one(tx.conn())
        .await
        .unwrap();
    assert_eq!(org_count, 1);
    // Deliberately wrong: asking for the other organization by id.
    let other: Vec<String> = sqlx::query_scalar("SELECT email FROM users WHERE org_id = $1")
        .bind(b.0)
        .fetch_all(tx.conn())
        .await
        .unwrap();
    assert!(other.is_empty());
    tx.commit().await.unwrap();

    // The owner connection sees both (that is why it is only used for system work).
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(db.store.system())
        .await
        .unwrap();
    assert_eq!(all, 3);
}

#[tokio::test]
async fn writes_into_another_org_are_refused_by_rls() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let b = org(&db.store, "beta").await;
    let mut tx = db.store.org_tx(a).await.unwrap();
    let err = sqlx::query("INSERT INTO users (id, org_id, email, display_name, role) VALUES ($1, $2, 'x@beta.example', 'X', 'member')")
        .bind(uuid::Uuid::now_v7())
        .bind(b.0)
        .execute(tx.conn())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
}

#[tokio::test]
async fn without_an_org_scope_nothing_is_visible() {
    let db = TestDb::new().await;
    org(&db.store, "alpha").await;
    let mut tx = db.store.system().begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE latchkey_app")
        .execute(&mut *tx)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn last_super_admin_cannot_be_demoted_or_disabled() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    let mut tx = db.store.org_tx(a).await.unwrap();
    let admin = users::list(&mut tx, None, 10)
        .await
        .unwrap()
        .items
        .remove(0);
    let id = latchkey_core::UserId(admin.id);
    assert!(matches!(
        users::set_role(&mut tx, id, Role::Member).await,
        Err(latchkey_store::StoreError::Conflict { .. })
    ));
    assert!(matches!(
        users::set_disabled(&mut tx, id, true).await,
        Err(latchkey_store::StoreError::Conflict { .. })
    ));
}

#[tokio::test]
async fn duplicate_email_is_a_field_conflict() {
    let db = TestDb::new().await;
    org(&db.store, "alpha").await;
    let err = orgs::create_with_admin(
        &db.store,
        &DisplayName::parse("Other").unwrap(),
        &Email::parse("ADMIN@alpha.example").unwrap(),
        &DisplayName::parse("Admin").unwrap(),
        "h",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, latchkey_store::StoreError::Conflict { field: "email" }),
        "{err:?}"
    );
}

#[tokio::test]
async fn migrations_are_reported_current() {
    let db = TestDb::new().await;
    assert!(db.store.migrations_current().await.unwrap());
}

/// Structural guard: every table with an `org_id` column has row-level security enabled
/// and a policy for the application role, so a new table cannot forget the second wall.
#[tokio::test]
async fn every_org_owned_table_has_row_level_security() {
    let db = TestDb::new().await;
    let unprotected: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped
          WHERE c.relkind IN ('r', 'p')
            AND (NOT c.relrowsecurity
                 OR NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid
                                  AND 'latchkey_app'::regrole::oid = ANY (p.polroles)))
          ORDER BY 1",
    )
    .fetch_all(db.store.system())
    .await
    .unwrap();
    assert!(
        unprotected.is_empty(),
        "org-owned tables without RLS for latchkey_app: {unprotected:?}"
    );
    let protected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id'
          WHERE c.relkind = 'r' AND c.relrowsecurity",
    )
    .fetch_one(db.store.system())
    .await
    .unwrap();
    assert!(
        protected >= 10,
        "expected the org-owned tables to be found, got {protected}"
    );
}

/// `org_tx` sets the role and the organization in the same message as its BEGIN: they hold
/// for every statement of the transaction, end with it (the pooled connection goes back as the
/// owner, with no organization), and a transaction that fails to start leaves the connection
/// usable.
#[tokio::test]
async fn an_org_transaction_keeps_its_role_and_org_until_it_ends_and_leaks_neither() {
    let db = TestDb::new().await;
    let a = org(&db.store, "alpha").await;
    // One connection, so every step below runs on the same one.
    let mut cfg = latchkey_store::DbConfig::new(db.url.clone());
    cfg.max_connections = 1;
    let store = latchkey_store::Store::connect(&cfg).await.unwrap();
    let who = "SELECT current_user::text, coalesce(current_setting('app.org_id', true), '')";

    for end in ["commit", "drop"] {
        let mut tx = store.org_tx(a).await.unwrap();
        for _ in 0..2 {
            let (user, org): (String, String) =
                sqlx::query_as(who).fetch_one(tx.conn()).await.unwrap();
            assert_eq!((user.as_str(), org), ("latchkey_app", a.to_string()));
        }
        // now() is the transaction's start: the same across statements only inside one.
        let started: time::OffsetDateTime = sqlx::query_scalar("SELECT now() FROM pg_sleep(0.01)")
            .fetch_one(tx.conn())
            .await
            .unwrap();
        let again: time::OffsetDateTime = sqlx::query_scalar("SELECT now() FROM pg_sleep(0.01)")
            .fetch_one(tx.conn())
            .await
            .unwrap();
        assert_eq!(started, again, "the statements share one transaction");
        if end == "commit" {
            tx.commit().await.unwrap();
        } else {
            drop(tx);
        }
        let (user, org): (String, String) =
            sqlx::query_as(who).fetch_one(store.system()).await.unwrap();
        assert_ne!(user, "latchkey_app", "after {end}");
        assert_eq!(org, "", "after {end}");
    }

    // A transaction that cannot start (here: its settings fail) leaves no transaction open.
    let mut conn = store.system().acquire().await.unwrap();
    let failed = sqlx::Connection::begin_with(
        &mut *conn,
        "SELECT set_config('role', 'no_such_role_here', true); BEGIN",
    )
    .await
    .is_err();
    assert!(failed);
    let open: bool = sqlx::query_scalar("SELECT 1 = 1")
        .fetch_one(&mut *conn)
        .await
        .map(|_: bool| false)
        .unwrap_or(true);
    assert!(
        !open,
        "the connection is not left in an aborted transaction"
    );
    drop(conn);
    let mut tx = store.org_tx(a).await.unwrap();
    let (user, _): (String, String) = sqlx::query_as(who).fetch_one(tx.conn()).await.unwrap();
    assert_eq!(user, "latchkey_app");
}
