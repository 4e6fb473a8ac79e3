//! How the event chain is laid out in SQLite: events in *blocks*, one row per session
//! per ingest batch, each holding that session's events of the batch as a JSON array.
//!
//! Why not one row per event: the recorder stores two events per statement (the
//! statement, then its result), and a row with its `(session_id, seq)` index entry cost
//! about 2 µs each on the ingest thread, a sixth of the gateway's CPU under
//! `pgbench -S` (docs/performance.md). A block costs one row and one index entry for
//! the hundreds of events a busy session makes in an ingest interval. The events keep
//! their fields as they were hashed, so `audit verify` works as before, and the
//! `events` view (migration 0005) still shows an operator one row per event.
//!
//! Finding events by chain position without an index per event: a block's events have
//! ids in `[first_id, first_id + MAX_SPAN)`, so the block holding id `n` has its
//! `first_id` (the primary key) in `(n - MAX_SPAN, n]`.

use serde::{Deserialize, Serialize};

use crate::{ChainedEvent, StoreError};

/// A block's events all have ids below its `first_id` plus this.
pub(crate) const MAX_SPAN: i64 = 1 << 16;
/// At most this many events go in one block (bounds the text a reader decodes for one
/// old event, and a block's size: a few hundred kB).
pub(crate) const MAX_EVENTS: usize = 2048;

/// One event inside a block: every field of [`ChainedEvent`] but the session, which is
/// the block's. Field names as in the old `events` table.
#[derive(Serialize)]
struct EventOut<'a> {
    id: i64,
    seq: i64,
    at: &'a str,
    kind: &'a str,
    statement: Option<&'a str>,
    decision: Option<&'a str>,
    detail: &'a str,
    prev_hash: &'a str,
    hash: &'a str,
}

#[derive(Deserialize)]
struct EventIn {
    id: i64,
    seq: i64,
    at: String,
    kind: String,
    statement: Option<String>,
    decision: Option<String>,
    detail: String,
    prev_hash: String,
    hash: String,
}

/// A block being filled: one session's events of one batch, in chain order.
pub(crate) struct BlockBuilder {
    pub(crate) first_id: i64,
    pub(crate) last_id: i64,
    count: usize,
    json: Vec<u8>,
}

impl BlockBuilder {
    /// A block starting with `event`.
    pub(crate) fn new(event: &ChainedEvent) -> Result<Self, StoreError> {
        let mut block = BlockBuilder {
            first_id: event.id,
            last_id: event.id,
            count: 0,
            json: Vec::with_capacity(4096),
        };
        block.json.push(b'[');
        block.push(event)?;
        Ok(block)
    }

    /// Whether `event` (of this block's session, later in the chain) may join it.
    pub(crate) fn takes(&self, event: &ChainedEvent) -> bool {
        self.count < MAX_EVENTS && event.id > self.last_id && event.id - self.first_id < MAX_SPAN
    }

    /// Appends `event`; the caller has checked [`BlockBuilder::takes`].
    pub(crate) fn push(&mut self, event: &ChainedEvent) -> Result<(), StoreError> {
        if self.count > 0 {
            self.json.push(b',');
        }
        let out = EventOut {
            id: event.id,
            seq: event.seq,
            at: &event.at,
            kind: &event.kind,
            statement: event.statement.as_deref(),
            decision: event.decision.as_deref(),
            detail: &event.detail,
            prev_hash: &event.prev_hash,
            hash: &event.hash,
        };
        serde_json::to_writer(&mut self.json, &out).map_err(|e| StoreError::Corrupt {
            what: "event",
            detail: e.to_string(),
        })?;
        self.count += 1;
        self.last_id = event.id;
        Ok(())
    }

    /// The block's `events` text.
    pub(crate) fn finish(mut self) -> Result<String, StoreError> {
        self.json.push(b']');
        String::from_utf8(self.json).map_err(|e| StoreError::Corrupt {
            what: "event block",
            detail: e.to_string(),
        })
    }
}

/// The events of one stored block, with `session_id` filled in.
pub(crate) fn decode(session_id: &str, events: &str) -> Result<Vec<ChainedEvent>, StoreError> {
    let events: Vec<EventIn> = serde_json::from_str(events).map_err(|e| StoreError::Corrupt {
        what: "event block",
        detail: format!("session {session_id}: {e}"),
    })?;
    Ok(events
        .into_iter()
        .map(|e| ChainedEvent {
            id: e.id,
            session_id: session_id.to_owned(),
            seq: e.seq,
            at: e.at,
            kind: e.kind,
            statement: e.statement,
            decision: e.decision,
            detail: e.detail,
            prev_hash: e.prev_hash,
            hash: e.hash,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, statement: Option<&str>) -> ChainedEvent {
        ChainedEvent {
            id,
            session_id: "s".into(),
            seq: id,
            at: "2026-11-27T00:00:00.000001Z".into(),
            kind: "query".into(),
            statement: statement.map(str::to_owned),
            decision: None,
            detail: "{\"quote\":\"\\\"\",\"n\":1}".into(),
            prev_hash: "00".into(),
            hash: "ff".into(),
        }
    }

    #[test]
    fn a_block_round_trips_every_field_exactly() {
        let events = [
            event(5, Some("select 'it''s' -- ünïcode \u{1}")),
            event(9, None),
        ];
        let mut block = BlockBuilder::new(&events[0]).unwrap();
        assert!(block.takes(&events[1]));
        block.push(&events[1]).unwrap();
        assert_eq!((block.first_id, block.last_id), (5, 9));
        let text = block.finish().unwrap();
        assert_eq!(decode("s", &text).unwrap(), events);
    }

    #[test]
    fn blocks_are_bounded_in_span_and_size() {
        let first = event(1, None);
        let mut block = BlockBuilder::new(&first).unwrap();
        assert!(!block.takes(&event(1 + MAX_SPAN, None)));
        assert!(block.takes(&event(MAX_SPAN, None)));
        assert!(!block.takes(&first), "ids only grow within a block");
        for id in 2..=MAX_EVENTS as i64 {
            block.push(&event(id, None)).unwrap();
        }
        assert!(!block.takes(&event(MAX_EVENTS as i64 + 1, None)));
    }

    #[test]
    fn a_damaged_block_is_an_error_naming_the_session() {
        let err = decode("s9", "[{\"id\":1}").unwrap_err();
        assert!(err.to_string().contains("s9"), "{err}");
    }
}
