//! Authenticated server connections kept between sessions, per target, so that an
//! agent that connects for every statement does not pay for TCP, TLS, SCRAM and a new
//! server process each time.
//!
//! Isolation: a connection goes back only when its session ended cleanly with the
//! server owing nothing and no transaction open, and only after `DISCARD ALL`
//! succeeded (see `upstream::reset`); anything else closes it. It is reused only for
//! the same target *configuration* (a reload with a rotated secret retires every
//! connection made with the old one) and the same startup parameters. Before reuse it
//! is checked for a server that hung up meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use airlock_session::Target;
use tokio::io::{AsyncRead, ReadBuf};

use crate::stream::BoxIo;
use crate::upstream::Upstream;

/// What a reused connection must match besides the target itself.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    target: String,
    params: Vec<(String, String)>,
}

struct Idle {
    /// The configuration it was made with; compared by identity.
    target: Arc<Target>,
    upstream: Upstream,
    since: Instant,
}

/// The idle connections of one listener.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
}

fn key(target: &Target, params: &[(String, String)]) -> Key {
    let mut params = params.to_vec();
    params.sort();
    Key {
        target: target.model.name.clone(),
        params,
    }
}

impl Pool {
    /// An idle connection for `target` made with the same parameters, if one is alive.
    pub fn take(&self, target: &Arc<Target>, params: &[(String, String)]) -> Option<Upstream> {
        if !target.config.pool {
            return None;
        }
        let key = key(target, params);
        loop {
            let mut candidate = {
                let mut idle = self.idle.lock().ok()?;
                let list = idle.get_mut(&key)?;
                // Connections of an older configuration are never used again.
                list.retain(|i| Arc::ptr_eq(&i.target, target));
                list.pop()?
            };
            if candidate.since.elapsed() < target.config.pool_idle_timeout
                && still_open(&mut candidate.upstream.io)
            {
                return Some(candidate.upstream);
            }
            tracing::debug!("dropped a pooled server connection that was closed or too old");
        }
    }

    /// Keeps `upstream`, already reset, for reuse (or drops it when the pool is full).
    pub fn put(&self, target: &Arc<Target>, params: &[(String, String)], upstream: Upstream) {
        if !target.config.pool {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let list = idle.entry(key(target, params)).or_default();
        list.retain(|i| Arc::ptr_eq(&i.target, target));
        if list.len() < target.config.pool_size {
            list.push(Idle {
                target: target.clone(),
                upstream,
                since: Instant::now(),
            });
        }
    }

    /// Closes connections idle too long or made with a configuration no longer in
    /// force (`current` says which target configurations are).
    pub fn sweep(&self, current: impl Fn(&str) -> Option<Arc<Target>>) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        idle.retain(|k, list| {
            let now = current(&k.target);
            list.retain(|i| {
                now.as_ref().is_some_and(|t| Arc::ptr_eq(t, &i.target))
                    && i.since.elapsed() < i.target.config.pool_idle_timeout
            });
            !list.is_empty()
        });
    }
}

/// Whether an idle connection is still open: a server that ended it (a restart,
/// `idle_session_timeout`, `pg_terminate_backend`) has made it readable (EOF or a
/// FATAL error); an idle, healthy one has nothing to read. Polled once, never waits.
fn still_open(io: &mut BoxIo) -> bool {
    let mut scratch = [0u8; 1];
    let mut buf = ReadBuf::new(&mut scratch);
    let mut cx = Context::from_waker(Waker::noop());
    matches!(
        std::pin::Pin::new(io).poll_read(&mut cx, &mut buf),
        Poll::Pending
    )
}
