//! Parsed identifiers of an Entra tenant and an app registration: once you hold one, it is valid.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a tenant or client id was refused; the message is shown next to the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("The tenant ID is empty: paste the Directory (tenant) ID from Entra > Overview.")]
    EmptyTenant,
    #[error(
        "'{0}' is a multi-tenant alias, not a tenant: paste your own Directory (tenant) ID (a GUID from Entra > Overview) or one of your verified domain names such as contoso.onmicrosoft.com."
    )]
    MultiTenantAlias(String),
    #[error(
        "'{0}' is neither a tenant GUID nor a domain name: paste the Directory (tenant) ID from Entra > Overview (for example 72f988bf-86f1-41af-91ab-2d7cd011db47) or a verified domain such as contoso.onmicrosoft.com."
    )]
    InvalidTenant(String),
    #[error(
        "'{0}' is not a client ID: paste the Application (client) ID from Entra > App registrations > your app > Overview (a GUID such as 11111111-2222-3333-4444-555555555555)."
    )]
    InvalidClientId(String),
}

/// An Entra tenant: a directory GUID or one of its verified domain names (lower-cased).
///
/// `common`, `organizations` and `consumers` are refused: client-credentials tokens need a
/// tenant-specific authority, and a connector must be bound to exactly one directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TenantId {
    Guid(Uuid),
    Domain(String),
}

impl TenantId {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(IdError::EmptyTenant);
        }
        let lower = s.to_ascii_lowercase();
        if matches!(lower.as_str(), "common" | "organizations" | "consumers") {
            return Err(IdError::MultiTenantAlias(lower));
        }
        if let Some(g) = parse_guid(s) {
            return Ok(TenantId::Guid(g));
        }
        if is_domain_name(&lower) {
            return Ok(TenantId::Domain(lower));
        }
        Err(IdError::InvalidTenant(s.to_string()))
    }

    /// The GUID, when the tenant was given as one.
    pub fn guid(&self) -> Option<Uuid> {
        match self {
            TenantId::Guid(g) => Some(*g),
            TenantId::Domain(_) => None,
        }
    }

    /// The path segment used in login URLs.
    pub fn as_segment(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TenantId::Guid(g) => write!(f, "{}", g.hyphenated()),
            TenantId::Domain(d) => f.write_str(d),
        }
    }
}

impl FromStr for TenantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TenantId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> String {
        t.to_string()
    }
}

/// The Application (client) ID of an app registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(Uuid);

impl ClientId {
    pub fn parse(input: &str) -> Result<Self, IdError> {
        parse_guid(input.trim())
            .map(ClientId)
            .ok_or_else(|| IdError::InvalidClientId(input.trim().to_string()))
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for ClientId {
    fn from(u: Uuid) -> Self {
        ClientId(u)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl FromStr for ClientId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ClientId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ClientId> for String {
    fn from(c: ClientId) -> String {
        c.to_string()
    }
}

/// Only the hyphenated 8-4-4-4-12 form (optionally in braces) that Entra shows: `Uuid::parse_str`
/// alone would also take 32 bare hex digits and `urn:uuid:` forms, which no admin pastes.
fn parse_guid(s: &str) -> Option<Uuid> {
    let inner = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    if inner.len() != 36 {
        return None;
    }
    Uuid::parse_str(inner).ok()
}

/// A DNS name with at least two labels, LDH labels of 1..=63 characters, not all-numeric TLD.
fn is_domain_name(s: &str) -> bool {
    if s.len() > 253 || s.ends_with('.') {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let ok = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let tld = labels[labels.len() - 1];
    ok && tld.bytes().any(|b| b.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_accepts_guid_and_domain() {
        let g = TenantId::parse(" 72F988BF-86F1-41AF-91AB-2D7CD011DB47 ").unwrap();
        assert_eq!(g.to_string(), "72f988bf-86f1-41af-91ab-2d7cd011db47");
        assert!(g.guid().is_some());
        let b = TenantId::parse("{72f988bf-86f1-41af-91ab-2d7cd011db47}").unwrap();
        assert_eq!(b, g);
        let d = TenantId::parse("Contoso.OnMicrosoft.com").unwrap();
        assert_eq!(d, TenantId::Domain("contoso.onmicrosoft.com".into()));
    }

    #[test]
    fn tenant_refuses_aliases_and_junk() {
        for alias in ["common", "Organizations", "CONSUMERS"] {
            let e = TenantId::parse(alias).unwrap_err();
            assert!(matches!(e, IdError::MultiTenantAlias(_)), "{alias}");
            assert!(e.to_string().contains("multi-tenant alias"));
        }
        assert_eq!(TenantId::parse("  "), Err(IdError::EmptyTenant));
        for bad in [
            "contoso",
            "72f988bf86f141af91ab2d7cd011db47",
            "urn:uuid:72f988bf-86f1-41af-91ab-2d7cd011db47",
            "contoso..com",
            "-contoso.com",
            "contoso.com.",
            "10.0.0.1",
            "contoso.com/evil",
            "contoso com",
        ] {
            assert!(
                matches!(TenantId::parse(bad), Err(IdError::InvalidTenant(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn client_id_is_a_guid() {
        assert!(ClientId::parse("11111111-2222-3333-4444-555555555555").is_ok());
        let e = ClientId::parse("my-app").unwrap_err();
        assert!(e.to_string().contains("Application (client) ID"));
    }

    #[test]
    fn serde_round_trip_validates() {
        let t: TenantId = serde_json::from_str("\"contoso.com\"").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"contoso.com\"");
        assert!(serde_json::from_str::<TenantId>("\"common\"").is_err());
    }
}
