//! Store integration tests against real PostgreSQL.

mod apps;
mod audit;
mod cancellation;
mod isolation;
mod secrets;
mod sweep;
