//! Sign-in throttling, shared by every web process through Postgres.

use crate::{Result, Store};
use time::{Duration, OffsetDateTime};

pub async fn record(store: &Store, email: &str, client_ip: &str, succeeded: bool) -> Result<()> {
    sqlx::query("INSERT INTO login_attempts (email, client_ip, succeeded) VALUES ($1, $2, $3)")
        .bind(email)
        .bind(client_ip)
        .bind(succeeded)
        .execute(store.system())
        .await?;
    Ok(())
}

/// Failures within `window` for this email and for this address, and when the oldest
/// counted failure of the email leaves the window.
#[derive(Debug, Clone, Copy)]
pub struct Failures {
    pub by_email: i64,
    pub by_ip: i64,
    pub email_window_frees_at: Option<OffsetDateTime>,
    pub ip_window_frees_at: Option<OffsetDateTime>,
}

pub async fn recent_failures(
    store: &Store,
    email: &str,
    client_ip: &str,
    window: Duration,
) -> Result<Failures> {
    let since = OffsetDateTime::now_utc() - window;
    // Failures count only since the last success for that email: a correct sign-in resets it.
    let (by_email, email_oldest): (i64, Option<OffsetDateTime>) = sqlx::query_as(
        "SELECT count(*), min(at) FROM login_attempts
          WHERE email = $1 AND NOT succeeded AND at > $2
            AND at > coalesce((SELECT max(at) FROM login_attempts WHERE email = $1 AND succeeded), '-infinity')",
    )
    .bind(email)
    .bind(since)
    .fetch_one(store.system())
    .await?;
    let (by_ip, ip_oldest): (i64, Option<OffsetDateTime>) =
        sqlx::query_as("SELECT count(*), min(at) FROM login_attempts WHERE client_ip = $1 AND NOT succeeded AND at > $2")
            .bind(client_ip)
            .bind(since)
            .fetch_one(store.system())
            .await?;
    Ok(Failures {
        by_email,
        by_ip,
        email_window_frees_at: email_oldest.map(|t| t + window),
        ip_window_frees_at: ip_oldest.map(|t| t + window),
    })
}

/// Drops attempts older than a day (housekeeping).
pub async fn purge_old(store: &Store) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM login_attempts WHERE at < now() - interval '1 day'")
            .execute(store.system())
            .await?
            .rows_affected(),
    )
}
