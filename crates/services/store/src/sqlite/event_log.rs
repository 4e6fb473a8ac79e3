//! The recorder's ingest path on SQLite: one blocking connection, owned by the
//! recorder's ingest thread, that copies journalled records into the tables readers use.
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

use std::path::Path;
use std::time::Duration;

use airlock_model::Timestamp;
use rusqlite::{Connection, OpenFlags, params};

use crate::{EventLog, StoreError, StoreOp};

/// Copies recorder batches into `airlock.db`.
pub struct SqliteEventLog {
    conn: Connection,
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
        Ok(SqliteEventLog { conn })
    }

    fn apply_inner(&mut self, ops: &[StoreOp]) -> Result<(), rusqlite::Error> {
        let tx = self.conn.transaction()?;
        {
            // OR IGNORE: replaying a journal after a crash may meet sessions stored
            // before it; events are filtered by chain position by the caller.
            let mut start = tx.prepare_cached(
                "INSERT OR IGNORE INTO sessions (id, principal, target, protocol, client_addr, started_at, ended_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut event = tx.prepare_cached(
                "INSERT INTO events (id, session_id, seq, at, kind, statement, decision, detail, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut end = tx.prepare_cached(
                "UPDATE sessions SET ended_at = ?1 WHERE id = ?2 AND ended_at IS NULL",
            )?;
            for op in ops {
                match op {
                    StoreOp::StartSession(s) => {
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
                    StoreOp::Event(e) => {
                        event.execute(params![
                            e.id,
                            e.session_id,
                            e.seq,
                            e.at,
                            e.kind,
                            e.statement,
                            e.decision,
                            e.detail,
                            e.prev_hash,
                            e.hash,
                        ])?;
                    }
                    StoreOp::EndSession { id, at } => {
                        end.execute(params![at.to_string(), id])?;
                    }
                }
            }
        }
        tx.commit()
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
    fn apply(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        // On error the transaction is dropped, which rolls it back: nothing of the batch
        // is stored.
        self.apply_inner(ops).map_err(write_error)
    }

    fn make_durable(&mut self, segment: u64) -> Result<(), StoreError> {
        self.make_durable_inner(segment).map_err(write_error)
    }
}
