//! Queue and worker pool tests against real PostgreSQL, with real worker processes where a
//! crash, a signal or several machines matter.

mod cancel;
mod claim;
mod fairness;
mod leases;
mod queue;
mod retry;
mod schedules;
mod shutdown;
mod support;
