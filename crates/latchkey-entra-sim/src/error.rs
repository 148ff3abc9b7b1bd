//! The crate's error type.

/// Failures of the simulator itself (not the Graph or login errors it serves on purpose).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("could not bind the simulator's listener: {0}")]
    Bind(#[source] std::io::Error),
    #[error("cryptography failure: {0}")]
    Crypto(&'static str),
    #[error("invalid change: {0}")]
    InvalidChange(String),
    #[error("not found: {0}")]
    NotFound(String),
}
