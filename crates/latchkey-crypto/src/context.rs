//! Associated data: what a ciphertext belongs to.

use uuid::Uuid;

/// Binds a ciphertext to one field of one row of one organization. Decrypting with any
/// other context fails, so a ciphertext copied to another row (or organization) is useless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretContext<'a> {
    pub org_id: Uuid,
    /// The owning table, e.g. `connectors`.
    pub owner: &'a str,
    pub owner_id: Uuid,
    /// The field within the owner, e.g. `client_secret`.
    pub field: &'a str,
}

impl SecretContext<'_> {
    pub(crate) fn aad(&self) -> Vec<u8> {
        format!(
            "latchkey:v1:{}:{}:{}:{}",
            self.org_id, self.owner, self.owner_id, self.field
        )
        .into_bytes()
    }
}
