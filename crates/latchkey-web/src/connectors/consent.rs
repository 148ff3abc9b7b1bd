//! The browser side of OAuth admin consent: a single-use `state`, bound to the signed-in
//! person's session and the connector and valid for ten minutes, goes to Microsoft and
//! must come back unchanged; then consent is proven with a real token before the connector
//! moves on.

use super::{Actor, ONLY_EDITORS, ServiceError, enqueue_test, may_edit};
use crate::auth::SignedIn;
use crate::state::AppState;
use latchkey_crypto::{random_token, sha256_hex};
use latchkey_entra::consent::ConsentError as CallbackReadError;
use latchkey_entra::onboarding::{
    AuthMode, ConsentError, EntraSettings, admin_consent_url, parse_admin_consent_callback,
    verify_consent,
};
use latchkey_entra::{Cloud, Endpoints};
use latchkey_store::{StoreError, connectors, oauth_states};
use uuid::Uuid;

const STATE_LIFETIME: time::Duration = time::Duration::minutes(10);

pub fn redirect_uri(state: &AppState) -> String {
    format!("{}connectors/oauth/callback", state.config.public_url)
}

/// The connector's endpoints, with the deployment's login authority for Latchkey's app when
/// the connector names none of its own and uses the commercial cloud.
pub fn consent_endpoints(
    state: &AppState,
    settings: &EntraSettings,
) -> Result<Endpoints, latchkey_entra::EndpointError> {
    let own = settings.endpoints(state.config.outbound_policy)?;
    match (
        &state.config.entra_login_authority,
        &settings.login_authority,
        own.cloud(),
    ) {
        (Some(authority), None, Cloud::Global) => Endpoints::from_settings(
            Some(&settings.graph_domain),
            Some(authority.as_str()),
            state.config.outbound_policy,
        ),
        _ => Ok(own),
    }
}

/// Creates a state and returns the tenant's admin-consent URL to redirect to.
pub async fn begin(
    state: &AppState,
    who: &SignedIn,
    connector: Uuid,
) -> Result<String, BeginError> {
    let app = state.config.entra_app.clone().ok_or(BeginError::NoApp)?;
    let actor = Actor {
        org: who.org_id,
        user: Some(who.user_id),
        role: who.role,
    };
    let mut tx = state.store.org_tx(who.org_id).await?;
    let row = connectors::get(&mut tx, connector).await?;
    if !may_edit(&mut tx, &actor, connector).await? {
        return Err(BeginError::Service(ServiceError::Forbidden(ONLY_EDITORS)));
    }
    let settings: EntraSettings = row
        .settings
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or(BeginError::NotOauth)?;
    if settings.auth.mode != AuthMode::Oauth {
        return Err(BeginError::NotOauth);
    }
    let endpoints =
        consent_endpoints(state, &settings).map_err(|e| BeginError::Settings(e.to_string()))?;
    let tenant = settings
        .tenant()
        .map_err(|e| BeginError::Settings(e.to_string()))?;
    let raw_state = random_token(32);
    oauth_states::create(
        &mut tx,
        oauth_states::NewState {
            connector_id: connector,
            user_id: who.user_id.0,
            session_id: who.session_id.0,
            state_hash: &sha256_hex(raw_state.as_bytes()),
            tenant_id: &settings.auth.tenant_id,
            pkce_verifier: None,
            nonce: None,
            expires_at: time::OffsetDateTime::now_utc() + STATE_LIFETIME,
        },
    )
    .await?;
    tx.commit().await?;
    let redirect = url::Url::parse(&redirect_uri(state)).expect("the public URL is a valid base");
    Ok(admin_consent_url(&endpoints, &tenant, app.client_id, &redirect, &raw_state).to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    #[error(
        "Login with Microsoft is not available: this deployment has no Latchkey Entra app configured (LATCHKEY_ENTRA_APP_CLIENT_ID and LATCHKEY_ENTRA_APP_CLIENT_SECRET). Use Client secret instead."
    )]
    NoApp,
    #[error("This connector is not set to OAuth: choose OAuth in its settings first.")]
    NotOauth,
    #[error("The connector's settings cannot be used: {0}")]
    Settings(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for BeginError {
    fn from(e: StoreError) -> Self {
        BeginError::Service(e.into())
    }
}

/// Why a callback was refused, for the page that explains it.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error(
        "This consent link is not one Latchkey issued (or it was altered). Start again from the connector's page with Login with Microsoft."
    )]
    UnknownState,
    #[error(
        "This consent link was already used. If consent went through, the connector page shows it; otherwise start again with Login with Microsoft."
    )]
    Replayed,
    #[error(
        "This consent link expired (they last ten minutes). Start again with Login with Microsoft."
    )]
    Expired,
    #[error(
        "This consent was started in another browser session. Sign in as the person who clicked Login with Microsoft, or start again here."
    )]
    OtherSession,
    #[error("{0}")]
    Consent(ConsentError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for CallbackError {
    fn from(e: StoreError) -> Self {
        CallbackError::Service(e.into())
    }
}

/// The `state` of a consent callback's query string (the first one; empty counts as none).
pub fn callback_state(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// Handles the redirect back from Microsoft. On success the connector is tested and synced.
pub async fn complete(
    state: &AppState,
    who: &SignedIn,
    query: &str,
) -> Result<Uuid, (Option<Uuid>, CallbackError)> {
    // The state is checked first, whatever else the callback says: an answer to a consent
    // Latchkey did not start for this session is not read any further.
    let Some(raw) = callback_state(query) else {
        return Err((None, CallbackError::UnknownState));
    };
    let st = match oauth_states::consume(&state.store, &sha256_hex(raw.as_bytes())).await {
        Ok(s) => s,
        Err(StoreError::NotFound) => return Err((None, CallbackError::UnknownState)),
        Err(e) => return Err((None, e.into())),
    };
    let connector = st.connector_id;
    // The state must belong to this very session (and so organization and person).
    if st.org_id != who.org_id.0 || st.session_id != who.session_id.0 || st.user_id != who.user_id.0
    {
        return Err((None, CallbackError::OtherSession));
    }
    if st.already_used {
        return Err((Some(connector), CallbackError::Replayed));
    }
    if st.expired {
        return Err((Some(connector), CallbackError::Expired));
    }
    let fail = |e: CallbackError| (Some(connector), e);
    let outcome = async {
        let cb =
            parse_admin_consent_callback(query).map_err(|e| CallbackError::Consent(e.into()))?;
        let claimed = cb
            .tenant
            .clone()
            .ok_or(CallbackError::Consent(ConsentError::Callback(
                CallbackReadError::Incomplete,
            )))?;
        let app = state
            .config
            .entra_app
            .clone()
            .ok_or(CallbackError::Consent(ConsentError::NotVerified(
                "this deployment has no Latchkey Entra app configured.".into(),
            )))?;
        let mut tx = state.store.org_tx(who.org_id).await?;
        let row = connectors::get(&mut tx, connector).await?;
        tx.commit().await?;
        let settings: EntraSettings = row
            .settings
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or(CallbackError::Consent(ConsentError::Callback(
                CallbackReadError::Incomplete,
            )))?;
        let endpoints = consent_endpoints(state, &settings)
            .map_err(|e| CallbackError::Consent(ConsentError::NotVerified(e.to_string())))?;
        let entered = settings
            .tenant()
            .map_err(|e| CallbackError::Consent(ConsentError::NotVerified(e.to_string())))?;
        // The settings may have changed since the consent started; the state remembers the tenant.
        if st.tenant_id != settings.auth.tenant_id {
            return Err(CallbackError::Consent(ConsentError::WrongTenant {
                expected: settings.auth.tenant_id.clone(),
                got: st.tenant_id.clone(),
            }));
        }
        verify_consent(&endpoints, &entered, &claimed, &app)
            .await
            .map_err(CallbackError::Consent)
    }
    .await;
    let mut tx = state
        .store
        .org_tx(who.org_id)
        .await
        .map_err(|e| fail(e.into()))?;
    match outcome {
        Ok(consent) => {
            tracing::info!(connector_id = %connector, tenant = %consent.tenant_guid, "admin consent verified");
            enqueue_test(&mut tx, connector)
                .await
                .map_err(|e| fail(e.into()))?;
            tx.commit().await.map_err(|e| fail(e.into()))?;
            Ok(connector)
        }
        Err(e) => {
            let reason = format!("Admin consent did not complete: {e}");
            connectors::set_status(&mut tx, connector, "pending_consent", Some(&reason))
                .await
                .map_err(|e| fail(e.into()))?;
            tx.commit().await.map_err(|e| fail(e.into()))?;
            Err(fail(e))
        }
    }
}
