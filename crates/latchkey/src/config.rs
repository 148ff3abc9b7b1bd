//! Configuration from flags and environment variables, parsed once at start-up. A bad
//! value stops the process with one line naming the variable and what is expected
//! (exit code 2).

use latchkey_crypto::KeyRing;
use std::net::SocketAddr;
use std::path::PathBuf;
use url::Url;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/latchkey";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {var} {problem}: expected {expected}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
    pub expected: String,
}

impl ConfigError {
    pub fn invalid(var: &'static str, value: &str, expected: impl Into<String>) -> Self {
        // Never echo a value that could be a secret.
        let shown = if var.contains("KEY") || var.contains("SECRET") {
            "is malformed".to_string()
        } else {
            format!("={value:?} is not valid")
        };
        Self {
            var,
            problem: shown,
            expected: expected.into(),
        }
    }

    pub fn missing(var: &'static str, expected: impl Into<String>) -> Self {
        Self {
            var,
            problem: "is not set".into(),
            expected: expected.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

pub fn database_url(flag: Option<String>) -> Result<String, ConfigError> {
    let url = flag.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
    match Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") && u.host_str().is_some() => {
            Ok(url)
        }
        _ => Err(ConfigError::invalid(
            "DATABASE_URL",
            &redact_url(&url),
            "a PostgreSQL URL such as postgres://user@127.0.0.1:5432/latchkey",
        )),
    }
}

fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

pub fn listen(flag: Option<String>) -> Result<SocketAddr, ConfigError> {
    let raw = flag.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    raw.parse().map_err(|_| {
        ConfigError::invalid(
            "LATCHKEY_LISTEN",
            &raw,
            "an address and port such as 127.0.0.1:8080",
        )
    })
}

pub fn public_url(flag: Option<String>, listen: SocketAddr) -> Result<Url, ConfigError> {
    let Some(raw) = flag else {
        let host = if listen.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            listen.ip().to_string()
        };
        let host = if listen.is_ipv6() && !listen.ip().is_unspecified() {
            format!("[{host}]")
        } else {
            host
        };
        return Ok(Url::parse(&format!("http://{host}:{}/", listen.port()))
            .expect("valid URL from a socket address"));
    };
    match Url::parse(&raw) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.query().is_none() =>
        {
            Ok(u)
        }
        _ => Err(ConfigError::invalid(
            "LATCHKEY_PUBLIC_URL",
            &raw,
            "the URL people use to reach Latchkey, such as https://latchkey.example.com",
        )),
    }
}

/// How the long-running commands connect: `DATABASE_URL` and
/// `LATCHKEY_DB_STATEMENT_TIMEOUT_SECS` (longest a statement may run before PostgreSQL
/// cancels it; 30 s, fractions allowed).
pub fn db_config(global: &crate::cli::GlobalArgs) -> Result<latchkey_store::DbConfig, ConfigError> {
    let mut db = latchkey_store::DbConfig::new(database_url(global.database_url.clone())?);
    if let Some(raw) = &global.db_statement_timeout_secs {
        let secs = raw
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| (0.001..=86_400.0).contains(s))
            .ok_or_else(|| {
                ConfigError::invalid(
                    "LATCHKEY_DB_STATEMENT_TIMEOUT_SECS",
                    raw,
                    "seconds from 0.001 to 86400, e.g. 30 or 2.5",
                )
            })?;
        db.statement_timeout = std::time::Duration::from_secs_f64(secs);
    }
    Ok(db)
}

/// The JIT access settings (`LATCHKEY_ACCESS_*`), with links in emails to `public_url`.
pub fn access(
    public_url: Url,
    args: &crate::cli::AccessArgs,
) -> Result<latchkey_access::AccessConfig, ConfigError> {
    fn secs(var: &'static str, raw: Option<&String>, default: u64) -> Result<u64, ConfigError> {
        match raw {
            None => Ok(default),
            Some(r) => r
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=86_400).contains(n))
                .ok_or_else(|| {
                    ConfigError::invalid(var, r, "a whole number of seconds from 1 to 86400")
                }),
        }
    }
    Ok(latchkey_access::AccessConfig {
        public_url,
        min_duration_seconds: secs(
            "LATCHKEY_ACCESS_MIN_DURATION_SECS",
            args.access_min_duration_secs.as_ref(),
            300,
        )? as i64,
        sweep_every: std::time::Duration::from_secs(secs(
            "LATCHKEY_ACCESS_SWEEP_SECS",
            args.access_sweep_secs.as_ref(),
            30,
        )?),
    })
}

pub fn master_keys(flag: Option<String>) -> Result<KeyRing, ConfigError> {
    let raw = flag.ok_or_else(|| {
        ConfigError::missing(
            "LATCHKEY_MASTER_KEYS",
            "one or more `id:base64key` entries, comma-separated, the first active (create one with `latchkey keys generate`)",
        )
    })?;
    KeyRing::parse(&raw)
        .map_err(|e| ConfigError::invalid("LATCHKEY_MASTER_KEYS", "", e.to_string()))
}

pub fn log_format(flag: Option<String>) -> Result<LogFormat, ConfigError> {
    match flag.as_deref() {
        None | Some("pretty") => Ok(LogFormat::Pretty),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(ConfigError::invalid(
            "LATCHKEY_LOG_FORMAT",
            other,
            "`pretty` or `json`",
        )),
    }
}

pub fn flag(var: &'static str, raw: Option<String>) -> Result<bool, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") | Some("no") => Ok(false),
        Some("true") | Some("1") | Some("yes") => Ok(true),
        Some(other) => Err(ConfigError::invalid(var, other, "true or false")),
    }
}

pub fn outbound_policy(raw: Option<String>) -> Result<latchkey_entra::OutboundPolicy, ConfigError> {
    Ok(if flag("LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS", raw)? {
        latchkey_entra::OutboundPolicy::INSECURE_DEV
    } else {
        latchkey_entra::OutboundPolicy::STRICT
    })
}

/// Latchkey's own Entra app: both id and secret, or neither (then OAuth onboarding is off).
pub fn entra_app(
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<Option<latchkey_entra::onboarding::LatchkeyApp>, ConfigError> {
    match (
        client_id.filter(|s| !s.trim().is_empty()),
        client_secret.filter(|s| !s.trim().is_empty()),
    ) {
        (None, None) => Ok(None),
        (Some(id), Some(secret)) => {
            let client_id = latchkey_entra::ClientId::parse(&id).map_err(|_| {
                ConfigError::invalid(
                    "LATCHKEY_ENTRA_APP_CLIENT_ID",
                    &id,
                    "the app's Application (client) ID, a GUID",
                )
            })?;
            Ok(Some(latchkey_entra::onboarding::LatchkeyApp {
                client_id,
                client_secret: latchkey_crypto::SecretString::from(secret),
            }))
        }
        (Some(_), None) => Err(ConfigError::missing(
            "LATCHKEY_ENTRA_APP_CLIENT_SECRET",
            "the secret of the app named by LATCHKEY_ENTRA_APP_CLIENT_ID",
        )),
        (None, Some(_)) => Err(ConfigError::missing(
            "LATCHKEY_ENTRA_APP_CLIENT_ID",
            "the client ID of the app whose secret LATCHKEY_ENTRA_APP_CLIENT_SECRET holds",
        )),
    }
}

pub fn login_authority(raw: Option<String>) -> Result<Option<Url>, ConfigError> {
    match raw.filter(|s| !s.trim().is_empty()) {
        None => Ok(None),
        Some(r) => match Url::parse(r.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                Ok(Some(u))
            }
            _ => Err(ConfigError::invalid(
                "LATCHKEY_ENTRA_LOGIN_AUTHORITY",
                &r,
                "a URL such as https://login.microsoftonline.com",
            )),
        },
    }
}

/// Where `demo` keeps its development files (master key, private PostgreSQL cluster).
pub fn local_dir() -> PathBuf {
    PathBuf::from(".latchkey")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        assert_eq!(listen(None).unwrap().to_string(), "127.0.0.1:8080");
        let e = listen(Some("8080".into())).unwrap_err().to_string();
        assert!(
            e.contains("LATCHKEY_LISTEN") && e.contains("127.0.0.1:8080"),
            "{e}"
        );
        assert!(
            database_url(Some("mysql://x".into()))
                .unwrap_err()
                .to_string()
                .contains("DATABASE_URL")
        );
        let e = database_url(Some("http://u:hunter2@h/db".into()))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(
            public_url(None, "0.0.0.0:9000".parse().unwrap())
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9000/"
        );
        assert!(public_url(Some("ftp://x".into()), listen(None).unwrap()).is_err());
        assert_eq!(log_format(Some("json".into())).unwrap(), LogFormat::Json);
        assert!(
            log_format(Some("xml".into()))
                .unwrap_err()
                .to_string()
                .contains("LATCHKEY_LOG_FORMAT")
        );
        let e = master_keys(Some("k1:c2VjcmV0".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("LATCHKEY_MASTER_KEYS") && !e.contains("c2VjcmV0"),
            "{e}"
        );
        assert!(
            master_keys(None)
                .unwrap_err()
                .to_string()
                .contains("keys generate")
        );
    }
}
