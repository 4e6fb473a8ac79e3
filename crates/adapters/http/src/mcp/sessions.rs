//! MCP sessions (`Mcp-Session-Id`, the 2025 protocol era) and the Airlock session each
//! belongs to.
//!
//! An MCP client reaches its session over any number of HTTP connections (one for the
//! server's event stream, new ones for posts), so such a session is not a connection's:
//! it is registered here when the upstream's `initialize` answer names it, and every
//! later request naming it is recorded in the same Airlock session. Only the token that
//! opened a session may use it: another agent presenting its id is told the session does
//! not exist, so an id seen in a log cannot be used to ride someone else's session. A
//! session ends on `DELETE`, after [`IDLE`] without a request, or at shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::{self, Slot};

/// How long an MCP session may go without a request before it is ended.
pub const IDLE: Duration = Duration::from_secs(30 * 60);

struct Entry {
    owner: [u8; 32],
    target: String,
    slot: Arc<Slot>,
    last_used: Instant,
}

/// The MCP sessions the gateway knows, by upstream session id.
#[derive(Default)]
pub struct McpSessions {
    entries: std::sync::Mutex<HashMap<String, Entry>>,
}

/// What a request's `Mcp-Session-Id` names.
pub enum Lookup {
    /// A session of this token on this target.
    Found(Arc<Slot>),
    /// No session of this token and target by that id (unknown, ended, or another's).
    Unknown,
}

impl McpSessions {
    /// Registers the session `id` the upstream named for `slot`.
    pub fn register(&self, id: &str, target: &str, token: &str, slot: Arc<Slot>) {
        if let Ok(mut e) = self.entries.lock() {
            e.insert(
                id.to_owned(),
                Entry {
                    owner: conn::token_digest(token),
                    target: target.to_owned(),
                    slot,
                    last_used: Instant::now(),
                },
            );
        }
    }

    /// The session `id` of `token` on `target`.
    pub fn find(&self, id: &str, target: &str, token: &str) -> Lookup {
        let Ok(mut entries) = self.entries.lock() else {
            return Lookup::Unknown;
        };
        match entries.get_mut(id) {
            Some(e) if e.owner == conn::token_digest(token) && e.target == target => {
                e.last_used = Instant::now();
                Lookup::Found(e.slot.clone())
            }
            _ => Lookup::Unknown,
        }
    }

    /// Forgets session `id` and ends it (the client deleted it).
    pub async fn remove(&self, id: &str, reason: &str) {
        let entry = self.entries.lock().ok().and_then(|mut e| e.remove(id));
        if let Some(e) = entry {
            conn::end(&e.slot, reason).await;
        }
    }

    /// Ends the sessions idle for longer than `idle`.
    pub async fn sweep(&self, idle: Duration) {
        let stale: Vec<Entry> = match self.entries.lock() {
            Ok(mut entries) => {
                let ids: Vec<String> = entries
                    .iter()
                    .filter(|(_, e)| e.last_used.elapsed() > idle)
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.iter().filter_map(|id| entries.remove(id)).collect()
            }
            Err(_) => Vec::new(),
        };
        for e in stale {
            conn::end(&e.slot, "mcp_session_idle").await;
        }
    }

    /// Ends every session (the gateway is stopping).
    pub async fn close_all(&self, reason: &str) {
        let all: Vec<Entry> = self
            .entries
            .lock()
            .map(|mut e| e.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for e in all {
            conn::end(&e.slot, reason).await;
        }
    }
}
