//! What the relay's two directions share: the server's transaction status and the
//! answers it still owes, the gate on answers to reads not yet durable, the refusals
//! waiting for their marker, and (masking only) whose answer each result description is.
//!
//! Both directions lock the state only briefly and never across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use airlock_engine::masking::rules::Apply;
use airlock_engine::sql::CopyOut;
use airlock_session::Pending;
use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::Notify;

use crate::codec::backend;
use crate::error::PostgresError;
use crate::reply::Reply;
use crate::stream::BoxIo;

/// The relay's state, read and changed by both directions through [`Shared::with`].
pub(super) struct State {
    /// Queries and Syncs forwarded whose ReadyForQuery has not come back yet.
    pub(super) outstanding: u64,
    /// Transaction status from the last ReadyForQuery.
    pub(super) tx_status: u8,
    /// When the statement now running was sent (or the previous one finished).
    pub(super) mark: Instant,
    /// The client was last sent part of a frame: anything Airlock wrote now would land
    /// inside it, so the session can only be closed, not answered.
    pub(super) mid_frame: bool,
    /// The server's `standard_conforming_strings`, which changes how text parses.
    pub(super) standard_conforming_strings: bool,
    /// Refusals waiting for the server's error at their marker (see `refuse_in_order`).
    pub(super) denials: HashMap<String, Reply>,
    /// The server→client side is waiting for the server with no partial frame in
    /// hand: the connection could be handed to another session.
    pub(super) upstream_clean: bool,
    /// Extended-protocol messages were sent since the last Sync: the server holds an
    /// implicit transaction that a later simple query could commit, so the connection
    /// is not reused.
    pub(super) extended_open: bool,
    /// Records of reads already sent to the server but not yet durable: nothing more
    /// reaches the client until they are. Only the newest is kept; the recorder
    /// commits in order, so it being durable means every earlier one is.
    pub(super) gate: Option<Pending>,
    /// Masking sessions only: the messages forwarded whose answers say which result
    /// description is current (see [`Expect`]).
    pub(super) expect: VecDeque<Expect>,
}

/// A forwarded message whose answer the server→client side must place, when masking:
/// every Execute is preceded by a Describe of its portal that Airlock adds, so the rows
/// that follow are always described by the last RowDescription; the answer to an added
/// Describe is dropped. After an error the server skips to the Sync, so the entries
/// before it are dropped at the ReadyForQuery.
#[derive(Debug, Clone)]
pub(super) enum Expect {
    /// A Describe, answered by RowDescription or NoData; `added` by Airlock before an
    /// Execute, with what that execution's result is made of.
    Describe {
        added: bool,
        made_of: Option<ResultFacts>,
    },
    /// A Sync, answered by ReadyForQuery.
    Sync,
    /// A simple Query: its RowDescriptions pass, ReadyForQuery ends it.
    Query(ResultFacts),
}

/// What the masking side needs to know of the statements behind a result.
#[derive(Debug, Clone, Default)]
pub(super) struct ResultFacts {
    /// The rule that masks computed columns (made from a masked column), if any.
    pub(super) computed: Option<Apply>,
    /// The `COPY ... TO STDOUT` statements, in order, each with the rule for its
    /// computed columns.
    pub(super) copies: VecDeque<(CopyOut, Option<Apply>)>,
}

/// What both directions hold: the state, the wake-up for [`Shared::wait_idle`], and the
/// client's write half (Airlock's own replies and the server's frames take turns on it).
pub(super) struct Shared {
    state: Mutex<State>,
    pub(super) idle: Notify,
    pub(super) client_wr: tokio::sync::Mutex<WriteHalf<BoxIo>>,
}

impl Shared {
    /// The state of a relay that has just started: the server idle and owed nothing.
    pub(super) fn new(client_wr: WriteHalf<BoxIo>, standard_conforming_strings: bool) -> Self {
        Shared {
            state: Mutex::new(State {
                outstanding: 0,
                tx_status: b'I',
                mark: Instant::now(),
                mid_frame: false,
                standard_conforming_strings,
                denials: HashMap::new(),
                gate: None,
                upstream_clean: true,
                extended_open: false,
                expect: VecDeque::new(),
            }),
            idle: Notify::new(),
            client_wr: tokio::sync::Mutex::new(client_wr),
        }
    }

    /// Runs `f` on the state under its lock (a poisoned lock is used as it is).
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        match self.state.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Waits until the records of statements already forwarded are durable.
    pub(super) async fn pass_gate(&self) -> Result<(), PostgresError> {
        if let Some(pending) = self.with(|s| s.gate.take()) {
            pending.await?;
        }
        Ok(())
    }

    /// Writes to the client. Callers pass the gate first when `bytes` may carry data.
    pub(super) async fn write_client(&self, bytes: &[u8]) -> Result<(), PostgresError> {
        let mut w = self.client_wr.lock().await;
        w.write_all(bytes).await?;
        w.flush().await?;
        Ok(())
    }

    /// Sends Airlock's own replies to the client, then ReadyForQuery if `ready`.
    pub(super) async fn reply(&self, replies: &[Reply], ready: bool) -> Result<(), PostgresError> {
        let mut out = BytesMut::new();
        for r in replies {
            r.encode(&mut out);
        }
        if ready {
            let status = self.with(|s| s.tx_status);
            backend::put_ready(&mut out, status);
        }
        // Airlock's own words carry no data: they never wait at the gate (the last
        // words after a recorder failure must get out even though the gate failed).
        self.write_client(&out).await
    }

    /// Waits until the server owes the client nothing.
    pub(super) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.with(|s| s.outstanding == 0) {
                return;
            }
            notified.await;
        }
    }
}
