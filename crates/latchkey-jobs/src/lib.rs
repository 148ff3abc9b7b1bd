//! Postgres job queue and worker pool.
