//! Self-hosted connectors, on the server's side: their credentials (Settings > Rotate, shared
//! by the page and the API), their online status, and the API they call
//! (`/api/v1/connector-agent/...`, [`api`]), which sees only its own connector's tasks.

pub mod api;
pub mod token;

use crate::connectors::{Actor, ONLY_EDITORS, ServiceError, may_edit};
use crate::state::AppState;
use latchkey_crypto::{random_token, sha256_hex};
use latchkey_store::audit::{self, NewEvent};
use latchkey_store::{OrgTx, StoreError, connector_agents, connectors, users};
use serde::Serialize;
use serde_json::json;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// The connector kind of a self-hosted connector.
pub const SELF_HOSTED: &str = "self_hosted";

/// A heartbeat older than this many of the connector's heartbeat intervals means offline.
pub const ONLINE_WINDOW: Duration = Duration::from_secs(90);

/// New credentials, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    pub client_id: String,
    pub client_secret: String,
    /// Until when the credentials it replaced keep working (`None`: there were none).
    #[serde(with = "time::serde::rfc3339::option")]
    pub previous_valid_until: Option<OffsetDateTime>,
}

/// Settings > Rotate: a new client ID and secret for the self-hosted connector; the old ones
/// keep working for the configured grace period. Recorded in the audit trail (never the secret).
pub async fn rotate(
    state: &AppState,
    actor: &Actor,
    connector: Uuid,
) -> Result<Rotated, ServiceError> {
    let mut tx = state.store.org_tx(actor.org).await?;
    let row = connectors::get(&mut tx, connector).await?;
    if !may_edit(&mut tx, actor, connector).await? {
        return Err(ServiceError::Forbidden(ONLY_EDITORS));
    }
    if row.kind != SELF_HOSTED || row.disabled_at.is_some() {
        return Err(ServiceError::Invalid(vec![crate::error::FieldError {
            field: "connector".into(),
            message: "only an enabled self-hosted connector has credentials to rotate".into(),
        }]));
    }
    let client_id = format!("lkac_{}", random_token(18));
    let client_secret = format!("lkas_{}", random_token(32));
    let had = connector_agents::credentials(&mut tx, connector).await?;
    let grace = state.config.agent_rotation_grace;
    let cred = connector_agents::rotate(
        &mut tx,
        connector,
        &client_id,
        &sha256_hex(client_secret.as_bytes()),
        actor.user,
        grace,
    )
    .await?;
    let previous_valid_until = if had.is_empty() {
        None
    } else {
        Some(cred.created_at + grace)
    };
    let who = audit_actor(&mut tx, actor).await?;
    audit::append(
        &mut tx,
        &NewEvent {
            actor: &who,
            action: "connector.credentials_rotated",
            target_kind: "connector",
            target_id: Some(connector.to_string()),
            details: json!({
                "client_id": client_id,
                "replaced": had.len() as i64,
                "grace_seconds": grace.as_secs() as i64,
            }),
        },
    )
    .await?;
    if row.status == "setup_required" {
        connectors::set_status(
            &mut tx,
            connector,
            "setup_required",
            Some("Credentials created. Deploy the self-hosted connector with them (deploy/kubernetes); it shows as online at its first heartbeat."),
        )
        .await?;
    }
    tx.commit().await?;
    tracing::info!(org_id = %actor.org, connector_id = %connector, "self-hosted connector credentials rotated");
    Ok(Rotated {
        client_id,
        client_secret,
        previous_valid_until,
    })
}

async fn audit_actor(tx: &mut OrgTx, actor: &Actor) -> Result<audit::Actor, ServiceError> {
    Ok(match actor.user {
        Some(u) => {
            let label = users::get(tx, u)
                .await
                .map(|u| u.email)
                .unwrap_or_else(|_| "a person".into());
            audit::Actor::user(u.0, label)
        }
        None => audit::Actor::system("API client"),
    })
}

/// What the connector page shows of a self-hosted connector.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub online: bool,
    pub version: Option<String>,
    pub host: Option<String>,
    pub provisioning: Option<bool>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_heartbeat_at: Option<OffsetDateTime>,
    /// The Entra tenant its synced data was read from (set by its first successful sync);
    /// syncs read from another tenant are refused.
    pub tenant_id: Option<String>,
    /// Client ids that work now (the newest first; older ones until their grace ends).
    pub credentials: Vec<connector_agents::Credential>,
}

pub async fn view(tx: &mut OrgTx, connector: Uuid) -> Result<AgentView, StoreError> {
    let status = connector_agents::status(tx, connector).await?;
    let credentials = connector_agents::credentials(tx, connector).await?;
    let tenant_id = connector_agents::synced_tenant(tx, connector).await?;
    let now = OffsetDateTime::now_utc();
    Ok(AgentView {
        online: status
            .as_ref()
            .is_some_and(|s| now - s.last_heartbeat_at < ONLINE_WINDOW),
        version: status.as_ref().map(|s| s.version.clone()),
        host: status.as_ref().map(|s| s.host.clone()),
        provisioning: status.as_ref().map(|s| s.provisioning),
        last_heartbeat_at: status.map(|s| s.last_heartbeat_at),
        tenant_id,
        credentials,
    })
}
