//! Queue figures for `/metrics`: depth by kind and status, recent run durations, retries.
//! Read from the table, so any process (web included) reports the whole fleet.

use crate::{Result, Store};
use std::time::Duration;

/// How many jobs of one kind are in one status (`queued`, `running` or `dead`).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Depth {
    pub kind: String,
    pub status: String,
    pub jobs: i64,
}

/// Jobs of one kind that finished within the window.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RecentRuns {
    pub kind: String,
    pub status: String,
    pub jobs: i64,
    /// Sum of the final attempts' run times, in seconds.
    pub duration_seconds_sum: f64,
    pub duration_seconds_max: f64,
    /// Attempts beyond the first.
    pub retries: i64,
}

/// Age of the oldest due, still queued job of each kind: how far behind the queue is.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Lag {
    pub kind: String,
    pub seconds: f64,
}

#[derive(Clone, Debug)]
pub struct QueueStats {
    pub depth: Vec<Depth>,
    pub recent: Vec<RecentRuns>,
    pub lag: Vec<Lag>,
}

/// Queue figures across all organizations. Owner connection.
pub async fn queue_stats(store: &Store, window: Duration) -> Result<QueueStats> {
    // Only the statuses partial indexes cover: a scrape must not scan the finished history.
    let depth = sqlx::query_as(
        "SELECT kind, 'queued' AS status, count(*) AS jobs FROM jobs WHERE status = 'queued' GROUP BY kind
         UNION ALL
         SELECT kind, 'running', count(*) FROM jobs WHERE status = 'running' GROUP BY kind
         UNION ALL
         SELECT kind, 'dead', count(*) FROM jobs WHERE status = 'dead' GROUP BY kind
         ORDER BY 1, 2",
    )
    .fetch_all(store.system())
    .await?;
    let recent = sqlx::query_as(
        "SELECT kind, status, count(*) AS jobs,
                coalesce(sum(extract(epoch FROM finished_at - started_at)), 0)::float8 AS duration_seconds_sum,
                coalesce(max(extract(epoch FROM finished_at - started_at)), 0)::float8 AS duration_seconds_max,
                coalesce(sum(greatest(attempts - 1, 0)), 0)::int8 AS retries
         FROM jobs
         WHERE finished_at > now() - $1 * interval '1 millisecond'
         GROUP BY kind, status ORDER BY kind, status",
    )
    .bind(i64::try_from(window.as_millis()).unwrap_or(i64::MAX))
    .fetch_all(store.system())
    .await?;
    let lag = sqlx::query_as(
        "SELECT kind, extract(epoch FROM now() - min(run_at))::float8 AS seconds
         FROM jobs WHERE status = 'queued' AND run_at <= now()
         GROUP BY kind ORDER BY kind",
    )
    .fetch_all(store.system())
    .await?;
    Ok(QueueStats { depth, recent, lag })
}

/// Jobs queued or running, across all organizations: "is the queue drained?" (the demo,
/// benchmarks). Cheap: both counts read partial indexes.
pub async fn pending(store: &Store) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM jobs WHERE status = 'queued') + (SELECT count(*) FROM jobs WHERE status = 'running')",
    )
    .fetch_one(store.system())
    .await?)
}
