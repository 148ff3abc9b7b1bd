//! The route table: every route of the application with who may call it. router.rs adds
//! routes only through [`Table`], which records each one, so [`route_table`] is the real
//! router's list and an endpoint cannot exist without saying who may call it. The
//! authorization matrix test (tests/it/authz_matrix.rs) walks this table.

use crate::auth::token::ApiPrincipal;
use crate::state::AppState;
use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};
use latchkey_core::Role;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: sign-in and sign-up, health, static files, the token endpoints, the
    /// OpenAPI document. These check what they need themselves (CSRF, credentials).
    Public,
    /// A signed-in person (cookie session) with at least this role. Without a session:
    /// a redirect to `/login`. Some pages also let connector owners in whatever their role.
    Session(Role),
    /// An API client (bearer token) with at least this role. Without a valid token: 401.
    Api(Role),
    /// A self-hosted connector, with its own token from `/api/v1/connector-agent/token`.
    Agent,
}

/// Roles from the least to the most powerful.
pub fn rank(role: Role) -> u8 {
    match role {
        Role::Member => 0,
        Role::ConnectorAdmin => 1,
        Role::SuperAdmin => 2,
    }
}

/// One route: a method on a path template (axum syntax, `{id}`), full path from `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: String,
    pub access: Access,
}

/// A router under construction that records every route it is given.
pub(crate) struct Table {
    pub(crate) router: Router<AppState>,
    prefix: &'static str,
    pub(crate) routes: Vec<Route>,
}

impl Table {
    /// Routes whose paths will be nested under `prefix` ("" for the root).
    pub(crate) fn new(prefix: &'static str) -> Self {
        Self {
            router: Router::new(),
            prefix,
            routes: Vec::new(),
        }
    }

    pub(crate) fn add<H, T>(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a routable method");
        self.router = match access {
            Access::Api(min) => self.router.route(path, on(filter, api_gate(min, handler))),
            _ => self.router.route(path, on(filter, handler)),
        };
        self.routes.push(Route {
            method,
            path: format!("{}{path}", self.prefix),
            access,
        });
        self
    }

    pub(crate) fn get<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::GET, path, access, handler)
    }

    pub(crate) fn post<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::POST, path, access, handler)
    }
}

/// A handler behind its route's minimum role: the caller is authenticated and its role
/// checked before the handler's own extractors run, so a caller below the minimum gets 403
/// whatever its body (not a 422 about fields it may not send at all). The handler's
/// [`ApiPrincipal`] is the one the gate found (request extensions): the token is checked once.
struct ApiGate<H, T> {
    min: Role,
    handler: H,
    _marker: std::marker::PhantomData<fn() -> T>,
}

fn api_gate<H, T>(min: Role, handler: H) -> ApiGate<H, T> {
    ApiGate {
        min,
        handler,
        _marker: std::marker::PhantomData,
    }
}

impl<H: Clone, T> Clone for ApiGate<H, T> {
    fn clone(&self) -> Self {
        api_gate(self.min, self.handler.clone())
    }
}

/// The [`Handler`] marker of [`ApiGate`] (axum tells handlers apart by such type parameters).
pub(crate) struct Gated<T>(std::marker::PhantomData<T>);

impl<H, T> Handler<Gated<T>, AppState> for ApiGate<H, T>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    type Future = std::pin::Pin<Box<dyn Future<Output = axum::response::Response> + Send>>;

    fn call(self, req: axum::extract::Request, state: AppState) -> Self::Future {
        use axum::extract::FromRequestParts;
        use axum::response::IntoResponse;
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let who = match ApiPrincipal::from_request_parts(&mut parts, &state).await {
                Ok(who) => who,
                Err(refused) => return refused.into_response(),
            };
            if let Err(refused) = who.require(rank(who.role) >= rank(self.min)) {
                return refused.into_response();
            }
            parts.extensions.insert(who);
            self.handler
                .call(axum::extract::Request::from_parts(parts, body), state)
                .await
        })
    }
}

/// Every route of the application, as the router is built.
pub fn route_table() -> Vec<Route> {
    let mut all = crate::router::pages().routes;
    all.extend(crate::router::api().routes);
    all.extend(crate::router::operations().routes);
    all
}
