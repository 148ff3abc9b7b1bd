//! The key ring: several master keys with ids, the first one active.
//!
//! Configuration format (`LATCHKEY_MASTER_KEYS`): `id:base64key[,id:base64key...]`,
//! each key 32 random bytes. New encryptions use the first key; decryption picks the
//! key by the id stored with the ciphertext, so old ciphertexts stay readable until
//! `latchkey keys rotate` re-encrypts them under the active key.

use crate::context::SecretContext;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRingError {
    #[error("no master key configured: expected one or more `id:base64key` entries")]
    Empty,
    #[error(
        "master key entry {index} is malformed: expected `id:base64key` with a 32-byte key ({why})"
    )]
    Malformed { index: usize, why: &'static str },
    #[error("master key id {0:?} appears twice")]
    DuplicateId(String),
    #[error(
        "the ciphertext was encrypted with master key {0:?}, which is not in LATCHKEY_MASTER_KEYS"
    )]
    UnknownKey(String),
    #[error("decryption failed: the ciphertext is corrupt or belongs to another record")]
    Decrypt,
    #[error("the decrypted secret is not valid UTF-8")]
    NotUtf8,
    #[error("stored ciphertext is malformed")]
    BadEnvelope,
}

/// One master key. Its bytes are zeroized on drop and never printed.
pub struct MasterKey {
    id: String,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl MasterKey {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Raw key bytes, for deriving purpose-specific keys (e.g. JWT signing).
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.key
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({:?}, [redacted])", self.id)
    }
}

/// An encrypted value as stored: key id, nonce and ciphertext (with the GCM tag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

pub struct KeyRing {
    keys: Vec<MasterKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KeyRing {
    /// Parses `id:base64key[,id:base64key...]`.
    pub fn parse(spec: &str) -> Result<Self, KeyRingError> {
        let mut keys: Vec<MasterKey> = Vec::new();
        for (index, entry) in spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (id, b64) = entry.split_once(':').ok_or(KeyRingError::Malformed {
                index,
                why: "missing ':'",
            })?;
            let id = id.trim();
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(KeyRingError::Malformed {
                    index,
                    why: "the id must be letters, digits, '-' or '_'",
                });
            }
            let raw = Zeroizing::new(STANDARD.decode(b64.trim()).map_err(|_| {
                KeyRingError::Malformed {
                    index,
                    why: "the key is not base64",
                }
            })?);
            let key: [u8; KEY_LEN] =
                raw.as_slice()
                    .try_into()
                    .map_err(|_| KeyRingError::Malformed {
                        index,
                        why: "the key is not 32 bytes",
                    })?;
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyRingError::DuplicateId(id.to_string()));
            }
            keys.push(MasterKey {
                id: id.to_string(),
                key: Zeroizing::new(key),
            });
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(Self { keys })
    }

    /// The key new ciphertexts are sealed with.
    pub fn active(&self) -> &MasterKey {
        &self.keys[0]
    }

    pub fn keys(&self) -> &[MasterKey] {
        &self.keys
    }

    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn seal(&self, plaintext: &[u8], ctx: &SecretContext<'_>) -> Sealed {
        let key = self.active();
        let cipher = Aes256Gcm::new_from_slice(key.key.as_slice()).expect("32-byte key");
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = ctx.aad();
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        Sealed {
            key_id: key.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn seal_str(&self, secret: &SecretString, ctx: &SecretContext<'_>) -> Sealed {
        self.seal(secret.expose_secret().as_bytes(), ctx)
    }

    pub fn open(
        &self,
        sealed: &Sealed,
        ctx: &SecretContext<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, KeyRingError> {
        let key = self
            .get(&sealed.key_id)
            .ok_or_else(|| KeyRingError::UnknownKey(sealed.key_id.clone()))?;
        let nonce: [u8; NONCE_LEN] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| KeyRingError::BadEnvelope)?;
        let cipher = Aes256Gcm::new_from_slice(key.key.as_slice()).expect("32-byte key");
        let aad = ctx.aad();
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyRingError::Decrypt)
    }

    pub fn open_str(
        &self,
        sealed: &Sealed,
        ctx: &SecretContext<'_>,
    ) -> Result<SecretString, KeyRingError> {
        let bytes = self.open(sealed, ctx)?;
        let s = std::str::from_utf8(&bytes).map_err(|_| KeyRingError::NotUtf8)?;
        Ok(SecretString::from(s.to_string()))
    }

    /// Re-encrypts under the active key; `None` when it already is.
    pub fn reseal(
        &self,
        sealed: &Sealed,
        ctx: &SecretContext<'_>,
    ) -> Result<Option<Sealed>, KeyRingError> {
        if sealed.key_id == self.active().id {
            return Ok(None);
        }
        let plain = self.open(sealed, ctx)?;
        Ok(Some(self.seal(&plain, ctx)))
    }
}

/// A new key ring entry `id:base64key` with 32 random bytes.
pub fn generate_key_entry(id: &str) -> String {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rand::rng().fill_bytes(key.as_mut());
    format!("{id}:{}", STANDARD.encode(key.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn ctx(org: Uuid, row: Uuid, field: &'static str) -> SecretContext<'static> {
        SecretContext {
            org_id: org,
            owner: "connectors",
            owner_id: row,
            field,
        }
    }

    #[test]
    fn seal_and_open_round_trip() {
        let ring = KeyRing::parse(&generate_key_entry("k1")).unwrap();
        let c = ctx(Uuid::new_v4(), Uuid::new_v4(), "client_secret");
        let s = ring.seal(b"hunter2-but-longer", &c);
        assert_eq!(s.key_id, "k1");
        assert_eq!(s.nonce.len(), 12);
        assert!(!s.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(&*ring.open(&s, &c).unwrap(), b"hunter2-but-longer");
    }

    #[test]
    fn nonces_are_fresh() {
        let ring = KeyRing::parse(&generate_key_entry("k1")).unwrap();
        let c = ctx(Uuid::nil(), Uuid::nil(), "f");
        let a = ring.seal(b"same", &c);
        let b = ring.seal(b"same", &c);
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn wrong_context_fails_to_decrypt() {
        let ring = KeyRing::parse(&generate_key_entry("k1")).unwrap();
        let (org, row) = (Uuid::new_v4(), Uuid::new_v4());
        let s = ring.seal(b"secret", &ctx(org, row, "client_secret"));
        assert_eq!(
            ring.open(&s, &ctx(Uuid::new_v4(), row, "client_secret"))
                .unwrap_err(),
            KeyRingError::Decrypt
        );
        assert_eq!(
            ring.open(&s, &ctx(org, Uuid::new_v4(), "client_secret"))
                .unwrap_err(),
            KeyRingError::Decrypt
        );
        assert_eq!(
            ring.open(&s, &ctx(org, row, "other_field")).unwrap_err(),
            KeyRingError::Decrypt
        );
        let mut tampered = s.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            ring.open(&tampered, &ctx(org, row, "client_secret"))
                .unwrap_err(),
            KeyRingError::Decrypt
        );
    }

    #[test]
    fn rotation_keeps_old_ciphertexts_readable_and_reseals() {
        let old = generate_key_entry("old");
        let ring_old = KeyRing::parse(&old).unwrap();
        let c = ctx(Uuid::new_v4(), Uuid::new_v4(), "client_secret");
        let s = ring_old.seal(b"v", &c);

        let ring_new = KeyRing::parse(&format!("{},{old}", generate_key_entry("new"))).unwrap();
        assert_eq!(ring_new.active().id(), "new");
        assert_eq!(&*ring_new.open(&s, &c).unwrap(), b"v");
        let resealed = ring_new.reseal(&s, &c).unwrap().expect("re-encrypted");
        assert_eq!(resealed.key_id, "new");
        assert!(ring_new.reseal(&resealed, &c).unwrap().is_none());

        // Once the old key is dropped from the ring, only the resealed value opens.
        let only_new = KeyRing::parse(&format!("new:{}", ring_new_key_b64(&ring_new))).unwrap();
        assert_eq!(&*only_new.open(&resealed, &c).unwrap(), b"v");
        assert_eq!(
            only_new.open(&s, &c).unwrap_err(),
            KeyRingError::UnknownKey("old".into())
        );
    }

    fn ring_new_key_b64(ring: &KeyRing) -> String {
        STANDARD.encode(ring.active().bytes())
    }

    #[test]
    fn malformed_specs_are_explained() {
        assert_eq!(KeyRing::parse("").unwrap_err(), KeyRingError::Empty);
        assert!(matches!(
            KeyRing::parse("nocolon").unwrap_err(),
            KeyRingError::Malformed { index: 0, .. }
        ));
        assert!(matches!(
            KeyRing::parse("a:!!!").unwrap_err(),
            KeyRingError::Malformed {
                why: "the key is not base64",
                ..
            }
        ));
        assert!(matches!(
            KeyRing::parse("a:AAAA").unwrap_err(),
            KeyRingError::Malformed {
                why: "the key is not 32 bytes",
                ..
            }
        ));
        let e = generate_key_entry("a");
        assert_eq!(
            KeyRing::parse(&format!("{e},{e}")).unwrap_err(),
            KeyRingError::DuplicateId("a".into())
        );
    }

    #[test]
    fn debug_never_prints_key_material() {
        let entry = generate_key_entry("k1");
        let ring = KeyRing::parse(&entry).unwrap();
        let b64 = entry.split_once(':').unwrap().1;
        assert!(!format!("{ring:?}").contains(b64));
        assert!(!format!("{:?}", ring.active()).contains(b64));
        let secret = SecretString::from("s3cr3t".to_string());
        assert!(!format!("{secret:?}").contains("s3cr3t"));
    }
}
