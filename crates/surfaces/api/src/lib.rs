//! The admin surface: the HTTP API (approvers list, read and decide approval requests;
//! anyone with a token can ask who it says they are) under `/api`, and the web console
//! ([`console`]) at `/`.
//!
//! Every route under `/api` except the OpenAPI document authenticates a bearer token
//! exactly as agents' connections do ([`airlock_identity::Identity::authenticate`]);
//! what a caller may see or decide is the approval service's rule, not this crate's.
//! Errors are JSON `{"error":{"code","message"}}` written for the person or agent that
//! reads them, and nothing here logs or returns a token. [`ApiServer`] serves the router
//! over HTTPS (HTTP/1.1 and h2) or, on loopback only, plain HTTP.

mod access_log;
mod approvals;
mod auth;
pub mod console;
mod error;
mod reply;
mod server;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};

pub use error::ApiError;
pub use server::ApiServer;

/// The OpenAPI 3.1 description of this API, served at `/api/openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../../../../docs/openapi.yaml");

/// The largest request body accepted (decisions carry a short comment).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The services the API calls. Cheap to clone: each field shares its store.
#[derive(Clone)]
pub struct ApiState {
    /// Approval requests: list, get, decide.
    pub approvals: airlock_approvals::Approvals,
    /// Verifies bearer tokens.
    pub identity: airlock_identity::Identity,
    /// The web console's state (sign-ins, sessions, audit).
    pub console: console::Console,
    /// What `/readyz` checks besides the API answering (the store, the recorder, the
    /// policy); `None` answers ready whenever the API answers.
    pub readiness: Option<Readiness>,
}

/// A readiness check: `Err` names what is not ready, for `/readyz`.
pub type Readiness = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// The API's and the console's routes over `state`, ready to serve (see [`ApiServer`])
/// or to call in process. `/healthz` and `/api/openapi.yaml` need no token; every other
/// `/api` route answers 401 without a valid one; console pages send a browser that is
/// not signed in to `/signin`.
pub fn router(state: ApiState) -> Router {
    let authenticated = Router::new()
        .route("/api/approvals", get(approvals::list))
        .route("/api/approvals/{id}", get(approvals::show))
        .route("/api/approvals/{id}/approve", post(approvals::approve))
        .route("/api/approvals/{id}/deny", post(approvals::deny))
        .route("/api/whoami", get(auth::whoami))
        // A route layer: unknown paths answer 404 without asking for a token.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.yaml", get(openapi))
        .merge(authenticated)
        .merge(console::routes())
        .fallback(reply::no_such_route)
        .method_not_allowed_fallback(reply::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Outermost, so that it sees every answer, including the 401s and 404s.
        .layer(middleware::from_fn(access_log::log))
        .with_state(state)
}

/// `GET /healthz`: the process answers. No token; says nothing else.
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 `ready` when the store is reachable, the recorder records and a
/// policy is loaded; 503 with what is not, so a load balancer takes the replica out.
/// No token: it names no secret (a cause such as "the store is unreachable").
async fn readyz(
    axum::extract::State(state): axum::extract::State<ApiState>,
) -> axum::response::Response {
    let result = match &state.readiness {
        Some(check) => check().await,
        None => Ok(()),
    };
    match result {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// `GET /metrics`: the Prometheus metrics (OpenMetrics text). No token, as scrapers
/// expect: labels name targets, protocols, decisions and masking rules, never a
/// principal, statement or value. Keep the admin listener on an internal network.
async fn metrics() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, airlock_metrics::CONTENT_TYPE)],
        airlock_metrics::render(),
    )
}

async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}
