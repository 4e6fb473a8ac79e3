//! The writer thread: chains queued records, makes each group durable in the journal
//! with one sync, acknowledges, and hands the records to the ingest thread.
//!
//! A dedicated OS thread, not a task: each round ends in an fsync, so nothing on the
//! async runtime waits on the disk. While one round syncs, the next statements queue
//! up and go together in the next round (group commit), which keeps "recorded before
//! forwarded" cheap under load.

use std::collections::HashMap;
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_store::{ChainedEvent, Store, StoreOp};
use airlock_vault::Secret;
use tokio::sync::oneshot;

use crate::ingest::{Ingest, Ingester};
use crate::journal::{self, Journal};
use crate::queue::{AckAt, Batch, Queue};
use crate::{GENESIS_HASH, Record, RecorderError, chain_hash};

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

/// Records queued and not yet known to be durable.
pub struct Pending {
    done: oneshot::Receiver<Result<(), String>>,
}

impl std::future::IntoFuture for Pending {
    type Output = Result<Receipt, RecorderError>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            match self.done.await {
                Ok(Ok(())) => Ok(Receipt { _private: () }),
                Ok(Err(e)) => Err(RecorderError::Unavailable(e)),
                Err(_) => Err(RecorderError::Stopped),
            }
        })
    }
}

/// Closes the queue when the last [`Recorder`] clone is dropped.
struct Handle {
    queue: Arc<Queue>,
    broken: Arc<Mutex<Option<String>>>,
    syncs: Arc<AtomicU64>,
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

impl Recorder {
    /// Replays journal segments an earlier run left in `journal_dir` into `store`,
    /// then starts the writer and ingest threads, continuing the chain. Returns the
    /// recorder and a receiver that completes once both threads have finished, which
    /// happens after every clone is dropped and everything queued is stored.
    pub async fn start(
        store: Arc<dyn Store>,
        key: Secret,
        journal_dir: &Path,
        reads: ReadDurability,
    ) -> Result<(Recorder, oneshot::Receiver<()>), RecorderError> {
        let leftovers = journal::recover(journal_dir)?;
        let mut log = store.event_log()?;
        let mut next_segment = 1;
        if let Some(last) = leftovers.last() {
            next_segment = last.segment + 1;
            let head = store.chain_head().await?.map_or(0, |e| e.id);
            let ops: Vec<StoreOp> = leftovers
                .iter()
                .flat_map(|l| l.ops.iter())
                .filter(|op| !matches!(op, StoreOp::Event(e) if e.id <= head))
                .cloned()
                .collect();
            tracing::info!(
                segments = leftovers.len(),
                records = ops.len(),
                "replaying the recorder journal left by the last run"
            );
            log.apply(&ops)?;
            log.make_durable(last.segment)?;
            for l in &leftovers {
                journal::remove_segment(journal_dir, l.segment)?;
            }
        }
        let head = store.chain_head().await?;
        let (next_id, prev_hash) = match head {
            Some(e) => (e.id + 1, e.hash),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let journal = Journal::create(journal_dir, next_segment)?;
        let queue = Arc::new(Queue::new(QUEUE_DEPTH));
        let broken = Arc::new(Mutex::new(None));
        let syncs = Arc::new(AtomicU64::new(0));
        let (ingest_tx, ingest_rx) = std::sync::mpsc::sync_channel(INGEST_DEPTH);
        let ingester = Ingester {
            log,
            dir: journal_dir.to_owned(),
            broken: broken.clone(),
        };
        let writer = Writer {
            journal,
            sync_within: match reads {
                ReadDurability::Written { sync_within } => sync_within,
                ReadDurability::Synced => Duration::ZERO,
            },
            unsynced_since: None,
            syncs: syncs.clone(),
            ingest: ingest_tx,
            key,
            next_id,
            prev_hash,
            seqs: HashMap::new(),
            broken: broken.clone(),
        };
        let (finished, done) = oneshot::channel();
        let spawn_error =
            |e: std::io::Error| RecorderError::Unavailable(format!("cannot start a thread: {e}"));
        let ingest_thread = std::thread::Builder::new()
            .name("airlock-ingest".into())
            .spawn(move || ingester.run(ingest_rx))
            .map_err(spawn_error)?;
        let writer_queue = queue.clone();
        std::thread::Builder::new()
            .name("airlock-recorder".into())
            .spawn(move || {
                writer.run(&writer_queue);
                // The writer dropped its sender on return: the ingester drains and ends.
                let _ = ingest_thread.join();
                let _ = finished.send(());
            })
            .map_err(spawn_error)?;
        Ok((
            Recorder {
                handle: Arc::new(Handle {
                    queue,
                    broken,
                    syncs,
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
    pub async fn submit_read(&self, records: Vec<Record>) -> Result<Pending, RecorderError> {
        let at = match self.reads {
            ReadDurability::Written { .. } => AckAt::Written,
            ReadDurability::Synced => AckAt::Synced,
        };
        self.submit_with(records, at).await
    }

    async fn submit_with(&self, records: Vec<Record>, at: AckAt) -> Result<Pending, RecorderError> {
        self.check()?;
        let (ack, done) = oneshot::channel();
        self.handle
            .queue
            .push(records, Some((ack, at)), true)
            .await?;
        Ok(Pending { done })
    }

    /// Queues records without waiting for them to be durable (results, disconnects):
    /// they are written with the next waited-for records, or within a few milliseconds.
    /// Waits only when the queue is full. A later failure makes the recorder refuse
    /// further work.
    pub async fn record_later(&self, records: Vec<Record>) -> Result<(), RecorderError> {
        self.check()?;
        self.handle.queue.push(records, None, false).await
    }

    /// Queues records without waiting for them to be durable, but has them written
    /// now rather than with the next statement: for records readers look for promptly
    /// (a session's end).
    pub async fn record_soon(&self, records: Vec<Record>) -> Result<(), RecorderError> {
        self.check()?;
        self.handle.queue.push(records, None, true).await
    }

    /// How many times the journal was synced to disk since start (each sync makes a
    /// whole group of records durable).
    pub fn syncs(&self) -> u64 {
        self.handle.syncs.load(Ordering::Relaxed)
    }

    fn check(&self) -> Result<(), RecorderError> {
        match self.handle.broken.lock() {
            Ok(g) => match g.as_ref() {
                Some(msg) => Err(RecorderError::Unavailable(msg.clone())),
                None => Ok(()),
            },
            Err(_) => Err(RecorderError::Unavailable("recorder state poisoned".into())),
        }
    }
}

struct Writer {
    journal: Journal,
    /// The longest written records wait for their sync; zero syncs every commit.
    sync_within: Duration,
    /// When the oldest record written but not yet synced was written.
    unsynced_since: Option<Instant>,
    /// Journal syncs so far.
    syncs: Arc<AtomicU64>,
    ingest: SyncSender<Ingest>,
    key: Secret,
    next_id: i64,
    prev_hash: String,
    /// Last `seq` given out per open session; numbering here keeps it in chain order
    /// even when a session's two directions submit concurrently.
    seqs: HashMap<String, i64>,
    broken: Arc<Mutex<Option<String>>>,
}

impl Writer {
    fn run(mut self, queue: &Queue) {
        let mut batches = Vec::new();
        loop {
            let sync_due = self.unsynced_since.map(|since| since + self.sync_within);
            let more = queue.take(&mut batches, sync_due);
            let written = if batches.is_empty() {
                Ok(())
            } else {
                self.commit(&mut batches)
            };
            // Those who wait for the write alone hear now, before the sync.
            for b in &mut batches {
                if let Some((ack, AckAt::Written)) = b.ack.take_if(|(_, at)| *at == AckAt::Written)
                {
                    let _ = ack.send(written.clone());
                }
            }
            let must_sync = !more
                || batches.iter().any(|b| b.ack.is_some())
                || sync_due.is_some_and(|due| Instant::now() >= due);
            let result = match written {
                Ok(()) if must_sync && self.unsynced_since.is_some() => self.sync(),
                other => other,
            };
            if let Err(msg) = &result {
                tracing::error!(error = %msg, "recorder write failed; refusing further statements until restart");
                if let Ok(mut g) = self.broken.lock() {
                    g.get_or_insert_with(|| msg.clone());
                }
            }
            for b in batches.drain(..) {
                if let Some((ack, _)) = b.ack {
                    // A caller that stopped waiting is fine: its records are written.
                    let _ = ack.send(result.clone());
                }
            }
            if !more {
                break;
            }
        }
        // A clean stop: the ingest thread stores the last segment and deletes it.
        let _ = self
            .ingest
            .send(Ingest::SegmentDone(self.journal.segment()));
    }

    /// Syncs everything written so far.
    fn sync(&mut self) -> Result<(), String> {
        self.journal.sync().map_err(|e| e.to_string())?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.unsynced_since = None;
        Ok(())
    }

    /// Chains the batches' records (moved out: only the acks are needed afterwards),
    /// writes them to the journal (the caller syncs) and hands them to the ingest
    /// thread.
    fn commit(&mut self, batches: &mut [Batch]) -> Result<(), String> {
        if let Ok(g) = self.broken.lock()
            && let Some(msg) = g.as_ref()
        {
            return Err(msg.clone());
        }
        let mut next_id = self.next_id;
        let mut prev_hash = self.prev_hash.clone();
        let mut ops = Vec::with_capacity(batches.iter().map(|b| b.records.len()).sum());
        let records = batches
            .iter_mut()
            .flat_map(|b| std::mem::take(&mut b.records));
        for record in records {
            ops.push(match record {
                Record::StartSession(s) => {
                    self.seqs.insert(s.id.clone(), 0);
                    StoreOp::StartSession(s)
                }
                Record::EndSession { id, at } => {
                    self.seqs.remove(&id);
                    StoreOp::EndSession { id, at }
                }
                Record::Event(e) => {
                    let seq = match self.seqs.get_mut(&e.session_id) {
                        Some(seq) => seq,
                        None => self.seqs.entry(e.session_id.clone()).or_insert(0),
                    };
                    *seq += 1;
                    let mut chained = ChainedEvent {
                        id: next_id,
                        seq: *seq,
                        session_id: e.session_id,
                        at: e.at.to_string(),
                        kind: e.kind.as_str().to_owned(),
                        statement: e.statement,
                        decision: e.decision.map(str::to_owned),
                        detail: e.detail.to_string(),
                        prev_hash: std::mem::take(&mut prev_hash),
                        hash: String::new(),
                    };
                    chained.hash = chain_hash(self.key.expose().as_bytes(), &chained);
                    prev_hash = chained.hash.clone();
                    next_id += 1;
                    StoreOp::Event(chained)
                }
            });
        }
        let mut delay = Duration::from_millis(20);
        let mut attempt = 0;
        let closed = loop {
            match self.journal.write(&ops) {
                Ok(closed) => break closed,
                Err(e) if attempt < 3 => {
                    tracing::warn!(error = %e, attempt, "recorder journal write failed, retrying");
                    std::thread::sleep(delay);
                    delay *= 4;
                    attempt += 1;
                }
                Err(e) => return Err(e.to_string()),
            }
        };
        self.next_id = next_id;
        self.prev_hash = prev_hash;
        if closed.is_some() {
            // Closing a segment synced it; the new one holds nothing yet.
            self.unsynced_since = None;
        } else {
            self.unsynced_since.get_or_insert_with(Instant::now);
        }
        // Written from here on (synced by the caller in time). The ingest thread stores them for readers; if it has
        // stopped (a failed store write), it has already marked the recorder broken.
        let mut sent = self.ingest.send(Ingest::Ops(ops)).is_ok();
        if let Some(n) = closed {
            sent &= self.ingest.send(Ingest::SegmentDone(n)).is_ok();
        }
        if !sent {
            return Err("the recorder's ingest thread has stopped".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewEvent;
    use airlock_model::{EventKind, Timestamp};
    use airlock_store::SqliteStore;

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
