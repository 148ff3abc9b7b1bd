//! What a simulated tenant looks like (sizes, seed, apps) and how it misbehaves (faults).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Application permissions the sync needs (the reference connector's documented set).
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

/// Application permissions for sync plus provisioning.
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

/// The union of [`SYNC_PERMISSIONS`] and [`PROVISIONING_PERMISSIONS`]: what the customer app is granted by default.
pub fn default_permissions() -> Vec<String> {
    let mut all: Vec<String> = SYNC_PERMISSIONS
        .iter()
        .chain(PROVISIONING_PERMISSIONS)
        .map(|s| s.to_string())
        .collect();
    all.sort();
    all.dedup();
    all
}

/// How many objects of each kind the generator creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    pub users: usize,
    pub groups: usize,
    /// Target number of group memberships (user, group and service-principal members together).
    pub memberships: usize,
    /// Enterprise applications (service principals of type `Application` registered in the tenant).
    pub apps: usize,
    pub managed_identities: usize,
    /// How many built-in directory role definitions to expose (capped by the built-in catalog).
    pub role_definitions: usize,
    /// How many subscribed SKUs (capped by the catalog).
    pub skus: usize,
}

impl Sizes {
    /// A few dozen users, a dozen groups covering every kind: for tests and `latchkey demo`.
    pub fn small() -> Self {
        Sizes {
            users: 40,
            groups: 14,
            memberships: 160,
            apps: 6,
            managed_identities: 3,
            role_definitions: 14,
            skus: 5,
        }
    }

    /// The scale target: 100k users, 10k groups, 1M memberships, 500 enterprise apps.
    pub fn large() -> Self {
        Sizes {
            users: 100_000,
            groups: 10_000,
            memberships: 1_000_000,
            apps: 500,
            managed_identities: 200,
            role_definitions: 14,
            skus: 6,
        }
    }
}

/// What the admin-consent and authorize endpoints do when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ConsentOutcome {
    /// The admin grants consent; the redirect carries `admin_consent=True&tenant=<this tenant>`.
    #[default]
    Grant,
    /// The admin declines; the redirect carries the documented error parameters.
    Deny,
    /// The admin signs in to another tenant: the redirect (and any id_token) names a different tenant.
    WrongTenant,
}

/// 429 behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Throttle {
    #[default]
    Off,
    /// Every Nth authenticated Graph request gets 429 with `Retry-After`.
    EveryN { n: u64 },
    /// Graph's documented per-app-per-tenant token bucket (ResourceUnits per 10 s by tenant size,
    /// writes per 150 s), scaled by `scale` (1.0 = the documented limits; 0.01 makes it easy to hit).
    TokenBucket { scale: f64 },
}

/// Faults and licence switches; all can be changed at run time (`PATCH /_sim/faults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added to every login and Graph request.
    pub latency_ms: u64,
    pub throttle: Throttle,
    /// `Retry-After` sent with 429 in `EveryN` mode (may be fractional, like Graph's).
    pub retry_after_secs: f64,
    /// Fraction (0..=1) of Graph requests answered 503 or 504, decided by `(seed, request number)`.
    pub transient_rate: f64,
    /// Lifetime of issued access tokens; 0 issues tokens that are already expired.
    pub token_lifetime_secs: u64,
    /// The customer app's secret is expired (AADSTS7000222).
    pub expired_secret: bool,
    /// Entra ID P1 (sign-in activity).
    pub premium_p1: bool,
    /// Entra ID P2 (PIM eligibility and schedules).
    pub premium_p2: bool,
    /// `auditLogs/directoryAudits` answers 403 as Graph's known issue does.
    pub audit_unavailable: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            throttle: Throttle::Off,
            retry_after_secs: 1.0,
            transient_rate: 0.0,
            token_lifetime_secs: 3599,
            expired_secret: false,
            premium_p1: true,
            premium_p2: true,
            audit_unavailable: false,
        }
    }
}

/// Latchkey's own multi-tenant app registration (used for admin consent and sign-in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatchkeyAppConfig {
    pub client_id: Uuid,
    pub client_secret: String,
    pub display_name: String,
    /// Exact redirect URIs accepted by `authorize` and `adminconsent`.
    pub redirect_uris: Vec<String>,
    /// Application permissions the app receives once an admin consents.
    pub permissions: Vec<String>,
}

impl Default for LatchkeyAppConfig {
    fn default() -> Self {
        LatchkeyAppConfig {
            client_id: Uuid::from_u128(0x1a7c4e3e_0000_4000_8000_1a7c4e3e0001),
            client_secret: "lk08Q~latchkey-multi-tenant-app-secret01".to_string(),
            display_name: "Latchkey".to_string(),
            redirect_uris: vec![
                "http://127.0.0.1:8080/connectors/oauth/callback".to_string(),
                "http://localhost:8080/connectors/oauth/callback".to_string(),
            ],
            permissions: default_permissions(),
        }
    }
}

/// Everything needed to start a simulated tenant.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub sizes: Sizes,
    /// Defaults to a GUID derived from the seed.
    pub tenant_id: Option<Uuid>,
    pub org_name: String,
    /// 0 picks a free port.
    pub port: u16,
    /// Application permissions granted (admin-consented) to the customer's app registration.
    pub granted_permissions: Vec<String>,
    pub latchkey_app: LatchkeyAppConfig,
    pub consent: ConsentOutcome,
    pub faults: Faults,
    /// How many request-log entries are kept (oldest dropped first).
    pub request_log_capacity: usize,
}

impl SimConfig {
    pub fn small(seed: u64) -> Self {
        SimConfig {
            seed,
            sizes: Sizes::small(),
            tenant_id: None,
            org_name: "Contoso".to_string(),
            port: 0,
            granted_permissions: default_permissions(),
            latchkey_app: LatchkeyAppConfig::default(),
            consent: ConsentOutcome::Grant,
            faults: Faults::default(),
            request_log_capacity: 100_000,
        }
    }

    pub fn large(seed: u64) -> Self {
        SimConfig {
            sizes: Sizes::large(),
            ..Self::small(seed)
        }
    }

    pub fn with_permissions<I, S>(mut self, perms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.granted_permissions = perms.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::small(1)
    }
}
