//! One agent connection: the sessions it opened, one per (target, token), and their end.
//!
//! An agent connection (keep-alive, or one HTTP/2 connection) to one target is one
//! session. The session opens at the connection's first request for the target and
//! authenticates its token; later requests with the same token reuse it (its
//! credential is re-checked for expiry and revocation on each), a different token opens
//! a session of its own. Every session ends, and is recorded as ended, when the
//! connection closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use airlock_model::TargetKind;
use airlock_session::{ConnectRefusal, ConnectRequest, Session};
use airlock_vault::Secret;
use sha2::{Digest, Sha256};

use crate::AdapterState;
use crate::upstream::{Base, Credential};

/// A session and what its requests need.
pub struct Slot {
    /// The session.
    pub session: Session,
    /// The upstream's base URL.
    pub base: Base,
    /// The credential to inject and scrub.
    pub credential: Credential,
    /// Requests decided in this session.
    pub requests: AtomicU64,
    /// The recording of the last response's outcome, awaited before the next request's
    /// event so that a session's events stay in order.
    outcome: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// For an MCP target reached over stdio or the older SSE transport: the session's
    /// channel to its server.
    pub channel: tokio::sync::Mutex<Option<Arc<crate::mcp::channel::Channel>>>,
}

impl Slot {
    /// Remembers the task recording a response's outcome.
    pub fn outcome_recording(&self, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut slot) = self.outcome.lock()
            && let Some(previous) = slot.replace(task)
        {
            // Both record into the same session; the earlier one is already queued or
            // about to be, and nothing waits for it any more.
            drop(previous);
        }
    }

    /// Waits until the last outcome is queued.
    pub async fn outcome_recorded(&self) {
        let task = self.outcome.lock().ok().and_then(|mut s| s.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Counts a request.
    pub fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why no session could serve a request.
pub enum OpenError {
    /// The gateway refused it.
    Refused(ConnectRefusal),
    /// The target's settings cannot be used (its URL or credential).
    Unusable(String),
}

/// A connection's sessions by target and token digest.
type Slots = HashMap<(String, [u8; 32]), Arc<Slot>>;

/// The sessions of one connection.
pub struct Conn {
    /// The agent's address.
    pub peer: SocketAddr,
    slots: tokio::sync::Mutex<Slots>,
    /// What Airlock's own MCP server keeps for this connection between calls.
    pub own: crate::mcp::own::OwnClients,
    /// Relays of upgraded (WebSocket) requests: they outlive the HTTP exchange, and
    /// the sessions they record into end only after them.
    upgrades: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Conn {
    /// A connection from `peer`.
    pub fn new(peer: SocketAddr) -> Self {
        Conn {
            peer,
            slots: tokio::sync::Mutex::new(HashMap::new()),
            own: crate::mcp::own::OwnClients::default(),
            upgrades: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The session for `target` and `token`, opened now if this connection has none.
    pub async fn session(
        &self,
        state: &AdapterState,
        target: &str,
        token: &str,
        detail: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Arc<Slot>, OpenError> {
        let key = (target.to_owned(), token_digest(token));
        let mut slots = self.slots.lock().await;
        if let Some(slot) = slots.get(&key) {
            return Ok(slot.clone());
        }
        let slot = open_slot(state, target, token, self.peer, detail).await?;
        slots.insert(key, slot.clone());
        Ok(slot)
    }

    /// Hands a session over to something that outlives this connection (an MCP session
    /// that later requests reach over other connections): it no longer ends with it.
    pub async fn detach(&self, slot: &Arc<Slot>) {
        self.slots.lock().await.retain(|_, s| !Arc::ptr_eq(s, slot));
    }

    /// Forgets the session of `target` and `token` (its credential no longer holds) and
    /// ends it.
    pub async fn drop_session(&self, slot: &Arc<Slot>, reason: &str) {
        let mut slots = self.slots.lock().await;
        slots.retain(|_, s| !Arc::ptr_eq(s, slot));
        drop(slots);
        end(slot, reason).await;
    }

    /// Keeps the sessions open until an upgraded connection's relay ends.
    pub fn upgraded(&self, relay: tokio::task::JoinHandle<()>) {
        if let Ok(mut u) = self.upgrades.lock() {
            u.push(relay);
        }
    }

    /// Stops the upgraded relays (the gateway is stopping).
    pub fn abort_upgrades(&self) {
        if let Ok(u) = self.upgrades.lock() {
            for relay in u.iter() {
                relay.abort();
            }
        }
    }

    /// Ends every session of the connection (after its upgraded relays end).
    pub async fn close(&self, reason: &str) {
        let relays: Vec<_> = self
            .upgrades
            .lock()
            .map(|mut u| u.drain(..).collect())
            .unwrap_or_default();
        for relay in relays {
            let _ = relay.await;
        }
        let slots: Vec<Arc<Slot>> = self.slots.lock().await.drain().map(|(_, s)| s).collect();
        for slot in slots {
            end(&slot, reason).await;
        }
    }
}

/// The digest a token is known by (never the token itself).
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Opens a session of `target` for `token`, with what its requests need.
pub async fn open_slot(
    state: &AdapterState,
    target: &str,
    token: &str,
    peer: SocketAddr,
    detail: serde_json::Map<String, serde_json::Value>,
) -> Result<Arc<Slot>, OpenError> {
    // Kubernetes and MCP targets are served by this listener too.
    let kind = state
        .gateway
        .runtime()
        .target(target)
        .map(|t| t.model.kind)
        .filter(|k| matches!(k, TargetKind::Kubernetes | TargetKind::Mcp))
        .unwrap_or(TargetKind::Http);
    let session = state
        .gateway
        .open_session(ConnectRequest {
            kind,
            target: target.to_owned(),
            credential: Secret::new(token.to_owned()),
            client_addr: peer,
            detail,
        })
        .await
        .map_err(OpenError::Refused)?;
    // An MCP target spoken to over stdio has no URL: its base is a placeholder.
    let url = match (&session.target().config.url, kind) {
        (Some(url), _) => Ok(url.clone()),
        (None, TargetKind::Mcp) => Ok("http://stdio.invalid".to_owned()),
        (None, _) => Err("the target has no url".to_owned()),
    };
    let prepared = url
        .and_then(|u| Base::parse(&u))
        .and_then(|base| Ok((base, crate::upstream::credential(session.target())?)));
    let (base, credential) = match prepared {
        Ok(p) => p,
        Err(e) => {
            session
                .end(
                    serde_json::json!({ "reason": format!("target unusable: {e}"), "error": true }),
                )
                .await;
            return Err(OpenError::Unusable(e));
        }
    };
    Ok(Arc::new(Slot {
        session,
        base,
        credential,
        requests: AtomicU64::new(0),
        outcome: std::sync::Mutex::new(None),
        channel: tokio::sync::Mutex::new(None),
    }))
}

/// Ends a session, once its last outcome is recorded.
pub async fn end(slot: &Slot, reason: &str) {
    slot.outcome_recorded().await;
    slot.session
        .end(serde_json::json!({
            "reason": reason,
            "requests": slot.requests.load(Ordering::Relaxed),
        }))
        .await;
}
