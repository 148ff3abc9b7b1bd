//! Fault scenarios (issue #11): the real `serve` and `worker` processes, PostgreSQL and the
//! simulated tenant, one of them broken on purpose mid-work, and what must hold afterwards —
//! jobs complete exactly once or fail visibly with a reason, no grant lost or duplicated,
//! stored state equal to the tenant's. docs/reliability.md lists them with their figures.

mod database;
mod private_pg;
mod stack;
mod web;
mod workers;
