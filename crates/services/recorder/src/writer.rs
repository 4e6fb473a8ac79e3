//! The single writer task: batches queued records into one transaction per round.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_store::{ChainedEvent, Store, StoreOp};
use airlock_vault::Secret;
use tokio::sync::{mpsc, oneshot};

use crate::{GENESIS_HASH, Record, RecorderError, chain_hash};

/// Proof that the records it was issued for are durable in the store. Only the recorder
/// can make one, so an API that takes a `Receipt` cannot be called before recording.
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

struct Batch {
    records: Vec<Record>,
    ack: Option<oneshot::Sender<Result<(), String>>>,
}

/// Handle to the writer task. Cheap to clone; every clone feeds the same chain.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Batch>,
    broken: Arc<Mutex<Option<String>>>,
}

/// Most batches merged into one transaction.
const MAX_BATCHES_PER_COMMIT: usize = 1024;
/// Queue depth: beyond it, callers wait (back-pressure) rather than anything being dropped.
const QUEUE_DEPTH: usize = 4096;

impl Recorder {
    /// Starts the writer on the current runtime, continuing the chain found in `store`.
    /// Returns the recorder and the writer task, which ends once every clone is dropped
    /// and the queue is drained.
    pub async fn start(
        store: Arc<dyn Store>,
        key: Secret,
    ) -> Result<(Recorder, tokio::task::JoinHandle<()>), RecorderError> {
        let head = store.chain_head().await?;
        let (next_id, prev_hash) = match head {
            Some(e) => (e.id + 1, e.hash),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let broken = Arc::new(Mutex::new(None));
        let writer = Writer {
            store,
            key,
            next_id,
            prev_hash,
            seqs: HashMap::new(),
            broken: broken.clone(),
        };
        let handle = tokio::spawn(writer.run(rx));
        Ok((Recorder { tx, broken }, handle))
    }

    /// Records and waits until the records are durable.
    pub async fn record(&self, records: Vec<Record>) -> Result<Receipt, RecorderError> {
        self.submit(records).await?.await
    }

    /// Queues records in order and returns a [`Pending`] that resolves to a [`Receipt`]
    /// once they are durable. Lets a caller fix the order under a lock and wait outside it.
    pub async fn submit(&self, records: Vec<Record>) -> Result<Pending, RecorderError> {
        self.check()?;
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Batch {
                records,
                ack: Some(ack),
            })
            .await
            .map_err(|_| RecorderError::Stopped)?;
        Ok(Pending { done })
    }

    /// Queues records without waiting for the commit (results, disconnects). Waits only
    /// when the queue is full. A later failure makes the recorder refuse further work.
    pub async fn record_later(&self, records: Vec<Record>) -> Result<(), RecorderError> {
        self.check()?;
        self.tx
            .send(Batch { records, ack: None })
            .await
            .map_err(|_| RecorderError::Stopped)
    }

    fn check(&self) -> Result<(), RecorderError> {
        match self.broken.lock() {
            Ok(g) => match g.as_ref() {
                Some(msg) => Err(RecorderError::Unavailable(msg.clone())),
                None => Ok(()),
            },
            Err(_) => Err(RecorderError::Unavailable("recorder state poisoned".into())),
        }
    }
}

struct Writer {
    store: Arc<dyn Store>,
    key: Secret,
    next_id: i64,
    prev_hash: String,
    /// Last `seq` given out per open session; numbering here keeps it in chain order
    /// even when a session's two directions submit concurrently.
    seqs: HashMap<String, i64>,
    broken: Arc<Mutex<Option<String>>>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Batch>) {
        while let Some(first) = rx.recv().await {
            let mut batches = vec![first];
            while batches.len() < MAX_BATCHES_PER_COMMIT {
                match rx.try_recv() {
                    Ok(b) => batches.push(b),
                    Err(_) => break,
                }
            }
            let result = self.commit(&batches).await;
            if let Err(msg) = &result {
                tracing::error!(error = %msg, "recorder write failed; refusing further statements until restart");
                if let Ok(mut g) = self.broken.lock() {
                    *g = Some(msg.clone());
                }
            }
            for b in batches {
                if let Some(ack) = b.ack {
                    // A caller that stopped waiting is fine: its records are written either way.
                    let _ = ack.send(result.clone());
                }
            }
        }
    }

    async fn commit(&mut self, batches: &[Batch]) -> Result<(), String> {
        if let Ok(g) = self.broken.lock()
            && let Some(msg) = g.as_ref()
        {
            return Err(msg.clone());
        }
        let mut next_id = self.next_id;
        let mut prev_hash = self.prev_hash.clone();
        let mut ops = Vec::with_capacity(batches.iter().map(|b| b.records.len()).sum());
        for record in batches.iter().flat_map(|b| &b.records) {
            ops.push(match record {
                Record::StartSession(s) => {
                    self.seqs.insert(s.id.clone(), 0);
                    StoreOp::StartSession(s.clone())
                }
                Record::EndSession { id, at } => {
                    self.seqs.remove(id);
                    StoreOp::EndSession {
                        id: id.clone(),
                        at: *at,
                    }
                }
                Record::Event(e) => {
                    let seq = self.seqs.entry(e.session_id.clone()).or_insert(0);
                    *seq += 1;
                    let mut chained = ChainedEvent {
                        id: next_id,
                        session_id: e.session_id.clone(),
                        seq: *seq,
                        at: e.at.to_string(),
                        kind: e.kind.as_str().to_owned(),
                        statement: e.statement.clone(),
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
        loop {
            match self.store.apply(&ops).await {
                Ok(()) => break,
                Err(e) if attempt < 3 => {
                    tracing::warn!(error = %e, attempt, "recorder write failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                    attempt += 1;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        self.next_id = next_id;
        self.prev_hash = prev_hash;
        Ok(())
    }
}
