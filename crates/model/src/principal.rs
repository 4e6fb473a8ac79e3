//! The authenticated identity behind a session.

use serde::{Deserialize, Serialize};

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalSource {
    /// An Airlock service token minted with `airlock token create`.
    ServiceToken,
    /// An OIDC access token verified against a provider's keys.
    Oidc,
}

/// An authenticated agent: its name and the groups policy matches on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable name (a service token's name, or an OIDC subject or client id).
    pub name: String,
    /// Groups the principal belongs to, as named in policy.
    pub groups: Vec<String>,
    /// How the identity was established.
    pub source: PrincipalSource,
    /// When the credential it presented stops being valid, if it expires.
    pub expires_at: Option<crate::Timestamp>,
}
