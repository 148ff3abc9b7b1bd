//! The pool, database creation, migrations and organization-scoped transactions.

use crate::{Result, StoreError};
use latchkey_core::OrgId;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

#[derive(Clone, Debug)]
pub struct DbConfig {
    pub url: String,
    pub max_connections: u32,
    /// Bounds every statement so a runaway query cannot hold a connection forever.
    pub statement_timeout: Duration,
    pub acquire_timeout: Duration,
}

impl DbConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            statement_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects, creating the database first when it does not exist.
    pub async fn connect(cfg: &DbConfig) -> Result<Self> {
        let opts = PgConnectOptions::from_str(&cfg.url)?;
        create_database_if_missing(&opts).await?;
        let timeout_ms = cfg.statement_timeout.as_millis().to_string();
        let opts = opts
            .options([("statement_timeout", timeout_ms.as_str())])
            .application_name("latchkey");
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections)
            .acquire_timeout(cfg.acquire_timeout)
            .connect_with(opts)
            .await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// True when every migration this binary knows has been applied.
    pub async fn migrations_current(&self) -> Result<bool> {
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        .or_else(|e| match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => Ok(vec![]),
            _ => Err(e),
        })?;
        Ok(MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .all(|m| applied.contains(&m.version)))
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The owner connection, which row-level security does not apply to. Only for work
    /// that is not one organization's; see the crate docs.
    pub fn system(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction confined to one organization by row-level security.
    pub async fn org_tx(&self, org: OrgId) -> Result<OrgTx> {
        // `SET LOCAL ROLE latchkey_app`, the organization and BEGIN in one round trip (one
        // simple-protocol message): this starts nearly every request. The settings come first,
        // in the message's implicit transaction, which BEGIN then makes the explicit one, so
        // they hold until COMMIT; if they fail, nothing has begun and the connection goes back
        // to the pool clean (sqlx fails the call when the connection is not in a transaction
        // afterwards). The organization is a UUID we format, so it cannot leave its quotes.
        let tx = begin(
            &self.pool,
            Some(format!(
                "SELECT set_config('role', 'latchkey_app', true), set_config('app.org_id', '{}', true); BEGIN",
                org.0.as_hyphenated()
            )),
        )
        .await?;
        Ok(OrgTx { tx, org })
    }

    /// A transaction on the owner connection (see [`Store::system`]), started safely even when
    /// the caller is dropped meanwhile (see [`begin`]). Use it instead of `system().begin()`.
    pub async fn system_tx(&self) -> Result<Transaction<'static, Postgres>> {
        begin(&self.pool, None).await
    }

    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }
}

/// Starts a transaction on `pool` (with `statement` instead of a plain BEGIN), whatever happens
/// to the caller. sqlx 0.9.0 is not cancel-safe there on Postgres (transact-rs/sqlx#4393, fixed
/// after 0.9.0): a caller dropped while the BEGIN is in flight — a client that disconnects, a
/// timeout, an aborted task — leaves the session inside a transaction nothing rolls back, and
/// the pool hands that connection out again; after its first error every statement on it fails
/// with 25P02 until the connection is recycled. Here the BEGIN runs in a task of its own, so it
/// always completes; a transaction its caller no longer wants is dropped in the task, which
/// rolls it back as sqlx does for any dropped transaction.
async fn begin(pool: &PgPool, statement: Option<String>) -> Result<Transaction<'static, Postgres>> {
    let pool = pool.clone();
    let started = tokio::spawn(async move {
        match statement {
            Some(s) => pool.begin_with(sqlx::AssertSqlSafe(s)).await,
            None => pool.begin().await,
        }
    })
    .await
    .unwrap_or(Err(sqlx::Error::WorkerCrashed))?;
    Ok(started)
}

/// One organization's transaction. Queries still filter by [`OrgTx::org`] themselves;
/// row-level security is the second wall.
pub struct OrgTx {
    tx: Transaction<'static, Postgres>,
    org: OrgId,
}

impl OrgTx {
    pub fn org(&self) -> OrgId {
        self.org
    }

    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

async fn create_database_if_missing(opts: &PgConnectOptions) -> Result<()> {
    let Some(name) = opts.get_database().map(str::to_string) else {
        return Ok(());
    };
    // Try the target first: the common case needs no maintenance connection.
    match PgConnection::connect_with(opts).await {
        Ok(c) => {
            c.close().await.ok();
            return Ok(());
        }
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3D000") => {}
        Err(e) => return Err(StoreError::Db(e)),
    }
    let mut admin = PgConnection::connect_with(&opts.clone().database("postgres")).await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
        .execute(&mut admin)
        .await
    {
        Ok(_) => tracing::info!(database = %name, "created database"),
        // Another process created it between our check and now.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
        Err(e) => return Err(StoreError::Db(e)),
    }
    admin.close().await.ok();
    Ok(())
}
