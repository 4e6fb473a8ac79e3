//! The vault: turns secret references from the configuration into secret values that
//! cannot be printed, logged or serialized by accident.
//!
//! Values are resolved when the configuration is loaded and again on every reload, so
//! a rotated file or variable is picked up by new sessions while open sessions keep the
//! value they connected with.

mod secret;
pub mod stored;

pub use secret::Secret;

use airlock_config::SecretRef;

/// Why a secret reference could not be resolved. Never contains the value.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// `env:NAME` names a variable that is not set (or not valid UTF-8).
    #[error("secret reference `{reference}`: environment variable is not set")]
    EnvMissing {
        /// The reference as written.
        reference: String,
    },
    /// `file:PATH` could not be read.
    #[error("secret reference `{reference}`: cannot read the file: {source}")]
    FileUnreadable {
        /// The reference as written.
        reference: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The value is empty.
    #[error("secret reference `{reference}`: the value is empty")]
    Empty {
        /// The reference as written.
        reference: String,
    },
    /// `secret:NAME` names nothing in the encrypted store.
    #[error(
        "secret reference `secret:{name}`: no such secret in Airlock's encrypted store (add it with `airlock secret set {name}`)"
    )]
    StoredMissing {
        /// The name.
        name: String,
    },
    /// The master key is not 32 bytes of hex or base64.
    #[error(
        "the master key must be 32 bytes, written as 64 hex characters or base64 (`airlock secret gen-key` makes one)"
    )]
    BadMasterKey,
    /// The master key does not open this store.
    #[error(
        "the master key does not open Airlock's secret store: it is not the key the secrets were stored with (check AIRLOCK_MASTER_KEY or [secrets] master_key)"
    )]
    WrongMasterKey,
    /// The configuration refers to stored secrets but no master key is given.
    #[error(
        "the configuration refers to `secret:` values, but no master key is set: set AIRLOCK_MASTER_KEY or [secrets] master_key"
    )]
    NoMasterKey,
    /// A stored value does not open although the key fits.
    #[error(
        "stored secret `{name}` is damaged: it does not open with the master key that opens the store"
    )]
    Damaged {
        /// The name.
        name: String,
    },
    /// The store could not be read or written.
    #[error("the secret store is unavailable: {0}")]
    Store(String),
    /// The cryptographic library failed (no randomness).
    #[error("sealing failed in the cryptographic library")]
    Crypto,
}

impl VaultError {
    pub(crate) fn store(e: airlock_store::StoreError) -> Self {
        VaultError::Store(e.to_string())
    }
}

/// Resolves one reference to its current value.
pub fn resolve(reference: &SecretRef) -> Result<Secret, VaultError> {
    let value = match reference {
        SecretRef::Env(name) => std::env::var(name).map_err(|_| VaultError::EnvMissing {
            reference: reference.to_string(),
        })?,
        SecretRef::Stored(name) => {
            return stored::lookup(name)
                .ok_or_else(|| VaultError::StoredMissing { name: name.clone() });
        }
        SecretRef::File(path) => {
            let mut text =
                std::fs::read_to_string(path).map_err(|source| VaultError::FileUnreadable {
                    reference: reference.to_string(),
                    source,
                })?;
            // Secret files written with `echo` end in a newline that is not part of the value.
            while text.ends_with('\n') || text.ends_with('\r') {
                text.pop();
            }
            text
        }
    };
    if value.is_empty() {
        return Err(VaultError::Empty {
            reference: reference.to_string(),
        });
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_reference_strips_the_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("airlock-vault-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        let s = resolve(&SecretRef::File(f.clone())).unwrap();
        assert_eq!(s.expose(), "s3cret");
        std::fs::write(&f, "").unwrap();
        assert!(matches!(
            resolve(&SecretRef::File(f)),
            Err(VaultError::Empty { .. })
        ));
    }

    #[test]
    fn missing_env_names_the_reference_only() {
        let err = resolve(&SecretRef::Env("AIRLOCK_TEST_SURELY_UNSET".into())).unwrap_err();
        assert!(err.to_string().contains("env:AIRLOCK_TEST_SURELY_UNSET"));
    }
}
