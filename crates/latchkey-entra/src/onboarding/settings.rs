//! What an Entra connector stores as settings, and turning raw input into it.

use crate::connection::{ConnectionSettings, FieldError};
use crate::endpoints::{Endpoints, OutboundPolicy};
use crate::ids::{ClientId, TenantId};
use crate::probe::ProbeOptions;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// The customer's own app registration: tenant, client id and client secret.
    ClientSecret,
    /// Admin consent to Latchkey's multi-tenant app ("Login with Microsoft").
    Oauth,
}

/// How the connector authenticates, without the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub tenant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The settings stored in `connectors.settings` (no secret, ever).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntraSettings {
    pub auth: AuthSettings,
    /// Host of Microsoft Graph (`graph.microsoft.com`, a national cloud, or in development a full URL).
    pub graph_domain: String,
    #[serde(default)]
    pub login_authority: Option<String>,
    #[serde(default)]
    pub provisioning: bool,
    #[serde(default)]
    pub skip_ad_groups: bool,
    #[serde(default)]
    pub fetch_sign_in_activity: bool,
    #[serde(default)]
    pub schedule_scim_provisioning: bool,
    #[serde(default)]
    pub disable_audit_feed: bool,
    /// Deprovisioning may also delete the account when asked to (off: it only disables
    /// sign-in and revokes sessions). Needs provisioning.
    #[serde(default)]
    pub allow_account_deletion: bool,
}

impl EntraSettings {
    pub fn probe_options(&self) -> ProbeOptions {
        ProbeOptions {
            provisioning: self.provisioning,
            fetch_sign_in_activity: self.fetch_sign_in_activity,
            schedule_scim_provisioning: self.schedule_scim_provisioning,
            disable_audit_feed: self.disable_audit_feed,
        }
    }

    pub fn endpoints(&self, policy: OutboundPolicy) -> Result<Endpoints, crate::EndpointError> {
        Endpoints::from_settings(
            Some(&self.graph_domain),
            self.login_authority.as_deref(),
            policy,
        )
    }

    pub fn tenant(&self) -> Result<TenantId, crate::IdError> {
        TenantId::parse(&self.auth.tenant_id)
    }
}

/// Raw settings as they arrive from the REST API or the form.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct SettingsInput {
    #[serde(default)]
    pub auth: Option<AuthInput>,
    #[serde(default)]
    pub graph_domain: Option<String>,
    #[serde(default)]
    pub login_authority: Option<String>,
    #[serde(default)]
    pub provisioning: Option<bool>,
    #[serde(default)]
    pub skip_ad_groups: Option<bool>,
    #[serde(default)]
    pub fetch_sign_in_activity: Option<bool>,
    #[serde(default)]
    pub schedule_scim_provisioning: Option<bool>,
    #[serde(default)]
    pub disable_audit_feed: Option<bool>,
    #[serde(default)]
    pub allow_account_deletion: Option<bool>,
}

#[derive(Clone, Default, Deserialize)]
pub struct AuthInput {
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<SecretString>,
}

impl std::fmt::Debug for AuthInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthInput")
            .field("mode", &self.mode)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Valid settings, plus a new secret when one was entered.
#[derive(Debug)]
pub struct Validated {
    pub settings: EntraSettings,
    pub new_secret: Option<SecretString>,
}

fn problem(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Validates `input` on top of `current` (a PATCH changes only what it names). A client
/// secret is required for client-secret mode unless one is already stored
/// (`secret_stored`): a new secret replaces the old one. Every problem is reported at once.
pub fn validate(
    input: &SettingsInput,
    current: Option<&EntraSettings>,
    secret_stored: bool,
    policy: OutboundPolicy,
) -> Result<Validated, Vec<FieldError>> {
    let auth_in = input.auth.clone().unwrap_or_default();
    // No id, host or secret holds a NUL character, and Postgres text cannot store one: refuse
    // it by name before anything else looks at the values (or echoes them into a message).
    let texts = [
        ("auth.mode", auth_in.mode.as_deref()),
        ("auth.tenant_id", auth_in.tenant_id.as_deref()),
        ("auth.client_id", auth_in.client_id.as_deref()),
        (
            "auth.client_secret",
            auth_in.client_secret.as_ref().map(|s| s.expose_secret()),
        ),
        ("graph_domain", input.graph_domain.as_deref()),
        ("login_authority", input.login_authority.as_deref()),
    ];
    let nul: Vec<FieldError> = texts
        .iter()
        .filter(|(_, v)| v.is_some_and(|v| v.contains('\0')))
        .map(|(field, _)| problem(field, "may not contain NUL characters"))
        .collect();
    if !nul.is_empty() {
        return Err(nul);
    }
    let mut errors = Vec::new();
    let mode_raw = auth_in.mode.clone().or_else(|| {
        current.map(|c| match c.auth.mode {
            AuthMode::ClientSecret => "client_secret".to_string(),
            AuthMode::Oauth => "oauth".to_string(),
        })
    });
    let mode = match mode_raw.as_deref() {
        Some("client_secret") => Some(AuthMode::ClientSecret),
        Some("oauth") => Some(AuthMode::Oauth),
        Some(other) => {
            errors.push(problem(
                "auth.mode",
                format!("unknown mode {other:?}: choose client_secret or oauth"),
            ));
            None
        }
        None => {
            errors.push(problem(
                "auth.mode",
                "choose how to connect: client_secret or oauth",
            ));
            None
        }
    };
    let same_mode = current.is_some_and(|c| Some(c.auth.mode) == mode);
    let tenant_raw = auth_in
        .tenant_id
        .clone()
        .or_else(|| {
            current
                .filter(|_| same_mode)
                .map(|c| c.auth.tenant_id.clone())
        })
        .unwrap_or_default();
    let graph_domain = input
        .graph_domain
        .clone()
        .or_else(|| current.map(|c| c.graph_domain.clone()))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "graph.microsoft.com".to_string());
    let login_authority = match &input.login_authority {
        Some(l) => Some(l.trim().to_string()).filter(|s| !s.is_empty()),
        None => current.and_then(|c| c.login_authority.clone()),
    };
    let flag = |new: Option<bool>, old: fn(&EntraSettings) -> bool| {
        new.or_else(|| current.map(old)).unwrap_or(false)
    };
    let provisioning = flag(input.provisioning, |c| c.provisioning);
    let skip_ad_groups = flag(input.skip_ad_groups, |c| c.skip_ad_groups);
    let fetch_sign_in_activity = flag(input.fetch_sign_in_activity, |c| c.fetch_sign_in_activity);
    let schedule_scim_provisioning = flag(input.schedule_scim_provisioning, |c| {
        c.schedule_scim_provisioning
    });
    let disable_audit_feed = flag(input.disable_audit_feed, |c| c.disable_audit_feed);
    let allow_account_deletion = flag(input.allow_account_deletion, |c| c.allow_account_deletion);
    if allow_account_deletion && !provisioning {
        errors.push(problem(
            "allow_account_deletion",
            "deleting accounts is part of provisioning: turn on Provisioning too, or leave this off",
        ));
    }

    let mut client_id = None;
    let mut new_secret = None;
    match mode {
        Some(AuthMode::ClientSecret) => {
            let client_raw = auth_in
                .client_id
                .clone()
                .or_else(|| {
                    current
                        .filter(|_| same_mode)
                        .and_then(|c| c.auth.client_id.clone())
                })
                .unwrap_or_default();
            let secret = auth_in
                .client_secret
                .clone()
                .filter(|s| !s.expose_secret().trim().is_empty());
            let keep_stored = secret.is_none() && secret_stored && same_mode;
            // The client-secret rules (ids, secret, hosts) live in one place: Connection::validate.
            let probe_secret = secret.clone().unwrap_or_else(|| {
                SecretString::from(if keep_stored {
                    "stored".to_string()
                } else {
                    String::new()
                })
            });
            let conn = ConnectionSettings {
                tenant_id: tenant_raw.clone(),
                client_id: client_raw.clone(),
                client_secret: probe_secret,
                graph_domain: Some(graph_domain.clone()),
                login_authority: login_authority.clone(),
            };
            if let Err(e) = crate::Connection::validate(&conn, policy) {
                errors.extend(e.field_errors().iter().map(|f| FieldError {
                    field: match f.field {
                        "tenant_id" => "auth.tenant_id",
                        "client_id" => "auth.client_id",
                        "client_secret" => "auth.client_secret",
                        other => other,
                    },
                    message: f.message.clone(),
                }));
            }
            client_id = ClientId::parse(&client_raw)
                .ok()
                .map(|c| c.as_uuid().to_string());
            new_secret = secret.map(|s| SecretString::from(s.expose_secret().trim().to_string()));
        }
        Some(AuthMode::Oauth) => {
            if let Err(e) = TenantId::parse(&tenant_raw) {
                errors.push(problem("auth.tenant_id", e.to_string()));
            }
            if auth_in.client_secret.is_some() || auth_in.client_id.is_some() {
                errors.push(problem(
                    "auth.client_secret",
                    "OAuth connectors use Latchkey's own app: leave client ID and client secret out (or choose client_secret mode)",
                ));
            }
            if let Err(e) =
                Endpoints::from_settings(Some(&graph_domain), login_authority.as_deref(), policy)
            {
                errors.push(problem(e.field.api_name(), e.to_string()));
            }
        }
        None => {}
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let tenant_id = TenantId::parse(&tenant_raw)
        .map(|t| t.as_segment())
        .unwrap_or(tenant_raw);
    Ok(Validated {
        settings: EntraSettings {
            auth: AuthSettings {
                mode: mode.expect("checked above"),
                tenant_id,
                client_id,
            },
            graph_domain,
            login_authority,
            provisioning,
            skip_ad_groups,
            fetch_sign_in_activity,
            schedule_scim_provisioning,
            disable_audit_feed,
            allow_account_deletion,
        },
        new_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_input(tenant: &str, client: &str, secret: Option<&str>) -> SettingsInput {
        SettingsInput {
            auth: Some(AuthInput {
                mode: Some("client_secret".into()),
                tenant_id: Some(tenant.into()),
                client_id: Some(client.into()),
                client_secret: secret.map(|s| SecretString::from(s.to_string())),
            }),
            ..Default::default()
        }
    }

    const GUID: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn client_secret_settings_validate_and_never_hold_the_secret() {
        let v = validate(
            &secret_input(GUID, GUID, Some(" s3cret ")),
            None,
            false,
            OutboundPolicy::STRICT,
        )
        .unwrap();
        assert_eq!(v.settings.auth.mode, AuthMode::ClientSecret);
        assert_eq!(v.settings.graph_domain, "graph.microsoft.com");
        assert_eq!(v.new_secret.unwrap().expose_secret(), "s3cret");
        let json = serde_json::to_string(&v.settings).unwrap();
        assert!(!json.contains("s3cret"));
    }

    #[test]
    fn nul_characters_are_refused_by_field() {
        let mut input = secret_input(
            GUID,
            "1111\u{0}1111-2222-3333-4444-555555555555",
            Some("a\u{0}b"),
        );
        input.graph_domain = Some("graph.microsoft.com\u{0}".into());
        let errors = validate(&input, None, false, OutboundPolicy::STRICT).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["auth.client_id", "auth.client_secret", "graph_domain"]
        );
        assert!(errors.iter().all(|e| !e.message.contains('\0')));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let mut input = secret_input("common", "nope", None);
        input.graph_domain = Some("http://169.254.169.254".into());
        let errs = validate(&input, None, false, OutboundPolicy::STRICT).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field).collect();
        assert!(fields.contains(&"auth.tenant_id"), "{errs:?}");
        assert!(fields.contains(&"auth.client_id"));
        assert!(fields.contains(&"auth.client_secret"));
        assert!(fields.contains(&"graph_domain"));
        let tenant_msg = &errs
            .iter()
            .find(|e| e.field == "auth.tenant_id")
            .unwrap()
            .message;
        assert!(tenant_msg.contains("common"), "{tenant_msg}");
    }

    #[test]
    fn a_stored_secret_is_kept_when_none_is_entered() {
        let first = validate(
            &secret_input(GUID, GUID, Some("s1")),
            None,
            false,
            OutboundPolicy::STRICT,
        )
        .unwrap()
        .settings;
        let patch = SettingsInput {
            provisioning: Some(true),
            ..Default::default()
        };
        let v = validate(&patch, Some(&first), true, OutboundPolicy::STRICT).unwrap();
        assert!(v.new_secret.is_none());
        assert!(v.settings.provisioning);
        assert_eq!(v.settings.auth.tenant_id, GUID);
        // Without a stored secret the same patch is refused.
        assert!(validate(&patch, Some(&first), false, OutboundPolicy::STRICT).is_err());
    }

    #[test]
    fn oauth_needs_only_a_tenant() {
        let input = SettingsInput {
            auth: Some(AuthInput {
                mode: Some("oauth".into()),
                tenant_id: Some("contoso.onmicrosoft.com".into()),
                ..Default::default()
            }),
            fetch_sign_in_activity: Some(true),
            ..Default::default()
        };
        let v = validate(&input, None, false, OutboundPolicy::STRICT).unwrap();
        assert_eq!(v.settings.auth.mode, AuthMode::Oauth);
        assert!(v.settings.auth.client_id.is_none());
        assert!(v.settings.fetch_sign_in_activity);
        let bad = SettingsInput {
            auth: Some(AuthInput {
                mode: Some("oauth".into()),
                tenant_id: Some("organizations".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            validate(&bad, None, false, OutboundPolicy::STRICT).unwrap_err()[0].field,
            "auth.tenant_id"
        );
    }

    #[test]
    fn account_deletion_is_off_by_default_and_needs_provisioning() {
        let v = validate(
            &secret_input(GUID, GUID, Some("s")),
            None,
            false,
            OutboundPolicy::STRICT,
        )
        .unwrap();
        assert!(!v.settings.allow_account_deletion);
        let mut input = secret_input(GUID, GUID, Some("s"));
        input.allow_account_deletion = Some(true);
        let errs = validate(&input, None, false, OutboundPolicy::STRICT).unwrap_err();
        assert_eq!(errs[0].field, "allow_account_deletion");
        assert!(errs[0].message.contains("Provisioning"), "{errs:?}");
        input.provisioning = Some(true);
        let v = validate(&input, None, false, OutboundPolicy::STRICT).unwrap();
        assert!(v.settings.allow_account_deletion);
        // A patch keeps it, and turning provisioning off while it is on is refused.
        let off = SettingsInput {
            provisioning: Some(false),
            ..Default::default()
        };
        assert!(validate(&off, Some(&v.settings), true, OutboundPolicy::STRICT).is_err());
        let both_off = SettingsInput {
            provisioning: Some(false),
            allow_account_deletion: Some(false),
            ..Default::default()
        };
        let v = validate(&both_off, Some(&v.settings), true, OutboundPolicy::STRICT).unwrap();
        assert!(!v.settings.allow_account_deletion);
    }

    #[test]
    fn development_urls_need_the_insecure_policy() {
        let mut input = secret_input(GUID, GUID, Some("s"));
        input.graph_domain = Some("http://127.0.0.1:4000".into());
        assert!(validate(&input, None, false, OutboundPolicy::STRICT).is_err());
        let v = validate(&input, None, false, OutboundPolicy::INSECURE_DEV).unwrap();
        assert_eq!(v.settings.graph_domain, "http://127.0.0.1:4000");
    }
}
