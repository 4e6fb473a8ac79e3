//! The ingest thread: copies journalled records into the store's tables, which is what
//! `sessions`, `audit verify` and the API read, up to ~100 ms behind the journal (sessions
//! starting and ending at once).
//! Off the statement path: nothing waits for it but the journal's disk space, which it
//! frees segment by segment once the store holds a segment durably.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_store::{EventLog, StoreOp};

use crate::journal;

/// The ingest thread commits at most this often: one store transaction per interval
/// instead of one per journal commit, which under load is the difference between a
/// few and a few hundred page writes per second (100 ms rather than 20 ms took the
/// thread from 11.6% to 8.8% of the gateway's CPU under `pgbench -S`). Readers lag by
/// about this much, except for sessions starting and ending, which go at once.
const INGEST_INTERVAL: Duration = Duration::from_millis(100);

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
        let mut waiting: VecDeque<Ingest> = VecDeque::new();
        loop {
            if waiting.is_empty() {
                match rx.recv() {
                    Ok(m) => waiting.push_back(m),
                    Err(_) => break,
                }
            }
            // Let more gather until INGEST_INTERVAL after the last commit; a segment end
            // and sessions starting or ending (what `airlock sessions` readers look
            // for) are stored without delay, with everything before them.
            let mut prompt = waiting.iter().any(Ingest::is_prompt);
            let deadline = last + INGEST_INTERVAL;
            while !prompt {
                let Some(left) = deadline
                    .checked_duration_since(Instant::now())
                    .filter(|d| !d.is_zero())
                else {
                    break;
                };
                match rx.recv_timeout(left) {
                    Ok(m) => {
                        prompt = m.is_prompt();
                        waiting.push_back(m);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            while let Ok(m) = rx.try_recv() {
                waiting.push_back(m);
            }
            // Everything waiting goes into one transaction, up to a segment's end.
            let mut done = None;
            while let Some(msg) = waiting.pop_front() {
                match msg {
                    Ingest::Ops(mut more) => ops.append(&mut more),
                    Ingest::SegmentDone(n) => {
                        done = Some(n);
                        break;
                    }
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
