//! A provider's signing keys: found through the issuer's discovery document, fetched
//! from its JWKS, cached, and refreshed when they are old or a token names a key id the
//! set does not hold. Refreshes happen at most once per [`MIN_REFRESH`], so a stream of
//! garbage tokens cannot make Airlock hammer the provider; when the provider cannot be
//! reached, the last good key set stays in use.
//!
//! Hand-written over reqwest because no maintained crate does discovery + JWKS caching
//! with these guarantees (rate limit, keep-last-good) on aws-lc-rs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Least time between two fetches of the key set.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Age after which a key set is fetched again (when a token arrives).
pub const KEYS_TTL: Duration = Duration::from_secs(300);
/// Largest discovery document or key set read.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// Time limit of one HTTP request to the provider.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why keys could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    /// The provider could not be reached or answered something unusable, and no key set
    /// was ever fetched.
    #[error("the provider's signing keys could not be fetched: {0}")]
    Unavailable(String),
}

/// One verification key.
pub struct Key {
    /// Its key id (`kid`), if the set gave one.
    pub kid: Option<String>,
    /// The algorithm the set pins it to, if any.
    pub alg: Option<Algorithm>,
    /// The key.
    pub key: DecodingKey,
}

/// The keys fetched at one moment.
#[derive(Default)]
struct KeySet {
    keys: Vec<Arc<Key>>,
    fetched: Option<Instant>,
}

impl KeySet {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
        let usable = |k: &&Arc<Key>| k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(usable)
                .find(|k| k.kid.as_deref() == Some(kid))
                .cloned(),
            // Without a key id, only an unambiguous key is used.
            None => {
                let mut candidates = self.keys.iter().filter(usable);
                match (candidates.next(), candidates.next()) {
                    (Some(k), None) => Some(k.clone()),
                    _ => None,
                }
            }
        }
    }

    fn is_fresh(&self) -> bool {
        self.fetched.is_some_and(|t| t.elapsed() < KEYS_TTL)
    }
}

/// The cached keys of one issuer.
pub struct KeyCache {
    issuer: String,
    http: reqwest::Client,
    set: ArcSwap<KeySet>,
    /// When the last fetch was tried; held while fetching, so concurrent misses wait
    /// for one fetch instead of each making their own.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    /// The last error, for messages when no set was ever fetched.
    last_error: std::sync::Mutex<Option<String>>,
}

impl KeyCache {
    /// Keys of `issuer`, fetched with `http` on first use.
    pub fn new(issuer: &str, http: reqwest::Client) -> Self {
        KeyCache {
            issuer: issuer.trim_end_matches('/').to_owned(),
            http,
            set: ArcSwap::from_pointee(KeySet::default()),
            last_attempt: tokio::sync::Mutex::new(None),
            last_error: std::sync::Mutex::new(None),
        }
    }

    /// The key for a token's `kid` and `alg`: from the cache, or after a refresh when the
    /// cache is old or does not know the key. `Ok(None)`: no such key, even after a
    /// refresh (or with refreshes rate-limited).
    pub async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Option<Arc<Key>>, KeyError> {
        {
            let set = self.set.load();
            if set.is_fresh()
                && let Some(k) = set.find(kid, alg)
            {
                return Ok(Some(k));
            }
        }
        self.refresh().await;
        let set = self.set.load();
        if set.fetched.is_none() {
            let why = self
                .last_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .unwrap_or_else(|| "not fetched yet".into());
            return Err(KeyError::Unavailable(why));
        }
        Ok(set.find(kid, alg))
    }

    /// Fetches the key set unless one was fetched (or tried) within [`MIN_REFRESH`]. A
    /// failure keeps the last good set and is logged.
    pub async fn refresh(&self) {
        let mut last = self.last_attempt.lock().await;
        if last.is_some_and(|t| t.elapsed() < MIN_REFRESH) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                tracing::debug!(issuer = %self.issuer, keys = set.keys.len(), "fetched the provider's signing keys");
                self.set.store(Arc::new(set));
                if let Ok(mut e) = self.last_error.lock() {
                    *e = None;
                }
            }
            Err(e) => {
                let kept = self.set.load().keys.len();
                tracing::warn!(issuer = %self.issuer, error = %e, kept_keys = kept, "could not refresh the provider's signing keys; keeping the last good set");
                if let Ok(mut last_error) = self.last_error.lock() {
                    *last_error = Some(e);
                }
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let discovery_url = format!("{}/.well-known/openid-configuration", self.issuer);
        let doc: serde_json::Value = self.get_json(&discovery_url).await?;
        let announced = doc
            .get("issuer")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .trim_end_matches('/');
        if announced != self.issuer {
            return Err(format!(
                "the discovery document names issuer `{announced}`, not `{}`",
                self.issuer
            ));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or("the discovery document has no jwks_uri")?;
        airlock_config::check_issuer_url(jwks_uri).map_err(|e| format!("jwks_uri: {e}"))?;
        let jwks: JwkSet = serde_json::from_value(self.get_json(jwks_uri).await?)
            .map_err(|e| format!("the key set is not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &jwks.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            // Symmetric keys in a JWKS are never used to verify: that is the HS256
            // with-a-public-key confusion this refuses.
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                continue;
            }
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| Algorithm::from_str_opt(&a.to_string()));
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => keys.push(Arc::new(Key {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    key,
                })),
                Err(e) => {
                    tracing::debug!(issuer = %self.issuer, kid = ?jwk.common.key_id, error = %e, "skipped a key the provider published")
                }
            }
        }
        Ok(KeySet {
            keys,
            fetched: Some(Instant::now()),
        })
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let mut response = self
            .http
            .get(url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(format!("{url} answered more than {MAX_DOCUMENT} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url} did not answer JSON: {e}"))
    }
}

/// A reqwest error without its chain of internals, with the URL (a provider URL is not
/// a secret).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    match e.url() {
        Some(u) => format!("{u}: {what}"),
        None => what.to_owned(),
    }
}

/// `Algorithm` from its JOSE name, without panicking on unknown ones.
trait FromStrOpt: Sized {
    fn from_str_opt(s: &str) -> Option<Self>;
}

impl FromStrOpt for Algorithm {
    fn from_str_opt(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}
