//! OIDC access tokens: a JWT is matched to the configured provider named by its `iss`,
//! its signature checked with the provider's published keys ([`keys`]), and its claims
//! with the configured audiences, algorithms and leeway; the principal and groups come
//! from configured claim paths ([`claims`]).
//!
//! Algorithms are pinned by configuration: `none` cannot be configured and never parses,
//! HMAC algorithms cannot be configured, and symmetric keys published in a JWKS are
//! ignored, so a token signed with HS256 using the provider's public key is refused.

mod claims;
pub mod keys;

use std::time::Duration;

use airlock_model::{Principal, PrincipalSource, Timestamp};
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};

use keys::{KeyCache, KeyError};

/// One configured provider, with its settings resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcSettings {
    /// Its name, for messages and records.
    pub name: String,
    /// The exact issuer (`iss`).
    pub issuer: String,
    /// Accepted audiences; a token must name one of them.
    pub audiences: Vec<String>,
    /// Path of the claim that names the principal.
    pub principal_claim: String,
    /// Path of the claim that lists the groups.
    pub groups_claim: String,
    /// Signature algorithms accepted.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

impl OidcSettings {
    /// From a validated `[[identity.oidc]]` entry.
    pub fn from_config(c: &airlock_config::OidcProviderConfig) -> Result<Self, String> {
        let algorithms = c
            .algorithms
            .iter()
            .map(|a| {
                a.parse::<Algorithm>()
                    .map_err(|_| format!("provider `{}`: unknown algorithm `{a}`", c.name()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OidcSettings {
            name: c.name().to_owned(),
            issuer: c.issuer.trim_end_matches('/').to_owned(),
            audiences: c.audiences.clone(),
            principal_claim: c.principal_claim.clone(),
            groups_claim: c.groups_claim.clone(),
            algorithms,
            leeway: c.leeway,
        })
    }
}

/// Why an OIDC token was refused. Messages never contain the token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OidcError {
    /// Not a JWT at all.
    #[error("the token is not a JWT (three base64url parts)")]
    Malformed,
    /// No provider has this issuer.
    #[error("no [[identity.oidc]] provider has issuer `{0}`")]
    UnknownIssuer(String),
    /// The algorithm is not among the provider's.
    #[error(
        "provider `{provider}` does not accept tokens signed with {alg} (accepted: {accepted})"
    )]
    Algorithm {
        /// The provider.
        provider: String,
        /// The token's algorithm.
        alg: String,
        /// What the provider accepts.
        accepted: String,
    },
    /// No published key matches the token's key id, even after a refresh.
    #[error("provider `{provider}` publishes no key `{kid}` for {alg}")]
    UnknownKey {
        /// The provider.
        provider: String,
        /// The token's key id (or `-`).
        kid: String,
        /// The token's algorithm.
        alg: String,
    },
    /// The provider's keys could not be had.
    #[error("provider `{provider}`: {error}")]
    Keys {
        /// The provider.
        provider: String,
        /// Why.
        error: KeyError,
    },
    /// The signature does not verify.
    #[error("the token's signature does not verify with provider `{0}`'s keys")]
    Signature(String),
    /// `exp` is past (beyond the leeway).
    #[error("the token has expired; get a fresh one from the provider")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet (nbf in the future); check the clocks")]
    NotYetValid,
    /// No accepted audience.
    #[error(
        "the token's audience is not one this gateway accepts ({0}); request a token for that audience"
    )]
    Audience(String),
    /// A claim the gateway needs is missing or has the wrong type.
    #[error("the token has no usable `{0}` claim")]
    Claim(String),
    /// Anything else the JWT library refused.
    #[error("the token was refused: {0}")]
    Invalid(String),
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Who it is.
    pub principal: Principal,
    /// Its issuer.
    pub issuer: String,
    /// Its `jti`, if it has one.
    pub token_id: Option<String>,
    /// Its `nonce` (ID tokens of a browser sign-in carry the one the sign-in sent).
    pub nonce: Option<String>,
}

/// One provider: settings and cached keys.
pub struct OidcProvider {
    settings: OidcSettings,
    keys: KeyCache,
}

/// The `iss` of a JWT, read without verifying anything, only to choose the provider
/// that verifies it.
pub fn peek_issuer(token: &str) -> Result<String, OidcError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| OidcError::Malformed)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| OidcError::Malformed)?;
    claims
        .get("iss")
        .and_then(|v| v.as_str())
        .map(|s| s.trim_end_matches('/').to_owned())
        .ok_or_else(|| OidcError::Claim("iss".into()))
}

impl OidcProvider {
    /// A provider; keys are fetched on first use (or [`OidcProvider::prefetch`]).
    pub fn new(settings: OidcSettings, http: reqwest::Client) -> Self {
        let keys = KeyCache::new(&settings.issuer, http);
        OidcProvider { settings, keys }
    }

    /// Its settings.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// The issuer it verifies, without a trailing slash.
    pub fn issuer(&self) -> &str {
        self.settings.issuer.trim_end_matches('/')
    }

    /// Fetches the keys now (at start), so that the first agent does not wait for it.
    pub async fn prefetch(&self) {
        self.keys.refresh().await;
    }

    /// Verifies `token` and reads its principal.
    pub async fn verify(&self, token: &str) -> Result<Verified, OidcError> {
        let s = &self.settings;
        let header = jsonwebtoken::decode_header(token).map_err(|e| match alg_of(token) {
            // `alg: none` and algorithms the library does not know fail here.
            alg if alg != "?" => OidcError::Algorithm {
                provider: s.name.clone(),
                alg,
                accepted: names(&s.algorithms),
            },
            _ => OidcError::Invalid(e.to_string()),
        })?;
        if !s.algorithms.contains(&header.alg) {
            return Err(OidcError::Algorithm {
                provider: s.name.clone(),
                alg: format!("{:?}", header.alg),
                accepted: names(&s.algorithms),
            });
        }
        let key = self
            .keys
            .key_for(header.kid.as_deref(), header.alg)
            .await
            .map_err(|error| OidcError::Keys {
                provider: s.name.clone(),
                error,
            })?
            .ok_or_else(|| OidcError::UnknownKey {
                provider: s.name.clone(),
                kid: header.kid.clone().unwrap_or_else(|| "-".into()),
                alg: format!("{:?}", header.alg),
            })?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[s.issuer.as_str(), &format!("{}/", self.issuer())]);
        validation.set_audience(&s.audiences);
        validation.leeway = s.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation)
            .map_err(|e| self.refusal(&e))?;
        let claims = data.claims;
        let name = claims::principal(&claims, &s.principal_claim)
            .ok_or_else(|| OidcError::Claim(s.principal_claim.clone()))?;
        let groups = claims::groups(&claims, &s.groups_claim);
        let expires_at = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .map(Timestamp::from_datetime);
        Ok(Verified {
            principal: Principal {
                name,
                groups,
                source: PrincipalSource::Oidc,
                expires_at,
            },
            issuer: self.issuer().to_owned(),
            token_id: claims
                .get("jti")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            nonce: claims
                .get("nonce")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        })
    }

    fn refusal(&self, e: &jsonwebtoken::errors::Error) -> OidcError {
        use jsonwebtoken::errors::ErrorKind as K;
        let s = &self.settings;
        match e.kind() {
            K::InvalidSignature => OidcError::Signature(s.name.clone()),
            K::ExpiredSignature => OidcError::Expired,
            K::ImmatureSignature => OidcError::NotYetValid,
            K::InvalidAudience => OidcError::Audience(s.audiences.join(", ")),
            K::InvalidIssuer => OidcError::UnknownIssuer(s.issuer.clone()),
            K::MissingRequiredClaim(c) => OidcError::Claim(c.clone()),
            K::InvalidAlgorithm | K::InvalidAlgorithmName => OidcError::Algorithm {
                provider: s.name.clone(),
                alg: "another".into(),
                accepted: names(&s.algorithms),
            },
            _ => OidcError::Invalid(e.to_string()),
        }
    }
}

fn names(algs: &[Algorithm]) -> String {
    algs.iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `alg` a token's header names, for messages (never the token itself).
fn alg_of(token: &str) -> String {
    token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .and_then(|h| h.get("alg").and_then(|a| a.as_str()).map(str::to_owned))
        .map(|a| a.chars().take(16).collect())
        .unwrap_or_else(|| "?".into())
}
