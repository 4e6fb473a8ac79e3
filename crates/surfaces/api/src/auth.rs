//! Bearer-token authentication for `/api` routes, and `GET /api/whoami`.
//!
//! The token is checked by the same [`airlock_identity::Identity::authenticate`] that
//! agents' connections use. It is wrapped in a [`Secret`] as soon as it is read from
//! the header, so it reaches no log line and no answer; handlers see only the
//! [`Principal`], placed in the request's extensions.

use airlock_model::{Principal, PrincipalSource, Timestamp};
use airlock_vault::Secret;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use crate::ApiState;
use crate::access_log::Caller;
use crate::reply::Reply;

/// Authenticates the request's bearer token, or answers 401 (503 if the store cannot
/// check it) without calling the route.
pub(crate) async fn require_bearer(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = match bearer_token(request.headers()) {
        Ok(token) => token,
        Err(reply) => return reply.into_response(),
    };
    let principal = match state.identity.authenticate(&token).await {
        Ok(principal) => principal,
        Err(e) => return Reply::identity(e).into_response(),
    };
    drop(token);
    let caller = Caller(principal.name.clone());
    request.extensions_mut().insert(principal);
    let mut response = next.run(request).await;
    response.extensions_mut().insert(caller);
    response
}

/// The token of the one `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Result<Secret, Reply> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Reply::missing_token("no Authorization header"));
    };
    if values.next().is_some() {
        return Err(Reply::missing_token("more than one Authorization header"));
    }
    let Ok(value) = value.to_str() else {
        return Err(Reply::missing_token(
            "the Authorization header is not plain text",
        ));
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Err(Reply::missing_token(
            "the Authorization header is not `Bearer <token>`",
        ));
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Reply::missing_token(
            "the Authorization header uses another scheme than Bearer",
        ));
    }
    let token = token.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(Reply::missing_token(
            "the Authorization header is not `Bearer <token>`",
        ));
    }
    Ok(Secret::new(token.to_owned()))
}

/// Who the caller's token says it is.
#[derive(Serialize)]
pub(crate) struct WhoAmI {
    principal: String,
    groups: Vec<String>,
    source: PrincipalSource,
    expires_at: Option<Timestamp>,
}

/// `GET /api/whoami`.
pub(crate) async fn whoami(Extension(principal): Extension<Principal>) -> Json<WhoAmI> {
    Json(WhoAmI {
        principal: principal.name,
        groups: principal.groups,
        source: principal.source,
        expires_at: principal.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(
            bearer_token(&headers(&["Bearer alk_abc"]))
                .unwrap()
                .expose(),
            "alk_abc"
        );
        assert_eq!(
            bearer_token(&headers(&["bearer   alk_abc "]))
                .unwrap()
                .expose(),
            "alk_abc"
        );
        for bad in [
            &[][..],
            &["Basic dXNlcjpwdw=="],
            &["Bearer"],
            &["Bearer "],
            &["Bearer a b"],
            &["alk_abc"],
            &["Bearer a", "Bearer b"],
        ] {
            let e = bearer_token(&headers(bad)).unwrap_err();
            assert_eq!(e.code(), "missing_token", "{bad:?}");
        }
    }
}
