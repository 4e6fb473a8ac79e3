//! The ingest thread: copies journalled records into the store's tables, which is what
//! `sessions`, `audit verify` and the API read, a few milliseconds behind the journal.
//! Off the statement path: nothing waits for it but the journal's disk space, which it
//! frees segment by segment once the store holds a segment durably.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_store::{EventLog, StoreOp};

use crate::journal;

/// The ingest thread commits at most this often: one store transaction per interval
/// instead of one per journal commit, which under load is the difference between a
/// few and a few hundred page writes per second. Readers lag by about this much.
const INGEST_INTERVAL: Duration = Duration::from_millis(20);

/// Work for the ingest thread, in journal order.
pub(crate) enum Ingest {
    /// Records already written to the journal.
    Ops(Vec<StoreOp>),
    /// Every record of this segment has been sent: once stored durably, delete it.
    SegmentDone(u64),
}

impl Ingest {
    fn is_prompt(&self) -> bool {
        match self {
            Ingest::SegmentDone(_) => true,
            Ingest::Ops(ops) => ops
                .iter()
                .any(|op| matches!(op, StoreOp::StartSession(_) | StoreOp::EndSession { .. })),
        }
    }
}

pub(crate) struct Ingester {
    pub(crate) log: Box<dyn EventLog>,
    pub(crate) dir: PathBuf,
    pub(crate) broken: Arc<Mutex<Option<String>>>,
}

impl Ingester {
    /// Runs until the writer hangs up or a write fails (which stops the recorder).
    pub(crate) fn run(mut self, rx: Receiver<Ingest>) {
        let mut ops = Vec::new();
        let mut last = Instant::now();
        while let Ok(first) = rx.recv() {
            // Let a little more gather; a segment end and sessions starting or ending
            // (what `airlock sessions` readers look for) are stored without delay.
            let since = last.elapsed();
            if since < INGEST_INTERVAL && !first.is_prompt() {
                std::thread::sleep(INGEST_INTERVAL - since);
            }
            let mut next = Some(first);
            let mut done = None;
            // Everything already waiting goes into one transaction.
            while let Some(msg) = next.take() {
                match msg {
                    Ingest::Ops(mut more) => ops.append(&mut more),
                    Ingest::SegmentDone(n) => {
                        done = Some(n);
                        break;
                    }
                }
                match rx.try_recv() {
                    Ok(m) => next = Some(m),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
                }
            }
            if let Err(e) = self.step(&ops, done) {
                tracing::error!(error = %e, "recorder cannot store journalled records; refusing further statements until restart");
                if let Ok(mut g) = self.broken.lock() {
                    g.get_or_insert(e);
                }
                return;
            }
            ops.clear();
            last = Instant::now();
        }
    }

    fn step(&mut self, ops: &[StoreOp], done: Option<u64>) -> Result<(), String> {
        if !ops.is_empty() {
            self.log.apply(ops).map_err(|e| e.to_string())?;
        }
        if let Some(n) = done {
            self.log.make_durable(n).map_err(|e| e.to_string())?;
            journal::remove_segment(&self.dir, n).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
