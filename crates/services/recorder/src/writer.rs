//! The writer: chains records into the audit chain, writes them to the journal, syncs
//! it, acknowledges, and hands the records to the ingest thread.
//!
//! Two ways in. Whatever a caller waits to be synced (a statement that may change
//! something), and everything nobody waits for (results, disconnects), goes through
//! the queue to the writer thread, which commits each group with one write and one
//! sync (group commit). The records of plain reads, with `read_durability =
//! "written"`, are written by the session itself under the writer's lock, and the
//! thread syncs them within the interval: that saves two thread hand-offs per read.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_store::{ChainedEvent, EncodedBatch, Store, StoreOp, chains};
use airlock_vault::Secret;
use tokio::sync::oneshot;

use crate::chain::ChainKey;
use crate::health::{Health, PROBE_INTERVAL, Part};
use crate::ingest::{Ingest, IngestSender, Ingester, ingest_queue};
use crate::journal::{self, Journal, SyncHandle};
use crate::queue::{AckAt, Queue};
use crate::{GENESIS_HASH, Record, RecorderError};

/// How durable the record of a plain read must be before its answer is released
/// ([`Recorder::submit_read`]). Everything else always waits for the sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadDurability {
    /// In the journal file: survives the gateway process dying (a crash, SIGKILL, an
    /// out-of-memory kill). Synced to disk within `sync_within` (sooner when a
    /// statement that must wait for the sync comes along), so a machine crash or power
    /// loss loses at most the reads answered in that last interval.
    Written {
        /// The longest a written record waits for its sync.
        sync_within: Duration,
    },
    /// Synced to disk before the answer is released, like everything else.
    Synced,
}

/// Proof that the records it was issued for are durable. Only the recorder can make
/// one, so an API that takes a `Receipt` cannot be called before recording.
#[derive(Debug)]
pub struct Receipt {
    _private: (),
}

/// Records queued and not yet known to be durable; a future resolving to a
/// [`Receipt`]. One for records already written ([`Recorder::submit_read`]) is ready at
/// once, without a channel.
pub struct Pending {
    done: Option<oneshot::Receiver<Result<(), String>>>,
}

impl Future for Pending {
    type Output = Result<Receipt, RecorderError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let Some(done) = self.done.as_mut() else {
            return std::task::Poll::Ready(Ok(Receipt { _private: () }));
        };
        std::pin::Pin::new(done).poll(cx).map(|r| match r {
            Ok(Ok(())) => Ok(Receipt { _private: () }),
            Ok(Err(e)) => Err(RecorderError::Unavailable(e)),
            Err(_) => Err(RecorderError::Stopped),
        })
    }
}

/// Closes the queue when the last [`Recorder`] clone is dropped.
struct Handle {
    queue: Arc<Queue>,
    health: Arc<Health>,
    syncs: Arc<AtomicU64>,
    /// The chain and the journal: written by the writer thread, and by sessions
    /// writing the records of their reads themselves ([`Recorder::submit_read`]).
    writer: Arc<Mutex<Writer>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// Handle to the writer. Cheap to clone; every clone feeds the same chain.
#[derive(Clone)]
pub struct Recorder {
    handle: Arc<Handle>,
    reads: ReadDurability,
}

/// Submissions queued at most; beyond it, callers wait (back-pressure).
const QUEUE_DEPTH: usize = 4096;
/// Journal commits the ingest thread may lag behind before the writer waits for it.
const INGEST_DEPTH: usize = 1024;
/// Records written by sessions themselves and not yet handed to the ingest thread, at
/// most; beyond it, sessions queue their records for the writer thread instead, which
/// waits for the ingest thread (back-pressure).
const BACKLOG_LIMIT: usize = 20_000;

impl Recorder {
    /// Replays journal segments an earlier run left in `journal_dir` into `store`,
    /// then starts the writer and ingest threads, continuing `chain` (the range of
    /// event ids this gateway extends: see `airlock_store::chains`). Returns the
    /// recorder and a receiver that completes once both threads have finished, which
    /// happens after every clone is dropped and everything queued is stored.
    pub async fn start(
        store: Arc<dyn Store>,
        key: Secret,
        journal_dir: &Path,
        chain: i64,
        reads: ReadDurability,
    ) -> Result<(Recorder, oneshot::Receiver<()>), RecorderError> {
        let leftovers = journal::recover(journal_dir)?;
        let mut log = store.event_log()?;
        let mut next_segment = 1;
        if let Some(last) = leftovers.last() {
            next_segment = last.segment + 1;
            // What of the journal the store holds already, per chain the journal
            // names (this gateway's; an older one's if its chain changed).
            let mut heads: HashMap<i64, i64> = HashMap::new();
            for op in leftovers.iter().flat_map(|l| l.ops.iter()) {
                if let StoreOp::Event(e) = op {
                    let c = chains::chain_of(e.id);
                    if let std::collections::hash_map::Entry::Vacant(v) = heads.entry(c) {
                        v.insert(store.chain_head(c).await?.map_or(0, |h| h.id));
                    }
                }
            }
            let ops: Vec<StoreOp> = leftovers
                .iter()
                .flat_map(|l| l.ops.iter())
                .filter(|op| {
                    !matches!(op, StoreOp::Event(e)
                        if heads.get(&chains::chain_of(e.id)).is_some_and(|h| e.id <= *h))
                })
                .cloned()
                .collect();
            tracing::info!(
                segments = leftovers.len(),
                records = ops.len(),
                "replaying the recorder journal left by the last run"
            );
            let batch = EncodedBatch::encode(ops)?;
            let segment = last.segment;
            // Off the runtime: an event log may block on its own (PostgreSQL's runs
            // its client on a runtime of its own).
            log = tokio::task::spawn_blocking(move || {
                log.apply(&[batch])?;
                log.make_durable(segment)?;
                Ok::<_, RecorderError>(log)
            })
            .await
            .map_err(|e| RecorderError::Unavailable(format!("journal replay stopped: {e}")))??;
            for l in &leftovers {
                journal::remove_segment(journal_dir, l.segment)?;
            }
        }
        let head = store.chain_head(chain).await?;
        let (next_id, prev_hash) = match head {
            Some(e) => (e.id + 1, e.hash),
            None => (chains::first_id(chain), GENESIS_HASH.to_owned()),
        };
        let journal = Journal::create(journal_dir, next_segment)?;
        let queue = Arc::new(Queue::new(QUEUE_DEPTH));
        // Its depth is read when metrics are scraped, never counted on the way.
        let watched = Arc::downgrade(&queue);
        airlock_metrics::global()
            .watch_recorder_queue(QUEUE_DEPTH, move || watched.upgrade().map(|q| q.depth()));
        let health = Arc::new(Health::new(queue.clone()));
        let syncs = Arc::new(AtomicU64::new(0));
        let (ingest_tx, ingest_rx) = ingest_queue(INGEST_DEPTH);
        let ingester = Ingester {
            log,
            dir: journal_dir.to_owned(),
            health: health.clone(),
            writes: airlock_metrics::global().store_writes(),
        };
        let writer = Arc::new(Mutex::new(Writer {
            journal,
            sync_within: match reads {
                ReadDurability::Written { sync_within } => sync_within,
                ReadDurability::Synced => Duration::ZERO,
            },
            unsynced_since: None,
            written: 0,
            backlog: Vec::new(),
            backlog_ops: 0,
            key: ChainKey::new(key.expose().as_bytes()).ok_or_else(|| {
                RecorderError::Unavailable("the audit key cannot key HMAC-SHA256".into())
            })?,
            next_id,
            end_id: chains::end_id(chain),
            prev_hash,
            seqs: HashMap::new(),
            health: health.clone(),
            failure: None,
            held: Vec::new(),
        }));
        let thread = WriterThread {
            writer: writer.clone(),
            queue: queue.clone(),
            ingest: ingest_tx,
            health: health.clone(),
            syncs: syncs.clone(),
        };
        let (finished, done) = oneshot::channel();
        let spawn_error =
            |e: std::io::Error| RecorderError::Unavailable(format!("cannot start a thread: {e}"));
        let ingest_thread = std::thread::Builder::new()
            .name("airlock-ingest".into())
            .spawn(move || ingester.run(ingest_rx))
            .map_err(spawn_error)?;
        std::thread::Builder::new()
            .name("airlock-recorder".into())
            .spawn(move || {
                thread.run();
                // The writer dropped its sender on return: the ingester drains and ends.
                let _ = ingest_thread.join();
                let _ = finished.send(());
            })
            .map_err(spawn_error)?;
        Ok((
            Recorder {
                handle: Arc::new(Handle {
                    queue,
                    health,
                    syncs,
                    writer,
                }),
                reads,
            },
            done,
        ))
    }

    /// Records and waits until the records are durable.
    pub async fn record(&self, records: Vec<Record>) -> Result<Receipt, RecorderError> {
        self.submit(records).await?.await
    }

    /// Queues records in order and returns a [`Pending`] that resolves to a [`Receipt`]
    /// once they are durable. Lets a caller fix the order under a lock and wait outside it.
    pub async fn submit(&self, records: Vec<Record>) -> Result<Pending, RecorderError> {
        self.submit_with(records, AckAt::Synced).await
    }

    /// Like [`submit`](Self::submit), for the records of plain reads: the [`Pending`]
    /// resolves as soon as they are as durable as `[audit] read_durability` asks
    /// ([`ReadDurability`]).
    ///
    /// With [`ReadDurability::Written`] the caller writes them to the journal itself,
    /// together with its session's earlier records still queued: no hand-off to the
    /// writer thread and back (two thread wake-ups a statement), and the [`Pending`]
    /// returned is already resolved. The writer thread syncs them within the interval.
    pub async fn submit_read(&self, records: Vec<Record>) -> Result<Pending, RecorderError> {
        match self.reads {
            ReadDurability::Synced => self.submit_with(records, AckAt::Synced).await,
            ReadDurability::Written { .. } => {
                self.check()?;
                match self.write_now(records)? {
                    None => Ok(Pending { done: None }),
                    // The ingest thread lags: wait in the queue like everyone else.
                    Some(records) => self.submit_with(records, AckAt::Written).await,
                }
            }
        }
    }

    /// Chains and writes `records` (after the records nobody waits for, kept through
    /// an outage or queued) under the writer's lock. Gives them back when too much is
    /// waiting for the ingest thread. A failed write is not retried here (a session
    /// does not sleep under the lock): the recorder refuses everything until the
    /// writer thread finds the journal works again (fail closed).
    fn write_now(&self, records: Vec<Record>) -> Result<Option<Vec<Record>>, RecorderError> {
        let poisoned = || RecorderError::Unavailable("recorder state poisoned".into());
        let mut writer = self.handle.writer.lock().map_err(|_| poisoned())?;
        if writer.backlog_ops >= BACKLOG_LIMIT {
            return Ok(Some(records));
        }
        let mut earlier = Vec::new();
        self.handle.queue.take_lazy(&mut earlier);
        let was_synced = writer.unsynced_since.is_none();
        let held = std::mem::take(&mut writer.held);
        let all = held
            .into_iter()
            .chain(
                earlier
                    .iter_mut()
                    .flat_map(|b| std::mem::take(&mut b.records)),
            )
            .chain(records);
        // A failed write has marked the recorder failed already.
        let result = writer.commit(all, false);
        drop(writer);
        result.map_err(RecorderError::Unavailable)?;
        if was_synced {
            // The writer thread syncs it within the interval.
            self.handle.queue.nudge();
        }
        Ok(None)
    }

    async fn submit_with(&self, records: Vec<Record>, at: AckAt) -> Result<Pending, RecorderError> {
        self.check()?;
        let (ack, done) = oneshot::channel();
        self.handle
            .queue
            .push(records, Some((ack, at)), true)
            .await?;
        Ok(Pending { done: Some(done) })
    }

    /// Queues records without waiting for them to be durable (results, disconnects):
    /// they are written with the next waited-for records, or within a few milliseconds.
    /// Waits only when the queue is full. Refused while the recorder fails; a later
    /// failure makes the recorder refuse further work until it recovers.
    pub async fn record_later(&self, records: Vec<Record>) -> Result<(), RecorderError> {
        self.check()?;
        self.handle.queue.push(records, None, false).await
    }

    /// Queues records without waiting for them to be durable, but has them written
    /// now rather than with the next statement: for records readers look for promptly
    /// (a session's end).
    ///
    /// Taken even while the recorder fails (nothing waits for them, and nothing runs
    /// because of them): kept in memory and written once it recovers, so that the
    /// sessions that ended meanwhile (most of them because a statement was refused) are
    /// not left open in the log. Lost only if the gateway stops before it recovers.
    pub async fn record_soon(&self, records: Vec<Record>) -> Result<(), RecorderError> {
        self.handle.queue.push(records, None, true).await
    }

    /// How many times the journal was synced to disk since start (each sync makes a
    /// whole group of records durable).
    pub fn syncs(&self) -> u64 {
        self.handle.syncs.load(Ordering::Relaxed)
    }

    fn check(&self) -> Result<(), RecorderError> {
        self.handle
            .health
            .check()
            .map_err(RecorderError::Unavailable)
    }

    /// Whether the recorder takes work, for `/readyz`. The probe does not keep the
    /// recorder running: the writer still drains and stops once every `Recorder` handle
    /// is gone.
    pub fn health_probe(&self) -> RecorderHealth {
        RecorderHealth(self.handle.health.clone())
    }
}

/// See [`Recorder::health_probe`].
#[derive(Clone)]
pub struct RecorderHealth(Arc<Health>);

impl RecorderHealth {
    /// `Err` with the cause while the recorder refuses work (its journal or the store
    /// failing).
    pub fn check(&self) -> Result<(), String> {
        self.0.check()
    }
}

/// A journal that failed, until the writer thread finds it works again.
struct JournalFailure {
    /// What failed first.
    cause: String,
    /// When to probe next.
    probe_at: Instant,
    /// The segment may hold a torn write after its last record, or records not known
    /// to be on disk: close it and continue in a new one ([`Journal::rotate`]).
    rotate: bool,
}

/// The chain and the journal, behind the recorder's lock.
struct Writer {
    journal: Journal,
    /// The longest written records wait for their sync; zero syncs every commit.
    sync_within: Duration,
    /// When the oldest record written but not yet synced was written.
    unsynced_since: Option<Instant>,
    /// Writes so far: a sync started after write `n` covers every write up to `n`.
    written: u64,
    /// Written records (and segment ends) for the ingest thread, in journal order;
    /// only the writer thread hands them over, so that order holds.
    backlog: Vec<Ingest>,
    /// Records in `backlog`.
    backlog_ops: usize,
    key: ChainKey,
    next_id: i64,
    /// The first id past this gateway's chain: reaching it stops recording (a
    /// restart with a new `data_dir` starts a new chain).
    end_id: i64,
    prev_hash: String,
    /// Last `seq` given out per open session; numbering here keeps it in chain order
    /// even when a session's two directions submit concurrently.
    seqs: HashMap<String, i64>,
    health: Arc<Health>,
    /// Set while the journal cannot be written: nothing is written until the writer
    /// thread's probe succeeds ([`Writer::repair`]).
    failure: Option<JournalFailure>,
    /// Records nobody waits for (results, session ends) that came while the recorder
    /// failed, in order: written first once it recovers.
    held: Vec<Record>,
}

impl Writer {
    /// Chains `records` and writes them to the journal (not synced: see
    /// [`WriterThread`]), retrying a failed write a few times when `retry` (the writer
    /// thread may sleep; a session may not). Queues them for the ingest thread.
    ///
    /// On an error nothing of `records` counts: the chain (`next_id`, the previous
    /// hash) and every session's `seq` are as before, so the records written next take
    /// the same places and the chain has neither a gap nor a fork. Nobody was told the
    /// refused records are durable, so nothing they describe was forwarded. A write
    /// that fails marks the journal failed; until the writer thread's probe succeeds,
    /// every commit is refused.
    fn commit(&mut self, records: impl Iterator<Item = Record>, retry: bool) -> Result<(), String> {
        if let Some(failure) = &self.failure {
            return Err(failure.cause.clone());
        }
        let mut next_id = self.next_id;
        let mut prev_hash = self.prev_hash.clone();
        // A read usually brings its predecessor's result along: room for a few without
        // regrowing (each op is a few hundred bytes).
        let mut ops = Vec::with_capacity(records.size_hint().0.max(4));
        // Each record's change to `seqs` (session, value before), undone in reverse
        // order if the write fails. A copy of the session id per record costs far less
        // than the HMAC and the write beside it.
        let mut undo: Vec<(String, Option<i64>)> = Vec::with_capacity(ops.capacity());
        for record in records {
            ops.push(match record {
                Record::StartSession(mut s) => {
                    undo.push((s.id.clone(), self.seqs.insert(s.id.clone(), 0)));
                    s.principal = s.principal.map(storable);
                    s.target = storable(s.target);
                    s.client_addr = storable(s.client_addr);
                    StoreOp::StartSession(s)
                }
                Record::EndSession { id, at } => {
                    undo.push((id.clone(), self.seqs.remove(&id)));
                    StoreOp::EndSession { id, at }
                }
                Record::Event(e) => {
                    let (seq, before) = match self.seqs.get_mut(&e.session_id) {
                        Some(seq) => {
                            let before = Some(*seq);
                            (seq, before)
                        }
                        None => (self.seqs.entry(e.session_id.clone()).or_insert(0), None),
                    };
                    *seq += 1;
                    let seq = *seq;
                    undo.push((e.session_id.clone(), before));
                    let mut chained = ChainedEvent {
                        id: next_id,
                        seq,
                        session_id: e.session_id,
                        at: e.at.to_string(),
                        kind: e.kind.as_str().to_owned(),
                        statement: e.statement.map(storable),
                        decision: e.decision.map(str::to_owned),
                        // Straight into a byte buffer: `Display` goes through
                        // `fmt::Write` and costs about twice as much.
                        detail: serde_json::to_string(&e.detail)
                            .unwrap_or_else(|_| e.detail.to_string()),
                        prev_hash: std::mem::take(&mut prev_hash),
                        hash: String::new(),
                    };
                    if next_id >= self.end_id {
                        self.undo_seqs(undo);
                        return Err(format!(
                            "this gateway's event chain is full ({} events); give it a new data_dir to start a new chain",
                            chains::end_id(0) - 1
                        ));
                    }
                    chained.hash = self.key.hash(&chained);
                    prev_hash = chained.hash.clone();
                    next_id += 1;
                    StoreOp::Event(chained)
                }
            });
        }
        if ops.is_empty() {
            return Ok(());
        }
        // Encoded once: the journal writes this text and the ingest thread stores it.
        let batch = match EncodedBatch::encode(ops) {
            Ok(batch) => batch,
            Err(e) => {
                self.undo_seqs(undo);
                return Err(e.to_string());
            }
        };
        let mut delay = Duration::from_millis(20);
        let mut attempt = 0;
        loop {
            match self.journal.write(&batch) {
                Ok(()) => break,
                // The same bytes at the same place: a retry that succeeds leaves nothing
                // of the failed attempt behind.
                Err(e) if retry && attempt < 3 => {
                    tracing::warn!(error = %e, attempt, "recorder journal write failed, retrying");
                    std::thread::sleep(delay);
                    delay *= 4;
                    attempt += 1;
                }
                Err(e) => {
                    self.undo_seqs(undo);
                    let cause = e.to_string();
                    self.fail(&cause);
                    return Err(cause);
                }
            }
        }
        self.next_id = next_id;
        self.prev_hash = prev_hash;
        self.written += 1;
        self.unsynced_since.get_or_insert_with(Instant::now);
        self.backlog_ops += batch.len();
        self.backlog.push(Ingest::Ops(batch));
        if self.journal.is_full() {
            match self.journal.rotate() {
                Ok(closed) => {
                    // Closing the segment synced it; the new one holds nothing yet.
                    self.unsynced_since = None;
                    self.backlog.push(Ingest::SegmentDone(closed));
                }
                // The records are written (they keep their places in the chain) but not
                // known to be on disk: whoever waits for their sync is told it failed.
                Err(e) => self.fail(&e.to_string()),
            }
        }
        Ok(())
    }

    /// Puts back what a failed commit changed in `seqs` (see [`Writer::commit`]).
    fn undo_seqs(&mut self, undo: Vec<(String, Option<i64>)>) {
        for (session, before) in undo.into_iter().rev() {
            match before {
                Some(seq) => self.seqs.insert(session, seq),
                None => self.seqs.remove(&session),
            };
        }
    }

    /// The journal failed with `cause`: nothing is written to this segment again (it
    /// may end in a torn write), and nothing at all until a probe succeeds.
    fn fail(&mut self, cause: &str) {
        self.health.failed(Part::Journal, cause);
        match &mut self.failure {
            Some(failure) => failure.rotate = true,
            None => {
                self.failure = Some(JournalFailure {
                    cause: cause.to_owned(),
                    probe_at: Instant::now() + PROBE_INTERVAL,
                    rotate: true,
                });
            }
        }
    }

    /// When the writer thread must look next without being woken: to probe a failed
    /// journal, or to sync written records in time.
    fn wake_at(&self) -> Option<Instant> {
        match &self.failure {
            Some(failure) => Some(failure.probe_at),
            None => self.sync_due(),
        }
    }

    /// When the oldest written and unsynced record must be synced.
    fn sync_due(&self) -> Option<Instant> {
        self.unsynced_since.map(|since| since + self.sync_within)
    }

    /// Probes a failed journal when it is time to: closes the damaged segment (cut to
    /// its last record, synced) and starts the next one, then preallocates and syncs
    /// there. The journal works again once all of that succeeds; each step that did is
    /// not repeated. Errors are not logged: the failure was, once, and a disk that stays
    /// full or read-only would otherwise log every second.
    fn repair(&mut self) {
        let Some(failure) = &mut self.failure else {
            return;
        };
        if Instant::now() < failure.probe_at {
            return;
        }
        // Not before a second from now, whatever this probe takes: never a busy loop.
        failure.probe_at = Instant::now() + PROBE_INTERVAL;
        if failure.rotate {
            match self.journal.rotate() {
                Ok(closed) => {
                    failure.rotate = false;
                    // Its records were handed over when written; once stored, it goes.
                    self.backlog.push(Ingest::SegmentDone(closed));
                    self.unsynced_since = None;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "recorder journal still failing");
                    return;
                }
            }
        }
        if let Err(e) = self.journal.reserve() {
            tracing::debug!(error = %e, "recorder journal still failing");
            return;
        }
        self.failure = None;
        self.health.recovered(Part::Journal);
    }
}

/// The writer thread: commits what is queued, syncs the journal when someone waits
/// for it or when written records have waited `sync_within`, acknowledges, and hands
/// written records to the ingest thread. While the journal fails, it probes it about
/// once a second ([`Writer::repair`]).
///
/// A dedicated OS thread, not a task: a sync blocks for hundreds of microseconds, and
/// nothing on the async runtime waits on the disk. While one round syncs, the next
/// statements queue up and go together in the next round (group commit), which keeps
/// "recorded before forwarded" cheap under load. The sync runs outside the writer's
/// lock, so sessions keep writing their reads meanwhile.
struct WriterThread {
    writer: Arc<Mutex<Writer>>,
    queue: Arc<Queue>,
    ingest: IngestSender,
    health: Arc<Health>,
    syncs: Arc<AtomicU64>,
}

impl WriterThread {
    fn run(self) {
        let mut batches = Vec::new();
        loop {
            let (wake_at, sync_due) = match self.writer.lock() {
                // While the journal fails, the next probe; otherwise the next sync
                // due. Never a time that has passed once this round is done, or the
                // loop would spin.
                Ok(w) => (w.wake_at(), w.sync_due()),
                Err(_) => break,
            };
            self.queue.wait(wake_at);
            let Ok(mut writer) = self.writer.lock() else {
                break;
            };
            writer.repair();
            // Taken under the writer's lock: a session writing its own records takes
            // its queued ones first under the same lock, so its events stay in order.
            let more = self.queue.drain(&mut batches);
            let written = match self.health.check() {
                Ok(()) => {
                    let held = std::mem::take(&mut writer.held);
                    writer.commit(
                        held.into_iter().chain(
                            batches
                                .iter_mut()
                                .flat_map(|b| std::mem::take(&mut b.records)),
                        ),
                        true,
                    )
                }
                Err(cause) => {
                    // Nothing is written while the recorder fails: whoever waits is
                    // refused (and so runs nothing). Records nobody waits for describe
                    // what already happened (results, session ends): kept for later.
                    for b in &mut batches {
                        if b.ack.is_none() {
                            writer.held.append(&mut b.records);
                        }
                    }
                    Err(cause)
                }
            };
            let must_sync = !more
                || batches
                    .iter()
                    .any(|b| matches!(b.ack, Some((_, AckAt::Synced))))
                || writer.sync_within.is_zero()
                || sync_due.is_some_and(|due| Instant::now() >= due);
            // A failed journal is not synced: its probe closes (and syncs) the segment.
            let journal = match &writer.failure {
                Some(failure) => Err(failure.cause.clone()),
                None => Ok(()),
            };
            let sync = (journal.is_ok() && must_sync && writer.unsynced_since.is_some())
                .then(|| (writer.journal.sync_handle(), writer.written));
            let backlog = std::mem::take(&mut writer.backlog);
            writer.backlog_ops = 0;
            let segment = writer.journal.segment();
            let held = writer.held.len();
            drop(writer);
            // Those who wait for the write alone hear now, before the sync.
            for b in &mut batches {
                if let Some((ack, _)) = b.ack.take_if(|(_, at)| *at == AckAt::Written) {
                    let _ = ack.send(written.clone());
                }
            }
            let handed = self.hand_to_ingest(backlog);
            let result = written.and(handed).and(journal).and_then(|()| match sync {
                Some((handle, upto)) => self.sync(&handle, upto),
                None => Ok(()),
            });
            for b in batches.drain(..) {
                if let Some((ack, _)) = b.ack {
                    // A caller that stopped waiting is fine: its records are written.
                    let _ = ack.send(result.clone());
                }
            }
            if !more {
                if held > 0 {
                    tracing::warn!(
                        records = held,
                        "stopping while the recorder fails: the results and session ends recorded meanwhile are lost"
                    );
                }
                // A clean stop: the ingest thread stores the last segment and deletes it.
                let _ = self.ingest.send(Ingest::SegmentDone(segment));
                break;
            }
        }
    }

    /// Hands written records to the ingest thread (waiting while it lags).
    fn hand_to_ingest(&self, backlog: Vec<Ingest>) -> Result<(), String> {
        for msg in backlog {
            // It only stops early if it panicked: nothing will store records again.
            if self.ingest.send(msg).is_err() {
                let cause = "the recorder's ingest thread has stopped".to_owned();
                self.health.failed(Part::Store, &cause);
                return Err(cause);
            }
        }
        Ok(())
    }

    /// Syncs the journal: everything up to write `upto` is durable afterwards. A
    /// failure marks the journal failed.
    fn sync(&self, handle: &SyncHandle, upto: u64) -> Result<(), String> {
        let synced = handle.sync().map_err(|e| e.to_string());
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| "recorder state poisoned".to_owned())?;
        if let Err(cause) = synced {
            // Written records may not be on disk (and after a failed `fdatasync`, Linux
            // may have dropped them from the page cache): the probe closes the segment
            // with a full sync before anything else is written.
            writer.fail(&cause);
            return Err(cause);
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if writer.written == upto {
            writer.unsynced_since = None;
        } else if writer.unsynced_since.is_some() {
            // Written while this sync ran: due one interval from now at the latest.
            writer.unsynced_since = Some(Instant::now());
        }
        Ok(())
    }
}

/// `text` as every store can hold it: a NUL character (which PostgreSQL text cannot
/// store, and which would otherwise fail every batch that carries it) becomes U+FFFD.
/// Done before hashing, so the chain verifies what is stored. JSON details need nothing:
/// serde_json escapes NUL as `\u0000`.
fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

#[cfg(test)]
mod recovery_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewEvent;
    use airlock_model::{EventKind, Timestamp};
    use airlock_store::SqliteStore;

    #[test]
    fn nul_characters_become_replacement_characters_before_hashing() {
        assert_eq!(storable("select '\0'".into()), "select '\u{FFFD}'");
        assert_eq!(storable("plain".into()), "plain");
    }

    fn event(statement: &str) -> Record {
        Record::Event(NewEvent {
            session_id: "s1".into(),
            at: Timestamp::now(),
            kind: EventKind::Query,
            statement: Some(statement.into()),
            decision: Some("allow"),
            detail: serde_json::json!({}),
        })
    }

    async fn start(name: &str, reads: ReadDurability) -> (Recorder, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "airlock-writer-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(&dir).await.unwrap());
        let (recorder, _done) = Recorder::start(
            store,
            Secret::new("k".repeat(32)),
            &dir.join("journal"),
            0,
            reads,
        )
        .await
        .unwrap();
        (recorder, dir.join("journal"))
    }

    fn journal_text(dir: &Path) -> String {
        let mut text = String::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
        text
    }

    async fn wait_for_syncs(recorder: &Recorder, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while recorder.syncs() < n {
            assert!(Instant::now() < deadline, "no sync within 5 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_read_is_acknowledged_once_written_and_synced_within_the_interval() {
        let (recorder, dir) = start(
            "written",
            ReadDurability::Written {
                sync_within: Duration::from_millis(300),
            },
        )
        .await;
        let pending = recorder
            .submit_read(vec![event("select 'read-1'")])
            .await
            .unwrap();
        pending.await.unwrap();
        assert_eq!(recorder.syncs(), 0, "acknowledged before any sync");
        assert!(
            journal_text(&dir).contains("read-1"),
            "but written to the journal first"
        );
        wait_for_syncs(&recorder, 1).await;
    }

    #[tokio::test]
    async fn a_statement_that_must_be_synced_syncs_the_reads_written_before_it() {
        let (recorder, dir) = start(
            "mixed",
            ReadDurability::Written {
                sync_within: Duration::from_secs(60),
            },
        )
        .await;
        for i in 0..3 {
            let pending = recorder
                .submit_read(vec![event(&format!("select 'read-{i}'"))])
                .await
                .unwrap();
            pending.await.unwrap();
        }
        assert_eq!(recorder.syncs(), 0);
        recorder.record(vec![event("delete from t")]).await.unwrap();
        assert_eq!(
            recorder.syncs(),
            1,
            "one sync covers the reads and the change"
        );
        let text = journal_text(&dir);
        let read = text.find("read-2").unwrap();
        let change = text.find("delete from t").unwrap();
        assert!(read < change, "the journal keeps their order");
    }

    #[tokio::test]
    async fn a_read_written_by_its_session_comes_after_the_records_it_queued_before() {
        let (recorder, dir) = start(
            "order",
            ReadDurability::Written {
                sync_within: Duration::from_millis(5),
            },
        )
        .await;
        for i in 0..50 {
            recorder
                .record_later(vec![event(&format!("result-{i}"))])
                .await
                .unwrap();
            recorder
                .submit_read(vec![event(&format!("read-{i}"))])
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let text = journal_text(&dir);
        let mut last = 0;
        for i in 0..50 {
            let result = text.find(&format!("\"result-{i}\"")).unwrap();
            let read = text.find(&format!("\"read-{i}\"")).unwrap();
            assert!(
                last <= result && result < read,
                "result-{i} before read-{i}"
            );
            last = read;
        }
        wait_for_syncs(&recorder, 1).await;
    }

    #[tokio::test]
    async fn with_synced_reads_a_read_waits_for_its_sync() {
        let (recorder, _dir) = start("synced", ReadDurability::Synced).await;
        let pending = recorder.submit_read(vec![event("select 1")]).await.unwrap();
        pending.await.unwrap();
        assert_eq!(recorder.syncs(), 1);
        recorder
            .record_later(vec![event("a result")])
            .await
            .unwrap();
        wait_for_syncs(&recorder, 2).await;
    }
}
