//! Airlock's own encrypted secret store: values set with `airlock secret set NAME` and
//! referenced as `secret:NAME`.
//!
//! Each value is sealed with AES-256-GCM under the master key (from `[secrets]
//! master_key` or `AIRLOCK_MASTER_KEY`), with a fresh random nonce and the secret's name
//! as associated data (a sealed value moved to another name does not open). A fixed
//! marker sealed the same way (the *key check*) tells a wrong master key apart from a
//! damaged value. Sealing is hand-written over aws-lc-rs's AEAD (the same library rustls
//! uses) because it is a dozen lines and no extra crate is needed.
//!
//! The gateway opens every stored secret when it loads its configuration (start and
//! reload) and installs them as one snapshot ([`install`]); [`crate::resolve`] reads
//! `secret:` references from it, so the rest of the code resolves every kind of reference
//! the same way.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use airlock_config::{Config, SecretRef};
use airlock_model::Timestamp;
use airlock_store::{Store, StoredSecret};
use arc_swap::ArcSwap;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use zeroize::Zeroizing;

use crate::{Secret, VaultError};

/// The environment variable that holds the master key when `[secrets] master_key` is
/// not set.
pub const MASTER_KEY_ENV: &str = "AIRLOCK_MASTER_KEY";

/// The associated data and plaintext of the key check.
const KEY_CHECK_NAME: &str = "airlock:key-check";
const KEY_CHECK_VALUE: &str = "airlock master key";

/// The 32-byte master key; zeroized when dropped, never printed.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([secret])")
    }
}

impl MasterKey {
    /// A key from its text form: 64 hex characters, or standard/URL-safe base64 of 32
    /// bytes.
    pub fn from_text(text: &str) -> Result<Self, VaultError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
                .ok()
        };
        let bytes = Zeroizing::new(bytes.unwrap_or_default());
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| VaultError::BadMasterKey)?;
        Ok(MasterKey(Zeroizing::new(key)))
    }

    /// A new random key and its hex text (for `airlock secret gen-key`).
    pub fn generate() -> Result<(Self, Secret), VaultError> {
        let mut key = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(key.as_mut()).map_err(|_| VaultError::Crypto)?;
        let text = Secret::new(hex::encode(key.as_ref()));
        Ok((MasterKey(key), text))
    }

    /// The configured master key: `[secrets] master_key`, else `AIRLOCK_MASTER_KEY`;
    /// `None` when neither is set.
    pub fn configured(config: &Config) -> Result<Option<Self>, VaultError> {
        let text = match &config.secrets.master_key {
            Some(reference) => crate::resolve(reference)?,
            None => match std::env::var(MASTER_KEY_ENV) {
                Ok(v) if !v.is_empty() => Secret::new(v),
                _ => return Ok(None),
            },
        };
        Self::from_text(text.expose()).map(Some)
    }

    fn aead(&self) -> Result<LessSafeKey, VaultError> {
        UnboundKey::new(&AES_256_GCM, self.0.as_ref())
            .map(LessSafeKey::new)
            .map_err(|_| VaultError::Crypto)
    }

    /// Seals `value` for the name `name`: (hex nonce, hex ciphertext+tag).
    pub fn seal(&self, name: &str, value: &str) -> Result<(String, String), VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| VaultError::Crypto)?;
        let mut data = Zeroizing::new(value.as_bytes().to_vec());
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut *data,
            )
            .map_err(|_| VaultError::Crypto)?;
        Ok((hex::encode(nonce), hex::encode(&*data)))
    }

    /// Opens what [`MasterKey::seal`] made; `None` when this key (or name) does not fit.
    pub fn open(&self, name: &str, nonce: &str, ciphertext: &str) -> Option<Secret> {
        let nonce: [u8; NONCE_LEN] = hex::decode(nonce).ok()?.try_into().ok()?;
        let mut data = Zeroizing::new(hex::decode(ciphertext).ok()?);
        let plain = self
            .aead()
            .ok()?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .ok()?;
        String::from_utf8(plain.to_vec()).ok().map(Secret::new)
    }

    /// The sealed key-check marker for this key.
    pub fn key_check(&self) -> Result<String, VaultError> {
        let (nonce, ct) = self.seal(KEY_CHECK_NAME, KEY_CHECK_VALUE)?;
        Ok(format!("{nonce}:{ct}"))
    }

    /// Whether `check` was made with this key.
    pub fn fits(&self, check: &str) -> bool {
        check
            .split_once(':')
            .and_then(|(n, c)| self.open(KEY_CHECK_NAME, n, c))
            .is_some_and(|v| v.expose() == KEY_CHECK_VALUE)
    }
}

/// Checks `key` against the store's key check, setting it on first use.
pub async fn ensure_key_fits(store: &dyn Store, key: &MasterKey) -> Result<(), VaultError> {
    match store.key_check().await.map_err(VaultError::store)? {
        Some(check) if key.fits(&check) => Ok(()),
        Some(_) => Err(VaultError::WrongMasterKey),
        None => store
            .set_key_check(&key.key_check()?)
            .await
            .map_err(VaultError::store),
    }
}

/// Seals and stores `value` as `name`.
pub async fn put(
    store: &dyn Store,
    key: &MasterKey,
    name: &str,
    value: &Secret,
) -> Result<(), VaultError> {
    ensure_key_fits(store, key).await?;
    let (nonce, ciphertext) = key.seal(name, value.expose())?;
    let now = Timestamp::now();
    store
        .put_secret(&StoredSecret {
            name: name.to_owned(),
            nonce,
            ciphertext,
            created_at: now,
            updated_at: now,
        })
        .await
        .map_err(VaultError::store)
}

/// Opens every stored secret with `key`.
pub async fn open_all(
    store: &dyn Store,
    key: &MasterKey,
) -> Result<HashMap<String, Secret>, VaultError> {
    ensure_key_fits(store, key).await?;
    let mut out = HashMap::new();
    for s in store.list_secrets().await.map_err(VaultError::store)? {
        let value =
            key.open(&s.name, &s.nonce, &s.ciphertext)
                .ok_or_else(|| VaultError::Damaged {
                    name: s.name.clone(),
                })?;
        out.insert(s.name, value);
    }
    Ok(out)
}

/// Re-seals every stored secret from `old` to `new` in one transaction.
pub async fn rotate_key(
    store: &dyn Store,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<usize, VaultError> {
    let opened = open_all(store, old).await?;
    let now = Timestamp::now();
    let mut resealed = Vec::new();
    for s in store.list_secrets().await.map_err(VaultError::store)? {
        let Some(value) = opened.get(&s.name) else {
            continue;
        };
        let (nonce, ciphertext) = new.seal(&s.name, value.expose())?;
        resealed.push(StoredSecret {
            nonce,
            ciphertext,
            updated_at: now,
            ..s
        });
    }
    store
        .reseal_all(&resealed, &new.key_check()?)
        .await
        .map_err(VaultError::store)?;
    Ok(resealed.len())
}

/// Whether the configuration refers to a stored secret anywhere.
pub fn config_uses_stored(config: &Config) -> bool {
    let stored = |r: &SecretRef| matches!(r, SecretRef::Stored(_));
    config
        .targets
        .iter()
        .any(|t| t.secret_refs().into_iter().any(stored))
        || config
            .masking
            .iter()
            .any(|m| m.hash_key.as_ref().is_some_and(stored))
        || config
            .approvals
            .webhooks
            .iter()
            .any(|w| w.secret.as_ref().is_some_and(stored) || w.url.starts_with("secret:"))
        || config
            .telemetry
            .as_ref()
            .is_some_and(|t| t.secret_refs().any(stored))
}

/// Opens the stored secrets the configuration needs and installs them for
/// [`crate::resolve`]. With a master key configured, it must fit the store (a wrong key
/// is an error even when nothing refers to a stored secret); without one, a
/// configuration that refers to a stored secret is an error.
pub async fn load(store: &dyn Store, config: &Config) -> Result<(), VaultError> {
    match MasterKey::configured(config)? {
        Some(key) => {
            install(open_all(store, &key).await?);
            Ok(())
        }
        None if config_uses_stored(config) => Err(VaultError::NoMasterKey),
        None => {
            install(HashMap::new());
            Ok(())
        }
    }
}

static STORED: LazyLock<ArcSwap<HashMap<String, Secret>>> =
    LazyLock::new(|| ArcSwap::from_pointee(HashMap::new()));

/// Puts a snapshot of opened secrets in force for `secret:` references.
pub fn install(secrets: HashMap<String, Secret>) {
    STORED.store(Arc::new(secrets));
}

/// The installed value of `name`.
pub(crate) fn lookup(name: &str) -> Option<Secret> {
    STORED.load().get(name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_name() {
        let (key, text) = MasterKey::generate().unwrap();
        let same = MasterKey::from_text(text.expose()).unwrap();
        let (other, _) = MasterKey::generate().unwrap();
        let (n, c) = key.seal("shop-pw", "s3cret").unwrap();
        assert_eq!(same.open("shop-pw", &n, &c).unwrap().expose(), "s3cret");
        assert!(other.open("shop-pw", &n, &c).is_none(), "another key");
        assert!(
            key.open("other-name", &n, &c).is_none(),
            "moved to another name"
        );
        let mut tampered = c.clone();
        tampered.replace_range(0..2, if &c[0..2] == "00" { "01" } else { "00" });
        assert!(key.open("shop-pw", &n, &tampered).is_none(), "tampered");
        assert!(!c.contains(&hex::encode("s3cret")));
        let check = key.key_check().unwrap();
        assert!(same.fits(&check));
        assert!(!other.fits(&check));
        assert!(format!("{key:?}").contains("[secret]"));
    }

    #[test]
    fn master_keys_are_32_bytes_of_hex_or_base64() {
        assert!(MasterKey::from_text(&"ab".repeat(32)).is_ok());
        assert!(
            MasterKey::from_text(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
                .is_ok()
        );
        assert!(MasterKey::from_text("short").is_err());
        assert!(MasterKey::from_text(&"ab".repeat(31)).is_err());
    }
}
