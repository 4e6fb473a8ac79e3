//! Whether the recorder can record, and its recovery.
//!
//! Two parts can fail: the journal (a write, sync or segment change refused: a full
//! or read-only disk, an I/O error) and the store (the ingest thread cannot copy
//! journalled records into it). While either fails the recorder refuses every
//! statement and new session (fail closed). Neither failure is final: the writer
//! thread probes the journal about once a second and the ingest thread retries its
//! batch, and once both work again the recorder takes work again by itself.
//!
//! An outage is logged twice: once when it begins, with its cause, and once when it
//! ends, with how long it lasted. Nothing in between: every refused statement would
//! otherwise log the same cause again (a gateway once wrote 500 MB of log in 10 s so),
//! to a disk that may be the problem.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::queue::Queue;

/// How often the writer thread probes a failed journal, and the longest the ingest
/// thread waits between two tries of a batch the store refused.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// A part of the recorder that can fail and recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The journal files (`data_dir/journal/`).
    Journal,
    /// The store the ingest thread copies records into (`airlock.db`).
    Store,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Journal => "journal",
            Part::Store => "store",
        }
    }
}

#[derive(Default)]
struct State {
    /// Why the journal fails, until the writer thread finds it works again.
    journal: Option<String>,
    /// Why the store fails, until the ingest thread stores its batch.
    store: Option<String>,
    /// When the outage began, and its first cause: what every refusal says.
    outage: Option<(Instant, String)>,
}

impl State {
    fn slot(&mut self, part: Part) -> &mut Option<String> {
        match part {
            Part::Journal => &mut self.journal,
            Part::Store => &mut self.store,
        }
    }
}

/// The recorder's health, shared by the sessions (which check it before recording),
/// the writer thread and the ingest thread.
pub(crate) struct Health {
    state: Mutex<State>,
    /// Set for the length of an outage: checked by every statement without a lock.
    down: AtomicBool,
    /// Woken when an outage ends, so that the records kept meanwhile are written now
    /// rather than with the next statement.
    writer: Arc<Queue>,
}

impl Health {
    pub(crate) fn new(writer: Arc<Queue>) -> Self {
        Health {
            state: Mutex::new(State::default()),
            down: AtomicBool::new(false),
            writer,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain assignments only: the state stays consistent through a panic elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err` with the outage's first cause while any part fails.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.down.load(Ordering::Acquire) {
            return Ok(());
        }
        match &self.lock().outage {
            Some((_, cause)) => Err(cause.clone()),
            None => Ok(()),
        }
    }

    /// `part` failed with `cause`. Logged (as an error) when it begins an outage, as a
    /// warning when the other part already failed, and not again while it lasts.
    pub(crate) fn failed(&self, part: Part, cause: &str) {
        let mut state = self.lock();
        let slot = state.slot(part);
        if slot.is_some() {
            return;
        }
        *slot = Some(cause.to_owned());
        let begins = state.outage.is_none();
        if begins {
            state.outage = Some((Instant::now(), cause.to_owned()));
            self.down.store(true, Ordering::Release);
        }
        drop(state);
        if begins {
            tracing::error!(
                error = %cause,
                part = part.name(),
                "recorder write failed; refusing statements and new sessions until it can record again"
            );
        } else {
            tracing::warn!(
                error = %cause,
                part = part.name(),
                "the recorder's {} fails as well",
                part.name()
            );
        }
    }

    /// `part` works again. Ends the outage (logged, with its length) when the other
    /// part works too; returns whether it did.
    pub(crate) fn recovered(&self, part: Part) -> bool {
        let mut state = self.lock();
        if state.slot(part).take().is_none() {
            return false;
        }
        if state.journal.is_some() || state.store.is_some() {
            drop(state);
            tracing::info!(
                part = part.name(),
                "the recorder's {} works again; the other part still fails",
                part.name()
            );
            return false;
        }
        let outage = state.outage.take();
        self.down.store(false, Ordering::Release);
        drop(state);
        if let Some((since, cause)) = outage {
            tracing::info!(
                out_for = %format!("{:.1}s", since.elapsed().as_secs_f64()),
                cause = %cause,
                "recorder recovered; accepting statements and new sessions again"
            );
        }
        self.writer.nudge();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_lasts_until_every_failed_part_recovers_and_keeps_its_first_cause() {
        let health = Health::new(Arc::new(Queue::new(1)));
        assert!(health.check().is_ok());
        health.failed(Part::Store, "store: disk full");
        health.failed(Part::Journal, "journal: disk full");
        health.failed(Part::Store, "store: another error");
        assert_eq!(health.check(), Err("store: disk full".to_owned()));
        assert!(!health.recovered(Part::Store));
        assert!(health.check().is_err(), "the journal still fails");
        assert!(!health.recovered(Part::Store), "already recovered");
        assert!(health.recovered(Part::Journal));
        assert!(health.check().is_ok());
        health.failed(Part::Journal, "journal: read-only");
        assert_eq!(
            health.check(),
            Err("journal: read-only".to_owned()),
            "a new outage has its own cause"
        );
    }
}
