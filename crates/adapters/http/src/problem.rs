//! Airlock's own answers: RFC 9457 `application/problem+json` documents, written for an
//! agent to act on (what happened, why, and what to do instead).

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::body::{ResponseBody, ResponseBodyExt};

/// Where the problem types are documented.
const TYPE_BASE: &str = "https://airlock.dev/problems/";

/// One problem answer.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short, stable slug (`policy-denied`): the `type` is `TYPE_BASE` + slug.
    pub kind: &'static str,
    /// A short summary of the kind.
    pub title: &'static str,
    /// What happened to this request, and what to do.
    pub detail: String,
    /// Extension members (`policies`, `approval_id`, `hint`...), boxed to keep
    /// `Result<_, Problem>` small.
    pub extra: Box<Map<String, Value>>,
}

impl Problem {
    /// A problem without extension members.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            extra: Box::default(),
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Problem {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// The JSON document.
    pub fn document(&self) -> Value {
        let mut doc = json!({
            "type": format!("{TYPE_BASE}{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(map) = doc.as_object_mut() {
            for (k, v) in self.extra.iter() {
                map.insert(k.clone(), v.clone());
            }
        }
        doc
    }

    /// The response (with `WWW-Authenticate` on 401, `Retry-After` on 503).
    pub fn response(&self) -> Response<ResponseBody> {
        let body = serde_json::to_vec(&self.document()).unwrap_or_default();
        let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(
            hyper::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = if self.kind == "token-invalid" {
                "Bearer realm=\"airlock\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"airlock\""
            };
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("10"));
        }
        response
    }
}

/// 401 without a token.
pub fn token_missing() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "token-missing",
        "Authentication required",
        "airlock: this request carries no token. Send `Authorization: Bearer <token>` with your Airlock service token or OIDC access token.",
    )
}

/// 401 for a token that was not accepted.
pub fn token_invalid(why: &str) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "token-invalid",
        "Token not accepted",
        format!("airlock: {why}"),
    )
    .with(
        "hint",
        "Get a fresh token (an Airlock service token from your operator, or an access token from your identity provider) and send it as `Authorization: Bearer <token>`.",
    )
}

/// 404 for a path that names no target.
pub fn unknown_target(name: &str, available: &[String]) -> Problem {
    let detail = if name.is_empty() {
        "airlock: a request must name its target first: https://<airlock>/<target>/<path>"
            .to_owned()
    } else {
        format!("airlock: there is no HTTP target `{name}` on this gateway")
    };
    Problem::new(
        StatusCode::NOT_FOUND,
        "unknown-target",
        "Unknown target",
        detail,
    )
    .with("available_targets", available.to_vec())
}

/// 400 for a path that cannot be decided unambiguously.
pub fn bad_path(why: &str) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "ambiguous-path",
        "Path refused",
        format!("airlock: the request path was refused and not forwarded: {why}"),
    )
}

/// 400 for something else about the request.
pub fn bad_request(why: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "bad-request",
        "Request refused",
        why,
    )
}

/// 502 when the upstream could not be reached or answered unusably.
pub fn upstream_failed(target: &str, why: impl std::fmt::Display) -> Problem {
    Problem::new(
        StatusCode::BAD_GATEWAY,
        "upstream-failed",
        "Upstream failed",
        format!("airlock: target `{target}` could not be reached or did not answer: {why}"),
    )
    .with(
        "hint",
        "The request may or may not have reached the target. Retry later if it is safe to repeat; otherwise check its effect first.",
    )
}

/// 502 when the upstream answered but its answer cannot be shown to the agent (it could
/// not be masked): the request did run.
pub fn response_withheld(target: &str, why: impl std::fmt::Display) -> Problem {
    Problem::new(
        StatusCode::BAD_GATEWAY,
        "response-withheld",
        "Response withheld",
        format!("airlock: target `{target}` answered, but its answer was withheld: {why}"),
    )
    .with(
        "hint",
        "The request did reach the target. Do not repeat it blindly; ask the operator whether this endpoint's responses can be masked.",
    )
}

/// 503 when the request could not be recorded (fail closed).
pub fn not_recorded() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not-recorded",
        "Recording unavailable",
        "airlock: the request could not be recorded, so it was not forwarded (Airlock runs nothing it cannot record)",
    )
    .with(
        "hint",
        "Retry in a little while; if it persists, tell the operator that Airlock's recorder is failing.",
    )
}
