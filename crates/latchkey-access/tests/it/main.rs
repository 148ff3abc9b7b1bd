//! JIT access requests against a real database, the real job queue and the simulated
//! tenant: the whole lifecycle, decisions and their refusals, concurrency, catch-up after a
//! worker outage, policies and the audit trail.

mod approvals;
mod concurrency;
mod lifecycle;
mod pim;
mod support;
