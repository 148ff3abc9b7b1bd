-- Apps, connectors (settings without secrets; credentials live in encrypted_secrets),
-- connector owners, OAuth consent states, and the email outbox.

CREATE TABLE apps (
    id                   uuid PRIMARY KEY,
    org_id               uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- managed: has (or is getting) a connector; discovered: found in the org's IdP, not managed yet.
    kind                 text NOT NULL CHECK (kind IN ('managed', 'discovered')),
    -- For discovered apps: which connector found it and the IdP's object id.
    source_connector_id  uuid,
    external_id          text,
    description          text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'managed' OR (source_connector_id IS NOT NULL AND external_id IS NOT NULL))
);
CREATE INDEX apps_org_idx ON apps (org_id, kind, id);
-- A discovered app is found once per source connector and IdP object id.
CREATE UNIQUE INDEX apps_discovered_unique ON apps (org_id, source_connector_id, external_id) WHERE kind = 'discovered';

CREATE TABLE connectors (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    app_id              uuid NOT NULL REFERENCES apps(id) ON DELETE RESTRICT,
    kind                text NOT NULL CHECK (kind IN ('entra', 'self_hosted')),
    display_name        text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    status              text NOT NULL DEFAULT 'setup_required'
                            CHECK (status IN ('setup_required', 'pending_consent', 'syncing', 'connected', 'error', 'disabled')),
    -- The sentence a person reads next to the status: what happened and what to do.
    status_reason       text,
    -- Settings without any secret (secrets are in encrypted_secrets).
    settings            jsonb,
    -- What the last connection test found (permissions granted vs needed, premium features).
    capabilities        jsonb,
    secret_set_at       timestamptz,
    secret_expires_at   timestamptz,
    last_test_job_id    uuid,
    last_sync_job_id    uuid,
    last_sync_at        timestamptz,
    created_by          uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    disabled_at         timestamptz
);
CREATE INDEX connectors_org_idx ON connectors (org_id, id);
CREATE INDEX connectors_org_app_idx ON connectors (org_id, app_id);

CREATE TABLE connector_owners (
    org_id        uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    connector_id  uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    added_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector_id, user_id)
);
CREATE INDEX connector_owners_org_user_idx ON connector_owners (org_id, user_id);

-- OAuth admin-consent round trips: single use, bound to the signed-in user's session and
-- the connector, short-lived. Only a hash of `state` is stored.
CREATE TABLE oauth_states (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    connector_id  uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id    uuid NOT NULL,
    state_hash    text NOT NULL UNIQUE,
    tenant_id     text NOT NULL,
    -- For the authorization-code variant (who consented): PKCE verifier and OIDC nonce.
    pkce_verifier text,
    nonce         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);
CREATE INDEX oauth_states_org_idx ON oauth_states (org_id, connector_id);

-- Email is written here in the same transaction as the change that causes it, and
-- delivered by a job (SMTP), so a crash never loses or duplicates a message.
CREATE TABLE email_outbox (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    to_address  text NOT NULL,
    subject     text NOT NULL,
    body_text   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text
);
CREATE INDEX email_outbox_org_idx ON email_outbox (org_id, id);
CREATE INDEX email_outbox_unsent_idx ON email_outbox (id) WHERE sent_at IS NULL;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['apps', 'connectors', 'connector_owners', 'oauth_states', 'email_outbox'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY org_isolation ON %I TO latchkey_app
                 USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org())', t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON apps, connectors, connector_owners, oauth_states, email_outbox TO latchkey_app;
