-- Provisioning: each grant or revoke a person (or an API client, or later a JIT request) asks
-- for is a task, run by an `entra.provision` job, with the timestamps of its life and an
-- append-only trail of what happened to it.

CREATE TABLE provisioning_tasks (
    id                   uuid PRIMARY KEY,
    org_id               uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    connector_id         uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    -- The job that runs the task (its attempts, logs and lease live there).
    job_id               uuid,
    operation            text NOT NULL CHECK (operation IN ('grant', 'revoke')),
    entitlement_id       uuid NOT NULL,
    principal_id         uuid NOT NULL,
    -- The stored grant a revoke removes.
    grant_id             uuid,
    status               text NOT NULL DEFAULT 'queued'
                             CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    -- For people: what went wrong and what to do (a refusal, Graph's reason in words).
    error                text,
    -- Graph accepted the change but reading it back did not show it in time: why.
    verification_failed  text,
    -- The Graph change made (or planned), and whether Graph said it was already so.
    details              jsonb NOT NULL DEFAULT '{}',
    -- Who asked: 'user:<id>', 'api_client:<id>'.
    requested_by         text NOT NULL,
    requested_at         timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    provisioned_at       timestamptz,
    verified_at          timestamptz,
    finished_at          timestamptz
);
CREATE INDEX provisioning_tasks_org_idx ON provisioning_tasks (org_id, connector_id, requested_at DESC, id);

-- Append-only: the application role may insert and read, never change or delete.
CREATE TABLE provisioning_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id    uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    task_id   uuid NOT NULL REFERENCES provisioning_tasks(id) ON DELETE CASCADE,
    at        timestamptz NOT NULL DEFAULT now(),
    -- 'user:<id>', 'api_client:<id>', or 'worker' for what the job did.
    actor     text NOT NULL,
    -- requested, refused, provisioned, verified, verification_failed, failed, retrying
    event     text NOT NULL,
    detail    text
);
CREATE INDEX provisioning_events_org_task_idx ON provisioning_events (org_id, task_id, id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['provisioning_tasks', 'provisioning_events'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY org_isolation ON %I TO latchkey_app
                 USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org())', t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE ON provisioning_tasks TO latchkey_app;
GRANT SELECT, INSERT ON provisioning_events TO latchkey_app;
