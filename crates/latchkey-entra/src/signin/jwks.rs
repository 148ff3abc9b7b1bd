//! The identity platform's signing keys (JWKS), fetched through the connector HTTP client
//! (outbound-URL rules, no redirects), cached for a day, and fetched again when a token names a
//! key we do not know — at most once per refetch interval, so forged `kid`s cannot make us
//! hammer the endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use url::Url;

use super::SignInError;
use super::id_token::Rejected;

const TTL: Duration = Duration::from_secs(24 * 60 * 60);
const REFETCH_INTERVAL: Duration = Duration::from_secs(5 * 60);
const MAX_JWKS_BYTES: usize = 512 * 1024;

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Default)]
struct Cached {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

pub struct KeyCache {
    http: reqwest::Client,
    url: Url,
    refetch_interval: Duration,
    cached: tokio::sync::Mutex<Cached>,
    fetches: AtomicU64,
}

impl KeyCache {
    pub fn new(http: reqwest::Client, url: Url) -> Self {
        KeyCache {
            http,
            url,
            refetch_interval: REFETCH_INTERVAL,
            cached: tokio::sync::Mutex::new(Cached::default()),
            fetches: AtomicU64::new(0),
        }
    }

    pub fn with_refetch_interval(mut self, every: Duration) -> Self {
        self.refetch_interval = every;
        self
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The RSA key named `kid`.
    pub async fn key(&self, kid: &str) -> Result<DecodingKey, SignInError> {
        let mut c = self.cached.lock().await;
        let age = c.fetched_at.map(|t| t.elapsed());
        let fresh = age.is_some_and(|a| a < TTL);
        if fresh && let Some(k) = c.keys.get(kid) {
            return Ok(k.clone());
        }
        // Stale, never fetched, or an unknown kid (keys roll over): fetch, rate-limited.
        let may_fetch = !fresh || age.is_none_or(|a| a >= self.refetch_interval);
        if may_fetch {
            match self.fetch().await {
                Ok(keys) => {
                    c.keys = keys;
                    c.fetched_at = Some(Instant::now());
                }
                // A stale set is better than none while the endpoint is down.
                Err(e) if c.keys.is_empty() => return Err(e),
                Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; using the cached keys"),
            }
        }
        c.keys
            .get(kid)
            .cloned()
            .ok_or(SignInError::Rejected(Rejected::UnknownKey))
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, SignInError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .get(self.url.clone())
            .send()
            .await
            .map_err(|e| SignInError::Network(crate::graph::describe_reqwest_error(&e)))?;
        if !resp.status().is_success() {
            return Err(SignInError::Network(format!(
                "the signing keys answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        let body = read_limited(resp, MAX_JWKS_BYTES).await?;
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|_| SignInError::Malformed("the signing keys are not a JWKS".into()))?;
        let mut keys = HashMap::new();
        for k in set.keys {
            if k.kty != "RSA" || k.usage.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            if let (Some(kid), Some(n), Some(e)) = (k.kid, k.n, k.e)
                && let Ok(key) = DecodingKey::from_rsa_components(&n, &e)
            {
                keys.insert(kid, key);
            }
        }
        tracing::debug!(
            keys = keys.len(),
            "fetched the identity platform's signing keys"
        );
        Ok(keys)
    }
}

/// Reads a response body of at most `limit` bytes.
pub(crate) async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, SignInError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| SignInError::Network(crate::graph::describe_reqwest_error(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(SignInError::Malformed("the answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
