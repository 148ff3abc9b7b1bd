-- The audit trail: one append-only, hash-chained list of events per organization.
-- Every row's hash covers its content and the previous row's hash, so changing, removing or
-- reordering any row breaks the chain from that row on (latchkey_store::audit::verify_chain).
-- The application role may only read and append.

CREATE TABLE audit_events (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    seq          bigint NOT NULL CHECK (seq > 0),
    occurred_at  timestamptz NOT NULL,
    -- user, api_client, system, connector
    actor_kind   text NOT NULL CHECK (actor_kind IN ('user', 'api_client', 'system', 'connector')),
    actor_id     uuid,
    actor_label  text NOT NULL,
    -- dotted verb, e.g. vault.revealed, access_request.approved, policy.updated
    action       text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$'),
    target_kind  text NOT NULL,
    target_id    text,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash    text NOT NULL,
    hash         text NOT NULL,
    UNIQUE (org_id, seq)
);
CREATE INDEX audit_events_target_idx ON audit_events (org_id, target_kind, target_id, seq);

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON audit_events TO latchkey_app
    USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org());
-- Default privileges (0001) would also allow UPDATE and DELETE: take them back.
REVOKE ALL ON audit_events FROM latchkey_app;
GRANT SELECT, INSERT ON audit_events TO latchkey_app;

-- A Latchkey user's Entra identities: which account (tenant ID + object ID) they are in each
-- connected tenant. Written at "Sign in with Microsoft"; read to find the principal a
-- request's access is granted to. One Entra account belongs to at most one user per organization.
CREATE TABLE user_entra_identities (
    org_id     uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    tenant_id  text NOT NULL CHECK (tenant_id = lower(tenant_id)),
    object_id  text NOT NULL CHECK (object_id = lower(object_id)),
    linked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, tenant_id),
    CONSTRAINT user_entra_identities_account_key UNIQUE (org_id, tenant_id, object_id)
);

ALTER TABLE user_entra_identities ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON user_entra_identities TO latchkey_app
    USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org());
GRANT SELECT, INSERT, UPDATE, DELETE ON user_entra_identities TO latchkey_app;
