//! The recorder's ingest path on PostgreSQL: one connection, owned by the recorder's
//! ingest thread (a plain thread, not a task), driven by a small current-thread tokio
//! runtime of its own. Both are made on the first call, on that thread: the store hands
//! out the writer from inside the gateway's runtime, where no other runtime may start.
//!
//! A call stores a whole ingest batch in one transaction with a handful of statements
//! (each kind of row sent as arrays and spread by `UNNEST`), not a round trip per
//! event. Commits are durable when they return (PostgreSQL syncs its WAL on commit), so
//! [`EventLog::make_durable`] only notes the journal segment as stored.
//!
//! In a gateway (which claims the store, see [`super::writer_claim`]) every write first
//! checks that the claim still holds the writer lock, and stores nothing otherwise.
//!
//! Replaying a journal after a crash meets rows stored before it: sessions and events
//! already there are skipped (`ON CONFLICT DO NOTHING`), a session ended before keeps
//! its first end, and marks are only ever added.

use std::collections::{HashMap, HashSet};

use airlock_model::{SessionMarks, Timestamp};
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgExecutor};
use tokio::runtime::Runtime;

use super::writer_claim::{Held, Holder, holds_lock};
use crate::{EncodedBatch, EncodedOp, EventLog, StoreError};

/// Events sent in one INSERT (bounds a statement's size on large batches).
const EVENTS_PER_INSERT: usize = 4096;

/// Copies recorder batches into the PostgreSQL store's tables.
pub struct PgEventLog {
    options: PgConnectOptions,
    /// The server, without the password, for errors.
    location: String,
    /// Whether this process holds the writer lock.
    writer: std::sync::Arc<Holder>,
    runtime: Option<Runtime>,
    conn: Option<PgConnection>,
    /// The marks each open session's row is known to carry, so that a row is updated
    /// only when an event sets a new one (once or twice per session, not per batch).
    marked: HashMap<String, SessionMarks>,
}

impl std::fmt::Debug for PgEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not derived: the connect options hold the password.
        f.debug_struct("PgEventLog")
            .field("location", &self.location)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

/// An event's columns, read from its journal line (a [`crate::StoreOp::Event`] object;
/// other members are ignored).
#[derive(Deserialize)]
struct EventIn {
    id: i64,
    session_id: String,
    seq: i64,
    at: String,
    kind: String,
    statement: Option<String>,
    decision: Option<String>,
    detail: String,
    prev_hash: String,
    hash: String,
}

/// One ingest call's rows, as the columns the statements bind.
#[derive(Default)]
struct Rows<'a> {
    start_id: Vec<&'a str>,
    start_principal: Vec<Option<&'a str>>,
    start_target: Vec<&'a str>,
    start_protocol: Vec<&'a str>,
    start_client_addr: Vec<&'a str>,
    start_at: Vec<String>,
    start_ended_at: Vec<Option<String>>,
    events: Vec<EventIn>,
    /// Marks new to a session's row, applied after its row exists.
    marks: HashMap<&'a str, SessionMarks>,
    /// Sessions ended, each once (the first end wins, as applied in order).
    end_id: Vec<&'a str>,
    end_at: Vec<String>,
}

impl<'a> Rows<'a> {
    fn collect(
        batches: &'a [EncodedBatch],
        known: &HashMap<String, SessionMarks>,
    ) -> Result<Self, StoreError> {
        let mut rows = Rows::default();
        let mut ended: HashSet<&str> = HashSet::new();
        for batch in batches {
            for op in batch.ops() {
                match op {
                    EncodedOp::StartSession(s) => {
                        rows.start_id.push(&s.id);
                        rows.start_principal.push(s.principal.as_deref());
                        rows.start_target.push(&s.target);
                        rows.start_protocol.push(&s.protocol);
                        rows.start_client_addr.push(&s.client_addr);
                        rows.start_at.push(s.started_at.to_string());
                        rows.start_ended_at.push(s.ended_at.map(|t| t.to_string()));
                    }
                    EncodedOp::Event {
                        session_id,
                        json,
                        marks,
                        ..
                    } => {
                        let event: EventIn =
                            serde_json::from_str(batch.json(json)).map_err(|e| {
                                StoreError::Corrupt {
                                    what: "recorder event",
                                    detail: format!("session {session_id}: {e}"),
                                }
                            })?;
                        rows.events.push(event);
                        if !marks.is_empty() {
                            let entry = rows.marks.entry(session_id).or_insert_with(|| {
                                known.get(session_id).copied().unwrap_or_default()
                            });
                            *entry = entry.union(*marks);
                        }
                    }
                    EncodedOp::EndSession { id, at } => {
                        if ended.insert(id) {
                            rows.end_id.push(id);
                            rows.end_at.push(at.to_string());
                        }
                    }
                }
            }
        }
        rows.marks.retain(|id, m| known.get(*id) != Some(m));
        Ok(rows)
    }

    /// Stores the rows in one transaction.
    async fn store(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let mut tx = conn.begin().await?;
        if !self.start_id.is_empty() {
            sqlx::query(
                "INSERT INTO sessions (id, principal, target, protocol, client_addr, started_at, ended_at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::text[])
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&self.start_id)
            .bind(&self.start_principal)
            .bind(&self.start_target)
            .bind(&self.start_protocol)
            .bind(&self.start_client_addr)
            .bind(&self.start_at)
            .bind(&self.start_ended_at)
            .execute(&mut *tx)
            .await?;
        }
        for chunk in self.events.chunks(EVENTS_PER_INSERT) {
            insert_events(&mut *tx, chunk).await?;
        }
        if !self.marks.is_empty() {
            let (mut id, mut denied, mut held, mut masked, mut error) =
                (vec![], vec![], vec![], vec![], vec![]);
            for (session, m) in &self.marks {
                id.push(*session);
                denied.push(m.denied);
                held.push(m.held);
                masked.push(m.masked);
                error.push(m.error);
            }
            sqlx::query(
                "UPDATE sessions AS s SET denied = s.denied OR m.denied, held = s.held OR m.held,
                   masked = s.masked OR m.masked, error = s.error OR m.error
                 FROM UNNEST($1::text[], $2::bool[], $3::bool[], $4::bool[], $5::bool[])
                   AS m(id, denied, held, masked, error)
                 WHERE s.id = m.id",
            )
            .bind(id)
            .bind(denied)
            .bind(held)
            .bind(masked)
            .bind(error)
            .execute(&mut *tx)
            .await?;
        }
        if !self.end_id.is_empty() {
            sqlx::query(
                "UPDATE sessions AS s SET ended_at = e.at
                 FROM UNNEST($1::text[], $2::text[]) AS e(id, at)
                 WHERE s.id = e.id AND s.ended_at IS NULL",
            )
            .bind(&self.end_id)
            .bind(&self.end_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}

async fn insert_events(conn: impl PgExecutor<'_>, events: &[EventIn]) -> Result<(), sqlx::Error> {
    let mut id = Vec::with_capacity(events.len());
    let mut session_id = Vec::with_capacity(events.len());
    let mut seq = Vec::with_capacity(events.len());
    let mut at = Vec::with_capacity(events.len());
    let mut kind = Vec::with_capacity(events.len());
    let mut statement = Vec::with_capacity(events.len());
    let mut decision = Vec::with_capacity(events.len());
    let mut detail = Vec::with_capacity(events.len());
    let mut prev_hash = Vec::with_capacity(events.len());
    let mut hash = Vec::with_capacity(events.len());
    for e in events {
        id.push(e.id);
        session_id.push(e.session_id.as_str());
        seq.push(e.seq);
        at.push(e.at.as_str());
        kind.push(e.kind.as_str());
        statement.push(e.statement.as_deref());
        decision.push(e.decision.as_deref());
        detail.push(e.detail.as_str());
        prev_hash.push(e.prev_hash.as_str());
        hash.push(e.hash.as_str());
    }
    sqlx::query(
        "INSERT INTO events (id, session_id, seq, at, kind, statement, decision, detail, prev_hash, hash)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(session_id)
    .bind(seq)
    .bind(at)
    .bind(kind)
    .bind(statement)
    .bind(decision)
    .bind(detail)
    .bind(prev_hash)
    .bind(hash)
    .execute(conn)
    .await?;
    Ok(())
}

fn write_error(e: sqlx::Error) -> StoreError {
    StoreError::Write(e.to_string())
}

impl PgEventLog {
    /// A writer that connects with `options` on its first call (`location` names the
    /// server in errors), and writes only while `writer` says the lock is held.
    pub(super) fn new(
        options: PgConnectOptions,
        location: String,
        writer: std::sync::Arc<Holder>,
    ) -> Self {
        PgEventLog {
            options,
            location,
            writer,
            runtime: None,
            conn: None,
            marked: HashMap::new(),
        }
    }

    /// The runtime and the connection, made if needed. Must not be called from async
    /// code (a runtime cannot be driven inside another one): from a plain thread, or
    /// `spawn_blocking`.
    fn connected(&mut self) -> Result<(&Runtime, &mut PgConnection), StoreError> {
        let runtime = match &mut self.runtime {
            Some(rt) => rt,
            none => none.insert(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        StoreError::Write(format!(
                            "cannot start the recorder's PostgreSQL runtime: {e}"
                        ))
                    })?,
            ),
        };
        let conn = match &mut self.conn {
            Some(conn) => conn,
            none => none.insert(
                runtime
                    .block_on(PgConnection::connect_with(&self.options))
                    .map_err(|source| StoreError::Open {
                        location: self.location.clone(),
                        source,
                    })?,
            ),
        };
        Ok((runtime, conn))
    }
}

impl PgEventLog {
    /// `Ok` when this process may write: it made no claim (the CLI, tests), or its
    /// claim's connection holds the writer lock.
    fn may_write(&mut self) -> Result<(), StoreError> {
        let pid = match self.writer.get() {
            Held::Unclaimed => return Ok(()),
            Held::By(pid) => pid,
            Held::Lost => {
                return Err(StoreError::Write(
                    "this gateway lost the store's writer lock with its connection (the store restarted?) and is taking it again".into(),
                ));
            }
            Held::Forfeited => {
                return Err(StoreError::Busy {
                    location: self.location.clone(),
                    why: "it took the writer lock while this gateway had lost it; restart this gateway (the event chain has one writer)".into(),
                });
            }
        };
        let chain = self.writer.chain();
        let (runtime, conn) = self.connected()?;
        match runtime.block_on(holds_lock(conn, pid, chain)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreError::Write(
                "this gateway no longer holds the store's writer lock (the store restarted?) and is taking it again".into(),
            )),
            Err(e) => {
                self.conn = None;
                Err(write_error(e))
            }
        }
    }
}

impl EventLog for PgEventLog {
    fn apply(&mut self, batches: &[EncodedBatch]) -> Result<(), StoreError> {
        let rows = Rows::collect(batches, &self.marked)?;
        self.may_write()?;
        let (runtime, conn) = self.connected()?;
        if let Err(e) = runtime.block_on(rows.store(conn)) {
            // The transaction is rolled back: nothing of the batch is stored. The
            // connection may be broken; the next call makes a new one.
            self.conn = None;
            return Err(write_error(e));
        }
        for (id, m) in rows.marks {
            self.marked.insert(id.to_owned(), m);
        }
        for id in rows.end_id {
            self.marked.remove(id);
        }
        Ok(())
    }

    fn make_durable(&mut self, segment: u64) -> Result<(), StoreError> {
        let (runtime, conn) = self.connected()?;
        let result = runtime.block_on(
            sqlx::query(
                "INSERT INTO recorder_segments (segment, ingested_at) VALUES ($1, $2)
                 ON CONFLICT (segment) DO UPDATE SET ingested_at = excluded.ingested_at",
            )
            .bind(i64::try_from(segment).unwrap_or(i64::MAX))
            .bind(Timestamp::now().to_string())
            .execute(conn),
        );
        if let Err(e) = result {
            self.conn = None;
            return Err(write_error(e));
        }
        Ok(())
    }
}

impl Drop for PgEventLog {
    fn drop(&mut self) {
        let conn = self.conn.take();
        if let Some(runtime) = self.runtime.take() {
            // Say goodbye to the server when this thread may block; just drop the
            // socket otherwise.
            if let Some(conn) = conn
                && tokio::runtime::Handle::try_current().is_err()
            {
                let _ = runtime.block_on(conn.close());
            }
            runtime.shutdown_background();
        }
    }
}
