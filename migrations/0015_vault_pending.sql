-- A new account's password is kept before Microsoft Graph is asked to create the account, so a
-- crash between the creation and the commit that records it cannot lose it: the item is
-- `pending` (bound to its task, not yet to an account, never shown) until the account's id is
-- recorded, when its secret is bound to the account and it becomes revealable. A retried task
-- reuses the pending password; a task that fails for good discards it.

ALTER TABLE vault_items ADD COLUMN pending boolean NOT NULL DEFAULT false;
CREATE INDEX vault_items_pending_task_idx ON vault_items (task_id) WHERE pending;
GRANT DELETE ON vault_items TO latchkey_app;
