-- Access reviews: campaigns that certify or revoke access. A campaign's items are a snapshot
-- of the grants in its scope, taken when it starts (later syncs do not change them), each with
-- the evidence a reviewer needs, the reviewer it was given to, the decision, and what carrying
-- out a revoke led to (a provisioning task, or a manual task when provisioning cannot do it).

-- What a recurring campaign is made from; a job schedule (`review_template:<id>`) starts one
-- campaign per period.
CREATE TABLE review_templates (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- The campaign spec (scope, reviewers, end rule, recommendation threshold).
    spec           jsonb NOT NULL,
    every_days     integer NOT NULL CHECK (every_days BETWEEN 1 AND 3660),
    -- How long each campaign runs: its deadline is this long after it starts.
    duration_secs  bigint NOT NULL CHECK (duration_secs > 0),
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX review_templates_org_idx ON review_templates (org_id, id);

CREATE TABLE review_campaigns (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    -- Scope and reviewers as asked for (what the snapshot was made from).
    spec              jsonb NOT NULL,
    -- What undecided items become at the end: kept, or revoked.
    end_rule          text NOT NULL CHECK (end_rule IN ('keep', 'revoke')),
    deadline          timestamptz NOT NULL,
    template_id       uuid REFERENCES review_templates(id) ON DELETE SET NULL,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    closed_at         timestamptz,
    -- 'deadline' (the end rule job) or 'closed' (someone closed it early).
    closed_reason     text CHECK (closed_reason IN ('deadline', 'closed')),
    closed_by         text
);
CREATE INDEX review_campaigns_org_idx ON review_campaigns (org_id, id);

CREATE TABLE review_items (
    id                     uuid PRIMARY KEY,
    org_id                 uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    campaign_id            uuid NOT NULL REFERENCES review_campaigns(id) ON DELETE CASCADE,
    connector_id           uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    -- The grant as it was when the campaign started (it may be gone since).
    grant_id               uuid NOT NULL,
    entitlement_id         uuid NOT NULL,
    principal_id           uuid NOT NULL,
    resource_id            uuid NOT NULL,
    -- Snapshot: who.
    principal_type         text NOT NULL,
    principal_name         text NOT NULL,
    principal_external_id  text NOT NULL,
    principal_upn          text,
    principal_guest        boolean NOT NULL DEFAULT false,
    principal_enabled      boolean,
    -- The Latchkey user whose access this is (through their Entra identity), if any.
    subject_user_id        uuid REFERENCES users(id) ON DELETE SET NULL,
    -- What.
    resource_type          text NOT NULL,
    resource_name          text NOT NULL,
    entitlement_slug       text NOT NULL,
    entitlement_name       text NOT NULL,
    grant_kind             text NOT NULL,
    -- How: 'direct' or the group path the access is inherited through.
    source                 text NOT NULL,
    -- Since when Latchkey has seen the grant.
    granted_since          timestamptz NOT NULL,
    -- Whether the tenant reports sign-in activity, and the last sign-in (NULL: never).
    sign_in_known          boolean NOT NULL DEFAULT false,
    last_sign_in           timestamptz,
    -- The Latchkey provisioning task that granted it, and who asked for it.
    granted_by_task_id     uuid,
    granted_by             text,
    -- The just-in-time request the access came from (open when the campaign started), if any.
    access_request_id      uuid,
    access_request_expires_at timestamptz,
    -- 'revoke' or 'keep' with the reason, e.g. 'No sign-in for 120 days'; NULL: no advice.
    recommendation         text CHECK (recommendation IN ('keep', 'revoke')),
    recommendation_reason  text,
    -- Who reviews it and why them: app_owner, manager, specific, fallback, reassigned.
    reviewer_id            uuid REFERENCES users(id) ON DELETE SET NULL,
    reviewer_source        text,
    assigned_at            timestamptz NOT NULL DEFAULT now(),
    -- When the reviewer opened the item's evidence (approver-quality signals).
    evidence_viewed_at     timestamptz,
    decision               text CHECK (decision IN ('keep', 'revoke')),
    decision_comment       text,
    decided_at             timestamptz,
    -- 'user:<id>', 'api_client:<id>', or 'end_rule'.
    decided_by             text,
    decided_by_user_id     uuid REFERENCES users(id) ON DELETE SET NULL,
    -- Decided together with other items in one request.
    bulk                   boolean NOT NULL DEFAULT false,
    -- Carrying out a revoke: the provisioning task, or the manual task, or why neither.
    revocation_task_id     uuid,
    manual_task_id         uuid,
    revocation_note        text
);
CREATE INDEX review_items_org_campaign_idx ON review_items (org_id, campaign_id, id);
CREATE INDEX review_items_org_reviewer_idx ON review_items (org_id, reviewer_id, campaign_id) WHERE decision IS NULL;

-- Revokes provisioning cannot carry out (e.g. a distribution list's members, access inherited
-- through a group): someone does them by hand and marks them done.
CREATE TABLE review_manual_tasks (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    campaign_id   uuid NOT NULL REFERENCES review_campaigns(id) ON DELETE CASCADE,
    item_id       uuid NOT NULL REFERENCES review_items(id) ON DELETE CASCADE,
    connector_id  uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    -- Why provisioning cannot do it, and so what to do by hand.
    reason        text NOT NULL,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    completed_by  text,
    note          text
);
CREATE INDEX review_manual_tasks_org_campaign_idx ON review_manual_tasks (org_id, campaign_id, id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['review_templates', 'review_campaigns', 'review_items', 'review_manual_tasks'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY org_isolation ON %I TO latchkey_app
                 USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org())', t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON review_templates, review_campaigns, review_items, review_manual_tasks TO latchkey_app;
