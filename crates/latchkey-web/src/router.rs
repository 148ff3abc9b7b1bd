//! Routes and middleware, composed once.

use crate::state::AppState;
use crate::{api, headers, metrics, ops, views};
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::csrf::CsrfLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let csrf = CsrfLayer::new()
        .add_trusted_origin(state.config.origin())
        .expect("the public URL's origin is a valid origin");

    // Pages: cookie sessions, so the cross-origin check applies to every one of them.
    let pages = Router::new()
        .route("/", get(views::dashboard::root))
        .route("/dashboard", get(views::dashboard::show))
        .route(
            "/signup",
            get(views::signup::show).post(views::signup::submit),
        )
        .route("/login", get(views::login::show).post(views::login::submit))
        .route("/logout", post(views::login::logout))
        .route("/auth/microsoft", post(crate::auth::microsoft::start))
        .route(
            "/auth/microsoft/callback",
            get(crate::auth::microsoft::callback),
        )
        .route(
            "/auth/microsoft/choose",
            post(crate::auth::microsoft::choose),
        )
        .route(
            "/auth/microsoft/link",
            post(crate::auth::microsoft::start_link),
        )
        .route("/settings/account", get(views::account::show))
        .route(
            "/invite/{token}",
            get(views::invite::show).post(views::invite::accept),
        )
        .route("/settings/people", get(views::people::show))
        .route("/settings/people/invite", post(views::people::invite))
        .route(
            "/settings/people/{id}/role",
            post(views::people::change_role),
        )
        .route(
            "/settings/people/{id}/disable",
            post(views::people::disable),
        )
        .route("/settings/people/{id}/enable", post(views::people::enable))
        .route(
            "/settings/api-clients",
            get(views::api_clients::show).post(views::api_clients::create),
        )
        .route(
            "/settings/api-clients/{id}/rotate",
            post(views::api_clients::rotate),
        )
        .route(
            "/settings/api-clients/{id}/revoke",
            post(views::api_clients::revoke),
        )
        .route("/connectors", get(views::connectors::list::show))
        .route("/connectors/new", get(views::connectors::add::catalog))
        .route(
            "/connectors/new/entra",
            get(views::connectors::add::show_new).post(views::connectors::add::create),
        )
        .route(
            "/connectors/new/self-hosted",
            get(views::connectors::add::show_new_self_hosted)
                .post(views::connectors::add::create_self_hosted),
        )
        .route(
            "/connectors/{id}/self-hosted",
            get(views::connectors::self_hosted::show),
        )
        .route(
            "/connectors/{id}/self-hosted/rotate",
            post(views::connectors::self_hosted::rotate),
        )
        .route(
            "/connectors/oauth/callback",
            get(views::connectors::consent::callback),
        )
        .route("/connectors/{id}", get(views::connectors::page::show))
        .route(
            "/connectors/{id}/settings",
            get(views::connectors::settings::show).post(views::connectors::settings::save),
        )
        .route(
            "/connectors/{id}/consent",
            get(views::connectors::consent::show).post(views::connectors::consent::start),
        )
        .route("/connectors/{id}/test", post(views::connectors::page::test))
        .route(
            "/connectors/{id}/disable",
            post(views::connectors::page::disable),
        )
        .route(
            "/connectors/{id}/jobs/{job}/log",
            get(views::connectors::page::log_json),
        )
        .route("/apps", get(views::apps::list))
        .route("/apps/{id}", get(views::apps::show))
        .route(
            "/apps/{id}/entitlements/{entitlement}",
            get(views::apps::entitlement),
        )
        .route("/outbox", get(views::outbox::show))
        .route("/reviews", get(views::reviews::inbox::show))
        .route("/reviews/decide", post(views::reviews::inbox::decide))
        .route(
            "/reviews/items/{id}",
            get(views::reviews::item::show).post(views::reviews::item::decide),
        )
        .route(
            "/reviews/items/{id}/reassign",
            post(views::reviews::item::reassign),
        )
        .route(
            "/reviews/campaigns",
            get(views::reviews::campaigns::list).post(views::reviews::campaigns::create),
        )
        .route(
            "/reviews/campaigns/new",
            get(views::reviews::campaigns::new),
        )
        .route(
            "/reviews/campaigns/{id}",
            get(views::reviews::progress::show),
        )
        .route(
            "/reviews/campaigns/{id}/close",
            post(views::reviews::progress::close),
        )
        .route(
            "/reviews/manual-tasks/{id}/done",
            post(views::reviews::progress::manual_done),
        )
        .route(
            "/reviews/campaigns/{id}/report",
            get(views::reviews::report::show),
        )
        .route(
            "/reviews/campaigns/{id}/report.csv",
            get(views::reviews::report::csv),
        )
        .route(
            "/reviews/campaigns/{id}/report.json",
            get(views::reviews::report::json),
        )
        .route("/access", get(views::access::catalog::show))
        .route(
            "/access/request/{id}",
            get(views::access::catalog::new).post(views::access::catalog::submit),
        )
        .route("/access/mine", get(views::access::requests::mine))
        .route("/access/approvals", get(views::access::requests::approvals))
        .route("/access/requests", get(views::access::requests::all))
        .route("/access/requests/{id}", get(views::access::requests::show))
        .route(
            "/access/requests/{id}/{action}",
            post(views::access::requests::act),
        )
        .route("/access/policies", get(views::access::policy::list))
        .route(
            "/access/policies/{id}",
            get(views::access::policy::show).post(views::access::policy::save),
        )
        .route("/audit", get(views::access::audit::show))
        .route("/connectors/{id}/tasks", get(views::tasks::list))
        .route("/connectors/{id}/tasks/{task}", get(views::tasks::show))
        .route("/connectors/{id}/grants", post(views::grants::grant))
        .route(
            "/connectors/{id}/grants/{grant}/revoke",
            post(views::grants::revoke),
        )
        .route(
            "/connectors/{id}/accounts/new",
            get(views::grants::new_account).post(views::grants::create_account),
        )
        .route(
            "/connectors/{id}/accounts/{account}/deprovision",
            post(views::grants::deprovision),
        )
        .route("/vault/{id}", get(views::vault::show))
        .route("/vault/{id}/reveal", post(views::vault::submit))
        .layer(csrf);

    // The API authenticates with bearer tokens, never cookies, so it is not a CSRF target.
    let api = Router::new()
        .route("/auth/token", post(api::token::issue))
        .route("/me", get(api::me::show))
        .route("/users", get(api::users::list))
        .route("/users/{id}", get(api::users::get))
        .route(
            "/api-clients",
            get(api::api_clients::list).post(api::api_clients::create),
        )
        .route("/api-clients/{id}", get(api::api_clients::get))
        .route("/api-clients/{id}/revoke", post(api::api_clients::revoke))
        .route(
            "/connectors",
            get(api::connectors::list).post(api::connectors::create),
        )
        .route(
            "/connectors/{id}",
            get(api::connectors::get)
                .patch(api::connectors::patch)
                .delete(api::connectors::delete),
        )
        .route("/connectors/{id}/test", post(api::connectors::test))
        .route(
            "/connectors/{id}/syncs",
            get(api::sync::list).post(api::sync::start),
        )
        .route("/syncs/{id}", get(api::sync::get))
        .route("/connectors/{id}/summary", get(api::sync::summary))
        .route("/connectors/{id}/resources", get(api::sync::resources))
        .route(
            "/connectors/{id}/entitlements",
            get(api::sync::entitlements),
        )
        .route("/connectors/{id}/grants", get(api::sync::grants))
        .route("/connectors/{id}/grants", post(api::provisioning::grant))
        .route(
            "/connectors/{id}/grants/{grant_id}",
            delete(api::provisioning::revoke),
        )
        .route("/tasks/{id}", get(api::provisioning::get))
        .route(
            "/review-campaigns",
            get(api::review_campaigns::list).post(api::review_campaigns::create),
        )
        .route("/review-campaigns/{id}", get(api::review_campaigns::get))
        .route(
            "/review-campaigns/{id}/close",
            post(api::review_campaigns::close),
        )
        .route(
            "/review-campaigns/{id}/items",
            get(api::review_campaigns::items).post(api::review_campaigns::decide_items),
        )
        .route(
            "/review-campaigns/{id}/report",
            get(api::review_campaigns::report),
        )
        .route(
            "/access-requests",
            get(api::access_requests::list).post(api::access_requests::create),
        )
        .route("/access-requests/{id}", get(api::access_requests::get))
        .route(
            "/access-requests/{id}/approve",
            post(api::access_requests::approve),
        )
        .route(
            "/access-requests/{id}/deny",
            post(api::access_requests::deny),
        )
        .route(
            "/access-requests/{id}/cancel",
            post(api::access_requests::cancel),
        )
        .route(
            "/access-requests/{id}/release",
            post(api::access_requests::release),
        )
        .route(
            "/access-requests/{id}/extend",
            post(api::access_requests::extend),
        )
        .route(
            "/access-requests/{id}/review",
            post(api::access_requests::review),
        )
        .route(
            "/entitlements/{id}/policy",
            get(api::policies::get).put(api::policies::put),
        )
        .route("/audit-events", get(api::audit::list))
        .route("/audit-events/verify", get(api::audit::verify))
        .route("/audit-events/export", get(api::audit::export))
        .route(
            "/connectors/{id}/accounts",
            post(api::provisioning::create_account),
        )
        .route(
            "/connectors/{id}/accounts/{resource_id}/deprovision",
            post(api::provisioning::deprovision),
        )
        .route("/connectors/{id}/tasks", get(api::provisioning::list))
        .route("/vault/{id}/reveal", post(api::provisioning::reveal))
        .route("/jobs/{id}", get(api::jobs::get))
        .route("/jobs/{id}/logs", get(api::jobs::logs))
        .route("/openapi.json", get(api::openapi::document))
        // Self-hosted connectors, with their own credentials (connector_agent::token).
        .route("/connector-agent/token", post(api::connector_agent::token))
        .route(
            "/connector-agent/heartbeat",
            post(api::connector_agent::heartbeat),
        )
        .route(
            "/connector-agent/tasks/next",
            post(api::connector_agent::next_task),
        )
        .route(
            "/connector-agent/syncs",
            post(api::connector_agent::start_sync_now),
        )
        .route(
            "/connector-agent/tasks/{id}/batches",
            get(api::connector_agent::batches),
        )
        .route(
            "/connector-agent/tasks/{id}/batches/{seq}",
            put(api::connector_agent::put_batch),
        )
        .route(
            "/connector-agent/tasks/{id}/logs",
            post(api::connector_agent::logs),
        )
        .route(
            "/connector-agent/tasks/{id}/result",
            post(api::connector_agent::result),
        )
        .route(
            "/connectors/{id}/agent-credentials",
            post(api::connectors::rotate_agent_credentials),
        )
        .fallback(api::not_found);

    let mut app = Router::new()
        .merge(pages)
        .nest("/api/v1", api)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/static/app.css", get(stylesheet))
        .route("/static/app.js", get(script))
        .fallback(page_not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ));
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
