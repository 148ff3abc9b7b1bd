//! Roles a person or API client holds inside an organization.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages the organization: people, roles, API clients, every connector.
    SuperAdmin,
    /// Creates and edits connectors.
    ConnectorAdmin,
    /// Requests access and reviews what they are asked to review.
    Member,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::SuperAdmin, Role::ConnectorAdmin, Role::Member];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::SuperAdmin => "super_admin",
            Role::ConnectorAdmin => "connector_admin",
            Role::Member => "member",
        }
    }

    /// Words shown to people.
    pub fn label(&self) -> &'static str {
        match self {
            Role::SuperAdmin => "Super Administrator",
            Role::ConnectorAdmin => "Connector Administrator",
            Role::Member => "Member",
        }
    }

    pub fn can_manage_people(&self) -> bool {
        matches!(self, Role::SuperAdmin)
    }

    pub fn can_manage_connectors(&self) -> bool {
        matches!(self, Role::SuperAdmin | Role::ConnectorAdmin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}: expected super_admin, connector_admin or member")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownRole;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_is_refused() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        let err = "admin".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("super_admin"));
    }

    #[test]
    fn only_admins_manage() {
        assert!(Role::SuperAdmin.can_manage_people());
        assert!(!Role::ConnectorAdmin.can_manage_people());
        assert!(Role::ConnectorAdmin.can_manage_connectors());
        assert!(!Role::Member.can_manage_connectors());
    }
}
