-- Self-hosted connectors ("connector agents"): their credentials (a public client id and the
-- SHA-256 of a 256-bit secret; a rotated credential stays valid until its grace period ends),
-- what the running connector last reported (online status), and the sync batches it has
-- uploaded, so that each batch is applied exactly once however often it is sent.

CREATE TABLE connector_agent_credentials (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    connector_id  uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    client_id     text NOT NULL UNIQUE,
    secret_hash   text NOT NULL,
    created_by    uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- Set when a newer credential replaces this one: it works until then (the grace period).
    expires_at    timestamptz
);
CREATE INDEX connector_agent_credentials_org_idx
    ON connector_agent_credentials (org_id, connector_id, created_at DESC);

CREATE TABLE connector_agents (
    connector_id       uuid PRIMARY KEY REFERENCES connectors(id) ON DELETE CASCADE,
    org_id             uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    version            text NOT NULL CHECK (length(version) <= 100),
    host               text NOT NULL CHECK (length(host) <= 255),
    -- Whether the connector's own LATCHKEY_PROVISIONING allows provisioning.
    provisioning       boolean NOT NULL,
    first_seen_at      timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX connector_agents_org_idx ON connector_agents (org_id, connector_id);

-- One row per applied batch of one attempt of an uploaded sync (the job's attempt).
CREATE TABLE connector_agent_batches (
    org_id       uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    job_id       uuid NOT NULL,
    attempt      integer NOT NULL,
    seq          bigint NOT NULL CHECK (seq >= 0),
    row_count    integer NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt, seq)
);
CREATE INDEX connector_agent_batches_org_idx ON connector_agent_batches (org_id, job_id, attempt, seq);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['connector_agent_credentials', 'connector_agents', 'connector_agent_batches'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY org_isolation ON %I TO latchkey_app
                 USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org())', t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE ON connector_agent_credentials, connector_agents TO latchkey_app;
GRANT SELECT, INSERT, DELETE ON connector_agent_batches TO latchkey_app;
