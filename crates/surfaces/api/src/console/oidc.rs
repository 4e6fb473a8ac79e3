//! Signing people in to the console with the configured OIDC provider: the
//! authorization-code flow with PKCE (S256), a `state` bound to the browser by a
//! cookie, and a `nonce` bound to the ID token.
//!
//! The ID token is verified by the same [`OidcProvider`] code that verifies agents'
//! tokens (pinned algorithms, the provider's published keys, issuer, expiry, and the
//! principal and groups claims as configured), with the console's client id as the
//! only audience. That is why the flow is written here over reqwest rather than with
//! the `openidconnect` crate: one verifier for every token Airlock accepts, and the
//! flow itself is three requests.
//!
//! A sign-in in progress is kept in the store ([`Store::put_console_flow`]), so that the
//! provider's redirect back may reach another gateway replica than the one that sent
//! the browser away. What is stored is nothing secret: the SHA-256 of the `state` (the
//! key), the `nonce` and the PKCE challenge, all three of which the provider was sent
//! in the browser's URL anyway. The PKCE verifier itself is never stored: it lives in
//! the browser's flow cookie (`Secure; HttpOnly; SameSite=Lax`, ten minutes) next to
//! the state, as `state.verifier`, and comes back with the redirect. The callback checks
//! the cookie's state against the redirect's (login CSRF), takes the flow out of the
//! store (once: a replayed redirect finds nothing), checks that the cookie's verifier
//! hashes to the stored challenge, and sends it to the provider. This is simpler than
//! sealing the verifier (no key to share between replicas and rotate), and as sound: a
//! code intercepted on its way back is useless without the cookie, and whoever holds
//! the browser's cookies already holds the sign-in they lead to.

use std::time::Duration;

use airlock_identity::oidc::{OidcProvider, OidcSettings};
use airlock_model::{PrincipalSource, Timestamp};
use airlock_store::{ConsoleFlow, Store};
use airlock_vault::Secret;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::browser::{self, clear_cookie, cookie, key_hash, random_token, same, set_cookie};
use super::page::Notice;
use crate::ApiState;

/// The cookie that binds a sign-in in progress to the browser that started it.
const FLOW_COOKIE: &str = "airlock_oidc";
/// How long a person has at the provider.
const FLOW_TTL: Duration = Duration::from_secs(600);
/// Sign-ins in progress kept at most.
const MAX_FLOWS: u32 = 10_000;
/// Largest discovery document or token answer read.
const MAX_ANSWER: usize = 256 * 1024;

/// Why the OIDC sign-in could not be set up or completed. Never holds a token.
#[derive(Debug, thiserror::Error)]
pub enum OidcLoginError {
    /// The provider's discovery document could not be had.
    #[error("the provider's discovery document at {url} could not be read: {why}")]
    Discovery {
        /// Where it was asked for.
        url: String,
        /// Why.
        why: String,
    },
    /// The token endpoint refused the code.
    #[error("the provider refused the sign-in code: {0}")]
    Exchange(String),
    /// The ID token did not verify.
    #[error("the provider's ID token was refused: {0}")]
    IdToken(String),
    /// The store could not keep or give back the sign-in in progress (the detail is
    /// logged, not shown).
    #[error("the store is unavailable")]
    Store,
    /// Too many sign-ins are in progress.
    #[error("too many sign-ins are in progress; try again in a few minutes")]
    Busy,
}

impl OidcLoginError {
    /// The status of a page that reports it: 503 when the gateway itself cannot keep
    /// the sign-in, `otherwise` when the provider or the browser is at fault.
    fn status(&self, otherwise: StatusCode) -> StatusCode {
        match self {
            OidcLoginError::Store | OidcLoginError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => otherwise,
        }
    }
}

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Clone, Deserialize)]
struct Endpoints {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

/// The console's OIDC client.
pub struct OidcLogin {
    provider: String,
    issuer: String,
    client_id: String,
    client_secret: Option<Secret>,
    redirect_url: String,
    scopes: Vec<String>,
    verifier: OidcProvider,
    http: reqwest::Client,
    endpoints: OnceCell<Endpoints>,
}

impl OidcLogin {
    /// A client of the provider `settings` describes (an `[[identity.oidc]]` entry), as
    /// `client_id` with `client_secret` (none for a public client), returning to
    /// `redirect_url`, asking for `openid` and `scopes`.
    pub fn new(
        settings: &OidcSettings,
        client_id: String,
        client_secret: Option<Secret>,
        redirect_url: String,
        scopes: Vec<String>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let id_tokens = OidcSettings {
            audiences: vec![client_id.clone()],
            ..settings.clone()
        };
        OidcLogin {
            provider: settings.name.clone(),
            issuer: settings.issuer.clone(),
            client_id,
            client_secret,
            redirect_url,
            scopes,
            verifier: OidcProvider::new(id_tokens, http.clone()),
            http,
            endpoints: OnceCell::new(),
        }
    }

    /// The provider's name, for the sign-in button.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    async fn endpoints(&self) -> Result<&Endpoints, OidcLoginError> {
        self.endpoints
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.issuer);
                let fail = |why: String| OidcLoginError::Discovery {
                    url: url.clone(),
                    why,
                };
                let answer = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                if !answer.status().is_success() {
                    return Err(fail(format!("HTTP {}", answer.status())));
                }
                let body = answer.bytes().await.map_err(|e| fail(e.to_string()))?;
                if body.len() > MAX_ANSWER {
                    return Err(fail("it is too large".into()));
                }
                let endpoints: Endpoints =
                    serde_json::from_slice(&body).map_err(|e| fail(e.to_string()))?;
                if endpoints.issuer.trim_end_matches('/') != self.issuer {
                    return Err(fail(format!(
                        "it names issuer `{}`, not `{}`",
                        endpoints.issuer, self.issuer
                    )));
                }
                Ok(endpoints)
            })
            .await
    }

    /// Starts a sign-in, kept in `store`: the provider's URL to send the browser to, and
    /// the flow cookie's value (`state.verifier`).
    async fn begin(&self, store: &dyn Store) -> Result<(String, Secret), OidcLoginError> {
        let endpoints = self.endpoints().await?;
        let state = random_token();
        let verifier = random_token();
        let nonce = random_token();
        let challenge = s256(&verifier);
        let mut scope = vec!["openid".to_owned()];
        scope.extend(self.scopes.iter().filter(|s| *s != "openid").cloned());
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", self.redirect_url.as_str()),
            ("scope", scope.join(" ").as_str()),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .map_err(|e| OidcLoginError::Exchange(e.to_string()))?;
        let separator = if endpoints.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let now = Timestamp::now();
        let flow = ConsoleFlow {
            key_hash: key_hash(&state),
            nonce,
            challenge,
            created_at: now,
            expires_at: now.plus(FLOW_TTL),
        };
        match store.put_console_flow(&flow, MAX_FLOWS).await {
            Ok(true) => {}
            Ok(false) => return Err(OidcLoginError::Busy),
            Err(e) => {
                tracing::error!(error = %e, "console: an OIDC sign-in could not be stored");
                return Err(OidcLoginError::Store);
            }
        }
        Ok((
            format!("{}{separator}{query}", endpoints.authorization_endpoint),
            Secret::new(format!("{state}.{verifier}")),
        ))
    }

    /// Completes a sign-in: takes the flow of `state` out of `store`, checks the
    /// browser's `verifier` against its challenge, exchanges `code` with it and checks
    /// the ID token, its audience and its nonce.
    async fn complete(
        &self,
        store: &dyn Store,
        state: &str,
        verifier: &Secret,
        code: &str,
    ) -> Result<airlock_model::Principal, OidcLoginError> {
        let flow = store
            .take_console_flow(&key_hash(state), Timestamp::now())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "console: an OIDC sign-in could not be read");
                OidcLoginError::Store
            })?
            .ok_or_else(|| {
                OidcLoginError::Exchange(
                    "the sign-in took too long or was started elsewhere; start again".into(),
                )
            })?;
        if !same(&s256(verifier.expose()), &flow.challenge) {
            return Err(OidcLoginError::Exchange(
                "this browser's sign-in is not the one that was started; start again".into(),
            ));
        }
        let endpoints = self.endpoints().await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_url.as_str()),
            ("code_verifier", verifier.expose()),
        ];
        if self.client_secret.is_none() {
            form.push(("client_id", self.client_id.as_str()));
        }
        let body = serde_urlencoded::to_string(&form)
            .map_err(|e| OidcLoginError::Exchange(e.to_string()))?;
        let mut request = self
            .http
            .post(&endpoints.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(secret) = &self.client_secret {
            // client_secret_basic: both parts form-encoded first (RFC 6749 §2.3.1).
            let user = form_encode(&self.client_id);
            let pass = form_encode(secret.expose());
            request = request.header(
                "authorization",
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
                ),
            );
        }
        let answer = request
            .send()
            .await
            .map_err(|e| OidcLoginError::Exchange(e.to_string()))?;
        let status = answer.status();
        let body = answer
            .bytes()
            .await
            .map_err(|e| OidcLoginError::Exchange(e.to_string()))?;
        if body.len() > MAX_ANSWER {
            return Err(OidcLoginError::Exchange("the answer is too large".into()));
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: Option<String>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            OidcLoginError::Exchange(format!("HTTP {status}, and the answer is not JSON"))
        })?;
        if let Some(error) = answer.error {
            return Err(OidcLoginError::Exchange(format!(
                "{error}{}",
                answer
                    .error_description
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )));
        }
        let id_token = answer.id_token.map(Secret::new).ok_or_else(|| {
            OidcLoginError::Exchange(format!("HTTP {status} without an id_token"))
        })?;
        let verified = self
            .verifier
            .verify(id_token.expose())
            .await
            .map_err(|e| OidcLoginError::IdToken(e.to_string()))?;
        match &verified.nonce {
            Some(n) if same(n, &flow.nonce) => {}
            _ => {
                return Err(OidcLoginError::IdToken(
                    "its nonce is not the one this sign-in sent".into(),
                ));
            }
        }
        let mut principal = verified.principal;
        // The browser's sign-in lasts the console's session length; the ID token only
        // proved who signed in.
        principal.expires_at = None;
        principal.source = PrincipalSource::Oidc;
        Ok(principal)
    }
}

/// The PKCE S256 challenge of `verifier`: base64url SHA-256.
fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The state and the verifier in a flow cookie's value (`state.verifier`).
fn split_flow_cookie(value: &str) -> Option<(&str, Secret)> {
    let (state, verifier) = value.split_once('.')?;
    (!state.is_empty() && !verifier.is_empty()).then(|| (state, Secret::new(verifier.to_owned())))
}

/// `application/x-www-form-urlencoded` of one value.
fn form_encode(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)])
        .map(|s| s.trim_start_matches("v=").to_owned())
        .unwrap_or_default()
}

/// `GET /auth/oidc`: sends the browser to the provider.
pub(super) async fn start(State(state): State<ApiState>) -> Response {
    let Some(login) = &state.console.0.oidc else {
        return browser::signin_form(
            &state,
            Some(Notice::error(
                "Sign-in with an identity provider is not configured: sign in with a token.",
            )),
            StatusCode::NOT_FOUND,
        );
    };
    match login.begin(&*state.console.0.store).await {
        Ok((url, flow)) => {
            let mut r = Redirect::to(&url).into_response();
            r.headers_mut().append(
                SET_COOKIE,
                set_cookie(FLOW_COOKIE, flow.expose(), Some(FLOW_TTL)),
            );
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "console OIDC sign-in could not start");
            browser::signin_form(
                &state,
                Some(Notice::error(&format!(
                    "Sign-in with {} is unavailable: {e}. Try again, or sign in with a token.",
                    login.provider()
                ))),
                e.status(StatusCode::BAD_GATEWAY),
            )
        }
    }
}

/// The provider's redirect back.
#[derive(Deserialize)]
pub(super) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/callback?code=…&state=…`: completes the sign-in.
pub(super) async fn callback(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<Callback>, QueryRejection>,
) -> Response {
    let refuse = |text: String, status: StatusCode| {
        let mut r = browser::signin_form(&state, Some(Notice::error(&text)), status);
        r.headers_mut()
            .append(SET_COOKIE, clear_cookie(FLOW_COOKIE));
        r
    };
    let Some(login) = &state.console.0.oidc else {
        return refuse(
            "Sign-in with an identity provider is not configured.".into(),
            StatusCode::NOT_FOUND,
        );
    };
    let Ok(Query(q)) = query else {
        return refuse(
            "The provider's answer was malformed.".into(),
            StatusCode::BAD_REQUEST,
        );
    };
    if let Some(error) = q.error {
        return refuse(
            format!(
                "{} refused the sign-in: {error}{}",
                login.provider(),
                q.error_description
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            StatusCode::UNAUTHORIZED,
        );
    }
    let (Some(code), Some(flow)) = (q.code, q.state) else {
        return refuse(
            "The provider's answer had no code or state.".into(),
            StatusCode::BAD_REQUEST,
        );
    };
    // The state must be the one this browser was given: a sign-in started in another
    // browser (login CSRF) is refused.
    let verifier = match cookie(&headers, FLOW_COOKIE).and_then(split_flow_cookie) {
        Some((mine, verifier)) if same(mine, &flow) => verifier,
        _ => {
            return refuse(
                "This sign-in was not started in this browser (or took too long). Start again."
                    .into(),
                StatusCode::FORBIDDEN,
            );
        }
    };
    match login
        .complete(&*state.console.0.store, &flow, &verifier, &code)
        .await
    {
        Ok(principal) => {
            tracing::info!(principal = %principal.name, provider = %login.provider(), "console sign-in");
            let mut r = browser::signed_in(&state, principal).await;
            r.headers_mut()
                .append(SET_COOKIE, clear_cookie(FLOW_COOKIE));
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "console OIDC sign-in refused");
            refuse(
                format!("Sign-in with {} failed: {e}.", login.provider()),
                e.status(StatusCode::UNAUTHORIZED),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    async fn store() -> Arc<dyn Store> {
        let dir = std::env::temp_dir().join(format!(
            "airlock-console-flows-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Arc::new(airlock_store::SqliteStore::open_in(&dir).await.unwrap())
    }

    /// A client of a provider that does not answer (127.0.0.1:1).
    fn login() -> OidcLogin {
        let settings = OidcSettings {
            name: "local".into(),
            issuer: "http://127.0.0.1:1".into(),
            audiences: Vec::new(),
            principal_claim: "sub".into(),
            groups_claim: "groups".into(),
            algorithms: Vec::new(),
            leeway: Duration::from_secs(0),
        };
        OidcLogin::new(
            &settings,
            "console".into(),
            None,
            "https://airlock.example/auth/callback".into(),
            Vec::new(),
        )
    }

    /// A flow as `begin` stores it on one replica; returns its state and verifier.
    async fn started(store: &dyn Store) -> (String, Secret) {
        let (state, verifier) = (random_token(), random_token());
        let now = Timestamp::now();
        let flow = ConsoleFlow {
            key_hash: key_hash(&state),
            nonce: random_token(),
            challenge: s256(&verifier),
            created_at: now,
            expires_at: now.plus(FLOW_TTL),
        };
        assert!(store.put_console_flow(&flow, MAX_FLOWS).await.unwrap());
        (state, Secret::new(verifier))
    }

    #[test]
    fn flow_cookies_hold_the_state_and_the_verifier() {
        let (state, verifier) = split_flow_cookie("abc.def").unwrap();
        assert_eq!((state, verifier.expose()), ("abc", "def"));
        for bad in ["abc", ".def", "abc.", ""] {
            assert!(split_flow_cookie(bad).is_none(), "{bad}");
        }
        // RFC 7636 appendix B.
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[tokio::test]
    async fn a_flow_started_on_one_replica_completes_on_another_once() {
        let shared = store().await;
        let b = login();
        // Another browser's verifier: refused, and the flow is used up.
        let (state, _) = started(&*shared).await;
        let err = b
            .complete(&*shared, &state, &Secret::new(random_token()), "code")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not the one"), "{err}");
        let (state, verifier) = started(&*shared).await;
        // The right verifier passes the checks and gets as far as the provider.
        let err = b
            .complete(&*shared, &state, &verifier, "code")
            .await
            .unwrap_err();
        assert!(
            matches!(err, OidcLoginError::Discovery { .. }),
            "the store's flow was accepted: {err}"
        );
        // Used once: a replayed redirect finds nothing.
        let err = b
            .complete(&*shared, &state, &verifier, "code")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("start again"), "{err}");
        // Nothing secret is stored: the row has the state's hash and the challenge.
        let (state, verifier) = started(&*shared).await;
        let row = shared
            .take_console_flow(&key_hash(&state), Timestamp::now())
            .await
            .unwrap()
            .unwrap();
        let stored = serde_json::to_string(&row).unwrap();
        assert!(!stored.contains(&state) && !stored.contains(verifier.expose()));
    }
}
