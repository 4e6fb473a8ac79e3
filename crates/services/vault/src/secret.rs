//! `Secret`: a string that cannot reach a log, an error or a JSON document by accident.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// A secret value. `Debug` and `Display` print `[secret]`; it implements no `Serialize`;
/// the memory is zeroized when dropped. Reading it needs an explicit [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Secret(SecretString::from(value))
    }

    /// The value, for the one place that must send it (an upstream handshake, a hash).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

impl PartialEq for Secret {
    /// Constant-time comparison, so equality checks leak no timing.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.expose().as_bytes(), other.expose().as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2".into());
        assert_eq!(format!("{s:?} {s}"), "[secret] [secret]");
        assert_eq!(s.expose(), "hunter2");
    }
}
