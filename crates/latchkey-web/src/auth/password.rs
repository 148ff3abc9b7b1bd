//! Password hashing with argon2id, off the async threads (it is deliberately slow).

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use latchkey_core::Password;
use std::sync::LazyLock;

/// Verified against when an email is unknown, so that a miss costs as much as a hit and
/// response times do not reveal which emails have accounts.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    Argon2::default()
        .hash_password(b"latchkey-timing-equaliser")
        .expect("argon2 hashing of a constant cannot fail")
        .to_string()
});

pub async fn hash(password: &Password) -> anyhow::Result<String> {
    let pw = password.expose().to_string();
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(pw.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
    })
    .await?
}

/// True when `password` matches `stored`; with `stored = None` it burns the same time
/// and returns false.
pub async fn verify(password: &str, stored: Option<String>) -> bool {
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || {
        let target = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let real = target != *DUMMY_HASH;
        match PasswordHash::new(&target) {
            Ok(parsed) => {
                Argon2::default()
                    .verify_password(pw.as_bytes(), &parsed)
                    .is_ok()
                    && real
            }
            Err(_) => false,
        }
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let pw = Password::parse("a long enough password").unwrap();
        let h = hash(&pw).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("a long enough password", Some(h.clone())).await);
        assert!(!verify("wrong password here", Some(h)).await);
        assert!(!verify("latchkey-timing-equaliser", None).await);
    }
}
