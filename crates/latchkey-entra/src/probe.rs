//! The onboarding connection test: can Latchkey sign in, is it the right tenant, are the Graph
//! permissions the chosen options need granted, which premium features exist, and when does the
//! client secret expire — as one serialisable [`ConnectionReport`] with a verdict and sentences.
//!
//! The probe never fails: everything that goes wrong is a finding in the report.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::AuthError;
use crate::graph::{GraphClient, GraphError, Query, RequestStats};
use crate::ids::TenantId;

/// Application permissions to sync access data (the customer guide's first set).
pub const SYNC_PERMISSIONS: &[&str] = &[
    "Application.Read.All",
    "AuditLog.Read.All",
    "Directory.Read.All",
    "Group.Read.All",
    "GroupMember.Read.All",
    "MailboxSettings.Read",
    "RoleAssignmentSchedule.Read.Directory",
    "RoleEligibilitySchedule.Read.Directory",
    "RoleManagement.Read.All",
    "RoleManagement.Read.Directory",
    "RoleManagementAlert.Read.Directory",
    "RoleManagementPolicy.Read.AzureADGroup",
    "RoleManagementPolicy.Read.Directory",
    "ServicePrincipalEndpoint.Read.All",
    "User.Read.All",
    "User.ReadBasic.All",
];

/// Application permissions to sync access data and provision access (the guide's second set).
pub const PROVISIONING_PERMISSIONS: &[&str] = &[
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "AuditLog.Read.All",
    "Directory.ReadWrite.All",
    "Group.ReadWrite.All",
    "GroupMember.ReadWrite.All",
    "MailboxSettings.ReadWrite",
    "RoleAssignmentSchedule.Read.Directory",
    "RoleEligibilitySchedule.Read.Directory",
    "RoleManagement.Read.All",
    "RoleManagement.ReadWrite.Directory",
    "RoleManagementAlert.Read.Directory",
    "RoleManagementPolicy.Read.AzureADGroup",
    "RoleManagementPolicy.Read.Directory",
    "ServicePrincipalEndpoint.ReadWrite.All",
    "Synchronization.ReadWrite.All",
    "User.ReadWrite.All",
    "User.ReadBasic.All",
];

/// Days before expiry from which the client secret earns a warning.
pub const SECRET_EXPIRY_WARNING_DAYS: i64 = 30;

/// The connector options that change what the test checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOptions {
    pub provisioning: bool,
    pub fetch_sign_in_activity: bool,
    pub schedule_scim_provisioning: bool,
    pub disable_audit_feed: bool,
}

/// Why a permission is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Sync,
    Provisioning,
    SignInActivity,
    ScimProvisioning,
    AuditFeed,
}

impl Purpose {
    pub fn phrase(self) -> &'static str {
        match self {
            Purpose::Sync => "sync",
            Purpose::Provisioning => "provisioning",
            Purpose::SignInActivity => "fetching user sign-in activity",
            Purpose::ScimProvisioning => "scheduling SCIM provisioning",
            Purpose::AuditFeed => "the resource-changed event feed",
        }
    }
}

/// A permission and what it is needed for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequiredPermission {
    pub permission: String,
    pub needed_for: Vec<Purpose>,
}

/// The permissions the chosen options need: the sync set, or the sync + provision set when
/// provisioning is on, plus AuditLog.Read.All for sign-in activity and the audit feed, and
/// Synchronization.ReadWrite.All for SCIM provisioning. Sorted by name.
pub fn required_permissions(opts: &ProbeOptions) -> Vec<RequiredPermission> {
    let mut out: Vec<RequiredPermission> = Vec::new();
    let mut add = |p: &str, why: Purpose| match out.iter_mut().find(|r| r.permission == p) {
        Some(r) if !r.needed_for.contains(&why) => r.needed_for.push(why),
        Some(_) => {}
        None => out.push(RequiredPermission {
            permission: p.to_string(),
            needed_for: vec![why],
        }),
    };
    let (set, why) = if opts.provisioning {
        (PROVISIONING_PERMISSIONS, Purpose::Provisioning)
    } else {
        (SYNC_PERMISSIONS, Purpose::Sync)
    };
    for p in set {
        add(p, why);
    }
    if opts.fetch_sign_in_activity {
        add("AuditLog.Read.All", Purpose::SignInActivity);
    }
    if !opts.disable_audit_feed {
        add("AuditLog.Read.All", Purpose::AuditFeed);
    }
    if opts.schedule_scim_provisioning {
        add("Synchronization.ReadWrite.All", Purpose::ScimProvisioning);
    }
    out.sort_by(|a, b| a.permission.cmp(&b.permission));
    out
}

/// The granted permission that covers `needed`: itself, or its `ReadWrite` form (e.g.
/// `Group.ReadWrite.All` covers `Group.Read.All`; `User.Read.All` covers `User.ReadBasic.All`).
pub fn covered_by<'a>(needed: &str, granted: &'a [String]) -> Option<&'a str> {
    let find = |p: &str| {
        granted
            .iter()
            .find(|g| g.eq_ignore_ascii_case(p))
            .map(String::as_str)
    };
    if let Some(g) = find(needed) {
        return Some(g);
    }
    let wider: Vec<String> = if needed.eq_ignore_ascii_case("User.ReadBasic.All") {
        vec!["User.Read.All".into(), "User.ReadWrite.All".into()]
    } else if needed.contains(".Read.") || needed.ends_with(".Read") {
        vec![needed.replacen(".Read", ".ReadWrite", 1)]
    } else {
        vec![]
    };
    wider.iter().find_map(|w| find(w))
}

/// The overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Everything needed works.
    Connected,
    /// Usable; some optional feature is unavailable or the secret expires soon.
    ConnectedWithWarnings,
    /// Signed in to the right tenant, but permissions the options need are not granted.
    MissingPermissions,
    /// Cannot be used: sign-in failed, wrong tenant, or Graph unreachable.
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Connected => "connected",
            Verdict::ConnectedWithWarnings => "connected_with_warnings",
            Verdict::MissingPermissions => "missing_permissions",
            Verdict::Failed => "failed",
        }
    }
    /// Whether a sync can start.
    pub fn is_usable(self) -> bool {
        matches!(self, Verdict::Connected | Verdict::ConnectedWithWarnings)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Error,
    Warning,
    Info,
}

/// One sentence for the connector page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub level: Level,
    pub text: String,
}

/// The tenant that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub id: String,
    pub display_name: String,
    pub default_domain: Option<String>,
    pub verified_domains: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionReport {
    /// The token's `roles`, sorted.
    pub granted: Vec<String>,
    pub needed: Vec<RequiredPermission>,
    pub missing: Vec<RequiredPermission>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureState {
    Available,
    /// The tenant lacks the licence.
    Unlicensed,
    /// The app lacks the permission to find out.
    NoPermission,
    /// Could not be determined (transient error, not checked).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureStatus {
    pub state: FeatureState,
    pub detail: String,
}

impl FeatureStatus {
    fn unknown(detail: impl Into<String>) -> Self {
        FeatureStatus {
            state: FeatureState::Unknown,
            detail: detail.into(),
        }
    }
}

/// Premium features, probed once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureReport {
    /// `signInActivity` on users (Entra ID P1 or P2, AuditLog.Read.All).
    pub sign_in_activity: FeatureStatus,
    /// PIM eligibility schedules (Entra ID P2 or ID Governance).
    pub pim: FeatureStatus,
    /// `auditLogs/directoryAudits` (the resource-changed feed).
    pub audit_feed: FeatureStatus,
}

/// What is known about the client secret's expiry (from the app registration's `passwordCredentials`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretExpiry {
    /// RFC 3339 end date of the secret in use (matched by its hint), or of the soonest-expiring one.
    pub expires_at: Option<String>,
    pub days_left: Option<i64>,
    /// Whether the date belongs to the secret in use (its hint matched).
    pub matched_secret_in_use: bool,
    pub detail: String,
}

/// The failure that stopped the test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeFailure {
    /// Which setting to fix (`client_secret`, `tenant_id`, ...), when one is to blame.
    pub field: Option<String>,
    pub message: String,
    /// Retrying later may succeed without changes.
    pub transient: bool,
}

/// The result of a connection test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionReport {
    pub verdict: Verdict,
    /// One sentence for the status line.
    pub summary: String,
    /// RFC 3339.
    pub tested_at: String,
    pub tenant: Option<TenantInfo>,
    pub permissions: PermissionReport,
    pub features: Option<FeatureReport>,
    pub client_secret: Option<SecretExpiry>,
    /// Every finding, errors first.
    pub messages: Vec<Message>,
    pub failure: Option<ProbeFailure>,
    /// Graph traffic of this test.
    pub requests: RequestStats,
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn missing_sentence(m: &RequiredPermission) -> String {
    let why: Vec<&str> = m.needed_for.iter().map(|p| p.phrase()).collect();
    format!(
        "Missing permission {} needed for {}: add it in Entra > App registrations > API permissions and grant admin consent.",
        m.permission,
        why.join(" and ")
    )
}

/// Runs the connection test with `graph` (whose token provider carries the tenant and credentials).
pub async fn probe(graph: &GraphClient, opts: &ProbeOptions) -> ConnectionReport {
    let before = graph.stats();
    let mut r = ConnectionReport {
        verdict: Verdict::Failed,
        summary: String::new(),
        tested_at: rfc3339(now()),
        tenant: None,
        permissions: PermissionReport {
            needed: required_permissions(opts),
            ..Default::default()
        },
        features: None,
        client_secret: None,
        messages: Vec::new(),
        failure: None,
        requests: RequestStats::default(),
    };
    run(graph, opts, &mut r).await;
    let after = graph.stats();
    r.requests = RequestStats {
        requests: after.requests - before.requests,
        throttled: after.throttled - before.throttled,
        transient_failures: after.transient_failures - before.transient_failures,
        retries: after.retries - before.retries,
        token_refreshes: after.token_refreshes - before.token_refreshes,
        retry_wait_ms: after.retry_wait_ms - before.retry_wait_ms,
    };
    r.messages.sort_by_key(|m| match m.level {
        Level::Error => 0,
        Level::Warning => 1,
        Level::Info => 2,
    });
    r
}

fn fail(r: &mut ConnectionReport, field: Option<&str>, message: String, transient: bool) {
    r.verdict = Verdict::Failed;
    r.summary = message.clone();
    r.messages.push(Message {
        level: Level::Error,
        text: message.clone(),
    });
    r.failure = Some(ProbeFailure {
        field: field.map(str::to_string),
        message,
        transient,
    });
}

fn graph_failure_field(e: &GraphError) -> Option<&'static str> {
    match e {
        GraphError::Auth(a) => a.field(),
        GraphError::TokenRejected { .. } => Some("graph_domain"),
        _ => None,
    }
}

async fn run(graph: &GraphClient, opts: &ProbeOptions, r: &mut ConnectionReport) {
    let tokens = graph.tokens();
    // 1. Sign in.
    let token = match tokens.token().await {
        Ok(t) => t,
        Err(e) => {
            let field = e.field();
            let transient = e.is_transient();
            fail(r, field, e.to_string(), transient);
            return;
        }
    };
    let mut granted = token.roles().to_vec();
    granted.sort_by_key(|g| g.to_ascii_lowercase());
    r.permissions.granted = granted.clone();

    // 2. The organization: the right tenant?
    let org: Result<Value, GraphError> = graph
        .get(&Query::v1("organization").select(&["id", "displayName", "verifiedDomains"]))
        .await;
    let configured = tokens.tenant().clone();
    match org {
        Ok(v) => {
            let Some(o) = v
                .get("value")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
            else {
                fail(
                    r,
                    None,
                    "Microsoft Graph returned no organization for this tenant.".into(),
                    false,
                );
                return;
            };
            let info = tenant_info(o);
            let matches = match &configured {
                TenantId::Guid(g) => info.id.eq_ignore_ascii_case(&g.to_string()),
                TenantId::Domain(d) => info
                    .verified_domains
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case(d)),
            };
            let tid_ok = token
                .claims()
                .tid
                .as_deref()
                .is_none_or(|t| t.eq_ignore_ascii_case(&info.id));
            r.tenant = Some(info.clone());
            if !matches || !tid_ok {
                fail(
                    r,
                    Some("tenant_id"),
                    format!(
                        "The tenant that answered is {} ({}), not the configured tenant {configured}: check the Directory (tenant) ID in Entra > Overview.",
                        info.display_name, info.id
                    ),
                    false,
                );
                return;
            }
        }
        Err(GraphError::PermissionMissing { .. }) => {
            r.messages.push(Message {
                level: Level::Warning,
                text: "The tenant could not be verified because reading the organization needs Directory.Read.All.".into(),
            });
        }
        Err(e) => {
            let field = graph_failure_field(&e);
            let transient = e.is_transient();
            fail(r, field, e.to_string(), transient);
            return;
        }
    }

    // 3. Permissions.
    r.permissions.missing = r
        .permissions
        .needed
        .iter()
        .filter(|n| covered_by(&n.permission, &granted).is_none())
        .cloned()
        .collect();
    if granted.is_empty() {
        r.messages.push(Message {
            level: Level::Error,
            text: "The app has no application permissions granted (its token carries no roles): add the Microsoft Graph application permissions in Entra > App registrations > API permissions, then click \"Grant admin consent\".".into(),
        });
    } else {
        for m in &r.permissions.missing {
            r.messages.push(Message {
                level: Level::Error,
                text: missing_sentence(m),
            });
        }
    }

    // 4. Premium features and the audit feed.
    let features = FeatureReport {
        sign_in_activity: feature(
            graph,
            Query::v1("users").select(&["id", "signInActivity"]).top(1),
            "Microsoft Entra ID P1 or P2",
        )
        .await,
        pim: feature(
            graph,
            Query::v1("roleManagement/directory/roleEligibilitySchedules").top(1),
            "Microsoft Entra ID P2 (or ID Governance)",
        )
        .await,
        audit_feed: feature(
            graph,
            Query::v1("auditLogs/directoryAudits").top(1),
            "Microsoft Entra ID P1 or P2",
        )
        .await,
    };
    if opts.fetch_sign_in_activity && features.sign_in_activity.state == FeatureState::Unlicensed {
        r.messages.push(Message {
            level: Level::Warning,
            text: "Fetching user sign-in activity needs Microsoft Entra ID P1 or P2, which this tenant does not have: syncs will skip last sign-in dates. Turn off \"Fetch user sign-in activity\" to hide this warning.".into(),
        });
    }
    if features.pim.state == FeatureState::Unlicensed {
        r.messages.push(Message {
            level: Level::Warning,
            text: "Eligible (PIM) role assignments need Microsoft Entra ID P2, which this tenant does not have: syncs will include active role assignments only.".into(),
        });
    }
    if !opts.disable_audit_feed && features.audit_feed.state == FeatureState::Unlicensed {
        r.messages.push(Message {
            level: Level::Warning,
            text: "The directory audit log is not available in this tenant: incremental syncs will rely on delta queries only. Turn on \"Disable resource changed event feed\" to hide this warning.".into(),
        });
    }
    for (name, f) in [
        ("Sign-in activity", &features.sign_in_activity),
        ("PIM", &features.pim),
        ("The audit feed", &features.audit_feed),
    ] {
        if f.state == FeatureState::Unknown {
            r.messages.push(Message {
                level: Level::Info,
                text: format!("{name} could not be checked: {}", f.detail),
            });
        }
    }
    r.features = Some(features);

    // 5. Client secret expiry.
    let secret = secret_expiry(graph).await;
    if let Some(days) = secret.days_left
        && days < SECRET_EXPIRY_WARNING_DAYS
    {
        r.messages.push(Message {
            level: Level::Warning,
            text: format!(
                "The client secret expires on {} (in {} day{}): create a new secret in Entra > App registrations > Certificates & secrets and paste it here before then.",
                secret.expires_at.as_deref().unwrap_or("?").get(..10).unwrap_or("?"),
                days.max(0),
                if days == 1 { "" } else { "s" }
            ),
        });
    }
    r.client_secret = Some(secret);

    // 6. Verdict.
    let name = r
        .tenant
        .as_ref()
        .map(|t| {
            format!(
                "{} ({})",
                t.display_name,
                t.default_domain.clone().unwrap_or_else(|| t.id.clone())
            )
        })
        .unwrap_or_else(|| configured.to_string());
    let warnings = r
        .messages
        .iter()
        .filter(|m| m.level == Level::Warning)
        .count();
    let errors = r
        .messages
        .iter()
        .filter(|m| m.level == Level::Error)
        .count();
    if errors > 0 || !r.permissions.missing.is_empty() {
        r.verdict = Verdict::MissingPermissions;
        let list: Vec<&str> = r
            .permissions
            .missing
            .iter()
            .map(|m| m.permission.as_str())
            .collect();
        r.summary = format!(
            "Signed in to {name}, but {} permission{} needed by the chosen options {} missing: {}. Add {} in Entra > App registrations > API permissions and grant admin consent.",
            list.len(),
            if list.len() == 1 { "" } else { "s" },
            if list.len() == 1 { "is" } else { "are" },
            list.join(", "),
            if list.len() == 1 { "it" } else { "them" }
        );
    } else if warnings > 0 {
        r.verdict = Verdict::ConnectedWithWarnings;
        r.summary = format!(
            "Connected to {name}, with {warnings} warning{}.",
            if warnings == 1 { "" } else { "s" }
        );
    } else {
        r.verdict = Verdict::Connected;
        r.summary = format!(
            "Connected to {name}: all {} permissions the chosen options need are granted.",
            r.permissions.needed.len()
        );
    }
}

fn tenant_info(o: &Value) -> TenantInfo {
    let s = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let domains = o
        .get("verifiedDomains")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names = domains
        .iter()
        .filter_map(|d| d.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let default = domains
        .iter()
        .find(|d| d.get("isDefault").and_then(Value::as_bool) == Some(true))
        .and_then(|d| d.get("name").and_then(Value::as_str))
        .map(str::to_string);
    TenantInfo {
        id: s("id"),
        display_name: s("displayName"),
        default_domain: default,
        verified_domains: names,
    }
}

async fn feature(graph: &GraphClient, q: Query, licence: &str) -> FeatureStatus {
    match graph.get::<Value>(&q).await {
        Ok(_) => FeatureStatus {
            state: FeatureState::Available,
            detail: format!("Available ({licence})."),
        },
        Err(GraphError::NotPremium { code, .. }) => FeatureStatus {
            state: FeatureState::Unlicensed,
            detail: format!("Needs {licence}, which this tenant does not have ({code})."),
        },
        Err(GraphError::PermissionMissing { permission, .. }) => FeatureStatus {
            state: FeatureState::NoPermission,
            detail: format!(
                "Could not be checked without the {} permission.",
                permission.unwrap_or_else(|| "required".into())
            ),
        },
        Err(e) => FeatureStatus::unknown(e.to_string()),
    }
}

async fn secret_expiry(graph: &GraphClient) -> SecretExpiry {
    let client_id = graph.tokens().client_id();
    let q = Query::v1(format!("applications(appId='{client_id}')")).select(&[
        "id",
        "displayName",
        "passwordCredentials",
    ]);
    let unknown = |detail: String| SecretExpiry {
        expires_at: None,
        days_left: None,
        matched_secret_in_use: false,
        detail,
    };
    let app: Value = match graph.get(&q).await {
        Ok(v) => v,
        Err(GraphError::PermissionMissing { .. }) => {
            return unknown(
                "The secret's expiry date is not readable without Application.Read.All.".into(),
            );
        }
        Err(e) => return unknown(format!("The secret's expiry date could not be read: {e}")),
    };
    let creds = app
        .get("passwordCredentials")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let hint = graph.tokens().secret_hint();
    let parse = |c: &Value| {
        c.get("endDateTime").and_then(Value::as_str).and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
    };
    let in_use = creds
        .iter()
        .filter(|c| hint.is_some() && c.get("hint").and_then(Value::as_str) == hint.as_deref())
        .filter_map(parse)
        .max();
    let (end, matched) = match in_use {
        Some(e) => (Some(e), true),
        None => (
            creds.iter().filter_map(parse).filter(|e| *e > now()).min(),
            false,
        ),
    };
    match end {
        Some(e) => SecretExpiry {
            expires_at: Some(rfc3339(e)),
            days_left: Some((e - now()).whole_days()),
            matched_secret_in_use: matched,
            detail: if matched {
                "Expiry of the secret in use.".into()
            } else {
                "Expiry of the soonest-expiring secret of the app (the secret in use could not be told apart).".into()
            },
        },
        None => unknown("The app registration lists no client secret with an end date.".into()),
    }
}

/// The failure of an [`AuthError`] as a report (for callers that fail before probing).
pub fn report_for_auth_error(e: &AuthError) -> ConnectionReport {
    let mut r = ConnectionReport {
        verdict: Verdict::Failed,
        summary: String::new(),
        tested_at: rfc3339(now()),
        tenant: None,
        permissions: PermissionReport::default(),
        features: None,
        client_secret: None,
        messages: Vec::new(),
        failure: None,
        requests: RequestStats::default(),
    };
    fail(&mut r, e.field(), e.to_string(), e.is_transient());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[RequiredPermission]) -> Vec<&str> {
        v.iter().map(|r| r.permission.as_str()).collect()
    }

    #[test]
    fn required_sets_follow_the_options() {
        let sync = required_permissions(&ProbeOptions::default());
        assert_eq!(sync.len(), 16);
        let audit = sync
            .iter()
            .find(|r| r.permission == "AuditLog.Read.All")
            .unwrap();
        assert_eq!(audit.needed_for, vec![Purpose::Sync, Purpose::AuditFeed]);
        assert!(!names(&sync).contains(&"Synchronization.ReadWrite.All"));

        let scim = required_permissions(&ProbeOptions {
            schedule_scim_provisioning: true,
            fetch_sign_in_activity: true,
            disable_audit_feed: true,
            ..Default::default()
        });
        assert_eq!(scim.len(), 17);
        let s = scim
            .iter()
            .find(|r| r.permission == "Synchronization.ReadWrite.All")
            .unwrap();
        assert_eq!(s.needed_for, vec![Purpose::ScimProvisioning]);
        let audit = scim
            .iter()
            .find(|r| r.permission == "AuditLog.Read.All")
            .unwrap();
        assert_eq!(
            audit.needed_for,
            vec![Purpose::Sync, Purpose::SignInActivity]
        );

        let prov = required_permissions(&ProbeOptions {
            provisioning: true,
            ..Default::default()
        });
        assert_eq!(prov.len(), 18);
        assert!(names(&prov).contains(&"GroupMember.ReadWrite.All"));
        assert_eq!(
            missing_sentence(
                prov.iter()
                    .find(|r| r.permission == "GroupMember.ReadWrite.All")
                    .unwrap()
            ),
            "Missing permission GroupMember.ReadWrite.All needed for provisioning: add it in Entra > App registrations > API permissions and grant admin consent."
        );
    }

    #[test]
    fn read_write_covers_read() {
        let granted: Vec<String> = [
            "Group.ReadWrite.All",
            "User.Read.All",
            "MailboxSettings.ReadWrite",
            "RoleManagement.ReadWrite.Directory",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            covered_by("Group.Read.All", &granted),
            Some("Group.ReadWrite.All")
        );
        assert_eq!(
            covered_by("group.readwrite.all", &granted),
            Some("Group.ReadWrite.All")
        );
        assert_eq!(
            covered_by("User.ReadBasic.All", &granted),
            Some("User.Read.All")
        );
        assert_eq!(
            covered_by("MailboxSettings.Read", &granted),
            Some("MailboxSettings.ReadWrite")
        );
        assert_eq!(
            covered_by("RoleManagement.Read.Directory", &granted),
            Some("RoleManagement.ReadWrite.Directory")
        );
        assert_eq!(covered_by("GroupMember.Read.All", &granted), None);
        assert_eq!(covered_by("User.ReadWrite.All", &granted), None);
    }

    #[test]
    fn auth_failures_become_failed_reports() {
        let r = report_for_auth_error(&AuthError::ExpiredSecret);
        assert_eq!(r.verdict, Verdict::Failed);
        assert_eq!(
            r.failure.as_ref().unwrap().field.as_deref(),
            Some("client_secret")
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["verdict"], "failed");
        assert!(json["summary"].as_str().unwrap().contains("AADSTS7000222"));
    }
}
