//! Entra accounts: create one with a strong generated password that must be changed at first
//! sign-in, and deprovision one (disable sign-in, revoke its sessions, delete only when asked);
//! [`check`] validates a request before it becomes a task, and [`read_back`] waits for
//! Entra to show the result. The account tasks (`create_account`, `deprovision_account`) in
//! `provision::job` put these together with the vault.

use std::time::Instant;

use http::Method;
use latchkey_crypto::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::write::VerifyPolicy;
use crate::graph::{GraphClient, GraphError, Query};

/// What a new account is made of. `user_principal_name` must use a verified domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The manager's object id in the tenant.
    #[serde(default)]
    pub manager: Option<Uuid>,
}

/// One problem with a requested account, named by its API field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountProblem {
    pub field: &'static str,
    pub message: String,
}

fn opt_len(v: &Option<String>, max: usize) -> bool {
    v.as_deref().is_none_or(|v| v.trim().chars().count() <= max)
}

/// Checks a requested account before anything is stored or sent: required fields, Entra's
/// lengths and characters, and (when the last connection test listed them) that the UPN uses
/// one of the tenant's verified domains. Every problem is reported at once.
pub fn check(new: &NewAccount, verified_domains: &[String]) -> Result<(), Vec<AccountProblem>> {
    let mut problems = Vec::new();
    let mut bad = |field: &'static str, message: String| {
        problems.push(AccountProblem { field, message });
    };
    let upn = new.user_principal_name.trim();
    match upn.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && local.chars().count() <= 64
                && !local.starts_with('.')
                && !local.ends_with('.')
                && local
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "'.-_!#^~".contains(c)) =>
        {
            if !verified_domains.is_empty()
                && !verified_domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(domain))
            {
                bad(
                    "user_principal_name",
                    format!(
                        "{domain} is not one of the tenant's verified domains ({}); use one of them",
                        verified_domains.join(", ")
                    ),
                );
            }
        }
        _ => bad(
            "user_principal_name",
            "enter a user principal name like alex@contoso.com (letters, digits and ' . - _ ! # ^ ~ before the @)".into(),
        ),
    }
    let name = new.display_name.trim().chars().count();
    if name == 0 || name > 256 {
        bad(
            "display_name",
            "enter a display name (1 to 256 characters)".into(),
        );
    }
    let nick = new.mail_nickname.trim();
    if nick.is_empty()
        || nick.chars().count() > 64
        || !nick
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "'.-_!#^~".contains(c))
    {
        bad(
            "mail_nickname",
            "enter a mail nickname of 1 to 64 letters, digits or ' . - _ ! # ^ ~ (no spaces or @)"
                .into(),
        );
    }
    for (field, v, max) in [
        ("given_name", &new.given_name, 64),
        ("surname", &new.surname, 64),
        ("department", &new.department, 64),
        ("job_title", &new.job_title, 128),
        ("employee_id", &new.employee_id, 16),
    ] {
        if !opt_len(v, max) {
            bad(field, format!("at most {max} characters"));
        }
    }
    if let Some(loc) = new.usage_location.as_deref().map(str::trim)
        && !loc.is_empty()
        && !(loc.len() == 2 && loc.chars().all(|c| c.is_ascii_alphabetic()))
    {
        bad(
            "usage_location",
            "a two-letter country code such as US, GB or DE".into(),
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
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

/// `POST /users`, enabled, with `password` (from [`generate_password`], kept by the caller
/// before this call) to change at next sign-in.
pub async fn create_account(
    graph: &GraphClient,
    new: &NewAccount,
    password: &SecretString,
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
    let password = password.clone();
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
    put(
        &mut body,
        "usageLocation",
        &new.usage_location.as_ref().map(|l| l.to_ascii_uppercase()),
    );
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

/// The account whose user principal name is `upn`, if any: its object id and when it was
/// created (a retried creation recognises the account its lost attempt made).
pub async fn find_by_upn(
    graph: &GraphClient,
    upn: &str,
) -> Result<Option<(Uuid, Option<time::OffsetDateTime>)>, GraphError> {
    let q = Query::v1(format!("users/{}", upn.trim())).select(&["id", "createdDateTime"]);
    match graph.get::<Value>(&q).await {
        Ok(v) => {
            let id = v
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| GraphError::Decode("the user has no id".into()))?;
            let created = v
                .get("createdDateTime")
                .and_then(Value::as_str)
                .and_then(|s| {
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .ok()
                });
            Ok(Some((id, created)))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
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

/// `PUT /users/{id}/manager/$ref`.
pub async fn set_manager(graph: &GraphClient, user: Uuid, manager: Uuid) -> Result<(), GraphError> {
    let q = Query::v1(format!("users/{user}/manager/$ref")).needs_permission("User.ReadWrite.All");
    let body = graph.directory_object_ref(&manager);
    graph.send(Method::PUT, &q, Some(&body)).await?;
    Ok(())
}

/// The user fields a created account is read back with (what the sync stores of a user).
pub const ACCOUNT_FIELDS: &[&str] = &[
    "id",
    "displayName",
    "userPrincipalName",
    "mail",
    "accountEnabled",
    "userType",
    "department",
    "jobTitle",
    "employeeId",
    "createdDateTime",
    "onPremisesSyncEnabled",
    "signInSessionsValidFromDateTime",
];

/// What reading an account back should show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// It exists (a created account).
    Exists,
    /// Sign-in is disabled.
    Disabled,
    /// It no longer exists.
    Gone,
}

/// Reads the account until it shows what was asked (Entra replicates with a delay), or
/// `policy.timeout` passes: `Ok(Some(user))` / `Ok(None)` for gone, or `Err(why)`.
pub async fn read_back(
    graph: &GraphClient,
    user: Uuid,
    expect: Expect,
    policy: VerifyPolicy,
) -> Result<Option<Value>, String> {
    let start = Instant::now();
    let mut delay = policy.first_delay;
    let q = Query::v1(format!("users/{user}")).select(ACCOUNT_FIELDS);
    let mut reads = 0u32;
    loop {
        reads += 1;
        let last = match graph.get::<Value>(&q).await {
            Ok(v) => {
                let enabled = v.get("accountEnabled").and_then(Value::as_bool);
                match expect {
                    Expect::Exists => return Ok(Some(v)),
                    Expect::Disabled if enabled == Some(false) => return Ok(Some(v)),
                    _ => None,
                }
            }
            Err(e) if e.is_not_found() && expect == Expect::Gone => return Ok(None),
            Err(e) if e.is_not_found() || e.is_transient() => Some(e.to_string()),
            Err(e) => return Err(format!("reading the account back failed: {e}")),
        };
        if start.elapsed() + delay > policy.timeout {
            let seen = match expect {
                Expect::Exists => "the new account did not appear in Microsoft Graph",
                Expect::Disabled => "the account still had sign-in enabled in Microsoft Graph",
                Expect::Gone => "the account was still in Microsoft Graph",
            };
            return Err(match last {
                Some(e) => format!(
                    "{seen} within {} s ({reads} reads; last read: {e})",
                    policy.timeout.as_secs()
                ),
                None => format!(
                    "{seen} within {} s ({reads} reads)",
                    policy.timeout.as_secs()
                ),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(policy.max_delay);
    }
}
