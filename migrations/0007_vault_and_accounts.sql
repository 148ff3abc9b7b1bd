-- Accounts as provisioning tasks, and the vault that holds a new account's first password
-- until the person who asked for it (or a connector owner) has read it once.

-- Account tasks: `create_account` names no entitlement and, until the account exists, no
-- principal; `deprovision_account` names the account as its principal.
ALTER TABLE provisioning_tasks DROP CONSTRAINT provisioning_tasks_operation_check;
ALTER TABLE provisioning_tasks ADD CONSTRAINT provisioning_tasks_operation_check
    CHECK (operation IN ('grant', 'revoke', 'create_account', 'deprovision_account'));
ALTER TABLE provisioning_tasks ALTER COLUMN entitlement_id DROP NOT NULL;
ALTER TABLE provisioning_tasks ALTER COLUMN principal_id DROP NOT NULL;
ALTER TABLE provisioning_tasks ADD CONSTRAINT provisioning_tasks_access_needs_both
    CHECK (operation NOT IN ('grant', 'revoke') OR (entitlement_id IS NOT NULL AND principal_id IS NOT NULL));
-- The vault item holding a created account's initial password.
ALTER TABLE provisioning_tasks ADD COLUMN vault_item_id uuid;

-- One secret to be shown once. The secret itself lives in encrypted_secrets
-- (owner_table 'vault_items', owner_id = id, field 'password:<account object id>', so the
-- ciphertext is bound to the organization, the item and the account) and is deleted when
-- revealed; this row keeps who may read it and who did, and when.
CREATE TABLE vault_items (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    connector_id        uuid NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    task_id             uuid REFERENCES provisioning_tasks(id) ON DELETE SET NULL,
    kind                text NOT NULL CHECK (kind IN ('initial_password')),
    -- The account the secret belongs to: its object id in the tenant and its UPN.
    account_external_id text NOT NULL,
    account_label       text NOT NULL,
    -- Who asked for it and may read it (besides the connector's owners): 'user:<id>', 'api_client:<id>'.
    requested_by        text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    revealed_at         timestamptz,
    revealed_by         text,
    revealed_by_label   text,
    CHECK ((revealed_at IS NULL) = (revealed_by IS NULL))
);
CREATE INDEX vault_items_org_idx ON vault_items (org_id, connector_id, created_at DESC);

ALTER TABLE vault_items ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON vault_items TO latchkey_app
    USING (org_id = app_current_org()) WITH CHECK (org_id = app_current_org());
REVOKE ALL ON vault_items FROM latchkey_app;
GRANT SELECT, INSERT, UPDATE ON vault_items TO latchkey_app;
