//! Routes and middleware, composed once. Routes are added through [`Table`], which records
//! each with who may call it (`crate::routes::route_table`).

use crate::state::AppState;
use crate::{api, headers, input_guard, metrics, ops, views};
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::IntoResponse;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::csrf::CsrfLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::routes::{Access, Table};
use latchkey_core::Role::{ConnectorAdmin, Member, SuperAdmin};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const PUBLIC: Access = Access::Public;
const PAGE: Access = Access::Session(Member);
const PAGE_CA: Access = Access::Session(ConnectorAdmin);
const PAGE_SA: Access = Access::Session(SuperAdmin);
const API: Access = Access::Api(Member);
const API_CA: Access = Access::Api(ConnectorAdmin);
const API_SA: Access = Access::Api(SuperAdmin);
const AGENT: Access = Access::Agent;

/// Pages: cookie sessions, so the cross-origin check applies to every one of them.
pub(crate) fn pages() -> Table {
    use views::*;
    Table::new("")
        .get("/", PUBLIC, dashboard::root)
        .get("/dashboard", PAGE, dashboard::show)
        .get("/signup", PUBLIC, signup::show)
        .post("/signup", PUBLIC, signup::submit)
        .get("/login", PUBLIC, login::show)
        .post("/login", PUBLIC, login::submit)
        .post("/logout", PAGE, login::logout)
        .post("/auth/microsoft", PUBLIC, crate::auth::microsoft::start)
        .get(
            "/auth/microsoft/callback",
            PUBLIC,
            crate::auth::microsoft::callback,
        )
        .post(
            "/auth/microsoft/choose",
            PUBLIC,
            crate::auth::microsoft::choose,
        )
        .post(
            "/auth/microsoft/link",
            PAGE,
            crate::auth::microsoft::start_link,
        )
        .get("/settings/account", PAGE, account::show)
        .get("/invite/{token}", PUBLIC, invite::show)
        .post("/invite/{token}", PUBLIC, invite::accept)
        .get("/settings/people", PAGE_SA, people::show)
        .post("/settings/people/invite", PAGE_SA, people::invite)
        .post("/settings/people/{id}/role", PAGE_SA, people::change_role)
        .post("/settings/people/{id}/disable", PAGE_SA, people::disable)
        .post("/settings/people/{id}/enable", PAGE_SA, people::enable)
        .get("/settings/api-clients", PAGE_SA, api_clients::show)
        .post("/settings/api-clients", PAGE_SA, api_clients::create)
        .post(
            "/settings/api-clients/{id}/rotate",
            PAGE_SA,
            api_clients::rotate,
        )
        .post(
            "/settings/api-clients/{id}/revoke",
            PAGE_SA,
            api_clients::revoke,
        )
        .get("/connectors", PAGE, connectors::list::show)
        .get("/connectors/new", PAGE_CA, connectors::add::catalog)
        .get("/connectors/new/entra", PAGE_CA, connectors::add::show_new)
        .post("/connectors/new/entra", PAGE_CA, connectors::add::create)
        .get(
            "/connectors/new/self-hosted",
            PAGE_CA,
            connectors::add::show_new_self_hosted,
        )
        .post(
            "/connectors/new/self-hosted",
            PAGE_CA,
            connectors::add::create_self_hosted,
        )
        .get(
            "/connectors/{id}/self-hosted",
            PAGE_CA,
            connectors::self_hosted::show,
        )
        .post(
            "/connectors/{id}/self-hosted/rotate",
            PAGE_CA,
            connectors::self_hosted::rotate,
        )
        .get(
            "/connectors/oauth/callback",
            PAGE,
            connectors::consent::callback,
        )
        .get("/connectors/{id}", PAGE, connectors::page::show)
        .get(
            "/connectors/{id}/settings",
            PAGE_CA,
            connectors::settings::show,
        )
        .post(
            "/connectors/{id}/settings",
            PAGE_CA,
            connectors::settings::save,
        )
        .get(
            "/connectors/{id}/consent",
            PAGE_CA,
            connectors::consent::show,
        )
        .post(
            "/connectors/{id}/consent",
            PAGE_CA,
            connectors::consent::start,
        )
        .post("/connectors/{id}/test", PAGE_CA, connectors::page::test)
        .post(
            "/connectors/{id}/disable",
            PAGE_CA,
            connectors::page::disable,
        )
        .get(
            "/connectors/{id}/jobs/{job}/log",
            PAGE,
            connectors::page::log_json,
        )
        .get("/apps", PAGE, apps::list)
        .get("/apps/{id}", PAGE, apps::show)
        .get(
            "/apps/{id}/entitlements/{entitlement}",
            PAGE,
            apps::entitlement,
        )
        .get("/outbox", PAGE, outbox::show)
        .get("/reviews", PAGE, reviews::inbox::show)
        .post("/reviews/decide", PAGE, reviews::inbox::decide)
        .get("/reviews/items/{id}", PAGE, reviews::item::show)
        .post("/reviews/items/{id}", PAGE, reviews::item::decide)
        .post(
            "/reviews/items/{id}/reassign",
            PAGE,
            reviews::item::reassign,
        )
        .get("/reviews/campaigns", PAGE_CA, reviews::campaigns::list)
        .post("/reviews/campaigns", PAGE_CA, reviews::campaigns::create)
        .get("/reviews/campaigns/new", PAGE_CA, reviews::campaigns::new)
        .get("/reviews/campaigns/{id}", PAGE_CA, reviews::progress::show)
        .post(
            "/reviews/campaigns/{id}/close",
            PAGE_CA,
            reviews::progress::close,
        )
        .post(
            "/reviews/manual-tasks/{id}/done",
            PAGE_CA,
            reviews::progress::manual_done,
        )
        .get(
            "/reviews/campaigns/{id}/report",
            PAGE_CA,
            reviews::report::show,
        )
        .get(
            "/reviews/campaigns/{id}/report.csv",
            PAGE_CA,
            reviews::report::csv,
        )
        .get(
            "/reviews/campaigns/{id}/report.json",
            PAGE_CA,
            reviews::report::json,
        )
        .get("/reviews/templates", PAGE_CA, reviews::templates::list)
        .post(
            "/reviews/templates/{id}/stop",
            PAGE_CA,
            reviews::templates::stop,
        )
        .get("/access", PAGE, access::catalog::show)
        .get("/access/request/{id}", PAGE, access::catalog::new)
        .post("/access/request/{id}", PAGE, access::catalog::submit)
        .get("/access/mine", PAGE, access::requests::mine)
        .get("/access/approvals", PAGE, access::requests::approvals)
        .get("/access/requests", PAGE_CA, access::requests::all)
        .get("/access/requests/{id}", PAGE, access::requests::show)
        .post(
            "/access/requests/{id}/{action}",
            PAGE,
            access::requests::act,
        )
        .get("/access/policies", PAGE_CA, access::policy::list)
        .get("/access/policies/{id}", PAGE_CA, access::policy::show)
        .post("/access/policies/{id}", PAGE_CA, access::policy::save)
        .get("/audit", PAGE_SA, access::audit::show)
        .get("/connectors/{id}/tasks", PAGE, tasks::list)
        .get("/connectors/{id}/tasks/{task}", PAGE, tasks::show)
        .post("/connectors/{id}/grants", PAGE_CA, grants::grant)
        .post(
            "/connectors/{id}/grants/{grant}/revoke",
            PAGE_CA,
            grants::revoke,
        )
        .get(
            "/connectors/{id}/accounts/new",
            PAGE_CA,
            grants::new_account,
        )
        .post(
            "/connectors/{id}/accounts/new",
            PAGE_CA,
            grants::create_account,
        )
        .post(
            "/connectors/{id}/accounts/{account}/deprovision",
            PAGE_CA,
            grants::deprovision,
        )
        .get("/vault/{id}", PAGE, vault::show)
        .post("/vault/{id}/reveal", PAGE, vault::submit)
}

/// The API authenticates with bearer tokens, never cookies, so it is not a CSRF target.
pub(crate) fn api() -> Table {
    use api::*;
    use axum::http::Method;
    Table::new("/api/v1")
        .post("/auth/token", PUBLIC, token::issue)
        .get("/me", API, me::show)
        .get("/users", API, users::list)
        .get("/users/{id}", API, users::get)
        .get("/api-clients", API_SA, api_clients::list)
        .post("/api-clients", API_SA, api_clients::create)
        .get("/api-clients/{id}", API_SA, api_clients::get)
        .post("/api-clients/{id}/revoke", API_SA, api_clients::revoke)
        .get("/connectors", API, connectors::list)
        .post("/connectors", API_CA, connectors::create)
        .get("/connectors/{id}", API, connectors::get)
        .add(Method::PATCH, "/connectors/{id}", API_CA, connectors::patch)
        .add(
            Method::DELETE,
            "/connectors/{id}",
            API_CA,
            connectors::delete,
        )
        .post("/connectors/{id}/test", API_CA, connectors::test)
        .get("/connectors/{id}/syncs", API, sync::list)
        .post("/connectors/{id}/syncs", API_CA, sync::start)
        .get("/syncs/{id}", API, sync::get)
        .get("/connectors/{id}/summary", API, sync::summary)
        .get("/connectors/{id}/resources", API, sync::resources)
        .get("/connectors/{id}/entitlements", API, sync::entitlements)
        .get("/connectors/{id}/grants", API, sync::grants)
        .post("/connectors/{id}/grants", API_CA, provisioning::grant)
        .add(
            Method::DELETE,
            "/connectors/{id}/grants/{grant_id}",
            API_CA,
            provisioning::revoke,
        )
        .get("/tasks/{id}", API, provisioning::get)
        .get("/review-campaigns", API_CA, review_campaigns::list)
        .post("/review-campaigns", API_CA, review_campaigns::create)
        .get("/review-campaigns/{id}", API_CA, review_campaigns::get)
        .post(
            "/review-campaigns/{id}/close",
            API_CA,
            review_campaigns::close,
        )
        .get(
            "/review-campaigns/{id}/items",
            API_CA,
            review_campaigns::items,
        )
        .post(
            "/review-campaigns/{id}/items",
            API_CA,
            review_campaigns::decide_items,
        )
        .get(
            "/review-campaigns/{id}/report",
            API_CA,
            review_campaigns::report,
        )
        .get("/review-templates", API_CA, review_templates::list)
        .get("/review-templates/{id}", API_CA, review_templates::get)
        .post(
            "/review-templates/{id}/stop",
            API_CA,
            review_templates::stop,
        )
        .get("/access-requests", API, access_requests::list)
        .post("/access-requests", API, access_requests::create)
        .get("/access-requests/{id}", API, access_requests::get)
        .post(
            "/access-requests/{id}/approve",
            API,
            access_requests::approve,
        )
        .post("/access-requests/{id}/deny", API, access_requests::deny)
        .post("/access-requests/{id}/cancel", API, access_requests::cancel)
        .post(
            "/access-requests/{id}/release",
            API,
            access_requests::release,
        )
        .post("/access-requests/{id}/extend", API, access_requests::extend)
        .post(
            "/access-requests/{id}/review",
            API_CA,
            access_requests::review,
        )
        .get("/entitlements/{id}/policy", API, policies::get)
        .add(
            Method::PUT,
            "/entitlements/{id}/policy",
            API_CA,
            policies::put,
        )
        .get("/audit-events", API_SA, audit::list)
        .get("/audit-events/verify", API_SA, audit::verify)
        .get("/audit-events/export", API_SA, audit::export)
        .post(
            "/connectors/{id}/accounts",
            API_CA,
            provisioning::create_account,
        )
        .post(
            "/connectors/{id}/accounts/{resource_id}/deprovision",
            API_CA,
            provisioning::deprovision,
        )
        .get("/connectors/{id}/tasks", API, provisioning::list)
        .post("/vault/{id}/reveal", API, provisioning::reveal)
        .get("/jobs/{id}", API, jobs::get)
        .get("/jobs/{id}/logs", API, jobs::logs)
        .get("/openapi.json", PUBLIC, openapi::document)
        // Self-hosted connectors, with their own credentials (connector_agent::token).
        .post("/connector-agent/token", PUBLIC, connector_agent::token)
        .post(
            "/connector-agent/heartbeat",
            AGENT,
            connector_agent::heartbeat,
        )
        .post(
            "/connector-agent/tasks/next",
            AGENT,
            connector_agent::next_task,
        )
        .post(
            "/connector-agent/syncs",
            AGENT,
            connector_agent::start_sync_now,
        )
        .get(
            "/connector-agent/tasks/{id}/batches",
            AGENT,
            connector_agent::batches,
        )
        .add(
            Method::PUT,
            "/connector-agent/tasks/{id}/batches/{seq}",
            AGENT,
            connector_agent::put_batch,
        )
        .post(
            "/connector-agent/tasks/{id}/logs",
            AGENT,
            connector_agent::logs,
        )
        .post(
            "/connector-agent/tasks/{id}/result",
            AGENT,
            connector_agent::result,
        )
        .post(
            "/connectors/{id}/agent-credentials",
            API_CA,
            connectors::rotate_agent_credentials,
        )
}

/// Health, metrics and static files.
pub(crate) fn operations() -> Table {
    Table::new("")
        .get("/healthz", PUBLIC, ops::healthz)
        .get("/readyz", PUBLIC, ops::readyz)
        .get("/metrics", PUBLIC, ops::metrics)
        .get("/static/app.css", PUBLIC, stylesheet)
        .get("/static/app.js", PUBLIC, script)
}

pub fn router(state: AppState) -> Router {
    let csrf = CsrfLayer::new()
        .add_trusted_origin(state.config.origin())
        .expect("the public URL's origin is a valid origin");
    let pages = pages().router.layer(csrf);
    let api = api()
        .router
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed);

    let mut app = Router::new()
        .merge(pages)
        .nest("/api/v1", api)
        .merge(operations().router)
        .fallback(page_not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ));
    app = app.layer(axum::middleware::from_fn(input_guard::reject_nul));
    for layer in headers::layers() {
        app = app.layer(layer);
    }

    // Outermost first. The trace layer sits outside the functional layers so its span
    // covers everything (auth failures included); sensitive headers are marked before it
    // so that `Authorization` and `Cookie` can never reach a log line.
    let outer = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            header::SET_COOKIE,
        ]))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let request_id = req
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    // The route template, not the raw path: paths can carry one-time tokens.
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map(|p| p.as_str())
                        .unwrap_or("");
                    tracing::info_span!(
                        "http",
                        method = %req.method(),
                        route,
                        request_id,
                        org_id = tracing::field::Empty,
                        user_id = tracing::field::Empty,
                        api_client_id = tracing::field::Empty,
                    )
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(axum::middleware::from_fn(input_guard::api_error_shape))
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(RequestBodyLimitLayer::new(1024 * 1024));
    app.layer(outer).with_state(state)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../../../static/app.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../../../static/app.js"),
    )
}

async fn page_not_found() -> crate::WebError {
    crate::WebError::NotFound
}
