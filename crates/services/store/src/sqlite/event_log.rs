//! The recorder's ingest path on SQLite: one blocking connection, owned by the
//! recorder's ingest thread, that copies journalled records into the tables readers use
//! (events in blocks, see [`super::event_blocks`]).
//!
//! Why not through sqlx like the rest of the store: sqlx runs SQLite on a worker thread
//! and every query (BEGIN, each INSERT, COMMIT) is a round trip to it. The recorder
//! writes on every statement of every session, so this path uses `rusqlite` (the same
//! bundled SQLite library) directly, with prepared statements kept across batches.
//!
//! Durability: records reach this connection only after the recorder's journal has
//! made them durable, so batches commit with `synchronous = NORMAL` (no fsync per
//! commit). [`EventLog::make_durable`] commits with `FULL`, which syncs the WAL and so
//! everything before it; only then may the recorder delete the journal segment.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use airlock_model::{SessionMarks, Timestamp};
use rusqlite::{Connection, OpenFlags, params};

use super::event_blocks::BlockBuilder;
use crate::{EncodedBatch, EncodedOp, EventLog, StoreError};

/// Copies recorder batches into `airlock.db`.
pub struct SqliteEventLog {
    conn: Connection,
    /// The marks each open session's row is known to carry, so that a row is updated
    /// only when an event sets a new one (once or twice per session, not per event).
    marked: HashMap<String, SessionMarks>,
}

fn write_error(e: rusqlite::Error) -> StoreError {
    StoreError::Write(e.to_string())
}

impl SqliteEventLog {
    /// Opens a writer on the (already migrated) store file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Write(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(write_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(write_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(write_error)?;
        Ok(SqliteEventLog {
            conn,
            marked: HashMap::new(),
        })
    }

    fn apply_inner(&mut self, batches: &[EncodedBatch]) -> Result<(), rusqlite::Error> {
        let tx = self.conn.transaction()?;
        // Marks new to a session's row in this batch, applied after its rows exist;
        // `self.marked` learns them only once the transaction commits.
        let mut new_marks: HashMap<&str, SessionMarks> = HashMap::new();
        let mut ended: Vec<&str> = Vec::new();
        {
            // OR IGNORE: replaying a journal after a crash may meet sessions stored
            // before it; events are filtered by chain position by the caller.
            let mut start = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO sessions (id, principal, target, protocol, client_addr, started_at, ended_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
            let mut block = tx
                .prepare_cached(
                    "INSERT INTO event_blocks (first_id, last_id, session_id, events) VALUES (?1, ?2, ?3, ?4)",
                )?;
            let mut end = tx.prepare_cached(
                "UPDATE sessions SET ended_at = ?1 WHERE id = ?2 AND ended_at IS NULL",
            )?;
            // Each session's events of the batch, in chain order; a block full or too
            // wide is stored and a new one started.
            let mut open: HashMap<&str, BlockBuilder> = HashMap::new();
            let mut done: Vec<(&str, BlockBuilder)> = Vec::new();
            for batch in batches {
                for op in batch.ops() {
                    match op {
                        EncodedOp::StartSession(s) => {
                            start.execute(params![
                                s.id,
                                s.principal,
                                s.target,
                                s.protocol,
                                s.client_addr,
                                s.started_at.to_string(),
                                s.ended_at.map(|t| t.to_string()),
                            ])?;
                        }
                        EncodedOp::Event {
                            id,
                            session_id,
                            json,
                            marks,
                        } => {
                            if !marks.is_empty() {
                                let known = self
                                    .marked
                                    .get(session_id.as_str())
                                    .copied()
                                    .unwrap_or_default();
                                let entry = new_marks.entry(session_id).or_insert(known);
                                *entry = entry.union(*marks);
                            }
                            let json = batch.json(json);
                            match open.get_mut(session_id.as_str()) {
                                Some(b) if b.takes(*id) => b.push(*id, json),
                                _ => {
                                    let fresh = BlockBuilder::new(*id, json);
                                    if let Some(full) = open.insert(session_id, fresh) {
                                        done.push((session_id, full));
                                    }
                                }
                            }
                        }
                        EncodedOp::EndSession { id, at } => {
                            end.execute(params![at.to_string(), id])?;
                            ended.push(id);
                        }
                    }
                }
            }
            done.extend(open);
            // In key order: appending to the table's b-tree is its cheapest insert.
            done.sort_unstable_by_key(|(_, b)| b.first_id);
            for (session_id, b) in done {
                let (first, last) = (b.first_id, b.last_id);
                block.execute(params![first, last, session_id, b.finish()])?;
            }
            let mut mark = tx.prepare_cached(
                "UPDATE sessions SET denied = max(denied, ?1), held = max(held, ?2),
                 masked = max(masked, ?3), error = max(error, ?4) WHERE id = ?5",
            )?;
            new_marks.retain(|id, m| self.marked.get(*id) != Some(m));
            for (id, m) in &new_marks {
                mark.execute(params![m.denied, m.held, m.masked, m.error, id])?;
            }
        }
        tx.commit()?;
        for (id, m) in new_marks {
            self.marked.insert(id.to_owned(), m);
        }
        for id in ended {
            self.marked.remove(id);
        }
        Ok(())
    }

    fn make_durable_inner(&mut self, segment: u64) -> Result<(), rusqlite::Error> {
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let result = self.conn.execute(
            "INSERT OR REPLACE INTO recorder_segments (segment, ingested_at) VALUES (?1, ?2)",
            params![
                i64::try_from(segment).unwrap_or(i64::MAX),
                Timestamp::now().to_string()
            ],
        );
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        result.map(|_| ())
    }
}

impl EventLog for SqliteEventLog {
    fn apply(&mut self, batches: &[EncodedBatch]) -> Result<(), StoreError> {
        // On error the transaction is dropped, which rolls it back: nothing of the batch
        // is stored.
        self.apply_inner(batches).map_err(write_error)
    }

    fn make_durable(&mut self, segment: u64) -> Result<(), StoreError> {
        self.make_durable_inner(segment).map_err(write_error)
    }
}
