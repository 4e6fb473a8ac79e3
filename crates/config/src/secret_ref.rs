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
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a path, e.g. file:/run/secrets/shop-password".into());
            }
            return Ok(SecretRef::File(PathBuf::from(path)));
        }
        // Never echo the value: it may be the very secret that must not be written down.
        Err("a secret must be a reference, `env:NAME` or `file:PATH`, never a literal value".into())
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

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
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
        assert!(SecretRef::parse("env:").is_err());
        assert!(SecretRef::parse("env:A-B").is_err());
    }
}
