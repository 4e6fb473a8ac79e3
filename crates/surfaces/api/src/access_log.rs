//! One debug line per request: method, path (without the query), status and the
//! authenticated principal's name. Headers are never logged, so neither is the
//! `Authorization` token.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// The authenticated caller's name, left in the response's extensions by the
/// authentication layer for this log line.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) String);

/// Logs the request once its answer is ready.
pub(crate) async fn log(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let principal = response
        .extensions()
        .get::<Caller>()
        .map_or("-", |c| c.0.as_str());
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        principal,
        "admin API request"
    );
    response
}
