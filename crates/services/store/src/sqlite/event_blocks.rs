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

use serde::Deserialize;

use crate::{ChainedEvent, StoreError};

/// A block's events all have ids below its `first_id` plus this.
pub(crate) const MAX_SPAN: i64 = 1 << 16;
/// At most this many events go in one block (bounds the text a reader decodes for one
/// old event, and a block's size: a few hundred kB).
pub(crate) const MAX_EVENTS: usize = 2048;

/// One event as read from a block. A block holds the recorder journal's own lines
/// ([`crate::StoreOp::Event`] objects, so also `"op"` and `"session_id"`), written once
/// by the journal and stored as they are; fields other than these are ignored.
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
    json: String,
}

impl BlockBuilder {
    /// A block starting with event `id`, whose JSON object is `json`.
    pub(crate) fn new(id: i64, json: &str) -> Self {
        let mut block = BlockBuilder {
            first_id: id,
            last_id: id,
            count: 0,
            json: String::with_capacity(4096),
        };
        block.json.push('[');
        block.push(id, json);
        block
    }

    /// Whether event `id` (of this block's session, later in the chain) may join it.
    pub(crate) fn takes(&self, id: i64) -> bool {
        self.count < MAX_EVENTS && id > self.last_id && id - self.first_id < MAX_SPAN
    }

    /// Appends event `id`; the caller has checked [`BlockBuilder::takes`].
    pub(crate) fn push(&mut self, id: i64, json: &str) {
        if self.count > 0 {
            self.json.push(',');
        }
        self.json.push_str(json);
        self.count += 1;
        self.last_id = id;
    }

    /// The block's `events` text.
    pub(crate) fn finish(mut self) -> String {
        self.json.push(']');
        self.json
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
    use crate::StoreOp;

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

    fn line(e: &ChainedEvent) -> String {
        serde_json::to_string(&StoreOp::Event(e.clone())).unwrap()
    }

    #[test]
    fn a_block_of_journal_lines_reads_back_every_field_exactly() {
        let events = [
            event(5, Some("select 'it''s' -- ünïcode \u{1}")),
            event(9, None),
        ];
        let mut block = BlockBuilder::new(5, &line(&events[0]));
        assert!(block.takes(9));
        block.push(9, &line(&events[1]));
        assert_eq!((block.first_id, block.last_id), (5, 9));
        let text = block.finish();
        assert_eq!(decode("s", &text).unwrap(), events);
    }

    #[test]
    fn blocks_are_bounded_in_span_and_size() {
        let mut block = BlockBuilder::new(1, "{}");
        assert!(!block.takes(1 + MAX_SPAN));
        assert!(block.takes(MAX_SPAN));
        assert!(!block.takes(1), "ids only grow within a block");
        for id in 2..=MAX_EVENTS as i64 {
            block.push(id, "{}");
        }
        assert!(!block.takes(MAX_EVENTS as i64 + 1));
    }

    #[test]
    fn a_damaged_block_is_an_error_naming_the_session() {
        let err = decode("s9", "[{\"id\":1}").unwrap_err();
        assert!(err.to_string().contains("s9"), "{err}");
    }
}
