-- Self-hosted connectors: the Entra tenant (directory) their synced data was read from. Set by
-- the first successful sync that names its tenant; a sync read from another tenant (an uploaded
-- file of another directory, a connector pointed at another ENTRA_TENANT_ID) is then refused
-- before anything of it is written, instead of replacing the connector's picture and sweeping
-- its rows. Stored lower-case (tenant IDs and domains are case-insensitive).

ALTER TABLE connectors ADD COLUMN synced_tenant_id text
    CHECK (synced_tenant_id IS NULL OR length(synced_tenant_id) BETWEEN 1 AND 256);
