//! The recorder: session starts, events and ends, linked into an HMAC chain that
//! `airlock audit verify` re-checks.
//!
//! Path of a record: a session submits it to the queue (`queue`); the writer thread
//! (`writer`) chains everything queued, appends it to the journal (`journal`) and syncs
//! once for the whole group (group commit), then acknowledges; the ingest thread
//! (`ingest`) copies it into the store's tables for readers and deletes journal
//! segments the store holds durably. At start-up, segments left by a crash are
//! replayed into the store.
//!
//! The records of plain reads may be acknowledged once written, before the sync
//! ([`ReadDurability::Written`], the default): they then survive the gateway process
//! dying, and are synced within a few milliseconds, or at once when a statement that
//! must wait for the sync comes along. On this project's VM a sync costs ~110 µs of CPU
//! and 200–350 µs of wall time, more than the rest of a read's trip through Airlock.
//!
//! Invariant: a caller that holds a [`Receipt`] from [`Recorder::record`] or
//! [`Recorder::submit`] knows its events are durable. Nothing
//! is dropped: the queue is bounded, so a slow disk slows the sessions down instead of
//! losing events, and a write that fails is reported to every waiting caller and
//! leaves the recorder refusing further work (fail closed) until the journal and the
//! store both work again, which it finds out by itself (`health`). Records refused
//! meanwhile leave no trace in the chain: their places are given to the next records.

mod chain;
mod health;
mod ingest;
mod journal;
mod queue;
mod verify;
mod writer;

pub use chain::{AUDIT_KEY_CHECK, ChainKey, GENESIS_HASH, audit_key_check, chain_hash};
pub use journal::JournalError;
pub use verify::{ChainProblem, SessionVerdict, VerifyReport, verify_chain, verify_session};
pub use writer::{Pending, ReadDurability, Receipt, Recorder, RecorderHealth};

use airlock_model::{EventKind, SessionSummary, Timestamp};

/// One write submitted to the recorder.
#[derive(Debug, Clone)]
pub enum Record {
    /// A new session.
    StartSession(SessionSummary),
    /// An event of a session; chained by the writer.
    Event(NewEvent),
    /// The session ended.
    EndSession {
        /// Session id.
        id: String,
        /// When.
        at: Timestamp,
    },
}

/// An event before it has a place in the chain.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Session id. The writer numbers a session's events (`seq`) in chain order.
    pub session_id: String,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
    /// Statement text, for statement events.
    pub statement: Option<String>,
    /// Decision label, for statement events.
    pub decision: Option<&'static str>,
    /// Kind-specific detail.
    pub detail: serde_json::Value,
}

/// Why recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The journal or the store refused a write; the recorder refuses everything until
    /// both work again (it probes them by itself).
    #[error("the session recorder cannot write to the store: {0}")]
    Unavailable(String),
    /// The recorder was shut down.
    #[error("the session recorder has stopped")]
    Stopped,
    /// The session already ended; nothing more is recorded for it.
    #[error("the session has ended")]
    SessionEnded,
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] airlock_store::StoreError),
    /// The journal cannot be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
}
