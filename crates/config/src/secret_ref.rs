//! References to secrets: where a credential comes from, never the credential itself.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;

/// Where a secret value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the gateway process: `env:NAME`.
    Env(String),
    /// A file whose contents (trailing newline removed) are the secret: `file:PATH`.
    /// Re-read on every reload, which is how mounted secrets rotate.
    File(PathBuf),
    /// A value in Airlock's own encrypted store (`airlock secret set NAME`):
    /// `secret:NAME`.
    Stored(String),
}

impl SecretRef {
    /// Parses `env:NAME` or `file:PATH`; anything else is refused so that a literal secret
    /// never sits in the configuration file.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("env:") {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`env:{name}` is not a valid environment variable name (letters, digits and _)"
                ));
            }
            return Ok(SecretRef::Env(name.to_owned()));
        }
        if let Some(name) = text.strip_prefix("secret:") {
            if !valid_stored_name(name) {
                return Err(format!(
                    "`secret:{name}` is not a valid stored secret name (1-128 letters, digits, '-', '_', '.')"
                ));
            }
            return Ok(SecretRef::Stored(name.to_owned()));
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a path, e.g. file:/run/secrets/shop-password".into());
            }
            return Ok(SecretRef::File(PathBuf::from(path)));
        }
        // Never echo the value: it may be the very secret that must not be written down.
        Err("a secret must be a reference, `env:NAME`, `file:PATH` or `secret:NAME`, never a literal value".into())
    }

    /// Resolves a relative `file:` path against `base`.
    pub fn rebase(&mut self, base: &std::path::Path) {
        if let SecretRef::File(p) = self
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }
}

/// What names of secrets in Airlock's encrypted store may be.
pub fn valid_stored_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
            SecretRef::Stored(n) => write!(f, "secret:{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SecretRef::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_secrets_are_refused_without_echoing_them() {
        let err = SecretRef::parse("hunter2").unwrap_err();
        assert!(!err.contains("hunter2"));
        assert_eq!(
            SecretRef::parse("env:PG_PW").unwrap(),
            SecretRef::Env("PG_PW".into())
        );
        assert_eq!(
            SecretRef::parse("file:/x").unwrap(),
            SecretRef::File("/x".into())
        );
        assert_eq!(
            SecretRef::parse("secret:shop-pw").unwrap(),
            SecretRef::Stored("shop-pw".into())
        );
        assert!(SecretRef::parse("secret:").is_err());
        assert!(SecretRef::parse("secret:a/b").is_err());
        assert!(SecretRef::parse("env:").is_err());
        assert!(SecretRef::parse("env:A-B").is_err());
    }
}
