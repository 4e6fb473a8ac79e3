//! The ingest thread: copies journalled records into the store's tables, which is what
//! `sessions`, `audit verify` and the API read, up to ~100 ms behind the journal (sessions
//! starting and ending at once).
//! Off the statement path: nothing waits for it but the journal's disk space, which it
//! frees segment by segment once the store holds a segment durably.
//!
//! A write the store refuses (a full disk, a read-only file) stops the recorder taking
//! statements (fail closed: the journal would otherwise grow without end) and is
//! retried, with a back-off up to a second, until the store takes it; the recorder then
//! takes statements again. A store write is one transaction, so a failed one left
//! nothing behind, and what a retry stores is exactly what failed. A segment is
//! deleted only once the store holds all of it durably.
//!
//! Every store write is timed, and every failed one counted, in the process's metrics
//! (`airlock_store_write_seconds`, `airlock_store_write_errors_total`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use airlock_store::{EncodedBatch, EncodedOp, EventLog};

use crate::health::{Health, PROBE_INTERVAL, Part};
use crate::journal;

/// The ingest thread commits at most this often: one store transaction per interval
/// instead of one per journal commit, which under load is the difference between a
/// few and a few hundred page writes per second (100 ms rather than 20 ms took the
/// thread from 11.6% to 8.8% of the gateway's CPU under `pgbench -S`). Readers lag by
/// about this much, except for sessions starting and ending, which go at once.
const INGEST_INTERVAL: Duration = Duration::from_millis(100);
/// The first wait before retrying a store write that failed; doubled on each failure
/// up to [`PROBE_INTERVAL`].
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Work for the ingest thread, in journal order.
pub(crate) enum Ingest {
    /// Records already written to the journal, as it wrote them.
    Ops(EncodedBatch),
    /// Every record of this segment has been sent: once stored durably, delete it.
    SegmentDone(u64),
}

impl Ingest {
    fn is_prompt(&self) -> bool {
        match self {
            Ingest::SegmentDone(_) => true,
            Ingest::Ops(batch) => batch.ops().iter().any(|op| {
                matches!(
                    op,
                    EncodedOp::StartSession(_) | EncodedOp::EndSession { .. }
                )
            }),
        }
    }
}

pub(crate) struct Ingester {
    pub(crate) log: Box<dyn EventLog>,
    pub(crate) dir: PathBuf,
    pub(crate) health: Arc<Health>,
    /// Times the store writes and counts their failures.
    pub(crate) writes: airlock_metrics::StoreWrites,
}

/// The hand-over from the writer thread to the ingest thread, bounded to `depth`
/// messages (the writer waits while it is full: back-pressure).
///
/// Hand-written rather than a channel: a channel wakes its receiver on every message,
/// and the writer hands over one per journal commit, under TPC-B several thousand a
/// second, each a thread switch for an ingest thread that only wants them every
/// [`INGEST_INTERVAL`]. Here the writer wakes it only when the queue was empty (so
/// that it knows when its interval ends), when something is prompt ([`Ingest`]:
/// sessions starting or ending, a segment's end), when the queue is full, and when the
/// writer hangs up.
pub(crate) struct IngestQueue {
    state: Mutex<QueueState>,
    /// The ingest thread waits here for work.
    ready: Condvar,
    /// The writer waits here while the queue is full.
    room: Condvar,
    depth: usize,
}

#[derive(Default)]
struct QueueState {
    waiting: VecDeque<Ingest>,
    /// A prompt message is waiting.
    prompt: bool,
    /// The writer has hung up: store what is left and stop.
    closed: bool,
    /// The ingest thread has stopped (the writer hung up, or it panicked): nothing is
    /// taken any more.
    stopped: bool,
}

/// Why a message was not handed over: the ingest thread has stopped.
#[derive(Debug)]
pub(crate) struct IngestStopped;

/// The writer's end of an [`IngestQueue`]; dropping it hangs up.
pub(crate) struct IngestSender(Arc<IngestQueue>);

/// The ingest thread's end of an [`IngestQueue`]; dropping it (the thread ending)
/// releases a writer waiting for room.
pub(crate) struct IngestReceiver(Arc<IngestQueue>);

/// A queue holding at most `depth` messages, and its two ends.
pub(crate) fn ingest_queue(depth: usize) -> (IngestSender, IngestReceiver) {
    let queue = Arc::new(IngestQueue {
        state: Mutex::new(QueueState::default()),
        ready: Condvar::new(),
        room: Condvar::new(),
        depth: depth.max(1),
    });
    (IngestSender(queue.clone()), IngestReceiver(queue))
}

impl IngestQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // The state stays consistent through a panic elsewhere (plain pushes and takes).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl IngestSender {
    /// Queues `msg`, waiting while the queue is full.
    pub(crate) fn send(&self, msg: Ingest) -> Result<(), IngestStopped> {
        let queue = &self.0;
        let mut state = queue.lock();
        while state.waiting.len() >= queue.depth && !state.stopped {
            state = queue.room.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.stopped {
            return Err(IngestStopped);
        }
        let prompt = msg.is_prompt();
        let wake = state.waiting.is_empty()
            || (prompt && !state.prompt)
            || state.waiting.len() + 1 >= queue.depth;
        state.prompt |= prompt;
        state.waiting.push_back(msg);
        drop(state);
        if wake {
            queue.ready.notify_one();
        }
        Ok(())
    }
}

impl Drop for IngestSender {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.ready.notify_one();
    }
}

impl IngestReceiver {
    /// Waits until there is something to store and it is time to: at once for a prompt
    /// message, a full queue or a hang-up, otherwise once `interval` has passed since
    /// `last`. Moves everything waiting into `into`; returns `false` when the writer has
    /// hung up and nothing was left.
    fn take(&self, into: &mut VecDeque<Ingest>, last: Instant, interval: Duration) -> bool {
        let queue = &self.0;
        let mut state = queue.lock();
        loop {
            if state.prompt || state.closed || state.waiting.len() >= queue.depth {
                break;
            }
            if state.waiting.is_empty() {
                state = queue.ready.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let Some(left) = (last + interval)
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                break;
            };
            state = match queue.ready.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
        }
        let was_full = state.waiting.len() >= queue.depth;
        into.append(&mut state.waiting);
        state.prompt = false;
        let more = !(state.closed && into.is_empty());
        drop(state);
        if was_full {
            queue.room.notify_all();
        }
        more
    }

    /// Waits `pause` (before retrying a failed store write), meanwhile moving whatever
    /// the writer hands over into `into`, so that the writer never waits for room while
    /// the store fails. Returns early, `true`, once the writer has hung up.
    fn pause(&self, into: &mut VecDeque<Ingest>, pause: Duration) -> bool {
        let queue = &self.0;
        let until = Instant::now() + pause;
        let mut state = queue.lock();
        loop {
            let was_full = state.waiting.len() >= queue.depth;
            into.append(&mut state.waiting);
            state.prompt = false;
            if was_full {
                queue.room.notify_all();
            }
            if state.closed {
                return true;
            }
            let Some(left) = until
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return false;
            };
            state = match queue.ready.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

impl Drop for IngestReceiver {
    fn drop(&mut self) {
        self.0.lock().stopped = true;
        self.0.room.notify_all();
    }
}

impl Ingester {
    /// Runs until the writer hangs up and everything is stored, or the store still
    /// fails after it hung up (the journal keeps those records; the next start replays
    /// them).
    pub(crate) fn run(mut self, rx: IngestReceiver) {
        let mut ops = Vec::new();
        // The first records are stored at once.
        let mut last = Instant::now()
            .checked_sub(INGEST_INTERVAL)
            .unwrap_or_else(Instant::now);
        let mut waiting: VecDeque<Ingest> = VecDeque::new();
        while rx.take(&mut waiting, last, INGEST_INTERVAL) {
            if !self.store_waiting(&mut waiting, &mut ops, &rx) {
                return;
            }
            last = Instant::now();
        }
    }

    /// Stores everything in `waiting`: one transaction per segment, since a segment's
    /// end commits what came before it and frees the segment. A failure is retried
    /// until it succeeds; returns `false` when it still failed after the writer hung up.
    fn store_waiting(
        &mut self,
        waiting: &mut VecDeque<Ingest>,
        ops: &mut Vec<EncodedBatch>,
        rx: &IngestReceiver,
    ) -> bool {
        loop {
            let mut done = None;
            while let Some(msg) = waiting.pop_front() {
                match msg {
                    Ingest::Ops(batch) => ops.push(batch),
                    Ingest::SegmentDone(n) => {
                        done = Some(n);
                        break;
                    }
                }
            }
            if ops.is_empty() && done.is_none() {
                return true;
            }
            let mut pause = FIRST_RETRY;
            let mut failed = false;
            let mut hung_up = false;
            while let Err(e) = self.step(ops, done) {
                // Logged once, when the store begins to fail (see `Health`).
                self.health.failed(Part::Store, &e);
                failed = true;
                if hung_up {
                    tracing::warn!(
                        error = %e,
                        "stopping while the store refuses the recorder's records; they stay in the journal and the next start stores them"
                    );
                    return false;
                }
                // Later messages wait behind this one (they follow it in the journal).
                hung_up = rx.pause(waiting, pause);
                pause = (pause * 2).min(PROBE_INTERVAL);
            }
            if failed {
                self.health.recovered(Part::Store);
            }
        }
    }

    /// Stores `ops` (emptied once stored, so that a retry after a later step failed
    /// does not store them twice) and, for a segment's end, makes the store durable and
    /// deletes the segment. Each step may be retried.
    fn step(&mut self, ops: &mut Vec<EncodedBatch>, done: Option<u64>) -> Result<(), String> {
        if !ops.is_empty() {
            let log = &mut self.log;
            self.writes
                .apply
                .time(|| log.apply(ops))
                .map_err(|e| e.to_string())?;
            ops.clear();
        }
        if let Some(n) = done {
            let (log, dir) = (&mut self.log, &self.dir);
            self.writes.make_durable.time(|| {
                log.make_durable(n).map_err(|e| e.to_string())?;
                journal::remove_segment(dir, n).map_err(|e| e.to_string())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_model::Timestamp;

    fn plain() -> Ingest {
        Ingest::Ops(EncodedBatch::default())
    }

    fn session_end() -> Ingest {
        Ingest::Ops(
            EncodedBatch::encode(vec![airlock_store::StoreOp::EndSession {
                id: "s1".into(),
                at: Timestamp::now(),
            }])
            .unwrap(),
        )
    }

    #[test]
    fn plain_records_wait_for_the_interval_and_prompt_ones_go_at_once() {
        let (tx, rx) = ingest_queue(8);
        let interval = Duration::from_millis(200);
        let mut got = VecDeque::new();

        tx.send(plain()).unwrap();
        let last = Instant::now();
        assert!(rx.take(&mut got, last, interval));
        assert_eq!(got.len(), 1);
        assert!(
            last.elapsed() >= interval,
            "plain records wait for the interval"
        );

        got.clear();
        let last = Instant::now();
        tx.send(plain()).unwrap();
        tx.send(session_end()).unwrap();
        assert!(rx.take(&mut got, last, Duration::from_secs(60)));
        assert_eq!(got.len(), 2, "a session's end takes what came before along");
    }

    #[test]
    fn an_idle_receiver_sleeps_until_something_comes_then_its_interval_counts() {
        let (tx, rx) = ingest_queue(8);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tx.send(plain()).unwrap();
            tx
        });
        let mut got = VecDeque::new();
        // Woken by the first message (a zero interval: nothing more to wait for).
        assert!(rx.take(&mut got, Instant::now(), Duration::ZERO));
        assert_eq!(got.len(), 1);
        drop(sender.join().unwrap());
        got.clear();
        assert!(!rx.take(&mut got, Instant::now(), Duration::from_secs(60)));
        assert!(got.is_empty(), "hung up and nothing left: the thread stops");
    }

    #[test]
    fn a_full_queue_makes_the_writer_wait_and_wakes_the_receiver() {
        let (tx, rx) = ingest_queue(2);
        tx.send(plain()).unwrap();
        tx.send(plain()).unwrap();
        let third = std::thread::spawn(move || {
            tx.send(plain()).unwrap();
            tx
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!third.is_finished(), "no room: the writer waits");
        let mut got = VecDeque::new();
        // A full queue is taken without waiting out the interval.
        assert!(rx.take(&mut got, Instant::now(), Duration::from_secs(60)));
        assert_eq!(got.len(), 2);
        let tx = third.join().unwrap();
        drop(tx);
        got.clear();
        assert!(rx.take(&mut got, Instant::now(), Duration::from_secs(60)));
        assert_eq!(
            got.len(),
            1,
            "what was queued before the hang-up is still stored"
        );
    }

    #[test]
    fn a_stopped_ingest_thread_fails_the_writer_instead_of_blocking_it() {
        let (tx, rx) = ingest_queue(1);
        tx.send(plain()).unwrap();
        let blocked = std::thread::spawn(move || tx.send(plain()));
        std::thread::sleep(Duration::from_millis(20));
        drop(rx);
        assert!(blocked.join().unwrap().is_err());
    }
}
