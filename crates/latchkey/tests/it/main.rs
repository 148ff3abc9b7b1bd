//! Tests of the `latchkey` binary as a process: configuration errors, CLI output
//! contracts, start-up and graceful shutdown.

mod cli;
mod connector_agent;
mod email;
mod faults;
mod lifecycle;
mod support;
