//! Store integration tests against real PostgreSQL.

mod isolation;
mod secrets;
