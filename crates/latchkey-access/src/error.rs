//! What can go wrong when asking for, deciding or changing a request, in words for people.

use crate::policy::PolicyProblem;
use crate::state::IllegalTransition;
use latchkey_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Unknown, or another organization's.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    /// The request is not in a state that allows this (already decided, already ending...).
    #[error("{0}")]
    Conflict(String),
    /// Fields of the ask (or of a policy) are wrong; nothing was changed.
    #[error("invalid: {0:?}")]
    Invalid(Vec<PolicyProblem>),
    #[error(transparent)]
    Store(StoreError),
}

impl AccessError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        AccessError::Invalid(vec![PolicyProblem {
            field: field.to_string(),
            message: message.into(),
        }])
    }
}

impl From<StoreError> for AccessError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AccessError::NotFound,
            other => AccessError::Store(other),
        }
    }
}

impl From<IllegalTransition> for AccessError {
    fn from(e: IllegalTransition) -> Self {
        AccessError::Conflict(format!("This {e}."))
    }
}
