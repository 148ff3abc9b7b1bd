//! Connector onboarding as a service shared by the pages and the REST API: create a
//! connector (app, owners, settings), change its settings (a new secret replaces the old),
//! start and complete OAuth admin consent, test the connection, disable it. Each operation
//! checks who may do it and what is valid before anything is stored.

pub mod consent;
pub mod view;

use crate::error::{ApiError, FieldError, WebError};
use crate::state::AppState;
use latchkey_core::{OrgId, Role, UserId};
use latchkey_crypto::SecretString;
use latchkey_entra::onboarding::connection_test::secret_ref;
use latchkey_entra::onboarding::{AuthMode, CONNECTION_TEST_JOB, EntraSettings, SettingsInput};
use latchkey_store::jobs::{self as queue, NewJob};
use latchkey_store::{OrgTx, StoreError, apps, connectors, outbox, secrets, users};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

pub use view::{ConnectorView, connector_view};

/// Who is acting: a signed-in person or an API client.
#[derive(Clone, Copy, Debug)]
pub struct Actor {
    pub org: OrgId,
    pub user: Option<UserId>,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ServiceError::NotFound,
            other => ServiceError::Store(other),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound => ApiError::not_found(),
            ServiceError::Forbidden(why) => ApiError::forbidden(why),
            ServiceError::Invalid(fields) => ApiError::validation(fields),
            ServiceError::Store(e) => e.into(),
        }
    }
}

impl From<ServiceError> for WebError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound => WebError::NotFound,
            ServiceError::Forbidden(why) => WebError::Forbidden(why),
            ServiceError::Invalid(fields) => WebError::BadRequest(
                fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            ServiceError::Store(e) => e.into(),
        }
    }
}

pub const ONLY_CONNECTOR_ADMINS: &str =
    "Only Super Administrators and Connector Administrators can add connectors.";
pub const ONLY_EDITORS: &str = "Only Super Administrators, Connector Administrators and this connector's owners can change it.";

fn field(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Validates settings and, for custom hosts, that they resolve to public addresses only
/// (the HTTP client checks again at connect time, against DNS rebinding).
async fn validate_settings(
    state: &AppState,
    input: &SettingsInput,
    current: Option<&EntraSettings>,
    secret_stored: bool,
) -> Result<latchkey_entra::onboarding::Validated, Vec<FieldError>> {
    let prefix = |f: &str| format!("settings.{f}");
    let v = latchkey_entra::onboarding::validate(
        input,
        current,
        secret_stored,
        state.config.outbound_policy,
    )
    .map_err(|errs| {
        errs.into_iter()
            .map(|e| field(&prefix(e.field), e.message))
            .collect::<Vec<_>>()
    })?;
    let endpoints = v
        .settings
        .endpoints(state.config.outbound_policy)
        .map_err(|e| vec![field(&prefix(e.field.api_name()), e.to_string())])?;
    endpoints
        .check_dns()
        .await
        .map_err(|e| vec![field(&prefix(e.field.api_name()), e.to_string())])?;
    Ok(v)
}

/// How a new connector is attached to an app.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppChoice {
    New { name: String },
    ManagedAppId(Uuid),
    DiscoveredAppId(Uuid),
}

#[derive(Debug, Clone)]
pub struct CreateConnector {
    pub display_name: String,
    pub app: AppChoice,
    /// `None`: the acting person (if any).
    pub owners: Option<Vec<Uuid>>,
    pub settings: Option<SettingsInput>,
    /// `entra` (hosted) or `self_hosted` (the connector runs in the customer's environment).
    pub kind: ConnectorKind,
}

/// Where a connector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// Hosted by Latchkey, with the tenant's credentials in Latchkey.
    #[default]
    Entra,
    /// Run by the customer (`latchkey connector`); Latchkey never holds the tenant's credentials.
    SelfHosted,
}

impl ConnectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Entra => "entra",
            ConnectorKind::SelfHosted => crate::connector_agent::SELF_HOSTED,
        }
    }
}

/// What a settings change asks of the person next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// A connection test job was queued.
    Testing { job_id: Uuid },
    /// OAuth: the tenant's admin must consent (the link starts that in the browser).
    Consent { consent_url: String },
}

pub async fn may_edit(
    tx: &mut OrgTx,
    actor: &Actor,
    connector: Uuid,
) -> Result<bool, ServiceError> {
    if actor.role.can_manage_connectors() {
        return Ok(true);
    }
    match actor.user {
        Some(u) => Ok(connectors::is_owner(tx, connector, u).await?),
        None => Ok(false),
    }
}

pub async fn create(
    state: &AppState,
    actor: &Actor,
    req: CreateConnector,
) -> Result<(Uuid, Option<NextStep>), ServiceError> {
    if !actor.role.can_manage_connectors() {
        return Err(ServiceError::Forbidden(ONLY_CONNECTOR_ADMINS));
    }
    let mut errors = vec![];
    let display_name = req.display_name.trim().to_string();
    if display_name.is_empty() || display_name.chars().count() > 200 {
        errors.push(field(
            "display_name",
            "enter a name for the connector (1 to 200 characters)",
        ));
    }
    if req.kind == ConnectorKind::SelfHosted && req.settings.is_some() {
        errors.push(field(
            "settings",
            "a self-hosted connector takes its Entra settings from its own environment; create it without settings, then rotate its credentials",
        ));
    }
    // Validate settings up front so a rejected request stores nothing.
    let validated = match req
        .settings
        .as_ref()
        .filter(|_| req.kind == ConnectorKind::Entra)
    {
        Some(input) => match validate_settings(state, input, None, false).await {
            Ok(v) => Some(v),
            Err(errs) => {
                errors.extend(errs);
                None
            }
        },
        None => None,
    };
    let mut tx = state.store.org_tx(actor.org).await?;
    let app_id = match &req.app {
        AppChoice::New { name } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 200 {
                errors.push(field(
                    "app.new.name",
                    "enter a name for the new app (1 to 200 characters)",
                ));
                None
            } else {
                Some(AppTarget::New(name.to_string()))
            }
        }
        AppChoice::ManagedAppId(id) => match apps::get(&mut tx, *id).await {
            Ok(a) if a.kind == "managed" => Some(AppTarget::Existing(a.id)),
            _ => {
                errors.push(field(
                    "app.managed_app_id",
                    "no managed app with this id in your organization",
                ));
                None
            }
        },
        AppChoice::DiscoveredAppId(id) => match apps::get(&mut tx, *id).await {
            Ok(a) if a.kind == "discovered" => Some(AppTarget::Discovered(a.id)),
            _ => {
                errors.push(field(
                    "app.discovered_app_id",
                    "no discovered (unmanaged) app with this id in your organization",
                ));
                None
            }
        },
    };
    let owners: Vec<UserId> = match &req.owners {
        Some(ids) => ids.iter().copied().map(UserId).collect(),
        None => actor.user.into_iter().collect(),
    };
    for o in &owners {
        if users::get(&mut tx, *o).await.is_err() {
            errors.push(field(
                "owners",
                format!("{} is not a person in your organization", o.0),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    let app_id = match app_id.expect("validated") {
        AppTarget::New(name) => apps::create_managed(&mut tx, &name).await?.id,
        AppTarget::Existing(id) => id,
        AppTarget::Discovered(id) => apps::adopt(&mut tx, id).await?.id,
    };
    let connector = connectors::create(
        &mut tx,
        connectors::NewConnector {
            app_id,
            kind: req.kind.as_str(),
            display_name: &display_name,
            created_by: actor.user,
        },
    )
    .await?;
    connectors::set_owners(&mut tx, connector.id, &owners).await?;
    if req.kind == ConnectorKind::SelfHosted {
        connectors::set_status(
            &mut tx,
            connector.id,
            "setup_required",
            Some("Open Settings and click Rotate to get the connector's client ID and secret, then deploy it in your environment."),
        )
        .await?;
    }
    notify_new_owners(state, &mut tx, actor, connector.id, &display_name, &owners).await?;
    let next = match validated {
        Some(v) => {
            Some(apply_settings(state, &mut tx, connector.id, v.settings, v.new_secret).await?)
        }
        None => None,
    };
    tx.commit().await?;
    tracing::info!(connector_id = %connector.id, "connector created");
    Ok((connector.id, next))
}

enum AppTarget {
    New(String),
    Existing(Uuid),
    Discovered(Uuid),
}

/// Emails owners other than the actor that their help is needed to finish setup.
async fn notify_new_owners(
    state: &AppState,
    tx: &mut OrgTx,
    actor: &Actor,
    connector: Uuid,
    name: &str,
    owners: &[UserId],
) -> Result<(), ServiceError> {
    let by = match actor.user {
        Some(u) => users::get(tx, u)
            .await
            .map(|u| u.display_name)
            .unwrap_or_else(|_| "An administrator".into()),
        None => "An administrator (through the API)".into(),
    };
    let link = format!("{}connectors/{connector}", state.config.public_url);
    for owner in owners.iter().filter(|o| Some(**o) != actor.user) {
        let user = users::get(tx, *owner).await?;
        let body = format!(
            "Hello {},\n\n{by} made you an owner of the connector \"{name}\" in Latchkey. Your help is needed to finish its setup: open {link} and complete its settings.\n\n— Latchkey",
            user.display_name
        );
        outbox::enqueue(
            tx,
            &user.email,
            &format!("Your help is needed to finish setting up \"{name}\""),
            &body,
        )
        .await?;
    }
    if owners.iter().any(|o| Some(*o) != actor.user) {
        queue::enqueue(
            tx,
            &NewJob::new(EMAIL_JOB, json!({})).dedupe_key("email:deliver"),
        )
        .await?;
    }
    Ok(())
}

/// The job that delivers the outbox.
pub const EMAIL_JOB: &str = "email.deliver";

/// Stores validated settings (and a new secret) and starts what comes next.
async fn apply_settings(
    state: &AppState,
    tx: &mut OrgTx,
    connector: Uuid,
    settings: EntraSettings,
    new_secret: Option<SecretString>,
) -> Result<NextStep, ServiceError> {
    connectors::set_settings(
        tx,
        connector,
        &serde_json::to_value(&settings).expect("settings serialise"),
    )
    .await?;
    match settings.auth.mode {
        AuthMode::ClientSecret => {
            if let Some(secret) = new_secret {
                secrets::put(tx, &state.keys, secret_ref(connector), &secret).await?;
                connectors::set_secret_meta(
                    tx,
                    connector,
                    Some(time::OffsetDateTime::now_utc()),
                    None,
                )
                .await?;
            }
            let job_id = enqueue_test(tx, connector).await?;
            Ok(NextStep::Testing { job_id })
        }
        AuthMode::Oauth => {
            // Switching to OAuth drops any stored client secret: it would never be used again.
            secrets::delete(tx, secret_ref(connector)).await?;
            connectors::set_secret_meta(tx, connector, None, None).await?;
            connectors::set_status(
                tx,
                connector,
                "pending_consent",
                Some("Waiting for admin consent: click Login with Microsoft and approve Latchkey for the tenant."),
            )
            .await?;
            Ok(NextStep::Consent {
                consent_url: format!("{}connectors/{connector}/consent", state.config.public_url),
            })
        }
    }
}

/// Queues a connection test and shows *Syncing* until it reports.
///
/// Every call queues a new test, never reusing one already queued or running: a test that is
/// running may have read the settings this transaction replaces. The connector remembers its
/// latest test, and only that one reports (an older test finds it was replaced and stops).
pub async fn enqueue_test(tx: &mut OrgTx, connector: Uuid) -> Result<Uuid, ServiceError> {
    let job = queue::enqueue(
        tx,
        &NewJob::new(CONNECTION_TEST_JOB, json!({}))
            .connector(connector)
            .max_attempts(4),
    )
    .await?;
    connectors::set_status(
        tx,
        connector,
        "syncing",
        Some("Testing the connection to Microsoft Entra ID…"),
    )
    .await?;
    connectors::set_last_test_job(tx, connector, job.job.id.as_uuid()).await?;
    Ok(job.job.id.as_uuid())
}

/// Changes settings (a PATCH: only what the input names). A new secret replaces the old.
pub async fn update_settings(
    state: &AppState,
    actor: &Actor,
    connector: Uuid,
    input: &SettingsInput,
) -> Result<NextStep, ServiceError> {
    let mut tx = state.store.org_tx(actor.org).await?;
    let row = connectors::get(&mut tx, connector).await?;
    if !may_edit(&mut tx, actor, connector).await? {
        return Err(ServiceError::Forbidden(ONLY_EDITORS));
    }
    if row.status == "disabled" {
        return Err(ServiceError::Invalid(vec![field(
            "status",
            "this connector is disabled; add a new connector instead",
        )]));
    }
    if row.kind == crate::connector_agent::SELF_HOSTED {
        return Err(ServiceError::Invalid(vec![field(
            "settings",
            "a self-hosted connector takes its Entra settings from its own environment (see deploy/kubernetes)",
        )]));
    }
    let current: Option<EntraSettings> = row.settings.and_then(|v| serde_json::from_value(v).ok());
    let stored = secrets::exists(&mut tx, secret_ref(connector)).await?;
    let validated = validate_settings(state, input, current.as_ref(), stored)
        .await
        .map_err(ServiceError::Invalid)?;
    let next = apply_settings(
        state,
        &mut tx,
        connector,
        validated.settings,
        validated.new_secret,
    )
    .await?;
    tx.commit().await?;
    Ok(next)
}

pub async fn set_display_name(
    state: &AppState,
    actor: &Actor,
    connector: Uuid,
    name: &str,
) -> Result<(), ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ServiceError::Invalid(vec![field(
            "display_name",
            "enter a name for the connector (1 to 200 characters)",
        )]));
    }
    let mut tx = state.store.org_tx(actor.org).await?;
    connectors::get(&mut tx, connector).await?;
    if !may_edit(&mut tx, actor, connector).await? {
        return Err(ServiceError::Forbidden(ONLY_EDITORS));
    }
    connectors::set_display_name(&mut tx, connector, name).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn set_owners(
    state: &AppState,
    actor: &Actor,
    connector: Uuid,
    owners: &[Uuid],
) -> Result<(), ServiceError> {
    let mut tx = state.store.org_tx(actor.org).await?;
    let row = connectors::get(&mut tx, connector).await?;
    if !may_edit(&mut tx, actor, connector).await? {
        return Err(ServiceError::Forbidden(ONLY_EDITORS));
    }
    let before: Vec<Uuid> = connectors::owners(&mut tx, connector)
        .await?
        .into_iter()
        .map(|o| o.user_id)
        .collect();
    let ids: Vec<UserId> = owners.iter().copied().map(UserId).collect();
    match connectors::set_owners(&mut tx, connector, &ids).await {
        Err(StoreError::Conflict { .. }) => {
            return Err(ServiceError::Invalid(vec![field(
                "owners",
                "every owner must be a person in your organization",
            )]));
        }
        other => other?,
    }
    let added: Vec<UserId> = ids
        .iter()
        .copied()
        .filter(|u| !before.contains(&u.0))
        .collect();
    notify_new_owners(state, &mut tx, actor, connector, &row.display_name, &added).await?;
    tx.commit().await?;
    Ok(())
}

/// Re-runs the connection test.
pub async fn test_again(
    state: &AppState,
    actor: &Actor,
    connector: Uuid,
) -> Result<Uuid, ServiceError> {
    let mut tx = state.store.org_tx(actor.org).await?;
    let row = connectors::get(&mut tx, connector).await?;
    if !may_edit(&mut tx, actor, connector).await? {
        return Err(ServiceError::Forbidden(ONLY_EDITORS));
    }
    if row.kind == crate::connector_agent::SELF_HOSTED {
        return Err(ServiceError::Invalid(vec![field(
            "kind",
            "a self-hosted connector tests its own connection: check that it is online (its last heartbeat)",
        )]));
    }
    if row.settings.is_none() || row.status == "disabled" || row.status == "pending_consent" {
        return Err(ServiceError::Invalid(vec![field(
            "status",
            "finish the settings (and consent) before testing",
        )]));
    }
    let job = enqueue_test(&mut tx, connector).await?;
    tx.commit().await?;
    Ok(job)
}

/// Disables the connector and removes its credentials.
pub async fn disable(state: &AppState, actor: &Actor, connector: Uuid) -> Result<(), ServiceError> {
    let mut tx = state.store.org_tx(actor.org).await?;
    connectors::get(&mut tx, connector).await?;
    if !may_edit(&mut tx, actor, connector).await? {
        return Err(ServiceError::Forbidden(ONLY_EDITORS));
    }
    secrets::delete(&mut tx, secret_ref(connector)).await?;
    connectors::disable(&mut tx, connector).await?;
    tx.commit().await?;
    tracing::info!(connector_id = %connector, "connector disabled");
    Ok(())
}
