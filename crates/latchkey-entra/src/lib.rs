//! Microsoft identity platform and Microsoft Graph client for Latchkey connectors.
//!
//! The foundation the connector onboarding (connection test), the Entra sync and provisioning are
//! built on:
//!
//! * [`endpoints`] — which cloud a connector talks to ([`Endpoints`]: Graph base, login authority,
//!   token scope) and outbound-URL safety ([`OutboundPolicy`], [`endpoints::http_client`]).
//! * [`ids`] — [`TenantId`] and [`ClientId`], parsed once.
//! * [`auth`] — client-credentials tokens, cached and refreshed ([`TokenProvider`]), with the
//!   identity platform's errors as [`AuthError`] and the token's granted `roles`.
//! * [`graph`] — [`GraphClient`]: OData queries, paging to the end as a stream, retries within a
//!   budget, typed [`GraphError`]s, [`RequestStats`], `$batch`.
//! * [`probe`] — the onboarding connection test producing a serialisable [`ConnectionReport`].
//! * [`consent`] — the admin-consent URL and callback for the OAuth connector mode.
//! * [`connection`] — from raw connector settings to a ready [`GraphClient`].
//! * [`signin`] — "Sign in with Microsoft": OpenID Connect code + PKCE, id_token validation.
//!
//! # Connection test
//! ```no_run
//! use latchkey_entra::{Connection, ConnectionSettings, OutboundPolicy, probe::ProbeOptions};
//! # async fn run() -> Result<(), latchkey_entra::SettingsError> {
//! let settings = ConnectionSettings {
//!     tenant_id: "contoso.onmicrosoft.com".into(),
//!     client_id: "11111111-2222-3333-4444-555555555555".into(),
//!     client_secret: secrecy::SecretString::from("the secret value".to_string()),
//!     graph_domain: None,      // graph.microsoft.com
//!     login_authority: None,   // follows the cloud
//! };
//! // Field-level errors ("Microsoft Graph domain: must use https.") come back before any request.
//! let conn = Connection::connect(&settings, OutboundPolicy::STRICT).await?;
//! let report = latchkey_entra::probe::probe(&conn.graph, &ProbeOptions { provisioning: true, ..Default::default() }).await;
//! println!("{}: {}", report.verdict.as_str(), report.summary);
//! for m in &report.messages { println!("- {}", m.text); }
//! # Ok(()) }
//! ```
//!
//! # Paging a collection
//! ```no_run
//! use futures::TryStreamExt;
//! use latchkey_entra::graph::{GraphClient, Query};
//! # async fn run(graph: GraphClient) -> Result<(), latchkey_entra::GraphError> {
//! let query = Query::v1("users").select(&["id", "userPrincipalName", "accountEnabled"]).top(999);
//! let mut pages = graph.pages::<serde_json::Value>(query);
//! while let Some(page) = pages.try_next().await? {
//!     // store page.items; checkpoint page.next (a serialisable PageCursor) to resume after a crash
//! }
//! println!("{:?}", graph.stats()); // requests, throttled, retries... for the sync run
//! # Ok(()) }
//! ```

pub mod auth;
pub mod connection;
pub mod consent;
pub mod endpoints;
pub mod graph;
pub mod ids;
pub mod onboarding;
pub mod probe;
pub mod provision;
pub mod signin;
pub mod sync;

pub use auth::{AccessToken, AuthError, ClientCredentials, TokenClaims, TokenProvider};
pub use connection::{Connection, ConnectionSettings, SettingsError};
pub use endpoints::{Cloud, EndpointError, Endpoints, Field, OutboundPolicy};
pub use graph::{
    ApiVersion, GraphClient, GraphError, Page, PageCursor, Query, RequestStats, RetryPolicy,
};
pub use ids::{ClientId, IdError, TenantId};
pub use probe::{ConnectionReport, ProbeOptions, Verdict};
