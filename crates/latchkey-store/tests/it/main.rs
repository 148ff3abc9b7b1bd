//! Store integration tests against real PostgreSQL.

mod apps;
mod isolation;
mod secrets;
