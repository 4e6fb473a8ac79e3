//! Every error answer of the API: an HTTP status, a stable snake_case code and a
//! message a person or agent can act on, as `{"error":{"code":…,"message":…}}`.
//!
//! Service errors are translated here, once, by exhaustive `match`. Internal detail
//! (a store's error text) goes to the log, never into an answer; no answer contains
//! the caller's token.

use airlock_approvals::{ApprovalError, DecideError};
use airlock_identity::IdentityError;
use airlock_store::StoreError;
use axum::Json;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The `WWW-Authenticate` challenge when no usable token was sent (RFC 6750 §3).
const CHALLENGE: &str = "Bearer realm=\"airlock\"";
/// The challenge when a token was sent and refused.
const CHALLENGE_INVALID: &str = "Bearer realm=\"airlock\", error=\"invalid_token\"";

/// How to get a token, appended to authentication failures.
const MINT_HINT: &str =
    "an administrator mints tokens with `airlock token create --name NAME --group GROUP`";

/// An error answer.
#[derive(Debug)]
pub(crate) struct Reply {
    status: StatusCode,
    code: &'static str,
    message: String,
    challenge: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
}

impl Reply {
    /// An answer with `status`, `code` and `message`.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Reply {
            status,
            code,
            message: message.into(),
            challenge: None,
        }
    }

    /// 400 with `code`.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Reply::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no `Authorization: Bearer` header, or one that is not a bearer token.
    pub(crate) fn missing_token(why: &str) -> Self {
        Reply {
            status: StatusCode::UNAUTHORIZED,
            code: "missing_token",
            message: format!(
                "{why}: send `Authorization: Bearer <token>` with an Airlock token; {MINT_HINT}"
            ),
            challenge: Some(CHALLENGE),
        }
    }

    /// What a refused token becomes: 401 saying why (unknown, expired, revoked), or 503
    /// when the store cannot check it.
    pub(crate) fn identity(e: IdentityError) -> Self {
        let refused = |code, message: String| Reply {
            status: StatusCode::UNAUTHORIZED,
            code,
            message,
            challenge: Some(CHALLENGE_INVALID),
        };
        match e {
            IdentityError::UnknownToken | IdentityError::InvalidName(_) => refused(
                "invalid_token",
                format!("the bearer token is not valid: no Airlock token matches it; {MINT_HINT}"),
            ),
            e @ IdentityError::Expired { .. } => refused(
                "token_expired",
                format!("{e}; use a current token ({MINT_HINT})"),
            ),
            e @ IdentityError::Revoked { .. } => refused(
                "token_revoked",
                format!("{e}; use a current token ({MINT_HINT})"),
            ),
            e @ IdentityError::Oidc(_) => refused("invalid_token", format!("{e}")),
            IdentityError::Store(e) => {
                tracing::warn!(error = %e, "admin API: could not check a token");
                Reply::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "tokens cannot be checked right now because the gateway's store is unavailable; try again shortly",
                )
            }
        }
    }

    /// A failed lookup becomes 503.
    pub(crate) fn approval(e: ApprovalError) -> Self {
        match e {
            ApprovalError::Store(e) => Reply::store_unavailable(&e),
        }
    }

    /// A refused decision: 404, 403, 409, 400 or 503.
    pub(crate) fn decide(e: DecideError) -> Self {
        match e {
            e @ DecideError::NotFound(_) => {
                Reply::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            DecideError::Forbidden(m) => Reply::new(StatusCode::FORBIDDEN, "forbidden", m),
            DecideError::Conflict(m) => Reply::new(StatusCode::CONFLICT, "conflict", m),
            DecideError::Invalid(m) => Reply::bad_request("invalid_decision", m),
            DecideError::Store(e) => Reply::store_unavailable(&e),
        }
    }

    fn store_unavailable(e: &StoreError) -> Self {
        tracing::warn!(error = %e, "admin API: the approval store failed");
        Reply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the approval store is unavailable; try again shortly",
        )
    }

    /// The code, for callers that adjust a message.
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    /// Appends a hint to the message.
    pub(crate) fn with_hint(mut self, hint: &str) -> Self {
        self.message.push_str(hint);
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let body = Body {
            error: Detail {
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(challenge) = self.challenge {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// 404 for a path the API does not have.
pub(crate) async fn no_such_route(method: Method, uri: Uri) -> Reply {
    Reply::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        format!(
            "the API has no route {method} {}; its routes are described at /api/openapi.yaml",
            uri.path()
        ),
    )
}

/// 405 for a route called with the wrong method.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> Reply {
    Reply::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not accept {method}; see /api/openapi.yaml for its methods",
            uri.path()
        ),
    )
}
