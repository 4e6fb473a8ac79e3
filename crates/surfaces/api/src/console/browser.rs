//! Signed-in browsers: server-side sign-in sessions behind a cookie, the CSRF token
//! bound to each, the token sign-in form and sign-out.
//!
//! The cookie holds 32 random bytes; the store keeps only their SHA-256 (hex), with the
//! principal and the expiry, so signing out (or the token's revocation or expiry) ends
//! the sign-in on the server, whatever the browser keeps. The sign-ins are in the store
//! ([`Store::put_console_signin`]), not in this process, so that every gateway replica
//! on a shared store knows them: a person signed in through one replica may be sent to
//! any other. Nothing is cached here: a sign-out or a revocation through one replica
//! ends the sign-in on every one at its next request, and a store that cannot be read
//! refuses the page (503) rather than guessing.
//!
//! The sign-in's CSRF token is not stored either: it is a second, domain-separated
//! SHA-256 of the cookie, so the server recomputes it from the cookie the browser
//! sends, and a reader of the store (who has the cookie's hash, not the cookie) can
//! derive neither the cookie nor the token.
//!
//! Cookies are `Secure; HttpOnly; SameSite=Lax` (Lax, not Strict, so that the OIDC
//! provider's redirect back carries the login cookie); every state-changing request
//! also carries the sign-in's CSRF token in its form and is refused when the browser
//! says it came from another site.
//!
//! Cookie parsing is by hand: the console reads three cookies of its own, and a cookie
//! crate would add parsing of attributes the browser never sends back.

use std::sync::Arc;
use std::time::Duration;

use airlock_identity::NoLongerValid;
use airlock_model::{Principal, Timestamp};
use airlock_store::{ConsoleSignin, Store, StoreError};
use airlock_vault::Secret;
use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::page::{self, Notice};
use crate::ApiState;

/// The sign-in cookie.
pub(super) const SESSION_COOKIE: &str = "airlock_console";
/// The cookie that binds the token form to the browser that loaded it.
const SIGNIN_COOKIE: &str = "airlock_signin";
/// Sign-ins one principal keeps at most; its oldest are dropped beyond it (a script
/// signing in over and over fills nothing but its own list).
const MAX_SIGNINS_PER_PRINCIPAL: u32 = 100;
/// What the CSRF token hashes before the cookie, so that it is never the cookie's
/// stored hash.
const CSRF_CONTEXT: &[u8] = b"airlock console csrf\0";

/// Server-side sign-ins, in the store by the SHA-256 of their cookie.
pub(super) struct Browsers {
    ttl: Duration,
    store: Arc<dyn Store>,
}

/// One signed-in browser.
#[derive(Clone)]
struct SignIn {
    principal: Principal,
    csrf: String,
}

impl Browsers {
    pub(super) fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Browsers { ttl, store }
    }

    /// Signs `principal` in; returns the cookie value. The sign-in lasts the console's
    /// session length, and no longer than the principal's credential.
    pub(super) async fn sign_in(&self, principal: Principal) -> Result<String, StoreError> {
        let cookie = random_token();
        let now = Timestamp::now();
        let mut ttl = self.ttl;
        if let Some(at) = principal.expires_at {
            let left = at.unix().saturating_sub(now.unix());
            ttl = ttl.min(Duration::from_secs(u64::try_from(left).unwrap_or(0)));
        }
        let signin = ConsoleSignin {
            key_hash: key_hash(&cookie),
            principal,
            created_at: now,
            expires_at: now.plus(ttl),
        };
        self.store
            .put_console_signin(&signin, MAX_SIGNINS_PER_PRINCIPAL)
            .await?;
        Ok(cookie)
    }

    async fn find(&self, cookie: &str) -> Result<Option<SignIn>, StoreError> {
        Ok(self
            .store
            .console_signin(&key_hash(cookie), Timestamp::now())
            .await?
            .map(|s| SignIn {
                principal: s.principal,
                csrf: csrf_of(cookie),
            }))
    }

    async fn sign_out(&self, cookie: &str) -> Result<(), StoreError> {
        self.store
            .delete_console_signin(&key_hash(cookie))
            .await
            .map(|_| ())
    }
}

/// The key a cookie or an OIDC state is stored under: its SHA-256, in hex.
pub(super) fn key_hash(value: &str) -> String {
    use std::fmt::Write;
    Sha256::digest(value.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The CSRF token of the sign-in behind `cookie`.
fn csrf_of(cookie: &str) -> String {
    let mut h = Sha256::new();
    h.update(CSRF_CONTEXT);
    h.update(cookie.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// 32 random bytes, base64url.
pub(super) fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Equal without an early exit, for CSRF tokens and OIDC states.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request, if sent once.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for value in headers.get_all(COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == name
            {
                if found.is_some() {
                    // Two cookies of one name (one planted for a parent domain, say):
                    // neither is trusted.
                    return None;
                }
                found = Some(v);
            }
        }
    }
    found
}

/// A `Set-Cookie` value: `Secure; HttpOnly; SameSite=Lax`, for the whole console.
pub(super) fn set_cookie(name: &str, value: &str, max_age: Option<Duration>) -> HeaderValue {
    let age = max_age
        .map(|d| format!("; Max-Age={}", d.as_secs()))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax{age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("airlock_invalid=; Path=/; Max-Age=0"))
}

/// A `Set-Cookie` value that removes cookie `name`.
pub(super) fn clear_cookie(name: &str) -> HeaderValue {
    set_cookie(name, "", Some(Duration::ZERO))
}

/// The signed-in person a page is for. As an extractor it answers a browser that is
/// not signed in with the sign-in page (or a 403 for a form post).
pub(super) struct Viewer {
    /// Who.
    pub principal: Principal,
    /// The CSRF token of the sign-in, put in every form.
    pub csrf: String,
    /// Sees every session and the audit log.
    pub reviewer: bool,
}

impl Viewer {
    /// The refusal of a form post whose CSRF token is not the sign-in's, if it is not.
    pub(super) fn csrf_refusal(&self, sent: &str) -> Option<Response> {
        if same(sent, &self.csrf) {
            None
        } else {
            Some(page::problem(
                StatusCode::FORBIDDEN,
                "The form was refused",
                "Its CSRF token does not belong to your sign-in (the page was opened in another sign-in, or the request came from another site). Reload the page and try again.",
            ))
        }
    }
}

impl FromRequestParts<ApiState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let unsigned = |why: Option<&str>| -> Response {
            if parts.method == Method::GET || parts.method == Method::HEAD {
                let to = match why {
                    Some(reason) => format!("/signin?ended={reason}"),
                    None => "/signin".to_owned(),
                };
                let mut r = Redirect::to(&to).into_response();
                r.headers_mut()
                    .insert(SET_COOKIE, clear_cookie(SESSION_COOKIE));
                r
            } else {
                page::problem(
                    StatusCode::FORBIDDEN,
                    "You are signed out",
                    "Nothing was changed. Sign in again, then repeat what you did.",
                )
            }
        };
        let console = &state.console;
        // A form post must come from the console itself; browsers say where a request
        // came from in `Sec-Fetch-Site`.
        if parts.method == Method::POST
            && let Some(site) = parts.headers.get("sec-fetch-site")
            && !matches!(site.as_bytes(), b"same-origin" | b"none")
        {
            return Err(page::problem(
                StatusCode::FORBIDDEN,
                "The form was refused",
                "It was sent from another site. Nothing was changed.",
            ));
        }
        let Some(value) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(unsigned(None));
        };
        let signin = match console.0.browsers.find(value).await {
            Ok(Some(signin)) => signin,
            Ok(None) => return Err(unsigned(Some("expired"))),
            // Neither signed in nor out: refused, and the cookie is kept for later.
            Err(e) => return Err(page::unavailable("your sign-in", &e)),
        };
        match state
            .identity
            .still_valid(&signin.principal, Duration::ZERO)
        {
            Ok(()) => {}
            Err(e) => {
                if let Err(e) = console.0.browsers.sign_out(value).await {
                    // Refused all the same; the row expires, and every request checks
                    // the credential again.
                    tracing::warn!(error = %e, "console: a revoked sign-in could not be deleted");
                }
                let why = match e {
                    NoLongerValid::Revoked => "revoked",
                    NoLongerValid::Expired(_) => "expired",
                };
                return Err(unsigned(Some(why)));
            }
        }
        let reviewer = console.is_reviewer(&signin.principal);
        Ok(Viewer {
            principal: signin.principal,
            csrf: signin.csrf,
            reviewer,
        })
    }
}

/// `GET /signin?ended=…`: the token form, and the OIDC button when configured.
#[derive(Deserialize)]
pub(super) struct SigninQuery {
    ended: Option<String>,
    error: Option<String>,
}

pub(super) async fn signin_page(
    State(state): State<ApiState>,
    query: axum::extract::Query<SigninQuery>,
) -> Response {
    let notice = match (query.ended.as_deref(), query.error.as_deref()) {
        (Some("revoked"), _) => Some(Notice::error(
            "Your token was revoked: the sign-in ended. Ask an administrator for a new token.",
        )),
        (Some("expired"), _) => Some(Notice::info(
            "Your sign-in ended (it expired, or it was ended on the server). Sign in again.",
        )),
        (Some("signout"), _) => Some(Notice::info("You are signed out.")),
        (_, Some(e)) => Some(Notice::error(e)),
        _ => None,
    };
    signin_form(&state, notice, StatusCode::OK)
}

/// The sign-in page with a fresh form binding cookie.
pub(super) fn signin_form(
    state: &ApiState,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let binding = random_token();
    let provider = state
        .console
        .0
        .oidc
        .as_ref()
        .map(|o| o.provider().to_owned());
    let mut r = page::render(
        status,
        &page::SigninPage {
            csrf: binding.clone(),
            provider,
            notice,
        },
    );
    r.headers_mut().append(
        SET_COOKIE,
        set_cookie(SIGNIN_COOKIE, &binding, Some(Duration::from_secs(3600))),
    );
    r
}

/// The token form.
#[derive(Deserialize)]
pub(super) struct SigninForm {
    token: String,
    csrf: String,
}

/// `POST /signin`: authenticates the token exactly as the API does, then signs the
/// browser in. The token itself is not kept.
pub(super) async fn signin(
    State(state): State<ApiState>,
    headers: HeaderMap,
    form: Result<Form<SigninForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return signin_form(
            &state,
            Some(Notice::error("The form was incomplete: enter a token.")),
            StatusCode::BAD_REQUEST,
        );
    };
    let bound = cookie(&headers, SIGNIN_COOKIE).is_some_and(|c| same(c, &form.csrf));
    if !bound {
        return signin_form(
            &state,
            Some(Notice::error(
                "The sign-in form had expired or came from another page. Enter the token again.",
            )),
            StatusCode::FORBIDDEN,
        );
    }
    let token = Secret::new(form.token.trim().to_owned());
    if token.expose().is_empty() {
        return signin_form(
            &state,
            Some(Notice::error("Enter a token.")),
            StatusCode::BAD_REQUEST,
        );
    }
    let principal = match state.identity.authenticate(&token).await {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = %e, "console sign-in refused");
            return signin_form(
                &state,
                Some(Notice::error(&format!(
                    "That token was refused: {e}. Check it, or ask an administrator for one (`airlock token create`)."
                ))),
                StatusCode::UNAUTHORIZED,
            );
        }
    };
    drop(token);
    tracing::info!(principal = %principal.name, "console sign-in");
    signed_in(&state, principal).await
}

/// Signs `principal` in and sends the browser to the sessions list.
pub(super) async fn signed_in(state: &ApiState, principal: Principal) -> Response {
    let cookie = match state.console.0.browsers.sign_in(principal).await {
        Ok(cookie) => cookie,
        Err(e) => {
            tracing::error!(error = %e, "console: a sign-in could not be stored");
            return signin_form(
                state,
                Some(Notice::error(
                    "You could not be signed in: the store is unavailable. Try again in a moment.",
                )),
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    let mut r = Redirect::to("/sessions").into_response();
    let h = r.headers_mut();
    h.append(SET_COOKIE, set_cookie(SESSION_COOKIE, &cookie, None));
    h.append(SET_COOKIE, clear_cookie(SIGNIN_COOKIE));
    r
}

/// The sign-out form.
#[derive(Deserialize)]
pub(super) struct CsrfForm {
    csrf: String,
}

/// `POST /signout`: ends the sign-in on the server and clears the cookie.
pub(super) async fn signout(
    State(state): State<ApiState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(r) = viewer.csrf_refusal(&form.csrf) {
        return r;
    }
    if let Some(value) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.console.0.browsers.sign_out(value).await
    {
        // Not signed out on the server: say so rather than clear the cookie alone.
        tracing::error!(error = %e, "console: a sign-out could not be stored");
        return page::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "You are still signed in",
            "The store is unavailable, so the sign-in could not be ended. Try again in a moment.",
        );
    }
    tracing::info!(principal = %viewer.principal.name, "console sign-out");
    let mut r = Redirect::to("/signin?ended=signout").into_response();
    r.headers_mut()
        .insert(SET_COOKIE, clear_cookie(SESSION_COOKIE));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_once_and_written_strictly() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; airlock_console=xyz"));
        assert_eq!(cookie(&h, "airlock_console"), Some("xyz"));
        assert_eq!(cookie(&h, "missing"), None);
        h.append(COOKIE, HeaderValue::from_static("airlock_console=planted"));
        assert_eq!(cookie(&h, "airlock_console"), None, "two of one name");
        let set = set_cookie("airlock_console", "v", None);
        let set = set.to_str().unwrap();
        for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(clear_cookie("x").to_str().unwrap().contains("Max-Age=0"));
    }

    async fn store() -> Arc<dyn Store> {
        let dir = std::env::temp_dir().join(format!(
            "airlock-console-signins-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Arc::new(airlock_store::SqliteStore::open_in(&dir).await.unwrap())
    }

    #[tokio::test]
    async fn signins_end_on_the_server_and_every_replica_sees_them() {
        let shared = store().await;
        let browsers = Browsers::new(shared.clone(), Duration::from_secs(60));
        // Another replica: another process's state over the same store.
        let elsewhere = Browsers::new(shared.clone(), Duration::from_secs(60));
        let who = Principal {
            name: "dana".into(),
            groups: vec!["dba".into()],
            source: airlock_model::PrincipalSource::ServiceToken,
            expires_at: None,
        };
        let cookie = browsers.sign_in(who.clone()).await.unwrap();
        let found = elsewhere.find(&cookie).await.unwrap().unwrap();
        assert_eq!(found.principal, who);
        assert_eq!(
            found.csrf,
            browsers.find(&cookie).await.unwrap().unwrap().csrf
        );
        assert!(browsers.find("not-a-cookie").await.unwrap().is_none());
        // The store holds neither the cookie nor the CSRF token.
        let row = shared
            .console_signin(&key_hash(&cookie), Timestamp::now())
            .await
            .unwrap()
            .unwrap();
        assert_ne!(row.key_hash, cookie);
        assert_eq!(row.key_hash.len(), 64);
        assert_ne!(found.csrf, cookie);
        assert!(!row.key_hash.contains(&found.csrf));
        // Signed out through one replica: over on the other.
        elsewhere.sign_out(&cookie).await.unwrap();
        assert!(browsers.find(&cookie).await.unwrap().is_none());
        // A credential that expired already gives a sign-in that is over at once.
        let expired = Principal {
            expires_at: Some(airlock_model::Timestamp::parse("2020-01-01T00:00:00Z").unwrap()),
            ..who
        };
        let cookie = browsers.sign_in(expired).await.unwrap();
        assert!(browsers.find(&cookie).await.unwrap().is_none());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    #[test]
    fn keys_are_hex_sha256_and_csrf_tokens_differ_by_cookie() {
        assert_eq!(
            key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a"), csrf_of("a"));
        assert_eq!(csrf_of("a").len(), 43);
    }
}
