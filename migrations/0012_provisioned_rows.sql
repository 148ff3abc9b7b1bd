-- Provisioning writes the stored access model at once (a verified grant, a revoke, a created,
-- disabled or deleted account). A sync that read Graph before such a write must not undo it
-- when it writes its (older) picture afterwards: rows carry when provisioning last wrote them,
-- and a sync run's upserts and sweeps leave alone rows provisioning wrote after the run
-- started (`sync_runs.started_at`); the next run, which reads Graph after the change, sees it.

ALTER TABLE resources ADD COLUMN provisioned_at timestamptz;
ALTER TABLE grants ADD COLUMN provisioned_at timestamptz;
