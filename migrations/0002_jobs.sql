-- Job queue: one row per job is both the queue entry and the run record the UI shows, plus
-- structured logs and periodic schedules.
--
-- Coordination between any number of worker processes happens only here:
-- - claiming locks queued rows with FOR UPDATE SKIP LOCKED in a short transaction
--   (`latchkey_claim_jobs`), and the job then runs outside any transaction;
-- - a lease (`locked_by`, `locked_until`, `lease_token`) is extended by heartbeats and
--   expired leases are requeued by a reaper; every write from a running job is fenced by
--   `lease_token`, so a worker that lost its lease cannot overwrite the new owner's work;
-- - a unique partial index allows one running sync per connector, whatever the claim
--   query believes; an advisory lock per organization serialises claims so the
--   per-organization cap on running jobs holds under races.
--
-- `org_id` is NULL for system jobs (housekeeping, cross-organization checks). Row-level
-- security hides those from every organization.

CREATE TABLE job_schedules (
    id              uuid PRIMARY KEY,
    org_id          uuid REFERENCES orgs(id) ON DELETE CASCADE,
    -- Unique per organization, e.g. `sync:<connector id>`; upserts use it.
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    connector_id    uuid,
    kind            text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    class           text NOT NULL CHECK (class IN ('provision', 'other', 'sync')),
    payload         jsonb NOT NULL DEFAULT '{}',
    priority        smallint NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
    every           interval NOT NULL CHECK (every >= interval '1 second'),
    next_run_at     timestamptz NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    last_enqueued_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (class <> 'sync' OR connector_id IS NOT NULL),
    CONSTRAINT job_schedules_name_key UNIQUE NULLS NOT DISTINCT (org_id, name)
);
CREATE INDEX job_schedules_due_idx ON job_schedules (next_run_at) WHERE enabled;

CREATE TABLE jobs (
    id                  uuid PRIMARY KEY,
    org_id              uuid REFERENCES orgs(id) ON DELETE CASCADE,
    connector_id        uuid,
    kind                text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    -- provision: grants, revokes, expiries; runs before everything else.
    -- sync: at most one running per connector; never takes a worker's last free slot.
    class               text NOT NULL DEFAULT 'other' CHECK (class IN ('provision', 'other', 'sync')),
    -- The order classes are claimed in, as a column so that the claim index can use it.
    lane                smallint GENERATED ALWAYS AS (
                            CASE class WHEN 'provision' THEN 0 WHEN 'other' THEN 1 ELSE 2 END) STORED,
    payload             jsonb NOT NULL DEFAULT '{}',
    -- Higher runs first within a class.
    priority            smallint NOT NULL DEFAULT 0,
    status              text NOT NULL DEFAULT 'queued'
                            CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'dead')),
    run_at              timestamptz NOT NULL DEFAULT now(),
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts        integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
    dedupe_key          text CHECK (length(dedupe_key) BETWEEN 1 AND 200),
    schedule_id         uuid REFERENCES job_schedules(id) ON DELETE SET NULL,
    -- The period of the schedule this job was enqueued for.
    scheduled_for       timestamptz,
    locked_by           text,
    locked_until        timestamptz,
    -- New for every claim; fences every write of the attempt that holds it.
    lease_token         uuid,
    cancel_requested_at timestamptz,
    progress            jsonb,
    -- What a handler saved to resume from after a crash or a hand-over.
    checkpoint          jsonb,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    CHECK (class <> 'sync' OR connector_id IS NOT NULL),
    CHECK ((status = 'running') = (lease_token IS NOT NULL)),
    CHECK ((status = 'running') = (locked_until IS NOT NULL))
);
-- Every claim and outcome changes `status`, so every update touches each index below: keep
-- them few. Listing an organization's jobs, newest first (ids are UUIDv7, so id order is time
-- order); status and kind filters ride on this scan.
CREATE INDEX jobs_org_idx ON jobs (org_id, id);
CREATE INDEX jobs_org_connector_idx ON jobs (org_id, connector_id, id) WHERE connector_id IS NOT NULL;
-- The claim is cross-organization system work, so this index leads with the claim order.
CREATE INDEX jobs_claim_idx ON jobs (lane, priority DESC, run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_org_running_idx ON jobs (org_id) WHERE status = 'running';
CREATE INDEX jobs_lease_idx ON jobs (locked_until) WHERE status = 'running';
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- Dead jobs stay until housekeeping removes them; metrics and the UI count them often.
CREATE INDEX jobs_dead_idx ON jobs (org_id, kind) WHERE status = 'dead';
-- One running sync per connector: the claim query avoids a second one, this makes it impossible.
CREATE UNIQUE INDEX jobs_one_running_sync_per_connector ON jobs (connector_id)
    WHERE status = 'running' AND class = 'sync';
-- Enqueueing a duplicate while the first is queued or running returns the first.
CREATE UNIQUE INDEX jobs_dedupe_key ON jobs (org_id, dedupe_key) NULLS NOT DISTINCT
    WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running');
-- A schedule's period is enqueued at most once, whichever worker's scheduler gets there.
CREATE UNIQUE INDEX jobs_schedule_period ON jobs (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL;

CREATE TABLE job_logs (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id   uuid REFERENCES orgs(id) ON DELETE CASCADE,
    job_id   uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt  integer NOT NULL,
    level    text NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
    message  text NOT NULL,
    fields   jsonb NOT NULL DEFAULT '{}',
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX job_logs_org_job_idx ON job_logs (org_id, job_id, id);
-- Deleting a job cascades here by job_id alone, and system jobs' logs have no organization.
CREATE INDEX job_logs_job_idx ON job_logs (job_id, id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['jobs', 'job_logs', 'job_schedules'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY org_isolation ON %I TO latchkey_app
                 USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org())', t);
    END LOOP;
END
$$;

-- 0001's default privileges cover these when the same role migrates; say it anyway, so a
-- different migrating role cannot leave the application without access.
GRANT SELECT, INSERT, UPDATE, DELETE ON jobs, job_logs, job_schedules TO latchkey_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO latchkey_app;

-- Claims up to `p_limit` due jobs for `p_worker`, in one round trip.
--
-- 1. Lock candidate rows, skipping rows other claimers hold (SKIP LOCKED).
-- 2. Take the advisory lock of each candidate's organization, in id order so two claimers
--    cannot deadlock. Other claimers of the same organization wait here for a moment.
-- 3. Re-count with a fresh snapshot (what other claimers committed meanwhile) and claim what
--    fits under the per-organization cap, one sync per connector, and `p_sync_limit`.
CREATE FUNCTION latchkey_claim_jobs(
    p_worker text, p_kinds text[], p_limit integer, p_sync_limit integer, p_org_cap integer, p_lease interval
) RETURNS SETOF jobs
    LANGUAGE plpgsql VOLATILE
    AS $$
DECLARE
    v_ids uuid[];
    v_org uuid;
BEGIN
    -- A claim lost to a database crash only means the job runs again (at-least-once, as
    -- after any crash); not waiting for the WAL flush doubles throughput. See worker.rs.
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT array_agg(c.id) INTO v_ids FROM (
        SELECT j.id FROM jobs j
        WHERE j.status = 'queued' AND j.run_at <= now() AND j.kind = ANY (p_kinds)
          AND (p_sync_limit > 0 OR j.class <> 'sync')
          -- Organizations at their cap, computed once (a hashed subplan), not per row.
          AND (j.org_id IS NULL OR j.org_id NOT IN (SELECT r.org_id FROM jobs r
                                                    WHERE r.status = 'running' AND r.org_id IS NOT NULL
                                                    GROUP BY r.org_id HAVING count(*) >= p_org_cap))
          AND (j.class <> 'sync' OR NOT EXISTS (SELECT 1 FROM jobs s
                                                WHERE s.connector_id = j.connector_id
                                                  AND s.class = 'sync' AND s.status = 'running'))
        ORDER BY j.lane, j.priority DESC, j.run_at, j.id
        LIMIT p_limit
        FOR UPDATE OF j SKIP LOCKED
    ) c;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    FOR v_org IN SELECT DISTINCT j.org_id FROM jobs j WHERE j.id = ANY (v_ids) AND j.org_id IS NOT NULL ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1818977131, hashtext(v_org::text));
    END LOOP;

    RETURN QUERY
    WITH c AS (
        SELECT j.id, j.org_id, j.connector_id, j.class,
               row_number() OVER (PARTITION BY j.org_id
                                  ORDER BY j.lane, j.priority DESC, j.run_at, j.id) AS org_rank,
               row_number() OVER (PARTITION BY j.class = 'sync', j.connector_id
                                  ORDER BY j.lane, j.priority DESC, j.run_at, j.id) AS connector_rank,
               row_number() OVER (PARTITION BY j.class = 'sync'
                                  ORDER BY j.lane, j.priority DESC, j.run_at, j.id) AS class_rank
        FROM jobs j
        WHERE j.id = ANY (v_ids) AND j.status = 'queued'
    ), running AS (
        SELECT r.org_id, count(*) AS n FROM jobs r
        WHERE r.status = 'running' AND r.org_id IN (SELECT c.org_id FROM c)
        GROUP BY r.org_id
    ), picked AS (
        SELECT c.id FROM c LEFT JOIN running USING (org_id)
        WHERE (c.org_id IS NULL OR c.org_rank + coalesce(running.n, 0) <= p_org_cap)
          AND (c.class <> 'sync' OR (
                c.connector_rank = 1 AND c.class_rank <= p_sync_limit
                AND NOT EXISTS (SELECT 1 FROM jobs s
                                WHERE s.connector_id = c.connector_id
                                  AND s.class = 'sync' AND s.status = 'running')))
    )
    UPDATE jobs j
       SET status = 'running', attempts = j.attempts + 1, locked_by = p_worker,
           locked_until = now() + p_lease, lease_token = gen_random_uuid(),
           started_at = now(), updated_at = now()
      FROM picked
     WHERE j.id = picked.id
    RETURNING j.*;
END
$$;
-- Claiming is system work across organizations; the application role never calls it.
REVOKE ALL ON FUNCTION latchkey_claim_jobs(text, text[], integer, integer, integer, interval) FROM PUBLIC;
