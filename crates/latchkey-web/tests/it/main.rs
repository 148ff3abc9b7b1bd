//! Web integration tests: the real server on a random port, a fresh database per test,
//! a real HTTP client with a cookie jar.

mod access;
mod accounts_api;
mod api_tokens;
mod authz_matrix;
mod csrf;
mod fixtures;
mod headers;
mod hostile_input;
mod isolation;
mod onboarding;
mod openapi;
mod ops;
mod people;
mod provisioning;
mod provisioning_race;
mod reviews;
mod roles;
mod secrets_scan;
mod sessions;
mod signin;
mod support;
mod sync_api;
