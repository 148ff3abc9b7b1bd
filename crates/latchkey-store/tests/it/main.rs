//! Store integration tests against real PostgreSQL.

mod apps;
mod audit;
mod isolation;
mod secrets;
