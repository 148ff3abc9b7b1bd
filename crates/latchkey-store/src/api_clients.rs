//! API clients: OAuth2 client-credentials for automation. Secrets are stored as SHA-256
//! (they are 256-bit random values, so a slow hash adds nothing).

use crate::page::{Cursor, Page};
use crate::{OrgTx, Result, Store, StoreError};
use latchkey_core::{ApiClientId, DisplayName, OrgId, Role, UserId};
use serde::Serialize;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct ApiClient {
    pub id: Uuid,
    pub org_id: Uuid,
    pub client_id: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub generation: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub rotated_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, org_id, client_id, name, role, generation, created_at, rotated_at, revoked_at, last_used_at";

pub async fn create(
    tx: &mut OrgTx,
    name: &DisplayName,
    role: Role,
    client_id: &str,
    secret_hash: &str,
    created_by: Option<UserId>,
) -> Result<ApiClient> {
    let id = ApiClientId::new();
    let org = tx.org();
    sqlx::query(
        "INSERT INTO api_clients (id, org_id, client_id, name, role, secret_hash, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.0)
    .bind(org.0)
    .bind(client_id)
    .bind(name.as_str())
    .bind(role.as_str())
    .bind(secret_hash)
    .bind(created_by.map(|u| u.0))
    .execute(tx.conn())
    .await?;
    get(tx, id).await
}

pub async fn get(tx: &mut OrgTx, id: ApiClientId) -> Result<ApiClient> {
    let org = tx.org();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_clients WHERE org_id = $1 AND id = $2"
    )))
    .bind(org.0)
    .bind(id.0)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::NotFound)
}

pub async fn list(tx: &mut OrgTx, after: Option<Cursor>, limit: i64) -> Result<Page<ApiClient>> {
    let org = tx.org();
    let rows: Vec<ApiClient> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_clients WHERE org_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    )))
    .bind(org.0)
    .bind(after.map(|c| c.0))
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    Ok(Page::from_rows(rows, limit, |c| c.id))
}

/// Replaces the secret and bumps the generation, which ends every token issued before.
pub async fn rotate(tx: &mut OrgTx, id: ApiClientId, secret_hash: &str) -> Result<ApiClient> {
    let org = tx.org();
    let n = sqlx::query(
        "UPDATE api_clients SET secret_hash = $3, generation = generation + 1, rotated_at = now()
          WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
    )
    .bind(org.0)
    .bind(id.0)
    .bind(secret_hash)
    .execute(tx.conn())
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    get(tx, id).await
}

pub async fn revoke(tx: &mut OrgTx, id: ApiClientId) -> Result<ApiClient> {
    let org = tx.org();
    let n = sqlx::query("UPDATE api_clients SET revoked_at = coalesce(revoked_at, now()) WHERE org_id = $1 AND id = $2")
        .bind(org.0)
        .bind(id.0)
        .execute(tx.conn())
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    get(tx, id).await
}

/// What the token endpoint needs, found by the public client id (owner connection).
#[derive(Debug, Clone, FromRow)]
pub struct ClientCredentials {
    pub id: Uuid,
    pub org_id: Uuid,
    pub secret_hash: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub generation: i32,
    pub revoked: bool,
}

pub async fn find_credentials(store: &Store, client_id: &str) -> Result<Option<ClientCredentials>> {
    Ok(sqlx::query_as(
        "SELECT id, org_id, secret_hash, role, generation, revoked_at IS NOT NULL AS revoked FROM api_clients WHERE client_id = $1",
    )
    .bind(client_id)
    .fetch_optional(store.system())
    .await?)
}

/// The state a bearer token is checked against on every request, so that revocation and
/// rotation take effect at once.
#[derive(Debug, Clone, FromRow)]
pub struct TokenState {
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub generation: i32,
    pub revoked: bool,
}

/// Owner connection: a pre-authentication lookup by the API client's id (see the crate docs),
/// filtered by the organization the verified token names. One autocommit statement instead of
/// an organization transaction (BEGIN, role and organization, query, COMMIT): it runs before
/// every API request.
pub async fn token_state(store: &Store, org: OrgId, id: ApiClientId) -> Result<Option<TokenState>> {
    // Record use at most once a minute, so polling clients do not write on every request.
    Ok(sqlx::query_as(
        "WITH touched AS (
             UPDATE api_clients SET last_used_at = now()
              WHERE org_id = $1 AND id = $2 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
          RETURNING id)
         SELECT role, generation, revoked_at IS NOT NULL AS revoked FROM api_clients WHERE org_id = $1 AND id = $2",
    )
    .bind(org.0)
    .bind(id.0)
    .fetch_optional(store.system())
    .await?)
}
