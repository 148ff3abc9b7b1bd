-- The connector-neutral access model a sync writes (resources, entitlements, grants) and the
-- sync runs that wrote it.
--
-- Ids are derived from the natural keys (md5 of connector + key), so a page of grants can be
-- written before the principals it names have been seen, with no lookups while pages stream in.
-- Every row is stamped with the sync run that last saw it; a successful full sync marks what it
-- did not see as deleted (history kept: first seen, last seen, deleted at).

CREATE FUNCTION sync_resource_id(connector uuid, key text) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT md5(connector::text || ':' || key)::uuid $$;

CREATE FUNCTION sync_entitlement_id(resource uuid, slug text) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT md5(resource::text || '/' || slug)::uuid $$;

CREATE FUNCTION sync_grant_id(entitlement uuid, principal uuid, source text, external_id text) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT md5(entitlement::text || '|' || principal::text || '|' || source || '|' || external_id)::uuid $$;

CREATE TABLE sync_runs (
    -- The sync job's id: one run per job, resumed across attempts.
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    connector_id  uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('full', 'incremental')),
    status        text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    stats         jsonb NOT NULL DEFAULT '{}',
    warnings      jsonb NOT NULL DEFAULT '[]',
    error         text,
    -- Graph delta links and the audit feed position, for the next incremental run.
    cursors       jsonb
);
CREATE INDEX sync_runs_org_connector_idx ON sync_runs (org_id, connector_id, started_at DESC, id DESC);

CREATE TABLE resources (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    connector_id   uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    type           text NOT NULL,
    external_id    text NOT NULL,
    display_name   text NOT NULL DEFAULT '',
    profile        jsonb NOT NULL DEFAULT '{}',
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_run  uuid NOT NULL,
    deleted_at     timestamptz,
    CONSTRAINT resources_key UNIQUE (connector_id, type, external_id)
);
CREATE INDEX resources_org_list_idx ON resources (org_id, connector_id, type, id);

CREATE TABLE entitlements (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    connector_id   uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    resource_id    uuid NOT NULL,
    slug           text NOT NULL,
    display_name   text NOT NULL DEFAULT '',
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_run  uuid NOT NULL,
    deleted_at     timestamptz
);
CREATE INDEX entitlements_org_resource_idx ON entitlements (org_id, connector_id, resource_id, id);

CREATE TABLE grants (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    connector_id    uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    entitlement_id  uuid NOT NULL,
    principal_id    uuid NOT NULL,
    -- group_members, group_owners, app_role_assignments, app_owners, role_assigned, role_eligible, license_assigned
    kind            text NOT NULL,
    -- 'direct', or the path the access is inherited through ('group:<object id>>group:<object id>').
    source          text NOT NULL DEFAULT 'direct',
    -- Computed from nested groups and grants to groups after a sync, never read from Graph.
    expanded        boolean NOT NULL DEFAULT false,
    -- Graph's own id where there is one (app role assignment, role assignment, PIM schedule).
    external_id     text NOT NULL DEFAULT '',
    details         jsonb,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_run   uuid NOT NULL,
    deleted_at      timestamptz
);
CREATE INDEX grants_org_entitlement_idx ON grants (org_id, connector_id, entitlement_id, id);
CREATE INDEX grants_org_principal_idx ON grants (org_id, connector_id, principal_id, id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sync_runs', 'resources', 'entitlements', 'grants'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY org_isolation ON %I TO latchkey_app
                 USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org())', t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON sync_runs, resources, entitlements, grants TO latchkey_app;
GRANT EXECUTE ON FUNCTION sync_resource_id(uuid, text), sync_entitlement_id(uuid, text),
    sync_grant_id(uuid, uuid, text, text) TO latchkey_app;
