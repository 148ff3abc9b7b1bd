//! RS256 signing for id and access tokens, and the JWKS that publishes the key.

use std::sync::{Arc, OnceLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use sha2::Digest;

use crate::error::SimError;

/// One RSA key per process: generating 2048-bit keys costs tens of milliseconds, too much per test server.
pub(crate) struct Signer {
    key: RsaKeyPair,
    pub kid: String,
    n: String,
    e: String,
    /// The public key, PKCS#1 DER (for tests that misuse it as an HMAC key).
    public_der: Vec<u8>,
}

static SIGNER: OnceLock<Arc<Signer>> = OnceLock::new();

pub(crate) fn signer() -> Result<Arc<Signer>, SimError> {
    if let Some(s) = SIGNER.get() {
        return Ok(s.clone());
    }
    let key = RsaKeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| SimError::Crypto("RSA key generation failed"))?;
    let public = key.public_key();
    let n = B64.encode(public.modulus().big_endian_without_leading_zero());
    let e = B64.encode(public.exponent().big_endian_without_leading_zero());
    let kid = B64.encode(&sha2::Sha256::digest(n.as_bytes())[..20]);
    let public_der = public.as_ref().to_vec();
    let s = Arc::new(Signer {
        key,
        kid,
        n,
        e,
        public_der,
    });
    Ok(SIGNER.get_or_init(|| s).clone())
}

impl Signer {
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, SimError> {
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": self.kid, "x5t": self.kid});
        let mut msg = B64.encode(header.to_string());
        msg.push('.');
        msg.push_str(&B64.encode(claims.to_string()));
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                msg.as_bytes(),
                &mut sig,
            )
            .map_err(|_| SimError::Crypto("RS256 signing failed"))?;
        msg.push('.');
        msg.push_str(&B64.encode(sig));
        Ok(msg)
    }

    /// The public key as PEM (`RSA PUBLIC KEY`), as an attacker would copy it from the JWKS.
    pub(crate) fn public_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.public_der);
        let mut pem = String::from("-----BEGIN RSA PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END RSA PUBLIC KEY-----\n");
        pem
    }

    pub(crate) fn jwks(&self, issuer: &str) -> Value {
        json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "x5t": self.kid,
            "n": self.n, "e": self.e, "issuer": issuer
        }]})
    }
}

/// The claims of a compact JWT, without checking the signature (the server only reads tokens it issued).
pub(crate) fn peek_claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let _h = parts.next()?;
    let body = parts.next()?;
    let _s = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    serde_json::from_slice(&B64.decode(body).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_peeks() {
        let s = signer().unwrap();
        let t = s.sign(&json!({"a": 1})).unwrap();
        assert_eq!(peek_claims(&t).unwrap()["a"], 1);
        assert_eq!(s.jwks("x")["keys"][0]["kid"], s.kid.as_str());
    }
}
