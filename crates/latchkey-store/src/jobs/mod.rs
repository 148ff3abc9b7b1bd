//! Job queue storage: the SQL behind `latchkey-jobs` (claiming, leases, fencing, logs, schedules).
