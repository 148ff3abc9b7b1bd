//! Entra accounts: create one with a strong generated password that must be changed at first
//! sign-in, and deprovision one (disable sign-in, revoke its sessions, delete only when asked).
//!
//! Building blocks for the account tasks: storing the password in the vault, the task table
//! and the API (`POST /connectors/{id}/accounts`) are not wired yet.

use http::Method;
use latchkey_crypto::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::graph::{GraphClient, GraphError, Query};

/// What a new account is made of. `user_principal_name` must use a verified domain.
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    pub user_principal_name: String,
    pub display_name: String,
    pub mail_nickname: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub department: Option<String>,
    pub job_title: Option<String>,
    pub employee_id: Option<String>,
    /// Two-letter country code (needed before licences can be assigned).
    pub usage_location: Option<String>,
}

/// A created account and its initial password (shown once, through the vault).
#[derive(Debug)]
pub struct CreatedAccount {
    pub id: Uuid,
    pub user_principal_name: String,
    pub password: SecretString,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error(
        "An account with the user principal name {0} already exists in the tenant: choose another name, or manage the existing account."
    )]
    DuplicateUpn(String),
    #[error(
        "{0} does not use one of the tenant's verified domains: use a domain listed in Entra > Custom domain names."
    )]
    UnverifiedDomain(String),
    #[error(
        "Entra refused the generated password as not complex enough (its password policy may be stricter than usual); try again, or check the tenant's password protection settings."
    )]
    WeakPassword,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// A random password of 192 bits that meets Entra's complexity rules (all four character
/// classes, well over 8 characters).
pub fn generate_password() -> SecretString {
    SecretString::from(format!("{}-Aa1", latchkey_crypto::random_token(24)))
}

fn put(body: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        body.insert(key.into(), json!(v));
    }
}

/// `POST /users`, enabled, with a generated password to change at next sign-in.
pub async fn create_account(
    graph: &GraphClient,
    new: &NewAccount,
) -> Result<CreatedAccount, AccountError> {
    for (field, v) in [
        ("user principal name", &new.user_principal_name),
        ("display name", &new.display_name),
        ("mail nickname", &new.mail_nickname),
    ] {
        if v.trim().is_empty() {
            return Err(AccountError::Invalid(format!("The {field} is required.")));
        }
    }
    let password = generate_password();
    let mut body = Map::new();
    body.insert("accountEnabled".into(), json!(true));
    body.insert("displayName".into(), json!(new.display_name.trim()));
    body.insert("mailNickname".into(), json!(new.mail_nickname.trim()));
    body.insert(
        "userPrincipalName".into(),
        json!(new.user_principal_name.trim()),
    );
    body.insert(
        "passwordProfile".into(),
        json!({"forceChangePasswordNextSignIn": true, "password": password.expose_secret()}),
    );
    put(&mut body, "givenName", &new.given_name);
    put(&mut body, "surname", &new.surname);
    put(&mut body, "department", &new.department);
    put(&mut body, "jobTitle", &new.job_title);
    put(&mut body, "employeeId", &new.employee_id);
    put(&mut body, "usageLocation", &new.usage_location);
    let q = Query::v1("users").needs_permission("User.ReadWrite.All");
    let r = graph
        .send(Method::POST, &q, Some(&Value::Object(body)))
        .await;
    match r {
        Ok(resp) => {
            let v = resp.body.unwrap_or(Value::Null);
            let id = v
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| {
                    AccountError::Graph(GraphError::Decode("the new user has no id".into()))
                })?;
            Ok(CreatedAccount {
                id,
                user_principal_name: v
                    .get("userPrincipalName")
                    .and_then(Value::as_str)
                    .unwrap_or(&new.user_principal_name)
                    .to_string(),
                password,
            })
        }
        Err(e) => {
            let m = e.graph_message().unwrap_or("").to_ascii_lowercase();
            Err(if m.contains("userprincipalname already exists") {
                AccountError::DuplicateUpn(new.user_principal_name.clone())
            } else if m.contains("verified domain") {
                AccountError::UnverifiedDomain(new.user_principal_name.clone())
            } else if m.contains("password complexity") {
                AccountError::WeakPassword
            } else {
                AccountError::Graph(e)
            })
        }
    }
}

/// What deprovisioning did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deprovisioned {
    /// The account no longer exists (deleted now, or already gone).
    pub gone: bool,
}

/// Disables sign-in and revokes the account's sessions; deletes it only when `delete` (the
/// caller checks the connector allows deletion). An account already gone is success.
pub async fn deprovision(
    graph: &GraphClient,
    user: Uuid,
    delete: bool,
) -> Result<Deprovisioned, GraphError> {
    let gone = Ok(Deprovisioned { gone: true });
    let disable =
        Query::v1(format!("users/{user}")).needs_permission("User.EnableDisableAccount.All");
    match graph
        .send(
            Method::PATCH,
            &disable,
            Some(&json!({"accountEnabled": false})),
        )
        .await
    {
        Err(e) if e.is_not_found() => return gone,
        r => r?,
    };
    let revoke = Query::v1(format!("users/{user}/revokeSignInSessions"))
        .needs_permission("User.RevokeSessions.All");
    match graph.send(Method::POST, &revoke, None).await {
        Err(e) if e.is_not_found() => return gone,
        r => r?,
    };
    if delete {
        let q = Query::v1(format!("users/{user}")).needs_permission("User.ReadWrite.All");
        match graph.send(Method::DELETE, &q, None).await {
            Err(e) if e.is_not_found() => return gone,
            r => r?,
        };
        return gone;
    }
    Ok(Deprovisioned { gone: false })
}
