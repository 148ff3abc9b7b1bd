//! Which cloud a connector talks to, and the outbound-URL safety rules for getting there.
//!
//! A connector's "Microsoft Graph domain" setting picks the cloud; the login authority and the
//! token scope follow from it (a custom Graph host needs an explicit login authority). Because
//! these hosts are customer-supplied, every URL is checked before use:
//!
//! * by default only `https` to the known Microsoft hosts is allowed;
//! * a custom host must be `https`, must not be an IP literal in a non-public range (in any spelling:
//!   dotted, decimal, octal, hex, IPv4-mapped IPv6), and must resolve to public addresses only
//!   ([`Endpoints::check_dns`] at settings time);
//! * at connect time the HTTP client's resolver ([`SafeResolver`]) drops non-public addresses again,
//!   so DNS rebinding after validation gains nothing; proxies from the environment are not used
//!   (a proxy would resolve the name itself), and redirects are never followed ([`http_client`]).
//!
//! The development switch [`OutboundPolicy::allow_insecure`] (`LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS=true`)
//! additionally allows `http://127.0.0.1:PORT`, `http://[::1]:PORT` and `http://localhost:PORT`, so
//! that the simulated tenant can stand in for Microsoft.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::{Host, Url};

/// Whether development-only URLs are allowed. Off in production.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundPolicy {
    /// Also allow plain-http loopback (`127.0.0.1`, `[::1]`, `localhost`) for Graph and login,
    /// and a full URL as the login authority. Set from `LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS=true`.
    pub allow_insecure: bool,
}

impl OutboundPolicy {
    pub const STRICT: OutboundPolicy = OutboundPolicy {
        allow_insecure: false,
    };
    pub const INSECURE_DEV: OutboundPolicy = OutboundPolicy {
        allow_insecure: true,
    };
}

/// The Microsoft cloud a connector talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cloud {
    /// Commercial and GCC: `graph.microsoft.com`.
    Global,
    /// US Government L4 (GCC High): `graph.microsoft.us`.
    UsGovHigh,
    /// US Government L5 (DoD): `dod-graph.microsoft.us`.
    UsGovDod,
    /// Microsoft Entra operated by 21Vianet: `microsoftgraph.chinacloudapi.cn`.
    China,
    /// Any other host (a proxy or a gateway in front of Graph); needs an explicit login authority.
    Custom,
    /// Plain-http loopback, only with [`OutboundPolicy::allow_insecure`] (the simulated tenant).
    Development,
}

impl Cloud {
    const KNOWN: [(Cloud, &'static str, &'static str); 4] = [
        (
            Cloud::Global,
            "graph.microsoft.com",
            "login.microsoftonline.com",
        ),
        (
            Cloud::UsGovHigh,
            "graph.microsoft.us",
            "login.microsoftonline.us",
        ),
        (
            Cloud::UsGovDod,
            "dod-graph.microsoft.us",
            "login.microsoftonline.us",
        ),
        (
            Cloud::China,
            "microsoftgraph.chinacloudapi.cn",
            "login.partner.microsoftonline.cn",
        ),
    ];

    /// The Graph host of a known cloud.
    pub fn graph_host(self) -> Option<&'static str> {
        Self::KNOWN.iter().find(|k| k.0 == self).map(|k| k.1)
    }

    /// The login (identity platform) host of a known cloud.
    pub fn login_host(self) -> Option<&'static str> {
        Self::KNOWN.iter().find(|k| k.0 == self).map(|k| k.2)
    }

    fn from_graph_host(host: &str) -> Option<Cloud> {
        Self::KNOWN.iter().find(|k| k.1 == host).map(|k| k.0)
    }
}

/// Login hosts accepted without a public-DNS check. `login.chinacloudapi.cn` is the legacy 21Vianet
/// host still named on Graph's deployments page.
const KNOWN_LOGIN_HOSTS: [&str; 4] = [
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.partner.microsoftonline.cn",
    "login.chinacloudapi.cn",
];

/// The connector setting a URL problem belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    GraphDomain,
    LoginAuthority,
}

impl Field {
    /// The field's label in the UI.
    pub fn label(self) -> &'static str {
        match self {
            Field::GraphDomain => "Microsoft Graph domain",
            Field::LoginAuthority => "Login authority",
        }
    }
    /// The field's name in the REST API.
    pub fn api_name(self) -> &'static str {
        match self {
            Field::GraphDomain => "graph_domain",
            Field::LoginAuthority => "login_authority",
        }
    }
}

/// A refused connector URL: which field, and why in words the admin can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", field.label())]
pub struct EndpointError {
    pub field: Field,
    pub reason: String,
}

impl EndpointError {
    fn new(field: Field, reason: impl Into<String>) -> Self {
        EndpointError {
            field,
            reason: reason.into(),
        }
    }
}

/// Where a connector gets tokens and calls Graph. Built only through [`Endpoints::from_settings`]
/// (or [`Endpoints::global`]), so every value has passed the outbound-URL rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    cloud: Cloud,
    /// `https://graph.microsoft.com` — scheme, host and port only, no trailing slash.
    graph_base: Url,
    /// `https://login.microsoftonline.com` (or a full URL in development) — the tenant is appended.
    login_authority: Url,
    policy: OutboundPolicy,
}

impl Endpoints {
    /// The commercial cloud: `graph.microsoft.com` with `login.microsoftonline.com`.
    pub fn global() -> Self {
        Self::known(Cloud::Global)
    }

    /// A known national cloud (`Global`, `UsGovHigh`, `UsGovDod`, `China`); `None` for the others.
    pub fn for_cloud(cloud: Cloud) -> Option<Self> {
        cloud.graph_host().map(|_| Self::known(cloud))
    }

    fn known(cloud: Cloud) -> Self {
        let graph = cloud.graph_host().unwrap_or("graph.microsoft.com");
        let login = cloud.login_host().unwrap_or("login.microsoftonline.com");
        Endpoints {
            cloud,
            graph_base: Url::parse(&format!("https://{graph}")).expect("static URL"),
            login_authority: Url::parse(&format!("https://{login}")).expect("static URL"),
            policy: OutboundPolicy::STRICT,
        }
    }

    /// Parses the connector settings "Microsoft Graph domain" (empty = `graph.microsoft.com`) and
    /// the optional "Login authority". Syntax and IP-literal rules only; call [`Endpoints::check_dns`]
    /// as well before storing a custom host.
    pub fn from_settings(
        graph_domain: Option<&str>,
        login_authority: Option<&str>,
        policy: OutboundPolicy,
    ) -> Result<Self, EndpointError> {
        let graph_in = graph_domain.map(str::trim).filter(|s| !s.is_empty());
        let login_in = login_authority.map(str::trim).filter(|s| !s.is_empty());
        let graph = match graph_in {
            None => Target::Known(Cloud::Global),
            Some(g) => parse_target(Field::GraphDomain, g, policy)?,
        };
        let login = match login_in {
            None => None,
            Some(l) => Some(parse_target(Field::LoginAuthority, l, policy)?),
        };
        let (cloud, graph_base) = match &graph {
            Target::Known(c) => (
                *c,
                Url::parse(&format!("https://{}", c.graph_host().unwrap_or_default()))
                    .expect("static URL"),
            ),
            Target::KnownLogin(h) => {
                return Err(EndpointError::new(
                    Field::GraphDomain,
                    format!(
                        "{h} is a login host, not a Microsoft Graph domain: use graph.microsoft.com (or your national cloud's Graph domain)."
                    ),
                ));
            }
            Target::Custom(u) => (Cloud::Custom, u.clone()),
            Target::Loopback(u) => (Cloud::Development, u.clone()),
        };
        let login_authority = match (login, cloud) {
            (None, c) if c.login_host().is_some() => {
                Url::parse(&format!("https://{}", c.login_host().unwrap_or_default()))
                    .expect("static URL")
            }
            (None, Cloud::Development) => {
                // The simulated tenant serves login and Graph from one base URL.
                graph_base.clone()
            }
            (None, _) => {
                return Err(EndpointError::new(
                    Field::LoginAuthority,
                    "a custom Microsoft Graph domain needs an explicit login authority (for example https://login.microsoftonline.com): tokens for a custom host cannot be guessed.",
                ));
            }
            (Some(Target::KnownLogin(h)), _) => {
                Url::parse(&format!("https://{h}")).expect("static URL")
            }
            (Some(Target::Known(c)), _) => {
                return Err(EndpointError::new(
                    Field::LoginAuthority,
                    format!(
                        "{} is a Microsoft Graph domain, not a login authority: use {} for this cloud.",
                        c.graph_host().unwrap_or_default(),
                        c.login_host().unwrap_or_default()
                    ),
                ));
            }
            (Some(Target::Custom(u)), _) => u,
            (Some(Target::Loopback(u)), _) => u,
        };
        Ok(Endpoints {
            cloud,
            graph_base,
            login_authority,
            policy,
        })
    }

    pub fn cloud(&self) -> Cloud {
        self.cloud
    }

    pub fn policy(&self) -> OutboundPolicy {
        self.policy
    }

    /// The Graph root, without a version: `https://graph.microsoft.com`.
    pub fn graph_base(&self) -> &Url {
        &self.graph_base
    }

    /// The identity-platform authority the tenant is appended to: `https://login.microsoftonline.com`.
    pub fn login_authority(&self) -> &Url {
        &self.login_authority
    }

    /// The client-credentials scope: `https://{graph host}/.default`.
    pub fn token_scope(&self) -> String {
        format!("{}/.default", origin_string(&self.graph_base))
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self, tenant: &crate::TenantId) -> Url {
        let base = self.login_authority.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{}/oauth2/v2.0/token", tenant.as_segment()))
            .expect("authority and tenant are validated")
    }

    /// Whether `url` points at the configured Graph host (same scheme, host and port). Used to refuse
    /// `@odata.nextLink`s and batch links that would send our token elsewhere.
    pub fn is_graph_url(&self, url: &Url) -> bool {
        url.scheme() == self.graph_base.scheme()
            && url.host() == self.graph_base.host()
            && url.port_or_known_default() == self.graph_base.port_or_known_default()
            && url.username().is_empty()
            && url.password().is_none()
    }

    /// Resolves custom hosts and refuses any that resolve to a non-public address (known Microsoft
    /// hosts and development loopback are not looked up). Run when the settings are saved; the
    /// connect-time resolver enforces the same rule on every connection.
    pub async fn check_dns(&self) -> Result<(), EndpointError> {
        for (field, url) in [
            (Field::GraphDomain, &self.graph_base),
            (Field::LoginAuthority, &self.login_authority),
        ] {
            let Some(Host::Domain(host)) = url.host() else {
                continue;
            };
            if is_known_host(host) || is_localhost_name(host) {
                continue;
            }
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
                Ok(a) => a.collect(),
                Err(e) => {
                    return Err(EndpointError::new(
                        field,
                        format!("{host} could not be resolved ({e}): check the spelling."),
                    ));
                }
            };
            judge_resolution(field, host, &addrs)?;
        }
        Ok(())
    }
}

/// A custom host is acceptable only if it resolves, and only to public addresses.
fn judge_resolution(field: Field, host: &str, addrs: &[SocketAddr]) -> Result<(), EndpointError> {
    if addrs.is_empty() {
        return Err(EndpointError::new(
            field,
            format!("{host} has no addresses in DNS: check the spelling."),
        ));
    }
    if let Some((ip, why)) = addrs
        .iter()
        .find_map(|a| check_public_ip(a.ip()).err().map(|w| (a.ip(), w)))
    {
        return Err(EndpointError::new(
            field,
            format!(
                "{host} resolves to {ip}, {why}: only hosts on the public internet are allowed."
            ),
        ));
    }
    Ok(())
}

fn origin_string(u: &Url) -> String {
    u.as_str().trim_end_matches('/').to_string()
}

enum Target {
    Known(Cloud),
    KnownLogin(&'static str),
    Custom(Url),
    Loopback(Url),
}

fn is_known_host(h: &str) -> bool {
    Cloud::from_graph_host(h).is_some() || KNOWN_LOGIN_HOSTS.contains(&h)
}

fn is_localhost_name(h: &str) -> bool {
    h.eq_ignore_ascii_case("localhost")
}

/// Parses one setting: a bare host (`graph.microsoft.us`) or a URL (`https://host`, `http://127.0.0.1:PORT`).
fn parse_target(
    field: Field,
    input: &str,
    policy: OutboundPolicy,
) -> Result<Target, EndpointError> {
    let err = |r: String| EndpointError::new(field, r);
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("contains spaces or control characters: paste just the host name, e.g. graph.microsoft.com.".into()));
    }
    let has_scheme = input.contains("://");
    let url = Url::parse(&if has_scheme {
        input.to_string()
    } else {
        format!("https://{input}")
    })
    .map_err(|e| err(format!("'{input}' is not a valid host name or URL ({e}).")))?;
    match url.scheme() {
        "https" | "http" => {}
        other => {
            return Err(err(format!(
                "the scheme '{other}' is not allowed: use https."
            )));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err("must not contain a user name or password.".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err(
            "must not contain a query string or fragment: paste just the host name.".into(),
        ));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(err(format!(
            "must not contain a path ('{}'): paste just the host name; the API version and tenant are added automatically.",
            url.path()
        )));
    }
    let host = url
        .host()
        .ok_or_else(|| err("has no host name.".into()))?
        .to_owned();
    // Loopback for the simulated tenant, only when explicitly allowed.
    let loopback = match &host {
        Host::Domain(d) => is_localhost_name(d),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    };
    if loopback {
        if policy.allow_insecure {
            let mut u = url.clone();
            u.set_path("");
            return Ok(Target::Loopback(u));
        }
        return Err(err(
            "points at this server itself (loopback): only public hosts are allowed. (Local development URLs need LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS=true.)".into(),
        ));
    }
    if url.scheme() != "https" {
        return Err(err(if policy.allow_insecure {
            "plain http is allowed only for 127.0.0.1, [::1] and localhost in development: use https.".into()
        } else {
            "must use https.".into()
        }));
    }
    if url.port().is_some() && !policy.allow_insecure {
        return Err(err("must not name a port: Microsoft Graph and the identity platform are served on the standard https port.".into()));
    }
    match &host {
        Host::Ipv4(ip) => check_public_ip(IpAddr::V4(*ip))
            .map_err(|why| err(format!("{ip} is {why}: only public hosts are allowed.")))?,
        Host::Ipv6(ip) => check_public_ip(IpAddr::V6(*ip))
            .map_err(|why| err(format!("[{ip}] is {why}: only public hosts are allowed.")))?,
        Host::Domain(d) => {
            if let Some(ip) = parse_ipv4_loose(d) {
                // The URL parser normalises most numeric spellings; this catches the rest.
                check_public_ip(IpAddr::V4(ip)).map_err(|why| {
                    err(format!(
                        "{d} means {ip}, {why}: only public hosts are allowed."
                    ))
                })?;
            }
            if let Some(c) = Cloud::from_graph_host(d) {
                return Ok(Target::Known(c));
            }
            if let Some(h) = KNOWN_LOGIN_HOSTS.iter().find(|h| **h == d.as_str()) {
                return Ok(Target::KnownLogin(h));
            }
            if !d.contains('.') {
                return Err(err(format!(
                    "'{d}' is not a fully qualified host name (e.g. graph.microsoft.com)."
                )));
            }
            if d.ends_with(".local")
                || d.ends_with(".internal")
                || d.ends_with(".localhost")
                || d.ends_with(".arpa")
            {
                return Err(err(format!(
                    "{d} is a local-network name: only hosts on the public internet are allowed."
                )));
            }
        }
    }
    let mut u = url.clone();
    u.set_path("");
    Ok(Target::Custom(u))
}

/// Why an address is not public, or `Ok` for a public unicast address.
///
/// Covers unspecified, loopback, RFC 1918 private, CGNAT (100.64/10), link-local (incl. the cloud
/// metadata address 169.254.169.254), multicast, broadcast, documentation and benchmarking ranges,
/// IPv6 ULA (fc00::/7), link-local (fe80::/10), site-local, and IPv4 embedded in IPv6 (mapped
/// `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`).
pub fn check_public_ip(ip: IpAddr) -> Result<(), &'static str> {
    match ip {
        IpAddr::V4(v4) => check_public_v4(v4),
        IpAddr::V6(v6) => check_public_v6(v6),
    }
}

fn check_public_v4(ip: Ipv4Addr) -> Result<(), &'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        return Err("the cloud instance-metadata address");
    }
    if ip.is_unspecified() || o[0] == 0 {
        return Err("an unspecified (\"this network\") address");
    }
    if ip.is_loopback() {
        return Err("a loopback address");
    }
    if ip.is_private() {
        return Err("a private-network address");
    }
    if o[0] == 100 && (o[1] & 0xC0) == 64 {
        return Err("a carrier-grade NAT (shared) address");
    }
    if ip.is_link_local() {
        return Err("a link-local address");
    }
    if ip.is_multicast() {
        return Err("a multicast address");
    }
    if ip.is_broadcast() || o[0] >= 240 {
        return Err("a reserved address");
    }
    if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        return Err("an IETF protocol-assignment address");
    }
    if ip.is_documentation() {
        return Err("a documentation address");
    }
    if o[0] == 198 && (o[1] & 0xFE) == 18 {
        return Err("a benchmarking address");
    }
    Ok(())
}

fn check_public_v6(ip: Ipv6Addr) -> Result<(), &'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Err("an unspecified address");
    }
    if ip.is_loopback() {
        return Err("a loopback address");
    }
    // IPv4 embedded in IPv6: judge the IPv4 address (::ffff:127.0.0.1 is loopback).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return check_public_v4(v4);
    }
    if s[0..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated) ::a.b.c.d
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return check_public_v4(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return check_public_v4(v4);
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return check_public_v4(v4);
    }
    if (s[0] & 0xfe00) == 0xfc00 {
        return Err("a unique-local (private) IPv6 address");
    }
    if (s[0] & 0xffc0) == 0xfe80 {
        return Err("a link-local IPv6 address");
    }
    if (s[0] & 0xffc0) == 0xfec0 {
        return Err("a site-local IPv6 address");
    }
    if (s[0] & 0xff00) == 0xff00 {
        return Err("a multicast IPv6 address");
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Err("a documentation IPv6 address");
    }
    if s[0] == 0x0100 && s[1..4] == [0, 0, 0] {
        return Err("a discard-only IPv6 address");
    }
    Ok(())
}

/// Reads the numeric IPv4 spellings that `inet_aton` accepts: `127.0.0.1`, `2130706433`,
/// `0x7f000001`, `0177.0.0.1`, `127.1`, `0x7f.1` — each part decimal, octal (leading 0) or hex (0x).
pub fn parse_ipv4_loose(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let nums: Vec<u64> = parts
        .iter()
        .map(|p| parse_num_part(p))
        .collect::<Option<_>>()?;
    let (last, init) = nums.split_last()?;
    if init.iter().any(|&n| n > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - init.len() as u32);
    if *last >= (1u64 << rest_bits) {
        return None;
    }
    let mut v: u64 = 0;
    for (i, n) in init.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    v |= last;
    Some(Ipv4Addr::from(v as u32))
}

fn parse_num_part(p: &str) -> Option<u64> {
    let lower = p.to_ascii_lowercase();
    let (digits, radix) = if let Some(h) = lower.strip_prefix("0x") {
        (h.to_string(), 16)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (lower[1..].to_string(), 8)
    } else {
        (lower, 10)
    };
    if digits.is_empty() {
        return if radix == 16 { Some(0) } else { None };
    }
    if digits.len() > 12 {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok()
}

/// The connect-time DNS resolver: resolves with the system resolver and drops every non-public
/// address, so a name that passed [`Endpoints::check_dns`] cannot be rebound to an internal address.
/// With [`OutboundPolicy::allow_insecure`], `localhost` may resolve to loopback (nothing else).
#[derive(Debug, Clone, Copy)]
pub struct SafeResolver {
    policy: OutboundPolicy,
}

impl SafeResolver {
    pub fn new(policy: OutboundPolicy) -> Self {
        SafeResolver { policy }
    }

    /// Which of `addrs` may be connected to for `name`.
    pub fn filter(
        &self,
        name: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Vec<SocketAddr> {
        let local = self.policy.allow_insecure && is_localhost_name(name);
        addrs
            .into_iter()
            .filter(|a| {
                if local {
                    a.ip().is_loopback()
                } else {
                    check_public_ip(a.ip()).is_ok()
                }
            })
            .collect()
    }
}

/// The resolver found nothing it may connect to.
#[derive(Debug)]
struct UnsafeResolution(String);

impl fmt::Display for UnsafeResolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resolves only to non-public addresses; refusing to connect",
            self.0
        )
    }
}

impl std::error::Error for UnsafeResolution {}

impl reqwest::dns::Resolve for SafeResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = *self;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok = this.filter(&host, found);
            if ok.is_empty() {
                return Err(
                    Box::new(UnsafeResolution(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Error building the HTTP client (TLS initialisation).
#[derive(Debug, thiserror::Error)]
#[error("could not initialise the HTTPS client: {0}")]
pub struct ClientBuildError(#[from] reqwest::Error);

/// The HTTP client every connector request goes through: redirects never followed, the
/// [`SafeResolver`] on every connection, no proxy from the environment, https only unless
/// development URLs are allowed, and bounded connect/request times.
pub fn http_client(policy: OutboundPolicy) -> Result<reqwest::Client, ClientBuildError> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(SafeResolver::new(policy)))
        .no_proxy()
        .https_only(!policy.allow_insecure)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(100))
        .user_agent(concat!("Latchkey/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict(g: &str) -> Result<Endpoints, EndpointError> {
        Endpoints::from_settings(Some(g), None, OutboundPolicy::STRICT)
    }

    #[test]
    fn known_clouds_map_to_their_login_authority_and_scope() {
        let cases = [
            (
                "",
                Cloud::Global,
                "https://login.microsoftonline.com/",
                "https://graph.microsoft.com/.default",
            ),
            (
                "graph.microsoft.com",
                Cloud::Global,
                "https://login.microsoftonline.com/",
                "https://graph.microsoft.com/.default",
            ),
            (
                "https://graph.microsoft.com/",
                Cloud::Global,
                "https://login.microsoftonline.com/",
                "https://graph.microsoft.com/.default",
            ),
            (
                "GRAPH.MICROSOFT.US",
                Cloud::UsGovHigh,
                "https://login.microsoftonline.us/",
                "https://graph.microsoft.us/.default",
            ),
            (
                "dod-graph.microsoft.us",
                Cloud::UsGovDod,
                "https://login.microsoftonline.us/",
                "https://dod-graph.microsoft.us/.default",
            ),
            (
                "microsoftgraph.chinacloudapi.cn",
                Cloud::China,
                "https://login.partner.microsoftonline.cn/",
                "https://microsoftgraph.chinacloudapi.cn/.default",
            ),
        ];
        for (input, cloud, login, scope) in cases {
            let e = Endpoints::from_settings(Some(input), None, OutboundPolicy::STRICT).unwrap();
            assert_eq!(e.cloud(), cloud, "{input}");
            assert_eq!(e.login_authority().as_str(), login, "{input}");
            assert_eq!(e.token_scope(), scope, "{input}");
        }
        let e = Endpoints::from_settings(None, None, OutboundPolicy::STRICT).unwrap();
        assert_eq!(e, Endpoints::global());
        assert_eq!(
            Endpoints::for_cloud(Cloud::China).unwrap().cloud(),
            Cloud::China
        );
        assert!(Endpoints::for_cloud(Cloud::Custom).is_none());
        let t = crate::TenantId::parse("contoso.onmicrosoft.com").unwrap();
        assert_eq!(
            Endpoints::global().token_url(&t).as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
    }

    #[test]
    fn login_authority_can_be_overridden_with_a_known_host() {
        let e = Endpoints::from_settings(
            Some("microsoftgraph.chinacloudapi.cn"),
            Some("login.chinacloudapi.cn"),
            OutboundPolicy::STRICT,
        )
        .unwrap();
        assert_eq!(
            e.login_authority().as_str(),
            "https://login.chinacloudapi.cn/"
        );
        let err =
            Endpoints::from_settings(None, Some("graph.microsoft.com"), OutboundPolicy::STRICT)
                .unwrap_err();
        assert_eq!(err.field, Field::LoginAuthority);
        assert!(err.reason.contains("login.microsoftonline.com"), "{err}");
        let err = strict("login.microsoftonline.com").unwrap_err();
        assert_eq!(err.field, Field::GraphDomain);
    }

    #[test]
    fn custom_host_needs_https_and_a_login_authority() {
        let err = strict("graph.contoso-proxy.com").unwrap_err();
        assert_eq!(err.field, Field::LoginAuthority);
        assert!(
            err.to_string()
                .starts_with("Login authority: a custom Microsoft Graph domain needs"),
            "{err}"
        );
        let e = Endpoints::from_settings(
            Some("graph.contoso-proxy.com"),
            Some("https://login.contoso-proxy.com"),
            OutboundPolicy::STRICT,
        )
        .unwrap();
        assert_eq!(e.cloud(), Cloud::Custom);
        assert_eq!(e.token_scope(), "https://graph.contoso-proxy.com/.default");
        let err = strict("http://graph.contoso-proxy.com").unwrap_err();
        assert_eq!(err.reason, "must use https.");
        for (bad, needle) in [
            ("ftp://graph.microsoft.com", "scheme"),
            ("https://user:pw@graph.microsoft.com", "user name"),
            ("https://graph.microsoft.com/v1.0", "path"),
            ("https://graph.microsoft.com/?x=1", "query"),
            ("https://graph.microsoft.com:8443", "port"),
            ("graph microsoft com", "spaces"),
            ("intranet", "fully qualified"),
            ("graph.corp.internal", "local-network"),
            ("printer.local", "local-network"),
        ] {
            let err = strict(bad).unwrap_err();
            assert_eq!(err.field, Field::GraphDomain, "{bad}");
            assert!(err.reason.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn every_non_public_address_spelling_is_refused() {
        let refused = [
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0x7f000001",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "017700000001",
            "0",
            "0.0.0.0",
            "10.1.2.3",
            "012.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "3232235777",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "2852039166",
            "0xa9fea9fe",
            "169.254.1.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "192.0.2.1",
            "[::1]",
            "[::]",
            "[0:0:0:0:0:0:0:1]",
            "[fc00::1]",
            "[fd12:3456::1]",
            "[fe80::1]",
            "[fec0::1]",
            "[ff02::1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[::ffff:169.254.169.254]",
            "[::ffff:10.0.0.1]",
            "[::127.0.0.1]",
            "[64:ff9b::a9fe:a9fe]",
            "[2002:c0a8:0101::1]",
            "[2001:db8::1]",
        ];
        for host in refused {
            let err = strict(&format!("https://{host}")).unwrap_err();
            assert_eq!(err.field, Field::GraphDomain, "{host}");
            assert!(
                err.reason.contains("only public hosts") || err.reason.contains("loopback"),
                "{host}: {err}"
            );
            // Bare host input (no scheme) is read the same way.
            assert!(strict(host).is_err(), "{host}");
        }
        let err = strict("169.254.169.254").unwrap_err();
        assert!(err.reason.contains("metadata"), "{err}");
        let err = strict("https://2130706433").unwrap_err();
        assert!(err.reason.contains("loopback"), "{err}");
    }

    #[test]
    fn public_addresses_pass_the_ip_check() {
        for ip in [
            "20.190.128.1",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2603:1006::1",
            "[::ffff:8.8.8.8]",
        ] {
            let ip: IpAddr = ip.trim_matches(|c| c == '[' || c == ']').parse().unwrap();
            assert!(check_public_ip(ip).is_ok(), "{ip}");
        }
        // A public IP literal is syntactically allowed (it is still a custom host needing a login authority).
        let err = strict("https://8.8.8.8").unwrap_err();
        assert_eq!(err.field, Field::LoginAuthority);
    }

    #[test]
    fn loose_ipv4_parsing() {
        let cases = [
            ("127.0.0.1", Some([127, 0, 0, 1])),
            ("2130706433", Some([127, 0, 0, 1])),
            ("0x7F000001", Some([127, 0, 0, 1])),
            ("0177.0.0.01", Some([127, 0, 0, 1])),
            ("127.1", Some([127, 0, 0, 1])),
            ("127.0.1", Some([127, 0, 0, 1])),
            ("0xa9.0xfe.0xa9.0xfe", Some([169, 254, 169, 254])),
            ("0x", Some([0, 0, 0, 0])),
            ("256.0.0.1", None),
            ("1.2.3.4.5", None),
            ("08.1.1.1", None),
            ("graph.microsoft.com", None),
            ("4294967296", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_ipv4_loose(s), want.map(Ipv4Addr::from), "{s}");
        }
    }

    #[test]
    fn development_switch_allows_only_loopback_http() {
        let dev = OutboundPolicy::INSECURE_DEV;
        for g in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:9000",
            "https://localhost:8443",
        ] {
            let e = Endpoints::from_settings(Some(g), None, dev).unwrap();
            assert_eq!(e.cloud(), Cloud::Development, "{g}");
            // Login and Graph share the simulated tenant's base URL unless told otherwise.
            assert_eq!(e.login_authority(), e.graph_base(), "{g}");
            assert_eq!(
                e.token_scope(),
                format!("{}/.default", g.trim_end_matches('/'))
            );
        }
        let e = Endpoints::from_settings(
            Some("http://127.0.0.1:8080"),
            Some("http://127.0.0.1:9090"),
            dev,
        )
        .unwrap();
        assert_eq!(e.login_authority().as_str(), "http://127.0.0.1:9090/");
        // Without the switch loopback is refused with a hint.
        let err = strict("http://127.0.0.1:8080").unwrap_err();
        assert!(
            err.reason
                .contains("LATCHKEY_ALLOW_INSECURE_CONNECTOR_URLS"),
            "{err}"
        );
        let err =
            Endpoints::from_settings(None, Some("http://localhost:1"), OutboundPolicy::STRICT)
                .unwrap_err();
        assert_eq!(err.field, Field::LoginAuthority);
        // The switch does not open private ranges or plain http elsewhere.
        for g in [
            "http://10.0.0.1:80",
            "http://169.254.169.254",
            "http://graph.microsoft.com",
            "https://192.168.0.1",
        ] {
            assert!(Endpoints::from_settings(Some(g), None, dev).is_err(), "{g}");
        }
    }

    #[test]
    fn resolver_filters_non_public_addresses() {
        let strict = SafeResolver::new(OutboundPolicy::STRICT);
        let addrs: Vec<SocketAddr> = [
            "127.0.0.1:443",
            "10.0.0.5:443",
            "[::ffff:169.254.169.254]:443",
            "20.190.128.1:443",
            "[fd00::1]:443",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(
            strict.filter("graph.microsoft.com", addrs.clone()),
            vec!["20.190.128.1:443".parse().unwrap()]
        );
        assert!(
            strict
                .filter("localhost", addrs.clone())
                .iter()
                .all(|a| !a.ip().is_loopback())
        );
        let dev = SafeResolver::new(OutboundPolicy::INSECURE_DEV);
        assert_eq!(
            dev.filter("localhost", addrs.clone()),
            vec!["127.0.0.1:443".parse().unwrap()]
        );
        // Rebinding a public name to loopback is refused even in development.
        assert_eq!(
            dev.filter("rebind.example.com", addrs),
            vec!["20.190.128.1:443".parse().unwrap()]
        );
    }

    #[tokio::test]
    async fn resolver_refuses_a_name_that_resolves_to_loopback() {
        use reqwest::dns::Resolve;
        let r = SafeResolver::new(OutboundPolicy::STRICT);
        let err = match r.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolved under the strict policy"),
            Err(e) => e,
        };
        assert!(err.to_string().contains("non-public"), "{err}");
        let ok = SafeResolver::new(OutboundPolicy::INSECURE_DEV)
            .resolve("localhost".parse().unwrap())
            .await;
        assert!(ok.is_ok());
    }

    #[tokio::test]
    async fn http_client_refuses_to_connect_to_loopback_by_name() {
        let client = http_client(OutboundPolicy::STRICT).unwrap();
        let err = client.get("https://localhost:1/").send().await.unwrap_err();
        let described = crate::graph::describe_reqwest_error(&err);
        assert!(
            described.contains("resolves only to non-public addresses"),
            "{described}"
        );
        assert!(
            !described.contains("https://"),
            "URLs stay out of messages: {described}"
        );
        // And plain http is refused outright in strict mode.
        assert!(client.get("http://example.com/").send().await.is_err());
    }

    #[tokio::test]
    async fn dns_check_refuses_any_non_public_answer() {
        let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let err = judge_resolution(
            Field::GraphDomain,
            "graph.evil.example",
            &[a("20.190.128.1:443"), a("127.0.0.1:443")],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Microsoft Graph domain: graph.evil.example resolves to 127.0.0.1, a loopback address: only hosts on the public internet are allowed."
        );
        let err = judge_resolution(
            Field::LoginAuthority,
            "login.evil.example",
            &[a("[::ffff:169.254.169.254]:443")],
        )
        .unwrap_err();
        assert!(err.reason.contains("metadata"), "{err}");
        assert!(judge_resolution(Field::GraphDomain, "x.example", &[]).is_err());
        assert!(
            judge_resolution(Field::GraphDomain, "x.example", &[a("20.190.128.1:443")]).is_ok()
        );
        // Known hosts and the development base are not looked up (works offline).
        let dev = Endpoints::from_settings(
            Some("http://localhost:1"),
            None,
            OutboundPolicy::INSECURE_DEV,
        )
        .unwrap();
        assert!(dev.check_dns().await.is_ok());
        assert!(Endpoints::global().check_dns().await.is_ok());
    }
}
