//! Identity: turns the credential a client presents into a [`Principal`], or refuses it.
//!
//! A credential is an Airlock service token (`airlock token create`: `alk_` and 32 random
//! bytes; only its SHA-256 is stored, so a copy of the store does not hand out working
//! tokens) or an OIDC access token (a JWT from a configured provider, [`oidc`]). Both go
//! through [`Identity::authenticate`]. [`Identity::still_valid`] tells an open session
//! whether its credential still holds (expiry, revocation): revocations are read from
//! the store as soon as it announces a token change ([`Store::changes`], PostgreSQL), and
//! polled as the fallback ([`Identity::spawn_revocation_watch`]).

pub mod oidc;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use oidc::{OidcError, OidcProvider, OidcSettings};

use airlock_model::{Principal, PrincipalSource, Timestamp};
use airlock_store::{Store, StoreChange, StoreError, TokenRecord, next_change};
use airlock_vault::Secret;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The prefix every service token starts with, so that secret scanners and people can
/// recognise one.
pub const TOKEN_PREFIX: &str = "alk_";

/// Why a credential was refused. Messages never contain the credential.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No token with this value exists (mistyped, or from another gateway).
    #[error("the token is not valid: no Airlock token matches it")]
    UnknownToken,
    /// The token's lifetime ended.
    #[error("token `{name}` expired at {at}")]
    Expired {
        /// The token's name.
        name: String,
        /// When it expired.
        at: Timestamp,
    },
    /// The token was revoked.
    #[error("token `{name}` was revoked at {at}")]
    Revoked {
        /// The token's name.
        name: String,
        /// When it was revoked.
        at: Timestamp,
    },
    /// A token name or group is not acceptable.
    #[error("{0}")]
    InvalidName(String),
    /// The store could not answer; authentication fails closed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An OIDC access token was refused.
    #[error("the OIDC token was refused: {0}")]
    Oidc(#[from] OidcError),
}

/// A verified credential: who, and the facts worth recording about the token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who it is.
    pub principal: Principal,
    /// The OIDC issuer, for an OIDC token.
    pub issuer: Option<String>,
    /// The token's id (`jti`), for an OIDC token that has one.
    pub token_id: Option<String>,
}

/// A freshly minted token: the value (shown once) and what was stored.
#[derive(Debug)]
pub struct MintedToken {
    /// The token to hand to the agent.
    pub token: Secret,
    /// The stored record (hash only).
    pub record: TokenRecord,
}

/// Verifies and mints credentials against the store and the OIDC providers.
#[derive(Clone)]
pub struct Identity {
    store: Arc<dyn Store>,
    providers: Arc<ArcSwap<Vec<Arc<OidcProvider>>>>,
    /// Names of revoked service tokens, as last read from the store.
    revoked: Arc<ArcSwap<HashSet<String>>>,
    http: reqwest::Client,
}

/// Why a credential that opened a session no longer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoLongerValid {
    /// It expired (plus the grace) at this time.
    Expired(Timestamp),
    /// The service token was revoked.
    Revoked,
}

impl Identity {
    /// An identity service over `store`, with no OIDC provider.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Identity {
            store,
            providers: Arc::new(ArcSwap::from_pointee(Vec::new())),
            revoked: Arc::new(ArcSwap::from_pointee(HashSet::new())),
            http,
        }
    }

    /// Puts the configured providers in force. A provider whose settings did not change
    /// keeps its cached keys.
    pub fn set_providers(&self, settings: Vec<OidcSettings>) {
        let old = self.providers.load();
        let providers = settings
            .into_iter()
            .map(|s| {
                old.iter()
                    .find(|p| p.settings() == &s)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(OidcProvider::new(s, self.http.clone())))
            })
            .collect();
        self.providers.store(Arc::new(providers));
    }

    /// Fetches every provider's keys now (at start); failures are logged and retried
    /// when a token arrives.
    pub async fn prefetch_keys(&self) {
        for p in self.providers.load().iter() {
            p.prefetch().await;
        }
    }

    /// Checks a presented credential and returns who it belongs to.
    pub async fn authenticate(&self, credential: &Secret) -> Result<Principal, IdentityError> {
        self.authenticate_full(credential)
            .await
            .map(|a| a.principal)
    }

    /// [`Identity::authenticate`], with the token's issuer and id.
    pub async fn authenticate_full(
        &self,
        credential: &Secret,
    ) -> Result<Authenticated, IdentityError> {
        let presented = credential.expose().trim();
        if !presented.starts_with(TOKEN_PREFIX) {
            if presented.split('.').count() == 3 {
                return self.authenticate_oidc(presented).await;
            }
            return Err(IdentityError::UnknownToken);
        }
        self.authenticate_service_token(presented)
            .await
            .map(|principal| Authenticated {
                principal,
                issuer: None,
                token_id: None,
            })
    }

    async fn authenticate_oidc(&self, token: &str) -> Result<Authenticated, IdentityError> {
        let issuer = oidc::peek_issuer(token)?;
        let provider = self
            .providers
            .load()
            .iter()
            .find(|p| p.issuer() == issuer)
            .cloned()
            .ok_or(OidcError::UnknownIssuer(issuer))?;
        let verified = provider.verify(token).await?;
        validate_name("OIDC principal", &verified.principal.name)
            .map_err(|_| OidcError::Claim(provider.settings().principal_claim.clone()))?;
        Ok(Authenticated {
            principal: verified.principal,
            issuer: Some(verified.issuer),
            token_id: verified.token_id,
        })
    }

    /// Whether the credential that opened a session still holds: not past its expiry
    /// plus `grace`, and (service tokens) not revoked as of the last
    /// [`Identity::refresh_revocations`].
    pub fn still_valid(&self, principal: &Principal, grace: Duration) -> Result<(), NoLongerValid> {
        if let Some(at) = principal.expires_at {
            let until = at.plus(grace);
            if until <= Timestamp::now() {
                return Err(NoLongerValid::Expired(at));
            }
        }
        if principal.source == PrincipalSource::ServiceToken
            && self.revoked.load().contains(&principal.name)
        {
            return Err(NoLongerValid::Revoked);
        }
        Ok(())
    }

    /// Re-reads which service tokens are revoked (revocations made by the CLI, in
    /// another process, reach open sessions this way).
    pub async fn refresh_revocations(&self) -> Result<(), IdentityError> {
        let revoked: HashSet<String> = self
            .store
            .list_tokens()
            .await?
            .into_iter()
            .filter(|t| t.revoked_at.is_some())
            .map(|t| t.name)
            .collect();
        if **self.revoked.load() != revoked {
            self.revoked.store(Arc::new(revoked));
        }
        Ok(())
    }

    /// Refreshes revocations until the process ends: at once when the store announces
    /// a token change (or that announcements may have been missed), and every `every`
    /// in any case (the fallback, for a store that announces nothing or an announcement
    /// lost).
    pub fn spawn_revocation_watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut changes = me.store.changes();
            // Logged once per outage of the store, not at every try.
            let mut failing = false;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    change = next_change(&mut changes) => match change {
                        StoreChange::TokensChanged | StoreChange::Resync => {
                            // Read now; the next poll a full interval later.
                            tick.reset();
                        }
                        StoreChange::ApprovalDecided { .. } => continue,
                    },
                }
                match me.refresh_revocations().await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("reading token revocations again");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "could not read token revocations; open sessions keep the last ones read until the store answers");
                    }
                    Err(_) => {}
                }
            }
        })
    }

    async fn authenticate_service_token(
        &self,
        presented: &str,
    ) -> Result<Principal, IdentityError> {
        let record = self
            .store
            .find_token_by_hash(&token_hash(presented))
            .await?
            .ok_or(IdentityError::UnknownToken)?;
        let now = Timestamp::now();
        if let Some(at) = record.revoked_at {
            return Err(IdentityError::Revoked {
                name: record.name,
                at,
            });
        }
        if let Some(at) = record.expires_at
            && at <= now
        {
            return Err(IdentityError::Expired {
                name: record.name,
                at,
            });
        }
        // Last-used time is informational: failing to write it must not lock an agent out.
        if let Err(e) = self.store.touch_token(&record.name, now).await {
            tracing::warn!(token = %record.name, error = %e, "could not record token use");
        }
        Ok(Principal {
            name: record.name,
            groups: record.groups,
            source: PrincipalSource::ServiceToken,
            expires_at: record.expires_at,
        })
    }

    /// Mints and stores a new service token.
    pub async fn mint(
        &self,
        name: &str,
        groups: &[String],
        ttl: Option<std::time::Duration>,
    ) -> Result<MintedToken, IdentityError> {
        validate_name("token name", name)?;
        for g in groups {
            validate_name("group", g)?;
        }
        let bytes: [u8; 32] = rand::random();
        let token = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let now = Timestamp::now();
        let record = TokenRecord {
            name: name.to_owned(),
            token_hash: token_hash(&token),
            groups: groups.to_vec(),
            created_at: now,
            expires_at: ttl.map(|d| now.plus(d)),
            revoked_at: None,
            last_used_at: None,
        };
        self.store.insert_token(&record).await?;
        Ok(MintedToken {
            token: Secret::new(token),
            record,
        })
    }
}

fn validate_name(what: &str, name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidName(format!(
            "{what} `{name}` must be 1-128 characters of letters, digits, '-', '_', '.', '@' or ':'"
        )))
    }
}

/// Hex SHA-256 of a token, the form the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_store::SqliteStore;

    async fn identity() -> Identity {
        let dir = std::env::temp_dir().join(format!(
            "airlock-identity-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Identity::new(Arc::new(SqliteStore::open_in(&dir).await.unwrap()))
    }

    #[tokio::test]
    async fn minted_token_authenticates_and_wrong_one_does_not() {
        let id = identity().await;
        let minted = id.mint("crew", &["ai-agents".into()], None).await.unwrap();
        assert!(minted.token.expose().starts_with(TOKEN_PREFIX));
        assert_ne!(minted.record.token_hash, minted.token.expose());
        let p = id.authenticate(&minted.token).await.unwrap();
        assert_eq!(p.name, "crew");
        assert_eq!(p.groups, vec!["ai-agents".to_string()]);
        let wrong = Secret::new(format!("{}x", minted.token.expose()));
        assert!(matches!(
            id.authenticate(&wrong).await,
            Err(IdentityError::UnknownToken)
        ));
        assert!(matches!(
            id.authenticate(&Secret::new("garbage".into())).await,
            Err(IdentityError::UnknownToken)
        ));
    }

    #[tokio::test]
    async fn expired_and_revoked_tokens_are_refused() {
        let id = identity().await;
        let t = id
            .mint("short", &[], Some(std::time::Duration::ZERO))
            .await
            .unwrap();
        assert!(matches!(
            id.authenticate(&t.token).await,
            Err(IdentityError::Expired { .. })
        ));
        let t = id.mint("gone", &[], None).await.unwrap();
        id.store
            .revoke_token("gone", Timestamp::now())
            .await
            .unwrap();
        assert!(matches!(
            id.authenticate(&t.token).await,
            Err(IdentityError::Revoked { .. })
        ));
    }

    #[tokio::test]
    async fn bad_names_are_refused() {
        let id = identity().await;
        assert!(id.mint("", &[], None).await.is_err());
        assert!(id.mint("a b", &[], None).await.is_err());
        assert!(id.mint("ok", &["bad group".into()], None).await.is_err());
    }
}
