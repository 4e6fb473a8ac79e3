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
use std::sync::LazyLock;
use std::time::Duration;

use airlock_model::Timestamp;
use rusqlite::{Connection, OpenFlags, params};

use crate::{EventLog, StoreError, StoreOp};

/// Copies recorder batches into `airlock.db`.
pub struct SqliteEventLog {
    conn: Connection,
}

/// Events stored by one `INSERT` (a multi-row `VALUES` list): under load the ingest
/// thread stores thousands of events a second, and one statement per row spent about a
/// third of its time on per-statement work (step, reset, binding bookkeeping).
const EVENTS_PER_INSERT: usize = 32;

/// The columns of `events`, in the order [`insert_events`] binds them.
const EVENT_COLUMNS: usize = 10;

/// `INSERT INTO events` with `rows` rows of placeholders.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", ["?"; EVENT_COLUMNS].join(", "));
    format!(
        "INSERT INTO events (id, session_id, seq, at, kind, statement, decision, detail, prev_hash, hash) VALUES {}",
        vec![row; rows].join(", ")
    )
}

static INSERT_ONE: LazyLock<String> = LazyLock::new(|| insert_sql(1));
static INSERT_MANY: LazyLock<String> = LazyLock::new(|| insert_sql(EVENTS_PER_INSERT));

/// Inserts `events` (at most [`EVENTS_PER_INSERT`]): a full chunk with one statement,
/// fewer one by one, so that the connection caches two statements, not one per count.
fn insert_events(
    tx: &rusqlite::Transaction<'_>,
    events: &[&crate::ChainedEvent],
) -> Result<(), rusqlite::Error> {
    if events.len() == EVENTS_PER_INSERT {
        return insert_rows(tx, &INSERT_MANY, events);
    }
    for e in events {
        insert_rows(tx, &INSERT_ONE, std::slice::from_ref(e))?;
    }
    Ok(())
}

/// Runs `sql` (built by [`insert_sql`] for `events.len()` rows) with `events` bound.
fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    events: &[&crate::ChainedEvent],
) -> Result<(), rusqlite::Error> {
    let mut insert = tx.prepare_cached(sql)?;
    let mut at = 0;
    let mut bind = |value: &dyn rusqlite::ToSql| -> Result<(), rusqlite::Error> {
        at += 1;
        insert.raw_bind_parameter(at, value)
    };
    for e in events {
        bind(&e.id)?;
        bind(&e.session_id)?;
        bind(&e.seq)?;
        bind(&e.at)?;
        bind(&e.kind)?;
        bind(&e.statement)?;
        bind(&e.decision)?;
        bind(&e.detail)?;
        bind(&e.prev_hash)?;
        bind(&e.hash)?;
    }
    insert.raw_execute().map(|_| ())
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
            let mut end = tx.prepare_cached(
                "UPDATE sessions SET ended_at = ?1 WHERE id = ?2 AND ended_at IS NULL",
            )?;
            let mut events = Vec::with_capacity(EVENTS_PER_INSERT);
            for op in ops {
                match op {
                    StoreOp::Event(e) => {
                        events.push(e);
                        if events.len() == EVENTS_PER_INSERT {
                            insert_events(&tx, &events)?;
                            events.clear();
                        }
                        continue;
                    }
                    // Everything else in journal order: events queued so far go first.
                    _ if !events.is_empty() => {
                        insert_events(&tx, &events)?;
                        events.clear();
                    }
                    _ => {}
                }
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
                    StoreOp::EndSession { id, at } => {
                        end.execute(params![at.to_string(), id])?;
                    }
                    StoreOp::Event(_) => {}
                }
            }
            if !events.is_empty() {
                insert_events(&tx, &events)?;
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
