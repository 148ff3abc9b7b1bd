//! `GET /api/v1/openapi.json`: the API described as OpenAPI 3.1. The path list is checked
//! against the router by a test (tests/it/openapi.rs), so an endpoint cannot be added
//! without being described here.

use axum::Json;
use serde_json::{Value, json};

/// (method, path under /api/v1, summary, request schema, success status, response schema).
type Endpoint = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    u16,
    &'static str,
);

const ENDPOINTS: &[Endpoint] = &[
    (
        "post",
        "/auth/token",
        "Exchange client credentials for an access token (OAuth2 client credentials, form or JSON)",
        Some("TokenRequest"),
        200,
        "TokenResponse",
    ),
    ("get", "/me", "The calling API client", None, 200, "Me"),
    (
        "get",
        "/users",
        "People of the organization",
        None,
        200,
        "UserPage",
    ),
    ("get", "/users/{id}", "One person", None, 200, "User"),
    (
        "get",
        "/api-clients",
        "API clients (Super Administrators)",
        None,
        200,
        "ApiClientPage",
    ),
    (
        "post",
        "/api-clients",
        "Create an API client; the secret is in this answer only",
        Some("ApiClientCreate"),
        201,
        "ApiClientCreated",
    ),
    (
        "get",
        "/api-clients/{id}",
        "One API client",
        None,
        200,
        "ApiClient",
    ),
    (
        "post",
        "/api-clients/{id}/revoke",
        "Revoke an API client; its tokens stop working at once",
        None,
        200,
        "ApiClient",
    ),
    (
        "get",
        "/connectors",
        "Connectors of the organization",
        None,
        200,
        "ConnectorPage",
    ),
    (
        "post",
        "/connectors",
        "Create a connector (app, owners, settings); OAuth answers include consent_url",
        Some("ConnectorCreate"),
        201,
        "Connector",
    ),
    (
        "get",
        "/connectors/{id}",
        "One connector (never its secret)",
        None,
        200,
        "Connector",
    ),
    (
        "patch",
        "/connectors/{id}",
        "Change name, owners or settings; a new secret replaces the old",
        Some("ConnectorPatch"),
        200,
        "Connector",
    ),
    (
        "delete",
        "/connectors/{id}",
        "Disable a connector and remove its credentials",
        None,
        200,
        "Connector",
    ),
    (
        "post",
        "/connectors/{id}/test",
        "Run the connection test again",
        None,
        202,
        "Connector",
    ),
    (
        "get",
        "/jobs/{id}",
        "Any job of the organization (connection test, sync, provisioning)",
        None,
        200,
        "Job",
    ),
    (
        "get",
        "/jobs/{id}/logs",
        "A job's log lines after a cursor (`after`), for live tails",
        None,
        200,
        "JobLogPage",
    ),
    (
        "post",
        "/connectors/{id}/syncs",
        "Start a sync (full or incremental); a sync already queued or running is returned instead",
        Some("SyncStart"),
        202,
        "SyncStarted",
    ),
    (
        "get",
        "/connectors/{id}/syncs",
        "The connector's syncs, newest first",
        None,
        200,
        "SyncPage",
    ),
    (
        "get",
        "/syncs/{id}",
        "One sync with its stats and warnings",
        None,
        200,
        "Sync",
    ),
    (
        "get",
        "/connectors/{id}/summary",
        "Counts of current resources per type and direct grants per kind",
        None,
        200,
        "SyncSummary",
    ),
    (
        "get",
        "/connectors/{id}/resources",
        "Synced resources (type, q, limit, cursor)",
        None,
        200,
        "ResourcePage",
    ),
    (
        "get",
        "/connectors/{id}/entitlements",
        "Synced entitlements (resource_id, limit, cursor)",
        None,
        200,
        "EntitlementPage",
    ),
    (
        "get",
        "/connectors/{id}/grants",
        "Synced grants (entitlement_id, principal_id, include=expanded, limit, cursor)",
        None,
        200,
        "GrantPage",
    ),
    (
        "post",
        "/connectors/{id}/grants",
        "Grant an entitlement to a principal in the tenant (a provisioning task)",
        Some("GrantRequest"),
        202,
        "TaskStarted",
    ),
    (
        "delete",
        "/connectors/{id}/grants/{grant_id}",
        "Revoke a stored direct grant in the tenant (a provisioning task)",
        None,
        202,
        "TaskStarted",
    ),
    (
        "get",
        "/tasks/{id}",
        "A provisioning task: status, reason, requested/provisioned/verified times, vault_item_id for a created account",
        None,
        200,
        "Task",
    ),
    (
        "post",
        "/review-campaigns",
        "Start an access review campaign: its items are a snapshot of the grants in scope, each with a reviewer",
        Some("ReviewCampaignCreate"),
        201,
        "ReviewCampaign",
    ),
    (
        "get",
        "/review-campaigns",
        "Access review campaigns, newest first",
        None,
        200,
        "ReviewCampaignPage",
    ),
    (
        "get",
        "/review-campaigns/{id}",
        "One access review campaign with its progress",
        None,
        200,
        "ReviewCampaign",
    ),
    (
        "post",
        "/review-campaigns/{id}/close",
        "Close a campaign now: undecided items follow its end rule",
        None,
        200,
        "ReviewCampaign",
    ),
    (
        "get",
        "/review-campaigns/{id}/items",
        "A campaign's items with their evidence (filters: reviewer_id, decision=undecided|keep|revoke)",
        None,
        200,
        "ReviewItemPage",
    ),
    (
        "post",
        "/review-campaigns/{id}/items",
        "Decide items (keep, revoke, reassign), one or many at once; revokes start at once",
        Some("ReviewDecisions"),
        200,
        "ReviewItemList",
    ),
    (
        "get",
        "/review-campaigns/{id}/report",
        "The campaign report (format=json|csv): every item with decision, reviewer, time, comment, provisioning result, and approver-quality signals",
        None,
        200,
        "ReviewReport",
    ),
    (
        "get",
        "/review-templates",
        "Recurring access reviews (campaigns started with repeat_every_days), newest first, stopped ones included",
        None,
        200,
        "ReviewTemplatePage",
    ),
    (
        "get",
        "/review-templates/{id}",
        "One recurring access review: repeat period, next run, the campaigns it started",
        None,
        200,
        "ReviewTemplate",
    ),
    (
        "post",
        "/review-templates/{id}/stop",
        "Stop a recurring access review: no further campaigns start from it; those it started go on (409 when stopped already)",
        None,
        200,
        "ReviewTemplate",
    ),
    (
        "post",
        "/access-requests",
        "Ask for an entitlement for a while (201); access already held through a request is extended instead (200)",
        Some("AccessRequestCreate"),
        201,
        "AccessRequestDetail",
    ),
    (
        "get",
        "/access-requests",
        "Access requests (state=, requester_id=, entitlement_id=, connector_id=, awaiting_me=, emergency=, q=, cursor=); non-administrators see their own",
        None,
        200,
        "AccessRequestPage",
    ),
    (
        "get",
        "/access-requests/{id}",
        "One access request with its transitions, approvers and decisions",
        None,
        200,
        "AccessRequestDetail",
    ),
    (
        "post",
        "/access-requests/{id}/approve",
        "Approve the pending decision (the request or its extension) as an approver of the current stage",
        Some("Comment"),
        200,
        "AccessRequestDetail",
    ),
    (
        "post",
        "/access-requests/{id}/deny",
        "Deny the pending decision",
        Some("Comment"),
        200,
        "AccessRequestDetail",
    ),
    (
        "post",
        "/access-requests/{id}/cancel",
        "Withdraw a request (or an extension) before it is decided",
        Some("Comment"),
        200,
        "AccessRequestDetail",
    ),
    (
        "post",
        "/access-requests/{id}/release",
        "End active access early (the holder releases it; administrators and connector owners revoke it)",
        Some("Comment"),
        200,
        "AccessRequestDetail",
    ),
    (
        "post",
        "/access-requests/{id}/extend",
        "Ask for more time before expiry; the current policy applies again",
        Some("AccessRequestExtend"),
        200,
        "AccessRequestDetail",
    ),
    (
        "post",
        "/access-requests/{id}/review",
        "Mark emergency (break-glass) access as reviewed (administrators)",
        Some("Comment"),
        200,
        "AccessRequestDetail",
    ),
    (
        "get",
        "/entitlements/{id}/policy",
        "The entitlement's access policy (the default, not requestable, until one is saved)",
        None,
        200,
        "AccessPolicyView",
    ),
    (
        "put",
        "/entitlements/{id}/policy",
        "Replace the entitlement's access policy (administrators and the connector's owners); an audit event",
        Some("AccessPolicy"),
        200,
        "AccessPolicyView",
    ),
    (
        "get",
        "/audit-events",
        "Audit events, newest first (cursor=, target_kind=, target_id=, action= prefix); Super Administrators",
        None,
        200,
        "AuditEventPage",
    ),
    (
        "get",
        "/audit-events/verify",
        "Recompute the organization's audit hash chain: events, intact, broken_at (first changed row)",
        None,
        200,
        "AuditChain",
    ),
    (
        "get",
        "/audit-events/export",
        "Every audit event, oldest first, as NDJSON (application/x-ndjson)",
        None,
        200,
        "AuditEvent",
    ),
    (
        "get",
        "/connectors/{id}/tasks",
        "The connector's provisioning tasks, newest first (limit, cursor)",
        None,
        200,
        "TaskPage",
    ),
    (
        "post",
        "/connectors/{id}/accounts",
        "Create an Entra account with a one-time password in the vault (a provisioning task; its vault_item_id is revealed once)",
        Some("AccountRequest"),
        202,
        "TaskStarted",
    ),
    (
        "post",
        "/connectors/{id}/accounts/{resource_id}/deprovision",
        "Deprovision a stored user account: disable sign-in and revoke sessions; delete only with delete=true and the connector's allow_account_deletion (a provisioning task)",
        Some("DeprovisionRequest"),
        202,
        "TaskStarted",
    ),
    (
        "post",
        "/vault/{id}/reveal",
        "Reveal a vault item (a created account's password) once, to the client that asked for the account; 410 once revealed",
        None,
        200,
        "VaultRevealed",
    ),
    (
        "get",
        "/openapi.json",
        "This document",
        None,
        200,
        "OpenApi",
    ),
    (
        "post",
        "/connectors/{id}/agent-credentials",
        "Self-hosted connector: Settings > Rotate. New client ID and secret (in this answer only); the old ones work until previous_valid_until",
        None,
        201,
        "AgentCredentials",
    ),
    (
        "post",
        "/connector-agent/token",
        "Self-hosted connector: exchange its client ID and secret for a short-lived token (client credentials, form or JSON)",
        Some("TokenRequest"),
        200,
        "TokenResponse",
    ),
    (
        "post",
        "/connector-agent/heartbeat",
        "Self-hosted connector: alive (version, host, provisioning on/off); renews the leases of the tasks it holds",
        Some("AgentHeartbeat"),
        200,
        "AgentHeartbeatAnswer",
    ),
    (
        "post",
        "/connector-agent/tasks/next",
        "Self-hosted connector: claim its next task (sync, provisioning, or an account to create or deprovision); 204 when there is none",
        None,
        200,
        "AgentTask",
    ),
    (
        "post",
        "/connector-agent/syncs",
        "Self-hosted connector: start a full sync now and claim it (409 while one runs; 409 tenant_mismatch, nothing created, when tenant_id is not the Entra tenant the connector's earlier syncs were read from)",
        Some("AgentSyncRequest"),
        201,
        "AgentTask",
    ),
    (
        "get",
        "/connector-agent/tasks/{id}/batches",
        "Self-hosted connector: the next batch of this attempt's upload (Latchkey-Lease header)",
        None,
        200,
        "AgentBatchAck",
    ),
    (
        "put",
        "/connector-agent/tasks/{id}/batches/{seq}",
        "Self-hosted connector: one sync batch (JSON, Content-Encoding: gzip), applied exactly once and in order (Latchkey-Lease header; optional Latchkey-Tenant header, the Entra tenant the batch was read from: 409 tenant_mismatch, nothing applied, when it is not the tenant the connector syncs)",
        Some("AgentBatch"),
        200,
        "AgentBatchAck",
    ),
    (
        "post",
        "/connector-agent/tasks/{id}/logs",
        "Self-hosted connector: log lines of a task (Latchkey-Lease header)",
        Some("AgentLogs"),
        204,
        "Empty",
    ),
    (
        "post",
        "/connector-agent/tasks/{id}/result",
        "Self-hosted connector: how a task ended; once all its batches arrived a sync is finished (sweep, expansion) by the worker; a successful sync result sent again after its acknowledgement was lost gets the same answer with repeated: true (Latchkey-Lease header)",
        Some("AgentResult"),
        200,
        "AgentResultAnswer",
    ),
];

/// The documented (method, path) pairs, for the router consistency test.
pub fn documented() -> Vec<(String, String)> {
    ENDPOINTS
        .iter()
        .map(|(m, p, ..)| (m.to_string(), p.to_string()))
        .collect()
}

fn schemas() -> Value {
    let error = json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"},
        "fields": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}}}}});
    let page = |item: &str| {
        json!({"type": "object", "required": ["items", "next_cursor"], "properties": {
        "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
        "next_cursor": {"type": ["string", "null"]}}})
    };
    let settings = json!({"type": "object", "properties": {
        "auth": {"oneOf": [
            {"type": "object", "required": ["mode", "tenant_id", "client_id", "client_secret"], "properties": {
                "mode": {"const": "client_secret"}, "tenant_id": {"type": "string", "description": "GUID or verified domain; not common/organizations/consumers"},
                "client_id": {"type": "string", "format": "uuid"}, "client_secret": {"type": "string", "writeOnly": true}}},
            {"type": "object", "required": ["mode", "tenant_id"], "properties": {"mode": {"const": "oauth"}, "tenant_id": {"type": "string"}}}]},
        "graph_domain": {"type": "string", "description": "graph.microsoft.com, graph.microsoft.us, dod-graph.microsoft.us, microsoftgraph.chinacloudapi.cn, or a custom https host"},
        "login_authority": {"type": "string", "format": "uri"},
        "provisioning": {"type": "boolean"}, "skip_ad_groups": {"type": "boolean"}, "fetch_sign_in_activity": {"type": "boolean"},
        "schedule_scim_provisioning": {"type": "boolean"}, "disable_audit_feed": {"type": "boolean"},
        "allow_account_deletion": {"type": "boolean", "description": "Deprovisioning may delete accounts when asked (default false; needs provisioning)"}}});
    // Provisioning (kept apart: one json! of every schema exceeds the macro recursion limit).
    let grant_request = json!({"type": "object", "required": ["entitlement_id", "principal_id"], "properties": {
            "entitlement_id": {"type": "string", "format": "uuid"}, "principal_id": {"type": "string", "format": "uuid", "description": "A resource id (user, group, service principal) of the same connector"},
            "expires_at": {"type": "string", "format": "date-time", "description": "Optional end (RFC 3339, 1 minute to 366 days ahead, else 422): the end of a PIM schedule for directory roles, a scheduled revoke task otherwise"}}});
    let account_request = json!({"type": "object", "required": ["user_principal_name", "display_name", "mail_nickname"], "properties": {
            "user_principal_name": {"type": "string", "description": "name@<one of the tenant's verified domains>"},
            "display_name": {"type": "string"}, "mail_nickname": {"type": "string"},
            "given_name": {"type": "string"}, "surname": {"type": "string"}, "department": {"type": "string"}, "job_title": {"type": "string"},
            "employee_id": {"type": "string"}, "usage_location": {"type": "string", "description": "Two-letter country code"},
            "manager_id": {"type": "string", "format": "uuid", "description": "A stored user resource of the same connector"}}});
    let deprovision_request = json!({"type": "object", "properties": {"delete": {"type": "boolean", "default": false,
            "description": "Also delete the account; refused unless the connector's allow_account_deletion is on"}}});
    let vault_revealed = json!({"type": "object", "required": ["vault_item_id", "password"], "properties": {
            "vault_item_id": {"type": "string", "format": "uuid"}, "account_id": {"type": "string"}, "user_principal_name": {"type": "string"},
            "password": {"type": "string", "description": "Shown this once; must be changed at first sign-in"}, "revealed_at": {"type": "string"}}});
    let task_started = json!({"type": "object", "required": ["task_id"], "properties": {"task_id": {"type": "string", "format": "uuid"}}});
    let task = json!({"type": "object", "required": ["id", "status", "operation", "error", "requested_at", "provisioned_at", "verified_at"], "properties": {
            "id": {"type": "string", "format": "uuid"}, "connector_id": {"type": "string", "format": "uuid"},
            "status": {"enum": ["queued", "running", "succeeded", "failed"]}, "operation": {"enum": ["grant", "revoke", "create_account", "deprovision_account"]},
            "entitlement_id": {"type": ["string", "null"], "format": "uuid"}, "principal_id": {"type": ["string", "null"], "format": "uuid"}, "grant_id": {"type": ["string", "null"]},
            "vault_item_id": {"type": "string", "format": "uuid", "description": "Present for a created account: POST /vault/{id}/reveal"},
            "requested_by": {"type": "string"}, "expires_at": {"type": ["string", "null"]},
            "error": {"type": ["string", "null"], "description": "Why it was refused or failed, in words"},
            "verification_failed": {"type": ["string", "null"], "description": "Graph accepted the change but reading it back did not show it in time"},
            "requested_at": {"type": "string"}, "provisioned_at": {"type": ["string", "null"]}, "verified_at": {"type": ["string", "null"]},
            "warnings": {"type": "array", "items": {"type": "string"}, "description": "e.g. the app has no SCIM provisioning job"},
            "job_id": {"type": ["string", "null"]}}});
    let agent = json!({
        "AgentCredentials": {"type": "object", "required": ["client_id", "client_secret"], "properties": {
            "client_id": {"type": "string"}, "client_secret": {"type": "string"}, "previous_valid_until": {"type": ["string", "null"]}}},
        "AgentHeartbeat": {"type": "object", "required": ["version", "host", "provisioning"], "properties": {
            "version": {"type": "string"}, "host": {"type": "string"}, "provisioning": {"type": "boolean"},
            "tasks": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "lease": {"type": "string", "format": "uuid"}}}}}},
        "AgentHeartbeatAnswer": {"type": "object", "properties": {"connector_id": {"type": "string"}, "lease_seconds": {"type": "integer"},
            "tasks": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "held": {"type": "boolean"}, "cancel_requested": {"type": "boolean"}}}}}},
        "AgentTask": {"type": "object", "required": ["id", "lease", "attempt", "type"], "properties": {
            "id": {"type": "string", "format": "uuid"}, "lease": {"type": "string", "format": "uuid"}, "attempt": {"type": "integer"},
            "type": {"enum": ["sync", "provision", "account"]}, "sync": {"type": "object"}, "provision": {"type": "object", "description": "task_id, operation, step (the Graph change), summary, resource_name, end, scim, principal_is_group"},
            "account": {"type": "object", "description": "task_id, summary, work: {operation: create_account, account, password (the new account's first password, kept in Latchkey's vault; only in this answer), kept_at, retried} or {operation: deprovision_account, account_id, display_name, delete}"}}},
        "AgentSyncRequest": {"type": "object", "properties": {"reason": {"type": "string"},
            "tenant_id": {"type": "string", "description": "The Entra tenant the sync reads (ENTRA_TENANT_ID, or an uploaded file's header)"}}},
        "AgentBatch": {"type": "object", "required": ["seq"], "description": "docs/connector-sync-format.md", "properties": {
            "seq": {"type": "integer"}, "resources": {"type": "array"}, "entitlements": {"type": "array"}, "grants": {"type": "array"}, "profiles": {"type": "array"}}},
        "AgentBatchAck": {"type": "object", "properties": {"status": {"enum": ["applied", "duplicate"]}, "next_seq": {"type": "integer"}}},
        "AgentLogs": {"type": "object", "required": ["lines"], "properties": {"lines": {"type": "array", "items": {"type": "object", "properties": {
            "level": {"enum": ["debug", "info", "warn", "error"]}, "message": {"type": "string"}, "fields": {}}}}}},
        "AgentResult": {"oneOf": [
            {"type": "object", "required": ["sync"], "properties": {"sync": {"type": "object", "description": "{status: succeeded, batches, stats, warnings, unread, tenant_id (the Entra tenant it was read from: the first successful sync records it, another is 409 tenant_mismatch)} or {status: failed, error, transient}"}}},
            {"type": "object", "required": ["provision"], "properties": {"provision": {"type": "object", "description": "{outcome: verified|unverified|refused|failed, ...}"}}},
            {"type": "object", "required": ["account"], "properties": {"account": {"type": "object", "description": "{outcome: verified|unverified, done: {kind: created, account_id, user_principal_name, user} or {kind: deprovisioned, gone}, warning} or {outcome: refused|failed, why, transient}"}}}]},
        "AgentResultAnswer": {"type": "object", "properties": {"status": {"enum": ["succeeded", "failed", "retrying"]}}},
        "Empty": {"type": "null"},
    });
    let mut all = json!({
        "Error": error,
        "TokenRequest": {"type": "object", "required": ["grant_type", "client_id", "client_secret"], "properties": {
            "grant_type": {"const": "client_credentials"}, "client_id": {"type": "string"}, "client_secret": {"type": "string"}}},
        "TokenResponse": {"type": "object", "required": ["access_token", "token_type", "expires_in"], "properties": {
            "access_token": {"type": "string"}, "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"}}},
        "Me": {"type": "object", "properties": {"org_id": {"type": "string", "format": "uuid"}, "api_client_id": {"type": "string", "format": "uuid"}, "role": {"$ref": "#/components/schemas/Role"}}},
        "Role": {"enum": ["super_admin", "connector_admin", "member"]},
        "User": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "email": {"type": "string"}, "display_name": {"type": "string"},
            "role": {"$ref": "#/components/schemas/Role"}, "disabled_at": {"type": ["string", "null"]}, "created_at": {"type": "string"}}},
        "UserPage": page("User"),
        "ApiClient": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "client_id": {"type": "string"}, "name": {"type": "string"},
            "role": {"$ref": "#/components/schemas/Role"}, "revoked_at": {"type": ["string", "null"]}}},
        "ApiClientPage": page("ApiClient"),
        "ApiClientCreate": {"type": "object", "required": ["name", "role"], "properties": {"name": {"type": "string"}, "role": {"$ref": "#/components/schemas/Role"}}},
        "ApiClientCreated": {"allOf": [{"$ref": "#/components/schemas/ApiClient"}, {"type": "object", "properties": {"client_secret": {"type": "string"}}}]},
        "ConnectorSettings": settings,
        "ConnectorCreate": {"type": "object", "required": ["display_name", "app"], "properties": {
            "display_name": {"type": "string"},
            "app": {"oneOf": [
                {"type": "object", "required": ["new"], "properties": {"new": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}},
                {"type": "object", "required": ["managed_app_id"], "properties": {"managed_app_id": {"type": "string", "format": "uuid"}}},
                {"type": "object", "required": ["discovered_app_id"], "properties": {"discovered_app_id": {"type": "string", "format": "uuid"}}}]},
            "owners": {"type": "array", "items": {"type": "string", "format": "uuid"}, "description": "default: the calling person, if any"},
            "settings": {"$ref": "#/components/schemas/ConnectorSettings"}}},
        "ConnectorPatch": {"type": "object", "properties": {"display_name": {"type": "string"}, "owners": {"type": "array", "items": {"type": "string", "format": "uuid"}},
            "settings": {"$ref": "#/components/schemas/ConnectorSettings"}}},
        "Connector": {"type": "object", "required": ["id", "display_name", "app", "owners", "status", "status_reason", "settings", "capabilities", "last_sync"], "properties": {
            "id": {"type": "string", "format": "uuid"}, "display_name": {"type": "string"},
            "app": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "name": {"type": "string"}}},
            "owners": {"type": "array", "items": {"type": "object", "properties": {"user_id": {"type": "string"}, "display_name": {"type": "string"}, "email": {"type": "string"}}}},
            "status": {"enum": ["setup_required", "pending_consent", "syncing", "connected", "error", "disabled"]},
            "status_reason": {"type": ["string", "null"], "description": "The actionable sentence shown in the UI"},
            "settings": {"description": "Settings without the secret; client_secret_set, client_secret_set_at and client_secret_expires_at added"},
            "capabilities": {"description": "The last connection test's report: permissions granted vs needed, premium features"},
            "last_sync": {"type": ["object", "null"]},
            "consent_url": {"type": "string", "description": "OAuth connectors waiting for consent: open it in a browser while signed in"},
            "connection_test_job_id": {"type": "string", "format": "uuid"}}},
        "ConnectorPage": page("Connector"),
        "Job": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}, "kind": {"type": "string"},
            "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled", "dead"]}, "attempts": {"type": "integer"},
            "progress": {}, "last_error": {"type": ["string", "null"]}, "started_at": {"type": ["string", "null"]}, "finished_at": {"type": ["string", "null"]}}},
        "JobLog": {"type": "object", "properties": {"id": {"type": "integer"}, "level": {"enum": ["debug", "info", "warn", "error"]}, "message": {"type": "string"}, "fields": {}, "at": {"type": "string"}}},
        "JobLogPage": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/JobLog"}}, "next_cursor": {"type": "string"}}},
        "SyncStart": {"type": "object", "required": ["kind"], "properties": {"kind": {"enum": ["full", "incremental"]}}},
        "SyncStarted": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string", "format": "uuid"}}},
        "Sync": {"type": "object", "required": ["id", "kind", "status", "started_at", "finished_at", "stats", "warnings"], "properties": {
            "id": {"type": "string", "format": "uuid"}, "kind": {"enum": ["full", "incremental"]},
            "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "started_at": {"type": ["string", "null"]}, "finished_at": {"type": ["string", "null"]},
            "stats": {"type": "object", "description": "resources per type, grants per kind, requests, throttled, retries, transient_failures, token_refreshes, pages, deleted"},
            "warnings": {"type": "array", "items": {"type": "string"}}, "error": {"type": "string"}}},
        "SyncPage": page("Sync"),
        "SyncSummary": {"type": "object", "required": ["resources", "grants"], "properties": {
            "resources": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "user, group, enterprise_application, role, license, managed_identity"},
            "grants": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "group_members, group_owners, app_role_assignments, app_owners, role_assigned, role_eligible, license_assigned"}}},
        "Resource": {"type": "object", "required": ["id", "type", "external_id", "display_name", "profile"], "properties": {
            "id": {"type": "string", "format": "uuid"}, "type": {"type": "string"}, "external_id": {"type": "string", "description": "The Entra object id (SKU id for licences)"},
            "display_name": {"type": "string"}, "profile": {"type": "object"}}},
        "ResourcePage": page("Resource"),
        "Entitlement": {"type": "object", "required": ["id", "resource_id", "slug", "display_name"], "properties": {
            "id": {"type": "string", "format": "uuid"}, "resource_id": {"type": "string", "format": "uuid"},
            "slug": {"type": "string", "description": "members, owners, assignment:<appRoleId>, assigned, eligible"}, "display_name": {"type": "string"}}},
        "EntitlementPage": page("Entitlement"),
        "Grant": {"type": "object", "required": ["id", "entitlement_id", "principal_id", "source"], "properties": {
            "id": {"type": "string", "format": "uuid"}, "entitlement_id": {"type": "string", "format": "uuid"}, "principal_id": {"type": "string", "format": "uuid"},
            "source": {"type": "string", "description": "direct, or the path of groups it is inherited through (group:<id>>group:<id>)"}}},
        "GrantPage": page("Grant"),
        "GrantRequest": grant_request,
        "TaskStarted": task_started,
        "TaskPage": page("Task"),
        "AccountRequest": account_request,
        "DeprovisionRequest": deprovision_request,
        "VaultRevealed": vault_revealed,
        "Task": task,
        "OpenApi": {"type": "object"},
    });
    if let (Some(all), Value::Object(more)) = (all.as_object_mut(), review_schemas(&page)) {
        all.extend(more);
    }
    if let (Some(all), Value::Object(more)) = (all.as_object_mut(), access_schemas()) {
        all.extend(more);
    }
    if let (Some(all), Value::Object(agent)) = (all.as_object_mut(), agent) {
        all.extend(agent);
    }
    all
}

/// Access review schemas (a second `json!` keeps the macro under its recursion limit).
fn review_schemas(page: &dyn Fn(&str) -> Value) -> Value {
    json!({
        "ReviewCampaignCreate": {"type": "object", "required": ["name", "scope", "reviewers", "deadline", "end_rule"], "properties": {
            "name": {"type": "string"},
            "scope": {"type": "object", "properties": {
                "connector_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                "app_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                "entitlement_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                "resource_types": {"type": "array", "items": {"enum": ["user", "group", "enterprise_application", "role", "license", "managed_identity"]}},
                "principal_types": {"type": "array", "items": {"enum": ["user", "group", "enterprise_application", "managed_identity"]}},
                "guests_only": {"type": "boolean"},
                "inactive_days": {"type": ["integer", "null"]},
                "include_inherited": {"type": "boolean", "default": true}}},
            "reviewers": {"type": "object", "required": ["strategy"], "properties": {
                "strategy": {"enum": ["app_owner", "manager", "specific"]},
                "user_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                "fallback_user_id": {"type": ["string", "null"], "format": "uuid"}}},
            "deadline": {"type": "string", "format": "date-time"},
            "end_rule": {"enum": ["keep", "revoke"], "description": "What undecided items become at the deadline"},
            "recommend_revoke_after_days": {"type": "integer", "default": 90},
            "reminder_hours_before": {"type": "array", "items": {"type": "integer"}, "default": [72, 24]},
            "repeat_every_days": {"type": ["integer", "null"], "description": "Start a campaign like this one every N days (91: quarterly)"}}},
        "ReviewCampaign": {"type": "object", "required": ["id", "name", "status", "end_rule", "deadline", "counts"], "properties": {
            "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"}, "status": {"enum": ["active", "closed"]},
            "end_rule": {"enum": ["keep", "revoke"]}, "deadline": {"type": "string"}, "template_id": {"type": ["string", "null"]},
            "created_by": {"type": "string"}, "created_at": {"type": "string"}, "closed_at": {"type": ["string", "null"]},
            "closed_reason": {"type": ["string", "null"], "enum": ["deadline", "closed", null]}, "spec": {"type": "object"},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                "description": "items, decided, undecided, kept, revoked, unassigned, revocations_verified, revocations_pending, revocations_failed, manual_open, manual_done"}}},
        "ReviewCampaignPage": page("ReviewCampaign"),
        "ReviewItem": {"type": "object", "properties": {
            "id": {"type": "string", "format": "uuid"}, "principal": {"type": "object"}, "access": {"type": "object"},
            "evidence": {"type": "object", "description": "how (direct or group path group:<id>>group:<id>), how_described (the same in words with the groups' names), since, sign_in_known, last_sign_in, granted_through_latchkey, jit_request (the just-in-time request it came from), recommendation"},
            "reviewer": {"type": ["object", "null"]}, "decision": {"type": ["object", "null"]},
            "revocation": {"type": ["object", "null"], "description": "result: pending, verified, failed, manual_task_open, manual_task_done, not_needed"}}},
        "ReviewItemPage": page("ReviewItem"),
        "ReviewItemList": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/ReviewItem"}}}},
        "ReviewDecisions": {"type": "object", "required": ["decisions"], "properties": {"decisions": {"type": "array", "items": {
            "type": "object", "required": ["item_id", "decision"], "properties": {
                "item_id": {"type": "string", "format": "uuid"}, "decision": {"enum": ["keep", "revoke", "reassign"]},
                "comment": {"type": "string"}, "reviewer_id": {"type": "string", "format": "uuid"}}}}}},
        "ReviewTemplate": {"type": "object", "required": ["id", "name", "status", "every_days", "next_run_at", "campaigns"], "properties": {
            "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"}, "status": {"enum": ["active", "stopped"]},
            "every_days": {"type": "integer"}, "campaign_duration_secs": {"type": "integer"}, "end_rule": {"enum": ["keep", "revoke"]},
            "next_run_at": {"type": ["string", "null"], "description": "When the next campaign starts; null once stopped"},
            "created_by": {"type": "string"}, "created_at": {"type": "string"},
            "stopped_at": {"type": ["string", "null"]}, "stopped_by": {"type": ["string", "null"]}, "spec": {"type": "object"},
            "campaigns": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string", "format": "uuid"}, "name": {"type": "string"}, "status": {"enum": ["active", "closed"]},
                "created_at": {"type": "string"}, "deadline": {"type": "string"}}}}}},
        "ReviewTemplatePage": page("ReviewTemplate"),
        "ReviewReport": {"type": "object", "description": "JSON: {campaign, items, signals}; with format=csv, text/csv with one line per item. Each item has how (direct or the raw group path) and how_described (the same with the groups' names)",
            "properties": {"campaign": {"type": "object"}, "items": {"type": "array", "items": {"type": "object"}}, "signals": {"type": "array", "items": {"type": "object"}}}},
    })
}

pub fn spec() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, request, status, response) in ENDPOINTS {
        let mut op = json!({
            "summary": summary,
            "responses": {
                status.to_string(): {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{response}")}}}},
                "default": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        if let Some(req) = request {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{req}")}}}});
        }
        if *path == "/auth/token" || *path == "/openapi.json" || *path == "/connector-agent/token" {
            op["security"] = json!([]);
        }
        if path.contains("{id}") {
            op["parameters"] = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}]);
        }
        if matches!(
            *path,
            "/users" | "/api-clients" | "/connectors" | "/review-campaigns" | "/review-templates"
        ) && *method == "get"
        {
            op["parameters"] = json!([
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}}]);
        }
        if path.contains("{seq}") {
            op["parameters"]
                .as_array_mut()
                .expect("id parameter")
                .push(json!({"name": "seq", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 0}}));
        }
        if path.contains("{grant_id}") {
            op["parameters"]
                .as_array_mut()
                .expect("id parameter")
                .push(json!({"name": "grant_id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}));
        }
        if *path == "/jobs/{id}/logs" {
            op["parameters"]
                .as_array_mut()
                .expect("id parameter")
                .push(json!({"name": "after", "in": "query", "schema": {"type": "string"}}));
        }
        let full = format!("/api/v1{path}");
        let entry = paths.entry(full).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Latchkey API", "version": env!("CARGO_PKG_VERSION"),
            "description": "Errors are {\"error\": {\"code\", \"message\"}}; lists take limit and cursor and answer {items, next_cursor}; another organization's objects are 404."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": schemas(),
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

pub async fn document() -> Json<Value> {
    Json(spec())
}

/// JIT access requests, policies and the audit trail (a `json!` of its own: one macro call
/// with every schema would exceed the macro recursion limit).
fn access_schemas() -> Value {
    let page = |item: &str| {
        json!({"type": "object", "required": ["items", "next_cursor"], "properties": {
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
            "next_cursor": {"type": ["string", "null"]}}})
    };
    let request = json!({"type": "object", "required": ["id", "state", "requester", "entitlement_id", "connector_id", "principal_id", "duration_seconds"], "properties": {
        "id": {"type": "string", "format": "uuid"},
        "state": {"enum": ["pending", "approved", "provisioning", "active", "expired", "revoked", "denied", "cancelled", "timed_out", "failed"]},
        "state_label": {"type": "string"},
        "requester": {"type": "object", "properties": {"id": {"type": "string"}, "email": {"type": "string"}, "display_name": {"type": "string"}}},
        "entitlement_id": {"type": "string", "format": "uuid"}, "entitlement_name": {"type": "string"}, "slug": {"type": "string"},
        "resource_name": {"type": "string"}, "resource_type": {"type": "string"},
        "connector_id": {"type": "string", "format": "uuid"}, "connector_name": {"type": "string"},
        "principal_id": {"type": "string", "format": "uuid", "description": "The requester's synced account the access goes to"},
        "risk": {"enum": ["low", "medium", "high"]}, "justification": {"type": "string"}, "duration_seconds": {"type": "integer"},
        "emergency": {"type": "boolean"}, "needs_review": {"type": "boolean"}, "round": {"type": "integer"}, "stage": {"type": "integer"},
        "decide_by": {"type": ["string", "null"]},
        "extension": {"type": ["object", "null"], "properties": {"duration_seconds": {"type": "integer"}, "justification": {"type": "string"}, "requested_at": {"type": "string"}}},
        "provision_task_id": {"type": ["string", "null"]}, "revoke_task_id": {"type": ["string", "null"]},
        "end_reason": {"enum": ["expired", "released", "revoked", null]},
        "granted_at": {"type": ["string", "null"], "description": "verified in the tenant: the window starts here"},
        "expires_at": {"type": ["string", "null"]}, "ended_at": {"type": ["string", "null"]},
        "policy_version": {"type": "integer"}, "created_at": {"type": "string"}, "updated_at": {"type": "string"}}});
    let detail = json!({"allOf": [{"$ref": "#/components/schemas/AccessRequest"}, {"type": "object", "properties": {
        "transitions": {"type": "array", "items": {"type": "object", "properties": {"at": {"type": "string"}, "from_state": {"type": ["string", "null"]}, "to_state": {"type": "string"}, "event": {"type": "string"}, "actor_kind": {"type": "string"}, "actor_label": {"type": "string"}, "reason": {"type": ["string", "null"]}}}},
        "approvers": {"type": "array", "items": {"type": "object", "properties": {"round": {"type": "integer"}, "stage": {"type": "integer"}, "user_id": {"type": "string"}, "why": {"type": "string"}, "email": {"type": "string"}}}},
        "decisions": {"type": "array", "items": {"type": "object", "properties": {"round": {"type": "integer"}, "stage": {"type": "integer"}, "approver_id": {"type": "string"}, "decision": {"enum": ["approved", "denied"]}, "comment": {"type": "string"}, "at": {"type": "string"}}}}}}]});
    let policy = json!({"type": "object", "properties": {
        "requestable": {"type": "boolean"}, "risk": {"enum": ["low", "medium", "high"]},
        "max_duration_seconds": {"type": "integer"}, "default_duration_seconds": {"type": "integer"},
        "justification_required": {"type": "boolean"}, "justification_pattern": {"type": ["string", "null"], "description": "a regular expression, e.g. a ticket id"},
        "requesters": {"type": "object", "properties": {"mode": {"enum": ["everyone", "groups"]}, "group_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}}}},
        "approval_stages": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "object", "required": ["approvers"], "properties": {
            "approvers": {"type": "array", "items": {"type": "object", "required": ["type"], "properties": {
                "type": {"enum": ["user", "app_owners", "connector_owners", "manager", "group"]},
                "user_id": {"type": "string", "format": "uuid"}, "group_id": {"type": "string", "format": "uuid"}}}},
            "required": {"type": "integer", "minimum": 1, "maximum": 10, "description": "how many must approve (any one: 1)"}}}},
        "auto_approve": {"type": "object", "properties": {"requester_group_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}}, "when_low_risk": {"type": "boolean"}}},
        "allow_self_approval": {"type": "boolean"}, "decision_timeout_seconds": {"type": "integer"}, "reminder_before_seconds": {"type": "integer"},
        "emergency": {"type": "object", "properties": {"enabled": {"type": "boolean"}, "max_duration_seconds": {"type": ["integer", "null"]}}}}});
    let event = json!({"type": "object", "properties": {"id": {"type": "string"}, "seq": {"type": "integer"}, "occurred_at": {"type": "string"},
        "actor": {"type": "object", "properties": {"kind": {"enum": ["user", "api_client", "system", "connector"]}, "id": {"type": ["string", "null"]}, "label": {"type": "string"}}},
        "action": {"type": "string"}, "target_kind": {"type": "string"}, "target_id": {"type": ["string", "null"]}, "details": {"type": "object"}, "hash": {"type": "string"}}});
    json!({
        "Comment": {"type": "object", "properties": {"comment": {"type": "string", "maxLength": 2000}}, "description": "The body may be empty"},
        "AccessRequestCreate": {"type": "object", "required": ["entitlement_id"], "properties": {
            "entitlement_id": {"type": "string", "format": "uuid"},
            "duration_seconds": {"type": "integer", "description": "default: the policy's default; at most its maximum"},
            "justification": {"type": "string", "description": "required unless the policy says otherwise; may have to match the policy's pattern"},
            "emergency": {"type": "boolean", "description": "break-glass: granted at once where the policy allows it"},
            "requester_user_id": {"type": "string", "format": "uuid", "description": "administrators' clients: ask for someone; default: the person who created the API client"}}},
        "AccessRequestExtend": {"type": "object", "properties": {"duration_seconds": {"type": "integer"}, "justification": {"type": "string"}}},
        "AccessRequest": request,
        "AccessRequestPage": page("AccessRequest"),
        "AccessRequestDetail": detail,
        "AccessPolicy": policy,
        "AccessPolicyView": {"type": "object", "properties": {"entitlement_id": {"type": "string"}, "connector_id": {"type": "string"}, "version": {"type": "integer"},
            "updated_at": {"type": ["string", "null"]}, "updated_by": {"type": ["string", "null"]}, "policy": {"$ref": "#/components/schemas/AccessPolicy"}}},
        "AuditEvent": event,
        "AuditEventPage": page("AuditEvent"),
        "AuditChain": {"type": "object", "properties": {"intact": {"type": "boolean"}, "events": {"type": "integer"}, "broken_at": {"type": ["integer", "null"]}}},
    })
}
