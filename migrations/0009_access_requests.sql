-- Just-in-time access: per-entitlement request policies, the requests themselves (one row per
-- ask, with its life's timestamps), their append-only transition trail, the approvers each
-- approval stage resolved to, and the decisions they made.

-- One policy per entitlement. The document is validated by latchkey-access; `requestable`
-- and `risk` are copied out of it for the catalog's queries.
CREATE TABLE access_policies (
    org_id          uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    entitlement_id  uuid NOT NULL,
    connector_id    uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    requestable     boolean NOT NULL DEFAULT false,
    risk            text NOT NULL DEFAULT 'medium' CHECK (risk IN ('low', 'medium', 'high')),
    document        jsonb NOT NULL,
    -- Bumped at every change; requests record the version they were decided under.
    version         integer NOT NULL DEFAULT 1,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- 'user:<id>' or 'api_client:<id>'.
    updated_by      text NOT NULL,
    PRIMARY KEY (org_id, entitlement_id)
);
CREATE INDEX access_policies_requestable_idx ON access_policies (org_id, connector_id, entitlement_id) WHERE requestable;

CREATE TABLE access_requests (
    id                       uuid PRIMARY KEY,
    org_id                   uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    requester_id             uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- What is asked for, in the access model's ids: the connector, the entitlement and the
    -- principal (the requester's synced Entra account, a `resources` row) it is granted to.
    connector_id             uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    entitlement_id           uuid NOT NULL,
    principal_id             uuid NOT NULL,
    state                    text NOT NULL CHECK (state IN ('pending', 'approved', 'provisioning', 'active',
                                 'expired', 'revoked', 'denied', 'cancelled', 'timed_out', 'failed')),
    -- Break-glass: granted without approval, owners alerted, to be reviewed afterwards.
    emergency                boolean NOT NULL DEFAULT false,
    needs_review             boolean NOT NULL DEFAULT false,
    reviewed_at              timestamptz,
    reviewed_by              uuid,
    justification            text NOT NULL DEFAULT '',
    duration_seconds         integer NOT NULL CHECK (duration_seconds > 0),
    -- The policy as it was when the request (or its latest extension) was asked for.
    policy                   jsonb NOT NULL,
    policy_version           integer NOT NULL,
    -- 0 for the request itself, n for its n-th extension; stage is the approval stage of
    -- the current round (0-based).
    round                    integer NOT NULL DEFAULT 0,
    stage                    integer NOT NULL DEFAULT 0,
    -- When the pending decision (request or extension) times out.
    decide_by                timestamptz,
    -- An extension asked for and not decided yet.
    extension_seconds        integer,
    extension_justification  text,
    extension_requested_at   timestamptz,
    provision_task_id        uuid,
    revoke_task_id           uuid,
    revoke_attempts          integer NOT NULL DEFAULT 0,
    -- Why the access is being (or was) removed.
    end_reason               text CHECK (end_reason IN ('expired', 'released', 'revoked')),
    -- The access window: from verification in the tenant to expiry.
    granted_at               timestamptz,
    expires_at               timestamptz,
    reminded_at              timestamptz,
    ended_at                 timestamptz,
    -- 'user:<id>' or 'api_client:<id>'.
    created_by               text NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_requests_org_idx ON access_requests (org_id, id);
CREATE INDEX access_requests_org_state_idx ON access_requests (org_id, state, id);
CREATE INDEX access_requests_org_requester_idx ON access_requests (org_id, requester_id, id);
CREATE INDEX access_requests_org_entitlement_idx ON access_requests (org_id, connector_id, entitlement_id, principal_id);
-- One open request per person and entitlement: asking again extends it.
CREATE UNIQUE INDEX access_requests_open_key ON access_requests (org_id, requester_id, entitlement_id)
    WHERE state IN ('pending', 'approved', 'provisioning', 'active');
-- The lifecycle sweep's catch-up scan (across organizations).
CREATE INDEX access_requests_due_idx ON access_requests (state, expires_at, decide_by)
    WHERE state IN ('pending', 'approved', 'provisioning', 'active');

-- Append-only: every transition with its time, actor and reason.
CREATE TABLE access_request_transitions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    request_id   uuid NOT NULL REFERENCES access_requests(id) ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    from_state   text,
    to_state     text NOT NULL,
    -- requested, approved, denied, ..., extension_requested, removal_started
    event        text NOT NULL,
    actor_kind   text NOT NULL CHECK (actor_kind IN ('user', 'api_client', 'system', 'connector')),
    actor_id     uuid,
    actor_label  text NOT NULL,
    reason       text
);
CREATE INDEX access_request_transitions_idx ON access_request_transitions (org_id, request_id, id);

-- Who may decide each stage of each round, resolved when the stage begins.
CREATE TABLE access_request_approvers (
    org_id      uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    request_id  uuid NOT NULL REFERENCES access_requests(id) ON DELETE CASCADE,
    round       integer NOT NULL,
    stage       integer NOT NULL,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- Why this person: 'manager', 'connector owner', 'named', ...
    why         text NOT NULL,
    PRIMARY KEY (request_id, round, stage, user_id)
);
CREATE INDEX access_request_approvers_user_idx ON access_request_approvers (org_id, user_id, request_id);

CREATE TABLE access_request_decisions (
    org_id       uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    request_id   uuid NOT NULL REFERENCES access_requests(id) ON DELETE CASCADE,
    round        integer NOT NULL,
    stage        integer NOT NULL,
    approver_id  uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    decision     text NOT NULL CHECK (decision IN ('approved', 'denied')),
    comment      text NOT NULL DEFAULT '',
    -- 'user:<id>' or 'api_client:<id>' (a client acts for the person who created it).
    via          text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, round, stage, approver_id)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['access_policies', 'access_requests', 'access_request_transitions',
                             'access_request_approvers', 'access_request_decisions'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY org_isolation ON %I TO latchkey_app
                 USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org())', t);
    END LOOP;
END
$$;

-- Default privileges (0001) grant everything; the trail and the decisions are append-only.
REVOKE ALL ON access_request_transitions, access_request_decisions FROM latchkey_app;
GRANT SELECT, INSERT ON access_request_transitions, access_request_decisions TO latchkey_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON access_policies, access_requests, access_request_approvers TO latchkey_app;
