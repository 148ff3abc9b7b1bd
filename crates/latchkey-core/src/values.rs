//! Parsed values: once you hold one, it is valid.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("enter an email address such as ada@example.com")]
    Email,
    #[error("enter a name (1 to {max} characters)")]
    DisplayName { max: usize },
    #[error("use at least {min} characters for the password")]
    PasswordTooShort { min: usize },
    #[error("the password is too long (at most {max} characters)")]
    PasswordTooLong { max: usize },
}

/// An email address, trimmed and lower-cased so that lookups are exact.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = raw.trim().to_lowercase();
        let (local, domain) = s.split_once('@').ok_or(ValueError::Email)?;
        let ok = !local.is_empty()
            && s.len() <= 254
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(Self(s))
        } else {
            Err(ValueError::Email)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A human-readable name (organization, person, API client).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = raw.trim();
        if s.is_empty() || s.chars().count() > Self::MAX || s.chars().any(char::is_control) {
            return Err(ValueError::DisplayName { max: Self::MAX });
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new password chosen by a person. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN: usize = 12;
    pub const MAX: usize = 1024;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let n = raw.chars().count();
        if n < Self::MIN {
            return Err(ValueError::PasswordTooShort { min: Self::MIN });
        }
        if n > Self::MAX {
            return Err(ValueError::PasswordTooLong { max: Self::MAX });
        }
        Ok(Self(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a b@example.com",
            "ada@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_name_bounds() {
        assert!(DisplayName::parse("  ").is_err());
        assert!(DisplayName::parse(&"x".repeat(201)).is_err());
        assert_eq!(DisplayName::parse(" Acme ").unwrap().as_str(), "Acme");
    }

    #[test]
    fn password_rules_and_redaction() {
        assert!(matches!(
            Password::parse("short"),
            Err(ValueError::PasswordTooShort { .. })
        ));
        let p = Password::parse("correct horse battery").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }
}
