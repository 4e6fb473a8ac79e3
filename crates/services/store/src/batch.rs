//! A batch of store operations encoded once: the recorder's journal writes its text,
//! and the ingest thread stores the same text, so that no event is turned into JSON
//! twice and its fields are not carried (and freed) on the ingest thread.

use std::ops::Range;

use airlock_model::{SessionMarks, SessionSummary, Timestamp};

use crate::{StoreError, StoreOp};

/// Operations as JSON lines (the journal's format, one [`StoreOp`] per line) and what
/// a store needs to file each without decoding it.
#[derive(Debug, Clone, Default)]
pub struct EncodedBatch {
    text: String,
    ops: Vec<EncodedOp>,
}

/// One operation of an [`EncodedBatch`].
#[derive(Debug, Clone, PartialEq)]
pub enum EncodedOp {
    /// A new session row.
    StartSession(SessionSummary),
    /// An event: its chain position, its session, and where its JSON object (a
    /// [`StoreOp::Event`] line without the newline) is in the batch's text.
    Event {
        /// Chain position.
        id: i64,
        /// The session it belongs to.
        session_id: String,
        /// Its JSON object in [`EncodedBatch::text`].
        json: Range<usize>,
        /// What it marks its session with.
        marks: SessionMarks,
    },
    /// A session ended.
    EndSession {
        /// Session id.
        id: String,
        /// When.
        at: Timestamp,
    },
}

impl EncodedBatch {
    /// Encodes `ops`, in order.
    pub fn encode(ops: Vec<StoreOp>) -> Result<Self, StoreError> {
        let mut text = Vec::with_capacity(ops.len() * 512);
        let mut encoded = Vec::with_capacity(ops.len());
        for op in ops {
            let start = text.len();
            serde_json::to_writer(&mut text, &op).map_err(|e| StoreError::Corrupt {
                what: "store operation",
                detail: e.to_string(),
            })?;
            let json = start..text.len();
            text.push(b'\n');
            encoded.push(match op {
                StoreOp::StartSession(s) => EncodedOp::StartSession(s),
                StoreOp::Event(e) => EncodedOp::Event {
                    id: e.id,
                    marks: crate::marks::event_marks(&e),
                    session_id: e.session_id,
                    json,
                },
                StoreOp::EndSession { id, at } => EncodedOp::EndSession { id, at },
            });
        }
        // serde_json writes UTF-8 only; checked rather than assumed.
        let text = String::from_utf8(text).map_err(|e| StoreError::Corrupt {
            what: "store operation",
            detail: e.to_string(),
        })?;
        Ok(EncodedBatch { text, ops: encoded })
    }

    /// The JSON lines, each ending in a newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[EncodedOp] {
        &self.ops
    }

    /// The JSON object of an event of this batch (empty for a range not in it).
    pub fn json(&self, range: &Range<usize>) -> &str {
        self.text.get(range.clone()).unwrap_or_default()
    }

    /// Whether it holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many operations it holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChainedEvent;

    #[test]
    fn each_event_is_found_as_its_own_journal_line() {
        let event = |id: i64| {
            StoreOp::Event(ChainedEvent {
                id,
                session_id: "s".into(),
                seq: id,
                at: "2026-11-27T00:00:00Z".into(),
                kind: "query".into(),
                statement: Some("select 'é\n'".into()),
                decision: Some("allow".into()),
                detail: "{}".into(),
                prev_hash: "p".into(),
                hash: "h".into(),
            })
        };
        let ops = vec![
            event(1),
            StoreOp::EndSession {
                id: "s".into(),
                at: Timestamp::now(),
            },
            event(2),
        ];
        let batch = EncodedBatch::encode(ops.clone()).unwrap();
        let lines: Vec<StoreOp> = batch
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, ops);
        let EncodedOp::Event { id, json, .. } = &batch.ops()[2] else {
            panic!("an event");
        };
        assert_eq!(*id, 2);
        let back: StoreOp = serde_json::from_str(batch.json(json)).unwrap();
        assert_eq!(back, ops[2]);
    }
}
