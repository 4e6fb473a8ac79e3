//! Authenticated server connections kept between sessions, per target, so that an
//! agent that connects for every statement does not pay for TCP, TLS, SCRAM and a new
//! server process each time.
//!
//! Isolation: a connection goes back only when its session ended cleanly with the
//! server owing nothing and no transaction open, and only after `DISCARD ALL`
//! succeeded (see `upstream::reset`); anything else closes it. It is reused only for
//! the same target *configuration* (a reload with a rotated secret retires every
//! connection made with the old one) and the same startup parameters, except
//! `application_name`: clients (pg_regress, agent frameworks) send one per run, so it is
//! set after checkout instead, as pgbouncer does (see `session::checkout`). Before reuse
//! a connection is checked for a server that hung up meanwhile.
//!
//! Bounds: at most `pool_size` idle connections per target, whatever their parameters;
//! the oldest is closed to make room. A session whose parameters match no idle
//! connection closes the target's oldest idle one before opening its own, so the pool
//! never adds to the server's connection count, and a server that still answers
//! `too many clients` has every idle connection to it closed before the one retry
//! (see [`Pool::close_idle_to`]). A session is never refused because Airlock holds idle
//! connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use airlock_session::Target;
use tokio::io::{AsyncRead, ReadBuf};

use crate::stream::BoxIo;
use crate::upstream::Upstream;

/// The startup parameter that is set after checkout rather than matched.
pub const SET_AFTER_CHECKOUT: &str = "application_name";

struct Idle {
    /// The configuration it was made with; compared by identity.
    target: Arc<Target>,
    /// The startup parameters it was opened with (sorted, without
    /// [`SET_AFTER_CHECKOUT`]).
    params: Vec<(String, String)>,
    upstream: Upstream,
    since: Instant,
}

/// The idle connections of one listener, by target name, oldest first.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

/// The parameters a reused connection must have been opened with.
fn matched(params: &[(String, String)]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != SET_AFTER_CHECKOUT)
        .cloned()
        .collect();
    params.sort();
    params
}

impl Pool {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Vec<Idle>>) -> R) -> R {
        match self.idle.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// An idle connection for `target` made with the same parameters (but for
    /// [`SET_AFTER_CHECKOUT`]), if one is alive; the newest such, which is the least
    /// likely to have been closed by the server.
    pub fn take(&self, target: &Arc<Target>, params: &[(String, String)]) -> Option<Upstream> {
        if !target.config.pool {
            return None;
        }
        let params = matched(params);
        loop {
            let mut candidate = self.with(|idle| {
                let list = idle.get_mut(&target.model.name)?;
                // Connections of an older configuration are never used again.
                list.retain(|i| Arc::ptr_eq(&i.target, target));
                let at = list.iter().rposition(|i| i.params == params)?;
                Some(list.remove(at))
            })?;
            if candidate.since.elapsed() < target.config.pool_idle_timeout
                && still_open(&mut candidate.upstream.io)
            {
                return Some(candidate.upstream);
            }
            tracing::debug!("dropped a pooled server connection that was closed or too old");
        }
    }

    /// Keeps `upstream`, already reset, for reuse; when the target already has
    /// `pool_size` idle connections, its oldest is closed to make room.
    pub fn put(&self, target: &Arc<Target>, params: &[(String, String)], upstream: Upstream) {
        if !target.config.pool || target.config.pool_size == 0 {
            return;
        }
        let evicted = self.with(|idle| {
            let list = idle.entry(target.model.name.clone()).or_default();
            list.retain(|i| Arc::ptr_eq(&i.target, target));
            let excess = (list.len() + 1).saturating_sub(target.config.pool_size);
            let evicted: Vec<Idle> = list.drain(..excess.min(list.len())).collect();
            list.push(Idle {
                target: target.clone(),
                params: matched(params),
                upstream,
                since: Instant::now(),
            });
            evicted
        });
        if !evicted.is_empty() {
            tracing::debug!(
                closed = evicted.len(),
                "closed the oldest pooled server connection to make room"
            );
        }
    }

    /// Before a session opens a connection of its own (none matched): closes the
    /// target's oldest idle connection, so that the pool's share of the server's
    /// connections does not grow with the number of distinct startup parameters.
    pub fn make_room(&self, target: &Arc<Target>) {
        let closed = self.with(|idle| {
            let list = idle.get_mut(&target.model.name)?;
            (!list.is_empty()).then(|| list.remove(0))
        });
        if closed.is_some() {
            tracing::debug!("closed the oldest pooled server connection before opening one");
        }
    }

    /// Closes every idle connection to the server `host:port` (of any target): the
    /// server said it has no connection slot left. Returns how many were closed.
    pub fn close_idle_to(&self, host: &str, port: u16) -> usize {
        self.with(|idle| {
            let mut closed = 0;
            idle.retain(|_, list| {
                let before = list.len();
                list.retain(|i| !(i.target.config.host == host && i.target.config.port == port));
                closed += before - list.len();
                !list.is_empty()
            });
            closed
        })
    }

    /// Closes connections idle too long or made with a configuration no longer in
    /// force (`current` says which target configurations are).
    pub fn sweep(&self, current: impl Fn(&str) -> Option<Arc<Target>>) {
        self.with(|idle| {
            idle.retain(|name, list| {
                let now = current(name);
                list.retain(|i| {
                    now.as_ref().is_some_and(|t| Arc::ptr_eq(t, &i.target))
                        && i.since.elapsed() < i.target.config.pool_idle_timeout
                });
                !list.is_empty()
            });
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
