//! The connection test, run as a job after settings are saved or consent is given: acquire
//! a token, read the organization, compare granted and needed permissions, probe premium
//! features; then move the connector to *Syncing* (and enqueue its first sync) or to *Error*
//! with a sentence saying what to fix.

use super::consent::LatchkeyApp;
use super::settings::{AuthMode, EntraSettings};
use crate::auth::ClientCredentials;
use crate::connection::Connection;
use crate::endpoints::OutboundPolicy;
use crate::graph::RetryPolicy;
use crate::ids::ClientId;
use crate::probe::{self, Level};
use latchkey_core::OrgId;
use latchkey_crypto::KeyRing;
use latchkey_jobs::{JobClass, JobContext, JobError, JobHandler, LogLevel, NewJob, queue};
use latchkey_store::secrets::{self, SecretRef};
use latchkey_store::{Store, StoreError, connectors};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

pub const CONNECTION_TEST_JOB: &str = "entra.connection_test";
pub const SYNC_JOB: &str = "entra.sync";

/// Where a connector's client secret is stored.
pub fn secret_ref(connector: Uuid) -> SecretRef<'static> {
    SecretRef {
        owner_table: "connectors",
        owner_id: connector,
        field: "client_secret",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "This connector is not configured yet: open Settings and choose Client secret or OAuth."
    )]
    NotConfigured,
    #[error("The stored settings cannot be used: {0} Open Settings and correct them.")]
    Settings(String),
    #[error("No client secret is stored: open Settings and paste the client secret.")]
    NoSecret,
    #[error(
        "OAuth connectors need Latchkey's own Entra app, which this deployment has not configured (LATCHKEY_ENTRA_APP_CLIENT_ID and LATCHKEY_ENTRA_APP_CLIENT_SECRET). Use Client secret instead, or ask the operator."
    )]
    NoLatchkeyApp,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds the live connection of a stored connector (used by the test, sync and provisioning).
pub async fn connect_for(
    store: &Store,
    keys: &KeyRing,
    app: Option<&LatchkeyApp>,
    policy: OutboundPolicy,
    org: OrgId,
    connector: Uuid,
) -> Result<(EntraSettings, Connection), ConnectError> {
    connect_for_with(
        store,
        keys,
        app,
        policy,
        org,
        connector,
        RetryPolicy::default(),
    )
    .await
}

/// [`connect_for`] with the Graph client's retry limits (the sync's are tunable).
pub async fn connect_for_with(
    store: &Store,
    keys: &KeyRing,
    app: Option<&LatchkeyApp>,
    policy: OutboundPolicy,
    org: OrgId,
    connector: Uuid,
    retry: RetryPolicy,
) -> Result<(EntraSettings, Connection), ConnectError> {
    let mut tx = store.org_tx(org).await?;
    let row = connectors::get(&mut tx, connector).await?;
    let settings: EntraSettings = match row.settings {
        Some(v) => serde_json::from_value(v).map_err(|e| ConnectError::Settings(e.to_string()))?,
        None => return Err(ConnectError::NotConfigured),
    };
    let secret = match settings.auth.mode {
        AuthMode::ClientSecret => match secrets::get(&mut tx, keys, secret_ref(connector)).await {
            Ok(s) => Some(s),
            Err(StoreError::NotFound) => return Err(ConnectError::NoSecret),
            Err(e) => return Err(e.into()),
        },
        AuthMode::Oauth => None,
    };
    tx.commit().await?;
    let endpoints = settings
        .endpoints(policy)
        .map_err(|e| ConnectError::Settings(e.to_string()))?;
    endpoints
        .check_dns()
        .await
        .map_err(|e| ConnectError::Settings(e.to_string()))?;
    let tenant = settings
        .tenant()
        .map_err(|e| ConnectError::Settings(e.to_string()))?;
    let creds = match (settings.auth.mode, secret) {
        (AuthMode::ClientSecret, Some(client_secret)) => {
            let client_id = ClientId::parse(settings.auth.client_id.as_deref().unwrap_or_default())
                .map_err(|e| ConnectError::Settings(e.to_string()))?;
            ClientCredentials {
                tenant,
                client_id,
                client_secret,
            }
        }
        (AuthMode::ClientSecret, None) => return Err(ConnectError::NoSecret),
        (AuthMode::Oauth, _) => {
            let app = app.ok_or(ConnectError::NoLatchkeyApp)?;
            ClientCredentials {
                tenant,
                client_id: app.client_id,
                client_secret: app.client_secret.clone(),
            }
        }
    };
    let conn = Connection::new(endpoints, creds, retry)
        .map_err(|e| ConnectError::Settings(e.to_string()))?;
    Ok((settings, conn))
}

pub struct ConnectionTestHandler {
    keys: Arc<KeyRing>,
    app: Option<LatchkeyApp>,
    policy: OutboundPolicy,
}

impl ConnectionTestHandler {
    pub fn new(keys: Arc<KeyRing>, app: Option<LatchkeyApp>, policy: OutboundPolicy) -> Self {
        Self { keys, app, policy }
    }
}

fn store_err(e: StoreError) -> JobError {
    JobError::transient(e.operator_message())
}

/// Whether this test may still report: it is the connector's latest test and the connector
/// is not disabled. Settings saved while a test runs queue a newer test, which reports instead.
async fn is_current(
    store: &Store,
    org: OrgId,
    connector: Uuid,
    job: Uuid,
) -> Result<bool, JobError> {
    let mut tx = store.org_tx(org).await.map_err(store_err)?;
    let current = connectors::lock_if_current_test(&mut tx, connector, job)
        .await
        .map_err(store_err)?;
    tx.commit().await.map_err(store_err)?;
    Ok(current)
}

const SUPERSEDED: &str = "The connector's settings changed (or it was disabled) since this test was queued; the newer test reports instead.";

/// Sets the connector's status, unless a newer test replaced this one (then nothing changes).
async fn set_status(
    store: &Store,
    org: OrgId,
    connector: Uuid,
    job: Uuid,
    status: &str,
    reason: &str,
) -> Result<bool, JobError> {
    let mut tx = store.org_tx(org).await.map_err(store_err)?;
    if !connectors::lock_if_current_test(&mut tx, connector, job)
        .await
        .map_err(store_err)?
    {
        return Ok(false);
    }
    connectors::set_status(&mut tx, connector, status, Some(reason))
        .await
        .map_err(store_err)?;
    tx.commit().await.map_err(store_err)?;
    Ok(true)
}

impl JobHandler for ConnectionTestHandler {
    fn kind(&self) -> &str {
        CONNECTION_TEST_JOB
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let org = ctx
            .org()
            .ok_or_else(|| JobError::permanent("a connection test belongs to an organization"))?;
        let connector = ctx
            .connector_id()
            .ok_or_else(|| JobError::permanent("a connection test names its connector"))?;
        let store = ctx.store();
        let job = ctx.id().as_uuid();
        if !is_current(store, org, connector, job).await? {
            ctx.info(SUPERSEDED).await?;
            return Ok(());
        }
        ctx.info("Testing the connection to Microsoft Entra ID")
            .await?;

        let (settings, conn) = match connect_for(
            store,
            &self.keys,
            self.app.as_ref(),
            self.policy,
            org,
            connector,
        )
        .await
        {
            Ok(v) => v,
            Err(ConnectError::Store(e)) => return Err(store_err(e)),
            Err(e) => {
                let reason = e.to_string();
                if !set_status(store, org, connector, job, "error", &reason).await? {
                    ctx.info(SUPERSEDED).await?;
                    return Ok(());
                }
                ctx.log(LogLevel::Error, &reason, json!({})).await?;
                return Err(JobError::permanent(reason));
            }
        };
        ctx.check_in().await?;
        let report = probe::probe(&conn.graph, &settings.probe_options()).await;
        for m in &report.messages {
            let level = match m.level {
                Level::Error => LogLevel::Error,
                Level::Warning => LogLevel::Warn,
                Level::Info => LogLevel::Info,
            };
            ctx.log(level, &m.text, json!({})).await?;
        }
        let stats = &report.requests;
        ctx.log(
            LogLevel::Info,
            "Connection test finished",
            json!({"verdict": report.verdict.as_str(), "requests": stats}),
        )
        .await?;

        if let Some(f) = report.failure.as_ref().filter(|f| f.transient) {
            // Nothing to fix on the customer's side (yet): retry with the queue's backoff.
            let reason = format!(
                "Testing the connection… Microsoft answered with a temporary error, retrying: {}",
                f.message
            );
            if !set_status(store, org, connector, job, "syncing", &reason).await? {
                ctx.info(SUPERSEDED).await?;
                return Ok(());
            }
            return Err(JobError::transient(f.message.clone()));
        }

        let expires_at = report
            .client_secret
            .as_ref()
            .and_then(|s| s.expires_at.as_deref())
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            });
        let mut tx = store.org_tx(org).await.map_err(store_err)?;
        if !connectors::lock_if_current_test(&mut tx, connector, job)
            .await
            .map_err(store_err)?
        {
            drop(tx);
            ctx.info(SUPERSEDED).await?;
            return Ok(());
        }
        let capabilities =
            serde_json::to_value(&report).map_err(|e| JobError::permanent(e.to_string()))?;
        connectors::set_capabilities(&mut tx, connector, &capabilities)
            .await
            .map_err(store_err)?;
        if settings.auth.mode == AuthMode::ClientSecret {
            connectors::set_secret_expiry(&mut tx, connector, expires_at)
                .await
                .map_err(store_err)?;
        }
        if report.verdict.is_usable() {
            let job = queue::enqueue(
                &mut tx,
                &NewJob::new(
                    SYNC_JOB,
                    json!({"kind": "full", "reason": "first sync after connection test"}),
                )
                .class(JobClass::Sync)
                .connector(connector)
                .dedupe_key(format!("sync:{connector}")),
            )
            .await
            .map_err(store_err)?;
            let tenant = report
                .tenant
                .as_ref()
                .map(|t| t.display_name.as_str())
                .unwrap_or("the tenant");
            let reason = format!("Connected to {tenant}; the first sync is running.");
            connectors::set_status(&mut tx, connector, "syncing", Some(&reason))
                .await
                .map_err(store_err)?;
            connectors::set_last_sync_job(&mut tx, connector, job.job.id.as_uuid())
                .await
                .map_err(store_err)?;
            tx.commit().await.map_err(store_err)?;
            ctx.info(format!("{} First sync queued.", report.summary))
                .await?;
            Ok(())
        } else {
            let reason = report
                .messages
                .iter()
                .find(|m| m.level == Level::Error)
                .map(|m| m.text.clone())
                .unwrap_or_else(|| report.summary.clone());
            connectors::set_status(&mut tx, connector, "error", Some(&reason))
                .await
                .map_err(store_err)?;
            tx.commit().await.map_err(store_err)?;
            Err(JobError::permanent(reason))
        }
    }
}
