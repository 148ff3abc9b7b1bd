-- Foundation: organizations, people, sessions, API clients, encrypted secrets, sign-in throttling.
--
-- Tenant isolation has two walls. The first is every query's own `org_id` filter. The second is
-- row-level security: the application runs each organization's transaction as the role
-- `latchkey_app` with `app.org_id` set, and the policies below hide every other organization's
-- rows. Superusers and table owners bypass RLS, which is why the application must SET ROLE.

DO $$
BEGIN
    CREATE ROLE latchkey_app NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL; -- roles are cluster-wide; another database made it
END
$$;

DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'latchkey_app', 'MEMBER') THEN
        EXECUTE format('GRANT latchkey_app TO %I', current_user);
    END IF;
END
$$;

-- The organization of the current transaction, or NULL when none is set (then RLS shows nothing).
CREATE FUNCTION app_current_org() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.org_id', true), '')::uuid $$;

CREATE TABLE orgs (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    -- Local sign-in is by email alone, so an email belongs to one organization.
    email          text NOT NULL UNIQUE CHECK (email = lower(email)),
    display_name   text NOT NULL,
    password_hash  text,
    role           text NOT NULL CHECK (role IN ('super_admin', 'connector_admin', 'member')),
    disabled_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz
);
CREATE INDEX users_org_idx ON users (org_id, created_at, id);

CREATE TABLE invitations (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   text NOT NULL UNIQUE,
    invited_by   uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz
);
CREATE INDEX invitations_org_idx ON invitations (org_id, user_id);

CREATE TABLE sessions (
    id                   uuid PRIMARY KEY,
    org_id               uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id              uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash           text NOT NULL UNIQUE,
    csrf_token           text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    last_seen_at         timestamptz NOT NULL DEFAULT now(),
    idle_expires_at      timestamptz NOT NULL,
    absolute_expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_org_user_idx ON sessions (org_id, user_id);
CREATE INDEX sessions_expiry_idx ON sessions (absolute_expires_at);

CREATE TABLE api_clients (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    client_id    text NOT NULL UNIQUE,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('super_admin', 'connector_admin', 'member')),
    secret_hash  text NOT NULL,
    -- Bumped on rotation; tokens carry it, so rotating also ends every issued token.
    generation   integer NOT NULL DEFAULT 1,
    created_by   uuid REFERENCES users(id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    rotated_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_clients_org_idx ON api_clients (org_id, created_at, id);

-- Every secret the product stores, whatever owns it, lives here encrypted: one table means
-- one place to rotate keys and one place a dump could leak from.
CREATE TABLE encrypted_secrets (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    owner_table  text NOT NULL,
    owner_id     uuid NOT NULL,
    field        text NOT NULL,
    key_id       text NOT NULL,
    nonce        bytea NOT NULL,
    ciphertext   bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_table, owner_id, field)
);
CREATE INDEX encrypted_secrets_org_idx ON encrypted_secrets (org_id);
CREATE INDEX encrypted_secrets_key_idx ON encrypted_secrets (key_id, id);

-- Not org-owned: sign-in attempts are throttled before anyone is known.
CREATE TABLE login_attempts (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL,
    client_ip  text NOT NULL,
    succeeded  boolean NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_email_idx ON login_attempts (email, at);
CREATE INDEX login_attempts_ip_idx ON login_attempts (client_ip, at);

-- Row-level security on every org-owned table.
ALTER TABLE orgs ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON orgs TO latchkey_app
    USING (id = app_current_org()) WITH CHECK (id = app_current_org());

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'invitations', 'sessions', 'api_clients', 'encrypted_secrets'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY org_isolation ON %I TO latchkey_app
                 USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org())', t);
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO latchkey_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO latchkey_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO latchkey_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO latchkey_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO latchkey_app;
-- Sign-in throttling is decided before an organization is known; the app role never touches it.
REVOKE ALL ON login_attempts FROM latchkey_app;
