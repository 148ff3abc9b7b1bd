//! Test support: every test gets its own database, cloned from a migrated template
//! (cloning takes milliseconds; migrating each time would not).

use crate::{DbConfig, MIGRATOR, Store};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::str::FromStr;

/// The server tests run against: `LATCHKEY_TEST_DATABASE_URL`, else `DATABASE_URL`,
/// else the local default. The database part of the URL is replaced per test.
pub fn server_url() -> String {
    std::env::var("LATCHKEY_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A new organization called `name` (its administrator `admin@<name>.example`, with no usable
/// password): what most store tests start from.
pub async fn org(store: &Store, name: &str) -> latchkey_core::OrgId {
    let (org, _) = crate::orgs::create_with_admin(
        store,
        &latchkey_core::DisplayName::parse(name).expect("a display name"),
        &latchkey_core::Email::parse(&format!("admin@{}.example", name.to_lowercase()))
            .expect("a name usable in an email domain"),
        &latchkey_core::DisplayName::parse("Admin").expect("a display name"),
        "not-a-real-hash",
    )
    .await
    .expect("the organization is created");
    org
}

pub struct TestDb {
    pub name: String,
    pub url: String,
    pub store: Store,
}

fn url_with_db(base: &str, db: &str) -> String {
    let mut u = url::Url::parse(base).expect("test database URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

fn template_name() -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for m in MIGRATOR.iter() {
        for b in m.checksum.iter().chain(m.version.to_le_bytes().iter()) {
            h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
        }
    }
    format!("lk_tpl_{h:016x}")
}

async fn admin_conn() -> PgConnection {
    let opts = PgConnectOptions::from_str(&url_with_db(&server_url(), "postgres"))
        .expect("test database URL");
    PgConnection::connect_with(&opts)
        .await
        .expect("tests need PostgreSQL: run ./scripts/test, which starts it, or set LATCHKEY_TEST_DATABASE_URL")
}

async fn ensure_template(admin: &mut PgConnection, tpl: &str) {
    // Serialise template creation across parallel test processes.
    sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
        .bind(tpl)
        .execute(&mut *admin)
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(tpl)
            .fetch_one(&mut *admin)
            .await
            .unwrap();
    if !exists {
        let building = format!("{tpl}_building");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {building}"
        )))
        .execute(&mut *admin)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}")))
            .execute(&mut *admin)
            .await
            .unwrap();
        {
            let store = Store::connect(&DbConfig::new(url_with_db(&server_url(), &building)))
                .await
                .unwrap();
            MIGRATOR.run(store.system()).await.unwrap();
            store.system().close().await;
        }
        // Renaming last means a half-built template is never used.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {building} RENAME TO {tpl}"
        )))
        .execute(&mut *admin)
        .await
        .unwrap();
    }
    sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(tpl)
        .execute(&mut *admin)
        .await
        .unwrap();
}

impl TestDb {
    /// A new, migrated, empty database.
    pub async fn new() -> Self {
        let tpl = template_name();
        let mut admin = admin_conn().await;
        ensure_template(&mut admin, &tpl).await;
        let name = format!("lk_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE {tpl}"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.ok();
        let url = url_with_db(&server_url(), &name);
        let mut cfg = DbConfig::new(url.clone());
        cfg.max_connections = 5;
        let store = Store::connect(&cfg).await.unwrap();
        TestDb { name, url, store }
    }
}
