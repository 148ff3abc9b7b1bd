//! From a connector's raw settings to a ready [`GraphClient`]: validates every field (all problems
//! at once, each tied to its field), checks custom hosts' DNS, and wires the safe HTTP client, the
//! token cache and the Graph client together.

use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::auth::{ClientCredentials, TokenProvider};
use crate::endpoints::{ClientBuildError, Endpoints, OutboundPolicy, http_client};
use crate::graph::{GraphClient, RetryPolicy};
use crate::ids::{ClientId, TenantId};

/// The client-secret connector settings as entered (strings straight from the form or API).
#[derive(Clone)]
pub struct ConnectionSettings {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// "Microsoft Graph domain": empty for `graph.microsoft.com`.
    pub graph_domain: Option<String>,
    /// Optional login authority (required for a custom Graph domain).
    pub login_authority: Option<String>,
}

impl fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionSettings")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("graph_domain", &self.graph_domain)
            .field("login_authority", &self.login_authority)
            .finish()
    }
}

/// One refused setting: the REST API field name and a sentence for the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// Settings that cannot be used; nothing should be stored.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{}", .0.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join(" "))]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

impl SettingsError {
    /// The field-level list (empty for a client build failure).
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            SettingsError::Invalid(v) => v,
            SettingsError::Client(_) => &[],
        }
    }
}

/// A connector's live link to its tenant.
#[derive(Debug, Clone)]
pub struct Connection {
    pub endpoints: Endpoints,
    pub tokens: Arc<TokenProvider>,
    pub graph: GraphClient,
}

impl Connection {
    /// Parses every field and reports all problems together (no network access).
    pub fn validate(
        settings: &ConnectionSettings,
        policy: OutboundPolicy,
    ) -> Result<(Endpoints, ClientCredentials), SettingsError> {
        let mut errors = Vec::new();
        let tenant = TenantId::parse(&settings.tenant_id)
            .map_err(|e| {
                errors.push(FieldError {
                    field: "tenant_id",
                    message: e.to_string(),
                })
            })
            .ok();
        let client_id = ClientId::parse(&settings.client_id)
            .map_err(|e| {
                errors.push(FieldError {
                    field: "client_id",
                    message: e.to_string(),
                })
            })
            .ok();
        if settings.client_secret.expose_secret().trim().is_empty() {
            errors.push(FieldError {
                field: "client_secret",
                message: "The client secret is empty: paste the secret's Value from Entra > App registrations > Certificates & secrets.".into(),
            });
        }
        let endpoints = Endpoints::from_settings(
            settings.graph_domain.as_deref(),
            settings.login_authority.as_deref(),
            policy,
        )
        .map_err(|e| {
            errors.push(FieldError {
                field: e.field.api_name(),
                message: e.to_string(),
            })
        })
        .ok();
        match (tenant, client_id, endpoints) {
            (Some(tenant), Some(client_id), Some(endpoints)) if errors.is_empty() => Ok((
                endpoints,
                ClientCredentials {
                    tenant,
                    client_id,
                    client_secret: SecretString::from(
                        settings.client_secret.expose_secret().trim().to_string(),
                    ),
                },
            )),
            _ => Err(SettingsError::Invalid(errors)),
        }
    }

    /// [`Connection::validate`], then the DNS check of custom hosts, then [`Connection::new`].
    pub async fn connect(
        settings: &ConnectionSettings,
        policy: OutboundPolicy,
    ) -> Result<Self, SettingsError> {
        let (endpoints, creds) = Self::validate(settings, policy)?;
        endpoints.check_dns().await.map_err(|e| {
            SettingsError::Invalid(vec![FieldError {
                field: e.field.api_name(),
                message: e.to_string(),
            }])
        })?;
        Ok(Self::new(endpoints, creds, RetryPolicy::default())?)
    }

    /// Wires already-validated parts together. For the OAuth (admin-consent) mode, pass
    /// `ClientCredentials` made of the customer's tenant and Latchkey's own app id and secret.
    pub fn new(
        endpoints: Endpoints,
        creds: ClientCredentials,
        retry: RetryPolicy,
    ) -> Result<Self, ClientBuildError> {
        let http = http_client(endpoints.policy())?;
        let tokens = Arc::new(TokenProvider::new(http.clone(), endpoints.clone(), creds));
        let graph = GraphClient::with_policy(http, tokens.clone(), retry);
        Ok(Connection {
            endpoints,
            tokens,
            graph,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_field_errors_are_reported_together() {
        let s = ConnectionSettings {
            tenant_id: "common".into(),
            client_id: "nope".into(),
            client_secret: SecretString::from(" ".to_string()),
            graph_domain: Some("http://10.0.0.1".into()),
            login_authority: None,
        };
        let err = Connection::validate(&s, OutboundPolicy::STRICT).unwrap_err();
        let fields: Vec<&str> = err.field_errors().iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["tenant_id", "client_id", "client_secret", "graph_domain"]
        );
        assert!(!format!("{s:?}").contains("secret\""));
    }

    #[test]
    fn valid_settings_give_endpoints_and_credentials() {
        let s = ConnectionSettings {
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            client_secret: SecretString::from(" abc~123 ".to_string()),
            graph_domain: Some("graph.microsoft.us".into()),
            login_authority: None,
        };
        let (e, c) = Connection::validate(&s, OutboundPolicy::STRICT).unwrap();
        assert_eq!(e.token_scope(), "https://graph.microsoft.us/.default");
        assert_eq!(c.client_secret.expose_secret(), "abc~123");
    }
}
