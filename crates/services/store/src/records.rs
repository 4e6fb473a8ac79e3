//! Rows the store reads and writes.

use airlock_model::{Principal, SessionMarks, SessionSummary, Timestamp};
use serde::{Deserialize, Serialize};

/// A service token as stored: its hash, never the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token's name, which is the principal's name.
    pub name: String,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// Groups granted to the principal.
    pub groups: Vec<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
    /// When it last authenticated a session.
    pub last_used_at: Option<Timestamp>,
}

/// One pinned tool of an MCP target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpToolPin {
    /// The MCP target.
    pub target: String,
    /// The tool's name, exactly as listed.
    pub name: String,
    /// The fingerprint it is pinned to.
    pub pinned_digest: String,
    /// Its description when pinned.
    pub pinned_description: String,
    /// The fingerprint listed last, when it differs from the pin (a pending change).
    pub listed_digest: Option<String>,
    /// The description listed last, with `listed_digest`.
    pub listed_description: Option<String>,
    /// When it was first listed.
    pub first_seen: Timestamp,
    /// When the pending change was first seen.
    pub changed_at: Option<Timestamp>,
    /// When a change was last accepted.
    pub accepted_at: Option<Timestamp>,
}

/// A value of the encrypted secret store, sealed (see `airlock-vault`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// The name `secret:NAME` refers to.
    pub name: String,
    /// Hex nonce.
    pub nonce: String,
    /// Hex ciphertext with its tag.
    pub ciphertext: String,
    /// When it was first set.
    pub created_at: Timestamp,
    /// When it was last set.
    pub updated_at: Timestamp,
}

/// A browser signed in to the web console, as stored: the hash of its cookie, never
/// the cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleSignin {
    /// Hex SHA-256 of the sign-in cookie.
    pub key_hash: String,
    /// Who signed in (stored as JSON; the credential itself is not kept).
    pub principal: Principal,
    /// When.
    pub created_at: Timestamp,
    /// When the sign-in ends, whatever the browser keeps.
    pub expires_at: Timestamp,
}

/// An OIDC sign-in to the console in progress, as stored: what the provider's redirect
/// back is checked against. Nothing in it is secret: the PKCE verifier stays in the
/// browser (see the console's `oidc` module).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsoleFlow {
    /// Hex SHA-256 of the flow's `state`.
    pub key_hash: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE S256 challenge sent to the provider, base64url.
    pub challenge: String,
    /// When it started.
    pub created_at: Timestamp,
    /// When the person's time at the provider is up.
    pub expires_at: Timestamp,
}

/// One event as stored in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainedEvent {
    /// Chain position, from 1, without gaps.
    pub id: i64,
    /// The session it belongs to.
    pub session_id: String,
    /// Position within the session, from 1.
    pub seq: i64,
    /// When it happened (RFC 3339 text, hashed as stored).
    pub at: String,
    /// Event kind name.
    pub kind: String,
    /// Statement text, for statement events.
    pub statement: Option<String>,
    /// Decision label, for statement events.
    pub decision: Option<String>,
    /// JSON detail, as stored.
    pub detail: String,
    /// Hash of the previous event (all zeros for the first).
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

/// One write of a recorder batch (also the recorder journal's line format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StoreOp {
    /// A new session row.
    StartSession(SessionSummary),
    /// An event, already chained.
    Event(ChainedEvent),
    /// A session ended.
    EndSession {
        /// Session id.
        id: String,
        /// When.
        at: Timestamp,
    },
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// Only this target.
    pub target: Option<String>,
    /// Only this principal.
    pub principal: Option<String>,
    /// Only this protocol (`postgres`, `http`, `kubernetes`, `mcp`).
    pub protocol: Option<String>,
    /// Only sessions started at or after this.
    pub since: Option<Timestamp>,
    /// Only sessions started before this.
    pub until: Option<Timestamp>,
    /// Only sessions carrying every mark set here.
    pub marks: SessionMarks,
    /// Only sessions listed after this one, newest first (a page's last id: keyset
    /// pagination, so a page costs the same however deep it is).
    pub before: Option<String>,
    /// Only the newest `limit`.
    pub limit: Option<i64>,
    /// Newest first; otherwise (the CLI's order) oldest first.
    pub newest_first: bool,
}
