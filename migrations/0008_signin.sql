-- "Sign in with Microsoft" round trips. They happen before anyone is signed in, so they belong
-- to no organization yet (no org_id, no row-level security): only the owner connection reads
-- and writes them, like the other pre-authentication lookups, and the application role may not.

-- One authorization request: single use, ten minutes, bound to the browser that started it
-- (a hash of a random value in a cookie). Only hashes of `state` and of the browser value are
-- stored; the PKCE verifier is wiped when the state is used.
CREATE TABLE signin_states (
    id             uuid PRIMARY KEY,
    state_hash     text NOT NULL UNIQUE,
    browser_hash   text NOT NULL,
    pkce_verifier  text,
    nonce          text NOT NULL,
    next_path      text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);
CREATE INDEX signin_states_expiry_idx ON signin_states (expires_at);

-- A person Microsoft vouched for whose tenant several organizations connected: they choose
-- one. Single use, bound to the same browser, a few minutes.
CREATE TABLE signin_choices (
    id             uuid PRIMARY KEY,
    token_hash     text NOT NULL UNIQUE,
    browser_hash   text NOT NULL,
    tenant_id      text NOT NULL,
    object_id      text NOT NULL,
    email          text,
    display_name   text,
    org_ids        uuid[] NOT NULL,
    next_path      text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);
CREATE INDEX signin_choices_expiry_idx ON signin_choices (expires_at);

REVOKE ALL ON signin_states, signin_choices FROM latchkey_app;
