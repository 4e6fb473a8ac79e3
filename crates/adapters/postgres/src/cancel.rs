//! Cancel keys: each client is given a random (pid, secret) pair of Airlock's own, mapped
//! here to the upstream connection's real key. A client's CancelRequest cancels exactly
//! its own upstream query and nothing else; an unknown key does nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use airlock_session::{Session, Target};

/// Where a client key leads.
#[derive(Clone)]
pub struct CancelEntry {
    /// The target the session is connected to.
    pub target: Arc<Target>,
    /// The upstream server's key.
    pub upstream_key: (i32, i32),
    /// The session, to record the cancel in.
    pub session: Weak<Session>,
}

/// All live client keys of one listener.
#[derive(Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<(i32, i32), CancelEntry>>,
}

/// Removes its key from the registry when the connection ends.
pub struct CancelGuard {
    registry: Arc<CancelRegistry>,
    key: (i32, i32),
}

impl CancelGuard {
    /// The key handed to the client.
    pub fn key(&self) -> (i32, i32) {
        self.key
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.registry.map.lock() {
            m.remove(&self.key);
        }
    }
}

impl CancelRegistry {
    /// Issues a fresh random key for `entry`.
    pub fn register(self: &Arc<Self>, entry: CancelEntry) -> CancelGuard {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let key = loop {
            // PostgreSQL pids are positive; keep ours looking like one.
            let key = (
                rand::random::<i32>() & 0x3fff_ffff | 1,
                rand::random::<i32>(),
            );
            if !map.contains_key(&key) {
                break key;
            }
        };
        map.insert(key, entry);
        CancelGuard {
            registry: self.clone(),
            key,
        }
    }

    /// The entry for a key a client presented, if it is live.
    pub fn lookup(&self, key: (i32, i32)) -> Option<CancelEntry> {
        self.map.lock().ok()?.get(&key).cloned()
    }
}
