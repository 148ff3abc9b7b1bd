//! The route table: every route of the application with who may call it. router.rs adds
//! routes only through [`Table`], which records each one, so [`route_table`] is the real
//! router's list and an endpoint cannot exist without saying who may call it. The
//! authorization matrix test (tests/it/authz_matrix.rs) walks this table.

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
        self.router = self.router.route(path, on(filter, handler));
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

/// Every route of the application, as the router is built.
pub fn route_table() -> Vec<Route> {
    let mut all = crate::router::pages().routes;
    all.extend(crate::router::api().routes);
    all.extend(crate::router::operations().routes);
    all
}
