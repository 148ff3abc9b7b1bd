//! The connector's HTTP client for Latchkey: a short-lived token from its client ID and
//! secret (renewed before it ends, or when refused), and calls that ride out network loss and
//! restarts of Latchkey with exponential backoff.

use super::LatchkeyConfig;
use latchkey_crypto::ExposeSecret;
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use url::Url;

/// What Latchkey answered (after retries).
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The error code of an `{"error": {"code"}}` body.
    pub fn code(&self) -> &str {
        self.body
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn message(&self) -> String {
        self.body
            .pointer("/error/message")
            .or_else(|| self.body.get("error_description"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {}", self.status))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Latchkey refused the connector's credentials: {0}")]
    Unauthorized(String),
    #[error("Latchkey answered {status}: {message}")]
    Refused { status: StatusCode, message: String },
}

struct Token {
    value: String,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// A request body.
pub enum Body {
    None,
    Json(Value),
    Gzip(Vec<u8>),
}

pub struct Client {
    http: reqwest::Client,
    base: Url,
    client_id: String,
    secret: latchkey_crypto::SecretString,
    token: Mutex<Option<Token>>,
    /// Give up after this long without an answer (`None`: never, the service's way).
    patience: Option<Duration>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Client {
    pub fn new(c: &LatchkeyConfig, patience: Option<Duration>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("latchkey-connector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: c.url.clone(),
            client_id: c.client_id.clone(),
            secret: c.client_secret.clone(),
            token: Mutex::new(None),
            patience,
        })
    }

    fn url(&self, path: &str) -> Url {
        self.base
            .join(&format!("api/v1/connector-agent/{path}"))
            .expect("a relative API path")
    }

    async fn fetch_token(&self) -> Result<Result<Token, ClientError>, reqwest::Error> {
        let resp = self
            .http
            .post(self.url("token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.secret.expose_secret()),
            ])
            .send()
            .await?;
        let status = resp.status();
        if status.is_server_error() {
            // Handled as a transport problem: retried.
            return Ok(Err(ClientError::Refused {
                status,
                message: "Latchkey is unavailable".into(),
            }));
        }
        if !status.is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let why = body
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("refused")
                .to_string();
            return Ok(Err(ClientError::Unauthorized(why)));
        }
        let t: TokenAnswer = resp.json().await?;
        let life = Duration::from_secs(t.expires_in.max(2));
        Ok(Ok(Token {
            value: t.access_token,
            renew_at: Instant::now() + life.mul_f64(0.8),
        }))
    }

    /// Sends a request; retries transport errors, 5xx and 429 with backoff (forever, or
    /// until `patience` runs out), and a 401 once with a fresh token. Other answers return.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        lease: Option<uuid::Uuid>,
        body: &Body,
    ) -> Result<Answer, ClientError> {
        self.call_with(method, path, lease, &[], body).await
    }

    /// [`Client::call`] with more request headers.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        lease: Option<uuid::Uuid>,
        headers: &[(&'static str, &str)],
        body: &Body,
    ) -> Result<Answer, ClientError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(250);
        let mut refreshed = false;
        loop {
            let attempt = self
                .try_call(method.clone(), path, lease, headers, body)
                .await;
            let retry_after = match attempt {
                Ok(Ok(a)) if a.status == StatusCode::UNAUTHORIZED && !refreshed => {
                    refreshed = true;
                    *self.token.lock().await = None;
                    continue;
                }
                Ok(Ok(a)) if a.status == StatusCode::UNAUTHORIZED => {
                    return Err(ClientError::Unauthorized(a.message()));
                }
                Ok(Ok(a))
                    if a.status.is_server_error() || a.status == StatusCode::TOO_MANY_REQUESTS =>
                {
                    tracing::warn!(status = %a.status, path, "Latchkey is unavailable; retrying");
                    delay
                }
                Ok(Ok(a)) => return Ok(a),
                Ok(Err(ClientError::Unauthorized(why))) => {
                    return Err(ClientError::Unauthorized(why));
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, path, "Latchkey is unavailable; retrying");
                    delay
                }
                Err(e) => {
                    tracing::warn!(error = %e, path, "cannot reach Latchkey; retrying");
                    delay
                }
            };
            if self.patience.is_some_and(|p| started.elapsed() > p) {
                return Err(ClientError::Refused {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: format!(
                        "Latchkey did not answer for {}s",
                        started.elapsed().as_secs()
                    ),
                });
            }
            let jitter = rand::rng().random_range(0..=retry_after.as_millis() as u64 / 4);
            tokio::time::sleep(retry_after + Duration::from_millis(jitter)).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    async fn try_call(
        &self,
        method: Method,
        path: &str,
        lease: Option<uuid::Uuid>,
        headers: &[(&'static str, &str)],
        body: &Body,
    ) -> Result<Result<Answer, ClientError>, reqwest::Error> {
        let token = {
            let mut guard = self.token.lock().await;
            match guard.as_ref() {
                Some(t) if t.renew_at > Instant::now() => t.value.clone(),
                _ => match self.fetch_token().await? {
                    Ok(t) => {
                        let v = t.value.clone();
                        *guard = Some(t);
                        v
                    }
                    Err(e) => return Ok(Err(e)),
                },
            }
        };
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(l) = lease {
            req = req.header("Latchkey-Lease", l.to_string());
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(v),
            Body::Gzip(bytes) => req
                .header("Content-Type", "application/json")
                .header("Content-Encoding", "gzip")
                .body(bytes.clone()),
        };
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok(Ok(Answer { status, body }))
    }

    /// [`Client::call`], requiring a 2xx answer.
    pub async fn ok(
        &self,
        method: Method,
        path: &str,
        lease: Option<uuid::Uuid>,
        body: &Body,
    ) -> Result<Answer, ClientError> {
        let a = self.call(method, path, lease, body).await?;
        if a.status.is_success() {
            Ok(a)
        } else {
            Err(ClientError::Refused {
                status: a.status,
                message: a.message(),
            })
        }
    }
}
