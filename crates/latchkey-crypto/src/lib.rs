//! Encryption of secrets at rest: a versioned AES-256-GCM key ring, envelopes bound to
//! their owner through associated data, and secret values that never print.

mod context;
mod keyring;

pub use context::SecretContext;
pub use keyring::{KeyRing, KeyRingError, MasterKey, Sealed, generate_key_entry};
pub use secrecy::{ExposeSecret, SecretString};

/// Hex SHA-256 of a value, for storing high-entropy tokens (sessions, API secrets)
/// so that a database dump does not reveal them.
pub fn sha256_hex(value: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(value);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random URL-safe token with `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&buf)
}

/// Constant-time comparison for secrets.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
