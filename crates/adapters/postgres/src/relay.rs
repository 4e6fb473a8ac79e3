//! The relay: after startup, one future per direction inside the connection's task.
//!
//! Client → server: frames are scanned where they sit in the read buffer. Statement
//! messages (Query, Parse, Bind, Execute) are decided and recorded, one recorder round
//! per read, and the whole run of frames is written upstream in one write, without
//! copying. A run that may change anything is written only once its records are
//! durable. A run of plain reads (`airlock_engine::effects`) is written while its
//! records sync, and its answer is held back until they are durable (the *gate*): so
//! neither an effect nor an answer ever precedes its record. COPY data is streamed
//! through without buffering a whole frame.
//!
//! Server → client: frames are scanned for the few that matter (command completions,
//! errors, ReadyForQuery); data rows are counted and streamed through however large, so
//! memory stays bounded by the read buffer. Outcome events are queued before the frames
//! reach the client, so a statement's result is always recorded before the next
//! statement the client sends in reaction to it.
//!
//! A reply Airlock makes itself (a refused FunctionCall) must not overtake answers the
//! server still owes: the client direction waits until every Query/Sync it forwarded has
//! been answered with ReadyForQuery before writing its own reply.
#![deny(clippy::indexing_slicing)]

use std::sync::Mutex;
use std::time::Instant;

use airlock_approvals::StatementDigest;
use airlock_engine::effects::{changes_nothing, undone_unless_committed};
use airlock_engine::policy::FunctionCatalog;
use airlock_engine::sql::{Classifier, ParseOptions, SqlError, StatementEffect};
use airlock_model::{Action, Decision, EventKind, Verdict};
use airlock_session::{EventDraft, Held, HoldOutcome, HoldTicket, Pending, Session};
use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Notify, watch};

use crate::codec::{self, CodecError, backend, frontend};
use crate::error::PostgresError;
use crate::masking::columns::TableCache;
use crate::masking::{self, MAX_MASKED_FRAME, ResultMasking, messages, rows};
use crate::reply::{self, Reply};
use crate::stream::BoxIo;
use crate::syntax::{self, SyntaxAnswer};
use crate::translate::{self, Outcome, Prepared, Statements};
use airlock_engine::masking::redact::may_appear_in_mask;
use airlock_engine::masking::rules::Apply;
use airlock_engine::sql::{CopyOut, ResultShape};

/// Every refusal marker starts with this (see `ClientSide::refuse_in_order`).
const DENIAL_MARKER: &str = "airlock_denied_";

/// Read buffer size per direction.
const READ_CHUNK: usize = 64 * 1024;

/// Why a relay ended.
#[derive(Debug)]
pub enum End {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed its connection.
    ClientClosed,
    /// The server closed its connection.
    UpstreamClosed {
        /// Whether the server said why (a FATAL error) before closing.
        explained: bool,
    },
    /// The gateway is shutting down.
    Shutdown,
    /// Recording failed; the session was closed (fail closed).
    RecorderFailed,
    /// Recording a statement's outcome failed after the statement was forwarded (its
    /// own record is durable): the session was closed, and the client is told that the
    /// statement may have taken effect.
    OutcomeUnrecorded,
    /// The credential that opened the session expired or was revoked; the client was
    /// told why.
    CredentialEnded,
    /// Something broke.
    Failed(PostgresError),
}

impl End {
    /// The short reason stored with the disconnect event.
    pub fn reason(&self) -> String {
        match self {
            End::ClientTerminated => "client_terminated".into(),
            End::ClientClosed => "client_closed".into(),
            End::UpstreamClosed { .. } => "target_closed".into(),
            End::Shutdown => "gateway_shutdown".into(),
            End::RecorderFailed | End::OutcomeUnrecorded => "recorder_failed".into(),
            End::CredentialEnded => "credential_ended".into(),
            End::Failed(e) => format!("error: {e}"),
        }
    }
}

struct State {
    /// Queries and Syncs forwarded whose ReadyForQuery has not come back yet.
    outstanding: u64,
    /// Transaction status from the last ReadyForQuery.
    tx_status: u8,
    /// When the statement now running was sent (or the previous one finished).
    mark: Instant,
    /// The client was last sent part of a frame: anything Airlock wrote now would land
    /// inside it, so the session can only be closed, not answered.
    mid_frame: bool,
    /// The server's `standard_conforming_strings`, which changes how text parses.
    standard_conforming_strings: bool,
    /// Refusals waiting for the server's error at their marker (see `refuse_in_order`).
    denials: std::collections::HashMap<String, Reply>,
    /// The server→client side is waiting for the server with no partial frame in
    /// hand: the connection could be handed to another session.
    upstream_clean: bool,
    /// Extended-protocol messages were sent since the last Sync: the server holds an
    /// implicit transaction that a later simple query could commit, so the connection
    /// is not reused.
    extended_open: bool,
    /// Records of reads already sent to the server but not yet durable: nothing more
    /// reaches the client until they are. Only the newest is kept; the recorder
    /// commits in order, so it being durable means every earlier one is.
    gate: Option<Pending>,
    /// Masking sessions only: the messages forwarded whose answers say which result
    /// description is current (see [`Expect`]).
    expect: std::collections::VecDeque<Expect>,
}

/// A forwarded message whose answer the server→client side must place, when masking:
/// every Execute is preceded by a Describe of its portal that Airlock adds, so the rows
/// that follow are always described by the last RowDescription; the answer to an added
/// Describe is dropped. After an error the server skips to the Sync, so the entries
/// before it are dropped at the ReadyForQuery.
#[derive(Debug, Clone)]
enum Expect {
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
struct ResultFacts {
    /// The rule that masks computed columns (made from a masked column), if any.
    computed: Option<Apply>,
    /// The `COPY ... TO STDOUT` statements, in order, each with the rule for its
    /// computed columns.
    copies: std::collections::VecDeque<(CopyOut, Option<Apply>)>,
}

struct Shared {
    state: Mutex<State>,
    idle: Notify,
    client_wr: tokio::sync::Mutex<WriteHalf<BoxIo>>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        match self.state.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Waits until the records of statements already forwarded are durable.
    async fn pass_gate(&self) -> Result<(), PostgresError> {
        if let Some(pending) = self.with(|s| s.gate.take()) {
            pending.await?;
        }
        Ok(())
    }

    /// Writes to the client. Callers pass the gate first when `bytes` may carry data.
    async fn write_client(&self, bytes: &[u8]) -> Result<(), PostgresError> {
        let mut w = self.client_wr.lock().await;
        w.write_all(bytes).await?;
        w.flush().await?;
        Ok(())
    }

    async fn reply(&self, replies: &[Reply], ready: bool) -> Result<(), PostgresError> {
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
    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.with(|s| s.outstanding == 0) {
                return;
            }
            notified.await;
        }
    }
}

/// What the relay needs besides the two connections.
pub struct RelayContext<'a> {
    /// Parses statements (shared by the listener's sessions for its cache).
    pub classifier: &'a Classifier,
    /// The target's functions.
    pub catalog: &'a dyn FunctionCatalog,
    /// Tables looked up for masking.
    pub tables: &'a TableCache,
    /// The server's `standard_conforming_strings` at startup.
    pub standard_conforming_strings: bool,
    /// Keep the server connection for reuse: a client's Terminate is not passed on, and
    /// the connection is returned when the session ends with the server owing nothing.
    pub keep_upstream: bool,
}

/// Runs the relay until either side ends, the gateway shuts down, or recording fails.
/// `client_buf` holds bytes the client sent after its password (normally none).
/// Returns why it ended and, when `keep_upstream` is set and the client left with the
/// server owing nothing and no transaction open, the server connection and the bytes
/// read from it but not yet handled (normally none).
pub async fn run(
    context: RelayContext<'_>,
    session: &Session,
    client: BoxIo,
    client_buf: BytesMut,
    upstream: BoxIo,
    upstream_buf: BytesMut,
    mut shutdown: watch::Receiver<bool>,
) -> (End, Option<(BoxIo, BytesMut)>) {
    let (client_rd, client_wr) = tokio::io::split(client);
    let (mut up_rd, mut up_wr) = tokio::io::split(upstream);
    let mut upstream_buf = upstream_buf;
    let shared = Shared {
        state: Mutex::new(State {
            outstanding: 0,
            tx_status: b'I',
            mark: Instant::now(),
            mid_frame: false,
            standard_conforming_strings: context.standard_conforming_strings,
            denials: std::collections::HashMap::new(),
            gate: None,
            upstream_clean: true,
            extended_open: false,
            expect: std::collections::VecDeque::new(),
        }),
        idle: Notify::new(),
        client_wr: tokio::sync::Mutex::new(client_wr),
    };
    let client = ClientSide {
        session,
        shared: &shared,
        statements: Statements::default(),
        classifier: context.classifier,
        catalog: context.catalog,
        nonce: format!("{:016x}", rand::random::<u64>()),
        refusals: 0,
        barrier: false,
        barrier_at_sync: false,
        may_change: false,
        keep_upstream: context.keep_upstream,
        in_block: false,
        extended_open: false,
        masking: session.masker().is_some(),
        added: Vec::new(),
        facts: ResultFacts::default(),
        grant: None,
    };
    let c2s = client_to_server(client, client_rd, client_buf, &mut up_wr);
    let masking = session.masker().cloned().map(ResultMasking::new);
    let s2c = server_to_client(
        &shared,
        session,
        &mut up_rd,
        &mut upstream_buf,
        masking,
        context.tables,
    );
    let end = tokio::select! {
        e = c2s => e,
        e = s2c => e,
        _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => End::Shutdown,
    };
    let reusable = context.keep_upstream
        && matches!(end, End::ClientTerminated | End::ClientClosed)
        && shared.with(|s| {
            s.outstanding == 0 && s.tx_status == b'I' && s.upstream_clean && !s.extended_open
        });
    let last_words = match &end {
        _ if shared.with(|s| s.mid_frame) => None,
        End::RecorderFailed => Some(reply::recorder_unavailable("FATAL")),
        End::OutcomeUnrecorded => Some(reply::outcome_unrecorded()),
        End::Failed(PostgresError::Protocol(CodecError::TooLarge { .. })) => {
            Some(reply::message_too_large(codec::MAX_INSPECTED_FRONTEND))
        }
        End::UpstreamClosed { explained: false } => {
            Some(reply::upstream_lost(&session.target().model.name))
        }
        End::Shutdown => Some(Reply {
            severity: "FATAL",
            code: "57P01",
            message: "Airlock is shutting down".into(),
            detail: None,
            hint: Some("Reconnect in a moment.".into()),
            position: None,
        }),
        End::Failed(PostgresError::Protocol(e)) => Some(reply::protocol_violation(&e.to_string())),
        End::Failed(PostgresError::Unexpected(e)) => Some(reply::protocol_violation(e)),
        _ => None,
    };
    if let Some(r) = last_words {
        // The client may already be gone; nothing more to do then.
        let _ = shared.reply(&[r], false).await;
    }
    let mut w = shared.client_wr.lock().await;
    let _ = w.shutdown().await;
    let kept = reusable.then(|| (up_rd.unsplit(up_wr), upstream_buf));
    (end, kept)
}

// === client → server ===

async fn client_to_server(
    mut client: ClientSide<'_>,
    mut rd: ReadHalf<BoxIo>,
    mut buf: BytesMut,
    up: &mut WriteHalf<BoxIo>,
) -> End {
    let shared = client.shared;
    let session = client.session;
    // Bytes of a streamed (CopyData) frame still to pass through.
    let mut passthrough: usize = 0;
    loop {
        let mut drafts: Vec<EventDraft> = Vec::new();
        let mut syncs = 0u64;
        let mut forward = 0usize;
        let mut after: Option<After> = None;
        client.in_block = shared.with(|s| s.outstanding == 0 && s.tx_status == b'T');
        loop {
            let rest = buf.get(forward..).unwrap_or(&[]);
            if passthrough > 0 {
                let n = passthrough.min(rest.len());
                if n == 0 {
                    break;
                }
                forward += n;
                passthrough -= n;
                continue;
            }
            let h = match codec::header(rest) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return End::Failed(e.into()),
            };
            if h.tag == b'd' {
                // CopyData: stream it, complete or not.
                let n = h.frame_len.min(rest.len());
                forward += n;
                passthrough = h.frame_len - n;
                continue;
            }
            if h.frame_len > codec::MAX_INSPECTED_FRONTEND {
                return End::Failed(
                    CodecError::TooLarge {
                        tag: h.tag,
                        len: h.frame_len,
                        limit: codec::MAX_INSPECTED_FRONTEND,
                    }
                    .into(),
                );
            }
            let Some(body) = rest.get(5..h.frame_len) else {
                break;
            };
            match client.inspect(h.tag, body, &mut drafts) {
                Ok(Step::Forward { sync }) => {
                    if client.masking {
                        match h.tag {
                            b'Q' => {
                                let facts = std::mem::take(&mut client.facts);
                                client.expect(Expect::Query(facts));
                            }
                            b'S' => client.expect(Expect::Sync),
                            b'D' => client.expect(Expect::Describe {
                                added: false,
                                made_of: None,
                            }),
                            b'E' => {
                                // Describe the portal right before it runs: its rows are
                                // then masked by the right description.
                                let portal = frontend::execute(body).map(|(p, _)| p).unwrap_or("");
                                let mut describe = BytesMut::new();
                                let mut b = vec![b'P'];
                                b.extend_from_slice(portal.as_bytes());
                                b.push(0);
                                codec::put_message(&mut describe, b'D', &b);
                                client.added.push((forward, describe));
                                let facts = std::mem::take(&mut client.facts);
                                client.expect(Expect::Describe {
                                    added: true,
                                    made_of: Some(facts),
                                });
                            }
                            _ => {}
                        }
                    }
                    forward += h.frame_len;
                    syncs += u64::from(sync);
                    match h.tag {
                        b'S' => client.extended_open = false,
                        b'P' | b'B' | b'E' | b'D' | b'C' | b'H' => client.extended_open = true,
                        _ => {}
                    }
                    if client.barrier {
                        // What follows may parse differently once this has run.
                        client.barrier = false;
                        after = Some(After::Barrier);
                        break;
                    }
                }
                Ok(Step::Terminate) => {
                    if client.keep_upstream {
                        // The server connection outlives this client.
                        let _ = buf.split_off(forward);
                    } else {
                        forward += h.frame_len;
                    }
                    after = Some(After::Terminate);
                    break;
                }
                Ok(Step::Refuse(r, consumed_ready)) => {
                    after = Some(After::Refuse {
                        reply: r,
                        skip: h.frame_len,
                        ready: consumed_ready,
                    });
                    break;
                }
                Ok(Step::Close(message)) => {
                    drafts.push(EventDraft::new(
                        EventKind::Refused,
                        json!({ "message": char::from(h.tag).to_string(), "reason": message }),
                    ));
                    after = Some(After::Close(message));
                    break;
                }
                Ok(Step::Hold { ticket, as_query }) => {
                    after = Some(After::Hold {
                        ticket,
                        skip: h.frame_len,
                        as_query,
                    });
                    break;
                }
                Ok(Step::Substitute { replacement, sync }) => {
                    client.extended_open |= !sync;
                    after = Some(After::Substitute {
                        replacement,
                        skip: h.frame_len,
                        sync,
                    });
                    break;
                }
                Err(e) => return End::Failed(e.into()),
            }
        }
        let strict = std::mem::take(&mut client.may_change) || after.is_some();
        if !drafts.is_empty() {
            if strict {
                // Recorded before forwarded: nothing below runs until the events are
                // durable.
                if let Err(e) = session.record(drafts).await {
                    tracing::error!(error = %e, "statement not forwarded: recording failed");
                    return End::RecorderFailed;
                }
            } else {
                // Plain reads: forwarded now, answered once recorded (the gate; how
                // durable is `[audit] read_durability`).
                match session.submit_read(drafts).await {
                    Ok(pending) => shared.with(|s| s.gate = Some(pending)),
                    Err(e) => {
                        tracing::error!(error = %e, "statement not forwarded: recording failed");
                        return End::RecorderFailed;
                    }
                }
            }
        }
        let extended_open = client.extended_open;
        shared.with(|s| {
            // Published once per run: the pool reads it when the session ends.
            s.extended_open = extended_open;
            if forward > 0 {
                s.outstanding += syncs;
                s.mark = Instant::now();
            }
        });
        if forward > 0 {
            let chunk = buf.split_to(forward);
            let written = if client.added.is_empty() {
                write_all_flush(up, &chunk).await
            } else {
                let mut joined = BytesMut::with_capacity(chunk.len() + 64);
                let mut at = 0usize;
                for (offset, bytes) in std::mem::take(&mut client.added) {
                    joined.extend_from_slice(chunk.get(at..offset).unwrap_or(&[]));
                    joined.extend_from_slice(&bytes);
                    at = offset;
                }
                joined.extend_from_slice(chunk.get(at..).unwrap_or(&[]));
                write_all_flush(up, &joined).await
            };
            if let Err(e) = written {
                return upstream_write_failed(e).await;
            }
        }
        client.added.clear();
        match after {
            None if forward == 0 => {
                // Nothing complete to act on: read more.
                buf.reserve(READ_CHUNK);
                match rd.read_buf(&mut buf).await {
                    Ok(0) => return End::ClientClosed,
                    Ok(_) => {}
                    Err(e) => return End::Failed(e.into()),
                }
            }
            None => {}
            Some(After::Terminate) => return End::ClientTerminated,
            Some(After::Close(message)) => {
                // What was sent before is answered first; then the session ends.
                shared.wait_idle().await;
                let _ = shared
                    .reply(&[reply::credential_ended(&message)], false)
                    .await;
                return End::CredentialEnded;
            }
            Some(After::Barrier) => shared.wait_idle().await,
            Some(After::Substitute {
                replacement,
                skip,
                sync,
            }) => {
                if let Err(e) = substitute(&client, up, &mut buf, replacement, skip, sync).await {
                    return upstream_write_failed(e).await;
                }
            }
            Some(After::Hold {
                ticket,
                skip,
                as_query,
            }) => {
                // Everything sent before it is answered first, so that the notice (and
                // a refusal, if it comes to that) reach the client in order.
                shared.wait_idle().await;
                let digest = ticket.digest.clone();
                let policy_version = ticket.verdict.policy_version.clone();
                let outcome = match hold_statement(&client, ticket, &mut rd, &mut buf).await {
                    Ok(o) => o,
                    Err(end) => return end,
                };
                let reply = match outcome {
                    HoldOutcome::Run { approval_id } => {
                        // The frame is still at the front of the buffer: it is inspected
                        // again, and runs if policy still holds exactly it.
                        client.grant = Some(Grant {
                            approval_id,
                            digest,
                            policy_version,
                        });
                        continue;
                    }
                    HoldOutcome::Refuse { message, hint } => denial_reply(message, Some(hint)),
                    HoldOutcome::Canceled { approval_id } => reply::hold_canceled(&approval_id),
                };
                client.extended_open |= !as_query;
                let (replacement, sync) = client.refusal_frame(reply, as_query);
                if let Err(e) = substitute(&client, up, &mut buf, replacement, skip, sync).await {
                    return upstream_write_failed(e).await;
                }
            }
            Some(After::Refuse { reply, skip, ready }) => {
                let _ = buf.split_to(skip.min(buf.len()));
                shared.wait_idle().await;
                if let Err(e) = shared.reply(&[reply], ready).await {
                    return ended_by(e);
                }
            }
        }
    }
}

/// Drops the refused frame (`skip` bytes at the front of `buf`) and sends the server
/// its failing replacement.
async fn substitute(
    client: &ClientSide<'_>,
    up: &mut WriteHalf<BoxIo>,
    buf: &mut BytesMut,
    replacement: BytesMut,
    skip: usize,
    sync: bool,
) -> Result<(), PostgresError> {
    let _ = buf.split_to(skip.min(buf.len()));
    client.shared.with(|s| s.outstanding += u64::from(sync));
    if sync {
        client.expect(Expect::Query(ResultFacts::default()));
    }
    write_all_flush(up, &replacement).await
}

/// Most bytes kept from a client while its statement waits for approval; beyond this
/// the client is not read until the wait ends.
const MAX_READ_WHILE_HELD: usize = 1024 * 1024;

/// Holds a statement for approval: requests it (or finds the earlier request), tells
/// the client, and waits for the decision while watching for the client to leave.
async fn hold_statement(
    client: &ClientSide<'_>,
    ticket: HoldTicket,
    rd: &mut ReadHalf<BoxIo>,
    buf: &mut BytesMut,
) -> Result<HoldOutcome, End> {
    let session = client.session;
    let held = session.hold(ticket).await.map_err(|e| {
        tracing::error!(error = %e, "held statement not run: recording failed");
        End::RecorderFailed
    })?;
    let waiting = match held {
        Held::Settled(outcome) => return Ok(outcome),
        Held::Wait(w) => w,
    };
    let timeout = session.target().config.hold_timeout;
    // Nothing of the server's is half-written to the client (it owes nothing), so the
    // notice lands between messages.
    if !client.shared.with(|s| s.mid_frame) {
        let notice = reply::approval_pending(&waiting.approval, waiting.created, timeout);
        client
            .shared
            .reply(&[notice], false)
            .await
            .map_err(ended_by)?;
    }
    let watch = async {
        loop {
            if buf.len() >= MAX_READ_WHILE_HELD {
                std::future::pending::<()>().await;
            }
            buf.reserve(READ_CHUNK);
            match rd.read_buf(buf).await {
                Ok(0) => return End::ClientClosed,
                Ok(_) => {}
                Err(e) => return End::Failed(e.into()),
            }
        }
    };
    tokio::select! {
        outcome = session.await_approval(waiting, timeout) => outcome.map_err(|e| {
            tracing::error!(error = %e, "held statement not run: recording failed");
            End::RecorderFailed
        }),
        end = watch => Err(end),
    }
}

/// A statement string as the relay understands it.
#[derive(Default)]
struct Understood {
    /// The actions of all its statements (and of prepared statements it executes).
    actions: Vec<Action>,
    /// Session effects to apply if it is allowed.
    effects: Vec<StatementEffect>,
    /// It may be sent before its record is durable (see `ClientSide::understand`).
    deferrable: bool,
    /// Running it may change how later text parses (see `changes_parsing`).
    changes_parsing: bool,
    /// What its results are made of (and those of prepared statements it executes).
    shapes: Vec<ResultShape>,
    /// What the statements it prepares (SQL `PREPARE`) return, by name.
    prepared_shapes: Vec<(String, ResultShape)>,
    /// The texts of statements prepared earlier that it executes (`EXECUTE name`): an
    /// approval is bound to them too.
    executes: Vec<String>,
}

/// Why a statement string could not be decided: the reason recorded, and for text the
/// grammar rejects, how the client is answered.
struct Unparsed {
    reason: String,
    syntax: Option<Box<SyntaxAnswer>>,
}

impl From<String> for Unparsed {
    fn from(reason: String) -> Self {
        Unparsed {
            reason,
            syntax: None,
        }
    }
}

/// What to do after forwarding the frames before the current one.
enum After {
    Terminate,
    /// Wait until the server has answered everything sent so far, then go on.
    Barrier,
    Substitute {
        replacement: BytesMut,
        skip: usize,
        sync: bool,
    },
    Refuse {
        reply: Reply,
        skip: usize,
        ready: bool,
    },
    /// The session's credential no longer holds: tell the client and end.
    Close(String),
    /// The frame is held for approval: it stays in the buffer until decided.
    Hold {
        ticket: HoldTicket,
        skip: usize,
        as_query: bool,
    },
}

enum Step {
    Forward {
        sync: bool,
    },
    Terminate,
    /// Answer the client ourselves (and with ReadyForQuery if `true`), drop the frame.
    Refuse(Reply, bool),
    /// Send the server `replacement` instead of the frame: a statement that fails at
    /// once, whose error the server→client side swaps for Airlock's refusal. The server
    /// then itself skips to the next Sync and reports the right transaction state, so
    /// client and server agree on it in every protocol path. `sync` when the replacement
    /// is a Query (answered with ReadyForQuery).
    Substitute {
        replacement: BytesMut,
        sync: bool,
    },
    /// Policy holds the statement for approval (`as_query`: a simple Query, else an
    /// Execute). Nothing of it is forwarded until it is decided.
    Hold {
        ticket: HoldTicket,
        as_query: bool,
    },
    /// The session's credential expired or was revoked: close the session with this.
    Close(String),
}

/// An approval claimed for the statement at the front of the buffer: when it is
/// inspected again and policy still holds exactly it, it runs.
struct Grant {
    approval_id: String,
    digest: String,
    policy_version: String,
}

/// The client→server side's view of the session.
struct ClientSide<'a> {
    session: &'a Session,
    shared: &'a Shared,
    statements: Statements,
    classifier: &'a Classifier,
    catalog: &'a dyn FunctionCatalog,
    /// Per-session random part of refusal markers, so a client cannot forge one.
    nonce: String,
    refusals: u64,
    /// The frame just inspected may change how later text parses
    /// (`standard_conforming_strings`): classify nothing after it until it has run.
    barrier: bool,
    /// An Execute that may change parsing was forwarded: the barrier goes after the
    /// next Sync, when the server actually runs it.
    barrier_at_sync: bool,
    /// A statement inspected in the current run may change something: the run waits
    /// for its records before it is forwarded.
    may_change: bool,
    /// The server connection may be reused: the client's Terminate is not passed on.
    keep_upstream: bool,
    /// The current run starts inside a transaction block: the server is idle with
    /// status `T`, so nothing in flight can end the block before the run arrives.
    in_block: bool,
    /// Extended-protocol messages were forwarded since the last Sync.
    extended_open: bool,
    /// The session masks results: Executes get a Describe added (see [`Expect`]).
    masking: bool,
    /// Messages Airlock adds to the current run: (offset in the run, bytes).
    added: Vec<(usize, BytesMut)>,
    /// What the result of the statement just inspected is made of (masking only).
    facts: ResultFacts,
    /// An approval claimed for the held statement that is inspected next.
    grant: Option<Grant>,
}

impl ClientSide<'_> {
    /// What the masking side must know of results made as `shapes` say: the rule for
    /// computed columns (made from a column a rule names, or from a whole row) and the
    /// COPYs.
    fn facts_of(&self, shapes: &[ResultShape]) -> ResultFacts {
        let mut facts = ResultFacts::default();
        let Some(masker) = self.session.masker() else {
            return facts;
        };
        for shape in shapes {
            let mut rules: Vec<Apply> = shape
                .computed_from
                .iter()
                .filter_map(|name| masker.name_is_masked(name))
                .collect();
            if shape.whole_row {
                rules.extend(masker.strictest_column_rule());
            }
            let own = rules.into_iter().reduce(Apply::stricter);
            if let Some(rule) = &own {
                facts.computed = Some(match facts.computed.take() {
                    Some(c) => c.stricter(rule.clone()),
                    None => rule.clone(),
                });
            }
            if let Some(copy) = &shape.copy_out {
                facts.copies.push_back((copy.clone(), own));
            }
        }
        facts
    }

    /// Notes, for the server→client side, a message forwarded whose answer places
    /// result descriptions.
    fn expect(&self, e: Expect) {
        if self.masking {
            self.shared.with(|s| s.expect.push_back(e));
        }
    }

    fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            standard_conforming_strings: self.shared.with(|s| s.standard_conforming_strings),
        }
    }

    /// A replacement the server will fail on at once, with a marker naming `reply`.
    fn refuse_in_order(&mut self, reply: Reply, as_query: bool) -> Step {
        let (replacement, sync) = self.refusal_frame(reply, as_query);
        Step::Substitute { replacement, sync }
    }

    /// Refuses `text`, which the grammar rejected, with the server's own error where
    /// the server can be asked without running anything (see [`syntax`]).
    fn refuse_unparsed(&mut self, text: &str, answer: SyntaxAnswer, as_query: bool) -> Step {
        let ahead = answer.ask_server.then_some(text);
        let (replacement, sync) = self.marked_frame(answer.reply, as_query, ahead);
        Step::Substitute { replacement, sync }
    }

    /// The frame behind [`ClientSide::refuse_in_order`], and whether it is a Query.
    fn refusal_frame(&mut self, reply: Reply, as_query: bool) -> (BytesMut, bool) {
        self.marked_frame(reply, as_query, None)
    }

    /// A Query or Parse of the next refusal marker, with `ahead` (text the server is to
    /// parse first, see [`syntax::probe`]) before it.
    fn marked_frame(
        &mut self,
        reply: Reply,
        as_query: bool,
        ahead: Option<&str>,
    ) -> (BytesMut, bool) {
        self.refusals += 1;
        let marker = format!("{DENIAL_MARKER}{}_{}", self.nonce, self.refusals);
        self.shared.with(|s| {
            // A refusal the server skipped (it was already failing) is never claimed;
            // keep the map small.
            if s.denials.len() >= 256 {
                s.denials.clear();
            }
            s.denials.insert(marker.clone(), reply)
        });
        let sent = match ahead {
            Some(text) => syntax::probe(text, &marker),
            None => marker,
        };
        let mut replacement = BytesMut::new();
        if as_query {
            let mut body = sent.into_bytes();
            body.push(0);
            codec::put_message(&mut replacement, b'Q', &body);
        } else {
            // Parse of the unnamed statement: fails immediately, and the server then
            // discards everything up to the client's Sync, as for any error.
            let mut body = vec![0u8];
            body.extend_from_slice(sent.as_bytes());
            body.extend_from_slice(&[0, 0, 0]);
            codec::put_message(&mut replacement, b'P', &body);
        }
        (replacement, as_query)
    }

    /// Classifies `text` into the actions of all its statements; an EXECUTE adds the
    /// prepared statement's actions. Returns the effects to apply if it is allowed, and
    /// whether every statement may be sent before its record is durable (`may_defer`,
    /// or transaction control that leaves nothing behind if the session dies).
    fn understand(&self, text: &str) -> Result<Understood, Unparsed> {
        let statements = self
            .classifier
            .classify(text, self.parse_options())
            .map_err(|e| Unparsed {
                syntax: syntax::answer(text, &e).map(Box::new),
                reason: match e {
                    SqlError::Syntax(m) => {
                        format!("the statement could not be parsed, so it was not run: {m}")
                    }
                    SqlError::DoBody(m) => format!(
                        "the statement could not be parsed, so it was not run: in the DO block: {m}"
                    ),
                    other => {
                        format!("the statement could not be inspected, so it was not run: {other}")
                    }
                },
            })?;
        let mut actions = Vec::new();
        let mut effects = Vec::new();
        let mut deferrable = true;
        let mut parsing = false;
        // PREPARE earlier in the same string counts for an EXECUTE later in it.
        let mut prepared_here: Vec<(String, Vec<Action>, ResultShape)> = Vec::new();
        let mut shapes = Vec::new();
        let mut executes = Vec::new();
        for st in statements {
            let own: Vec<Action> = st.actions.into_iter().map(Action::Sql).collect();
            // Transaction control is judged by what it is: BEGIN or a savepoint cannot
            // change settings and leaves nothing behind if the session dies.
            match &st.effect {
                StatementEffect::Transaction(control) => {
                    deferrable &= !control.lasting();
                    parsing |= control.may_change_settings();
                }
                _ => {
                    deferrable &= self.may_defer(&own);
                    parsing |= own.iter().any(changes_parsing);
                }
            }
            actions.extend(own);
            if let StatementEffect::Prepare {
                name,
                actions: inner,
            } = &st.effect
            {
                prepared_here.push((
                    name.clone(),
                    inner.iter().cloned().map(Action::Sql).collect(),
                    st.result.clone(),
                ));
            }
            if let StatementEffect::Execute { name } = &st.effect {
                if let Some((_, inner, shape)) =
                    prepared_here.iter().rev().find(|(n, _, _)| n == name)
                {
                    parsing |= inner.iter().any(changes_parsing);
                    actions.extend(inner.iter().cloned());
                    shapes.push(shape.clone());
                    effects.push(st.effect);
                    continue;
                }
                match self.statements.get(name) {
                    Some(p) if p.refused.is_none() => {
                        parsing |= p.actions.iter().any(changes_parsing);
                        actions.extend(p.actions.iter().cloned());
                        shapes.extend(p.shapes.iter().cloned());
                        executes.push(p.text.clone());
                    }
                    Some(_) => {
                        return Err(Unparsed::from(format!(
                            "prepared statement \"{name}\" was refused when it was prepared"
                        )));
                    }
                    None => {
                        return Err(Unparsed::from(format!(
                            "prepared statement \"{name}\" is unknown to Airlock, so it cannot be decided"
                        )));
                    }
                }
            }
            if !matches!(st.effect, StatementEffect::Prepare { .. }) {
                shapes.push(st.result);
            }
            effects.push(st.effect);
        }
        if self.masking
            && let Some(reason) = shapes.iter().find_map(unmaskable_copy)
        {
            return Err(reason.into());
        }
        Ok(Understood {
            actions,
            effects,
            deferrable,
            changes_parsing: parsing,
            shapes,
            prepared_shapes: prepared_here
                .into_iter()
                .map(|(name, _, shape)| (name, shape))
                .collect(),
            executes,
        })
    }

    /// Whether an allowed statement may be sent before its record is durable (its
    /// answer then waits at the gate): a plain read, or inside a transaction block a
    /// data change that the server rolls back if Airlock dies before the record is.
    fn may_defer(&self, actions: &[Action]) -> bool {
        if self.in_block {
            undone_unless_committed(actions, self.catalog)
        } else {
            changes_nothing(actions, self.catalog)
        }
    }

    /// The approval claimed for exactly this held statement (same digest, same policy
    /// version), if any: it then runs. A claimed approval that does not match is
    /// dropped (it was used up when claimed).
    fn granted(&mut self, verdict: &Verdict, digest: &str) -> Option<String> {
        let grant = self.grant.take()?;
        (grant.digest == digest && grant.policy_version == verdict.policy_version)
            .then_some(grant.approval_id)
    }

    fn verdict_for(&self, actions: &[Action]) -> Verdict {
        self.session.decide(actions, self.catalog)
    }

    fn inspect(
        &mut self,
        tag: u8,
        body: &[u8],
        drafts: &mut Vec<EventDraft>,
    ) -> Result<Step, CodecError> {
        // Expiry and revocation take effect at the next statement that runs something.
        if matches!(tag, b'Q' | b'E' | b'F')
            && let Some(problem) = self.session.credential_problem()
        {
            return Ok(Step::Close(problem));
        }
        Ok(match tag {
            b'Q' => {
                let text = frontend::query(body)?;
                let mut syntax = None;
                let (mut verdict, u) = match self.understand(text) {
                    Ok(u) => (self.verdict_for(&u.actions), u),
                    Err(e) => {
                        syntax = e.syntax;
                        (refused_verdict(e.reason), Understood::default())
                    }
                };
                let Understood {
                    actions,
                    effects,
                    deferrable,
                    changes_parsing: parsing,
                    shapes,
                    prepared_shapes,
                    executes,
                } = u;
                let mut digest = String::new();
                let mut extra = Vec::new();
                if matches!(verdict.decision, Decision::Hold { .. }) {
                    digest = executes
                        .iter()
                        .fold(StatementDigest::new(text), |d, t| d.executes(t))
                        .finish();
                    if let Some(id) = self.granted(&verdict, &digest) {
                        verdict.decision = Decision::Allow;
                        extra.push(("approval_id", json!(id)));
                    }
                }
                drafts.push(translate::statement_draft(
                    EventKind::Query,
                    Some(text),
                    Some(&verdict.decision),
                    translate::verdict_detail(&verdict, &actions, &extra),
                ));
                match verdict.decision {
                    Decision::Allow => {
                        self.barrier = parsing;
                        self.may_change |= !deferrable;
                        self.facts = self.facts_of(&shapes);
                        self.apply(text, effects, prepared_shapes);
                        Step::Forward { sync: true }
                    }
                    Decision::Hold { .. } => Step::Hold {
                        ticket: HoldTicket {
                            statement: shown_to_approver(text, &executes),
                            params: json!([]),
                            digest,
                            verdict,
                        },
                        as_query: true,
                    },
                    Decision::Deny { .. } => match syntax {
                        Some(answer) => self.refuse_unparsed(text, *answer, true),
                        None => self.refuse_in_order(refusal(&verdict), true),
                    },
                }
            }
            b'P' => {
                let p = frontend::parse(body)?;
                let mut syntax = None;
                let (verdict, actions, shapes) = match self.understand(p.text) {
                    Ok(u) => (self.verdict_for(&u.actions), u.actions, u.shapes),
                    Err(e) => {
                        syntax = e.syntax;
                        (refused_verdict(e.reason), Vec::new(), Vec::new())
                    }
                };
                let detail = translate::verdict_detail(
                    &verdict,
                    &actions,
                    &[
                        ("name", json!(p.name)),
                        ("param_types", json!(p.param_types)),
                    ],
                );
                drafts.push(translate::statement_draft(
                    EventKind::Parse,
                    Some(p.text),
                    Some(&verdict.decision),
                    detail,
                ));
                let held = matches!(verdict.decision, Decision::Hold { .. });
                let refused = matches!(verdict.decision, Decision::Deny { .. })
                    .then(|| refusal(&verdict).message);
                self.statements.prepared(
                    p.name,
                    Prepared {
                        text: p.text.to_owned(),
                        actions,
                        refused,
                        shapes: shapes.into(),
                        held,
                        param_types: p.param_types.clone(),
                    },
                );
                match verdict.decision {
                    // A Parse runs nothing: a setting changes at Execute (see there), and
                    // a held statement waits for approval at its Execute, where its
                    // parameters are known.
                    Decision::Allow | Decision::Hold { .. } => Step::Forward { sync: false },
                    Decision::Deny { .. } => match syntax {
                        Some(answer) => self.refuse_unparsed(p.text, *answer, false),
                        None => self.refuse_in_order(refusal(&verdict), false),
                    },
                }
            }
            b'B' => {
                let b = frontend::bind(body)?;
                let prepared = self.statements.bound(&b);
                drafts.push(translate::statement_draft(
                    EventKind::Bind,
                    prepared.as_ref().map(|p| p.text.as_str()),
                    None,
                    json!({ "portal": b.portal, "statement_name": b.statement, "params": translate::recorded_params(&b, prepared.as_ref().map(|p| p.param_types.as_slice()).unwrap_or(&[])) }),
                ));
                match prepared {
                    Some(p) => match &p.refused {
                        None => Step::Forward { sync: false },
                        Some(message) => {
                            self.refuse_in_order(denial_reply(message.clone(), None), false)
                        }
                    },
                    None => self.refuse_in_order(
                        denial_reply(format!("airlock: prepared statement \"{}\" is unknown to Airlock, so it cannot be decided", b.statement), None),
                        false,
                    ),
                }
            }
            b'E' => {
                let (portal, max_rows) = frontend::execute(body)?;
                let bound = self.statements.portal(portal).cloned();
                let prepared = bound.as_ref().map(|b| b.prepared.clone());
                // Decided again at every execution: a policy reload applies at once.
                let mut verdict = match &prepared {
                    Some(p) if p.refused.is_none() => self.verdict_for(&p.actions),
                    Some(p) => refused_verdict(p.refused.clone().unwrap_or_default()),
                    None => refused_verdict(format!(
                        "portal \"{portal}\" is unknown to Airlock, so what it runs cannot be decided"
                    )),
                };
                let held = bound.and_then(|b| b.held);
                let mut extra = vec![("portal", json!(portal)), ("max_rows", json!(max_rows))];
                if matches!(verdict.decision, Decision::Hold { .. }) {
                    match &held {
                        Some(h) => {
                            if let Some(id) = self.granted(&verdict, &h.digest) {
                                verdict.decision = Decision::Allow;
                                extra.push(("approval_id", json!(id)));
                            }
                        }
                        // Policy changed between Parse and Execute: the Bind kept nothing
                        // an approval could be bound to.
                        None => {
                            verdict = refused_verdict(
                                "policy now holds this statement for approval, but it was prepared before that; prepare it again (Parse, Bind, Execute) to ask for approval".into(),
                            )
                        }
                    }
                }
                let actions = prepared
                    .as_ref()
                    .map(|p| p.actions.clone())
                    .unwrap_or_default();
                let detail = translate::verdict_detail(&verdict, &actions, &extra);
                drafts.push(translate::statement_draft(
                    EventKind::Execute,
                    prepared.as_ref().map(|p| p.text.as_str()),
                    Some(&verdict.decision),
                    detail,
                ));
                match verdict.decision {
                    Decision::Allow => {
                        if actions.iter().any(changes_parsing) {
                            self.barrier_at_sync = true;
                        }
                        if let Some(p) = &prepared {
                            self.facts = self.facts_of(&p.shapes);
                        }
                        self.may_change |= !self.may_defer(&actions);
                        Step::Forward { sync: false }
                    }
                    Decision::Hold { .. } => match (prepared, held) {
                        (Some(p), Some(h)) => Step::Hold {
                            ticket: HoldTicket {
                                statement: p.text.clone(),
                                params: h.params,
                                digest: h.digest,
                                verdict,
                            },
                            as_query: false,
                        },
                        _ => self.refuse_in_order(refusal(&verdict), false),
                    },
                    Decision::Deny { .. } => self.refuse_in_order(refusal(&verdict), false),
                }
            }
            b'C' => {
                let (kind, name) = frontend::close(body)?;
                self.statements.closed(kind, name);
                Step::Forward { sync: false }
            }
            b'S' => {
                // The server runs what came before at this Sync (or earlier): anything
                // pipelined after it waits if a setting that changes parsing was executed.
                self.barrier = std::mem::take(&mut self.barrier_at_sync);
                Step::Forward { sync: true }
            }
            b'D' | b'H' | b'c' | b'f' => Step::Forward { sync: false },
            b'X' => Step::Terminate,
            b'F' => {
                drafts.push(EventDraft::new(
                    EventKind::Refused,
                    json!({ "message": "FunctionCall", "reason": "fast-path function calls bypass SQL inspection" }),
                ));
                Step::Refuse(reply::function_call_refused(), true)
            }
            other => return Err(CodecError::UnexpectedTag { tag: other }),
        })
    }

    /// Session effects of an allowed simple Query: SQL-level prepared statements.
    fn apply(
        &mut self,
        text: &str,
        effects: Vec<StatementEffect>,
        prepared_shapes: Vec<(String, ResultShape)>,
    ) {
        for effect in effects {
            match effect {
                StatementEffect::Prepare { name, actions } => {
                    let shapes = prepared_shapes
                        .iter()
                        .rev()
                        .find(|(n, _)| *n == name)
                        .map(|(_, s)| vec![s.clone()])
                        .unwrap_or_default()
                        .into();
                    self.statements.prepared(
                        &name,
                        Prepared {
                            text: text.to_owned(),
                            actions: actions.into_iter().map(Action::Sql).collect(),
                            refused: None,
                            shapes,
                            held: false,
                            param_types: Vec::new(),
                        },
                    )
                }
                StatementEffect::Deallocate { name } => self.statements.deallocate(name.as_deref()),
                StatementEffect::Execute { .. }
                | StatementEffect::Transaction(_)
                | StatementEffect::None => {}
            }
        }
    }
}

/// Why a `COPY ... TO` could not be masked, if it could not: binary rows carry typed
/// lengths a mask cannot be put into, and a delimiter that a mask may contain would
/// shift the columns.
fn unmaskable_copy(shape: &ResultShape) -> Option<String> {
    let copy = shape.copy_out.as_ref()?;
    if copy.binary {
        return Some(
            "COPY TO in binary format cannot be masked, so it was not run; use FORMAT text or csv"
                .into(),
        );
    }
    match copy.delimiter {
        Some(d) if may_appear_in_mask(d) => Some(format!(
            "COPY TO with the delimiter '{}' cannot be masked (masks may contain it), so it was not run; use tab, comma or '|'",
            char::from(d)
        )),
        _ => None,
    }
}

/// Whether running the action can change how the server parses later text
/// (`standard_conforming_strings`), so that nothing after it may be classified first.
fn changes_parsing(action: &Action) -> bool {
    let Action::Sql(sql) = action else {
        return false;
    };
    match sql.kind.as_str() {
        "set" => matches!(
            sql.flags.variable.as_str(),
            "standard_conforming_strings" | "all" | ""
        ),
        // RESET ALL / DISCARD ALL, and ROLLBACK undoing a SET inside the transaction.
        "discard" | "transaction" => true,
        "call" => {
            matches!(&sql.object, airlock_model::SqlObject::Function { name, .. } if name == "set_config")
        }
        _ => false,
    }
}

/// A verdict for something that could not be decided at all (fail closed).
fn refused_verdict(reason: String) -> Verdict {
    Verdict {
        decision: Decision::Deny { reason },
        policies: Vec::new(),
        policy_version: String::new(),
        observed: None,
    }
}

/// The statement as an approver reads it: the text, then the prepared statements it
/// executes.
fn shown_to_approver(text: &str, executes: &[String]) -> String {
    let mut shown = text.to_owned();
    for e in executes {
        shown.push_str("\n-- which executes the prepared statement: ");
        shown.push_str(e);
    }
    shown
}

fn denial_reply(message: String, hint: Option<String>) -> Reply {
    Reply {
        severity: "ERROR",
        code: "42501",
        message,
        detail: None,
        hint,
        position: None,
    }
}

/// The error an agent gets for a refused statement.
fn refusal(verdict: &Verdict) -> Reply {
    match &verdict.decision {
        Decision::Allow => denial_reply("airlock: allowed".into(), None),
        Decision::Deny { reason } => denial_reply(
            format!("airlock: {reason}"),
            Some("The statement was not run. Rephrase it within what policy permits, or ask the operator for access.".into()),
        ),
        Decision::Hold { group, reason } => denial_reply(
            format!("airlock: {reason}"),
            Some(format!(
                "The statement was not run: it needs approval by a member of group \"{group}\"."
            )),
        ),
    }
}

/// Server messages that carry nothing of the data: completions (a command tag such as
/// `UPDATE 1`), readiness, parameter and statement bookkeeping. A run of only these may
/// reach the client before the records of the statements it answers are durable: those
/// statements are either plain reads, whose rows (never bookkeeping) wait at the gate,
/// or changes inside a transaction block, which the server rolls back if Airlock dies
/// before the records are durable (and `COMMIT` waits for them).
fn is_bookkeeping(tag: u8) -> bool {
    matches!(
        tag,
        b'C' | b'Z' | b'1' | b'2' | b'3' | b'n' | b's' | b'I' | b't' | b'S'
    )
}

/// How long the client direction waits, after a write to the server failed, for the
/// server direction to see the connection end.
const UPSTREAM_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The server could not be written to: it has most likely gone away (a crash, an
/// immediate shutdown). The server direction sees the end at once, with the server's
/// last words if it sent any, and ends the relay with what the client must hear; this
/// direction waits for that. If that does not happen (a connection broken one way
/// only), the relay ends as a lost target after a moment. Either way the client is told
/// (`08006`), never just disconnected.
async fn upstream_write_failed(e: PostgresError) -> End {
    tracing::debug!(error = %e, "writing to the target failed");
    tokio::time::sleep(UPSTREAM_GRACE).await;
    End::UpstreamClosed { explained: false }
}

/// How a relay ends after a failed write to the client.
fn ended_by(e: PostgresError) -> End {
    match e {
        PostgresError::Recorder(e) => {
            tracing::error!(error = %e, "answer withheld: recording failed");
            End::RecorderFailed
        }
        other => End::Failed(other),
    }
}

async fn write_all_flush(w: &mut WriteHalf<BoxIo>, bytes: &[u8]) -> Result<(), PostgresError> {
    w.write_all(bytes).await?;
    w.flush().await?;
    Ok(())
}

// === server → client ===

async fn server_to_client(
    shared: &Shared,
    session: &Session,
    rd: &mut ReadHalf<BoxIo>,
    buf: &mut BytesMut,
    mut masking: Option<ResultMasking>,
    tables: &TableCache,
) -> End {
    let mut passthrough: usize = 0;
    let mut rows: u64 = 0;
    let mut saw_fatal = false;
    let mut capture = crate::capture::Capture::new(session.target().config.capture_rows);
    // Masking sessions: the run as it goes to the client (frames copied, or rewritten).
    let mut out: Vec<u8> = Vec::new();
    loop {
        let mut forward = 0usize;
        let mut drafts: Vec<EventDraft> = Vec::new();
        let mut became_idle = false;
        // The run holds something beyond protocol bookkeeping (rows, errors, notices):
        // it may only reach the client once the records before it are durable.
        let mut carries_data = false;
        loop {
            let rest = buf.get(forward..).unwrap_or(&[]);
            if passthrough > 0 {
                let n = passthrough.min(rest.len());
                if n == 0 {
                    break;
                }
                forward += n;
                passthrough -= n;
                continue;
            }
            let h = match codec::header(rest) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    return End::Failed(PostgresError::Unexpected(format!("from the target: {e}")));
                }
            };
            if let Some(m) = masking.as_mut() {
                // Masking rewrites whole messages: wait for all of one.
                if h.frame_len > MAX_MASKED_FRAME {
                    return End::Failed(PostgresError::Unexpected(format!(
                        "the target sent a '{}' message of {} bytes, larger than masking handles ({} bytes); the session is closed rather than pass it unmasked",
                        char::from(h.tag),
                        h.frame_len,
                        MAX_MASKED_FRAME
                    )));
                }
                let Some(frame) = rest.get(..h.frame_len) else {
                    break;
                };
                let body = frame.get(5..).unwrap_or(&[]);
                match h.tag {
                    b'D' | b'd' => {
                        carries_data = true;
                        rows += 1;
                        let sent_from = out.len();
                        let masked = match (h.tag, &m.plan) {
                            (b'D', Some(plan)) => {
                                rows::mask_data_row(&m.masker, plan, body, &mut out, &mut m.tally)
                                    .map(|()| true)
                            }
                            (b'D', None) => Err(CodecError::Malformed {
                                what: "DataRow",
                                detail: "no RowDescription came before it",
                            }),
                            _ => mask_copy_data(m, body, &mut out),
                        };
                        match masked {
                            Ok(true) => {}
                            Ok(false) => out.extend_from_slice(frame),
                            Err(e) => {
                                return End::Failed(PostgresError::Unexpected(format!(
                                    "from the target: {e}"
                                )));
                            }
                        }
                        if h.tag == b'D' && capture.wants_row() {
                            capture.row(out.get(sent_from + 5..).unwrap_or(&[]));
                        }
                        forward += h.frame_len;
                        continue;
                    }
                    b'T' | b'n' => {
                        // Whose answer is this: a Describe (Airlock's own is dropped),
                        // or a statement of a simple Query.
                        let (added, made_of) = shared.with(|s| match s.expect.front() {
                            Some(Expect::Describe { .. }) => match s.expect.pop_front() {
                                Some(Expect::Describe { added, made_of }) => (added, made_of),
                                _ => (false, None),
                            },
                            Some(Expect::Query(facts)) => (false, Some(facts.clone())),
                            _ => (false, None),
                        });
                        let computed = made_of.as_ref().and_then(|f| f.computed.clone());
                        if let Some(f) = made_of
                            && added
                        {
                            m.pending_copies = f.copies;
                        }
                        if h.tag == b'T' && computed.is_none() && m.reuse_plan(body) {
                            capture.describe(body);
                        } else if h.tag == b'T' {
                            capture.describe(body);
                            let description = body.to_vec();
                            let fields = match rows::row_description(body) {
                                Ok(f) => f,
                                Err(e) => {
                                    return End::Failed(PostgresError::Unexpected(format!(
                                        "from the target: {e}"
                                    )));
                                }
                            };
                            let reusable = computed.is_none();
                            m.describe(&fields, session.target(), tables, computed)
                                .await;
                            if reusable {
                                m.remember_plan(description);
                            }
                        } else {
                            m.plan = None;
                        }
                        let rest = buf.get(forward..).unwrap_or(&[]);
                        if !added && let Some(frame) = rest.get(..h.frame_len) {
                            out.extend_from_slice(frame);
                        }
                        forward += h.frame_len;
                        continue;
                    }
                    b'H' => {
                        // The COPY this answers: of an Execute (noted at its Describe) or
                        // the next COPY of the running simple Query.
                        let copy = m.pending_copies.pop_front().or_else(|| {
                            shared.with(|s| match s.expect.front_mut() {
                                Some(Expect::Query(facts)) => facts.copies.pop_front(),
                                _ => None,
                            })
                        });
                        let (binary, columns) = match masking::copy_columns(body) {
                            Ok(c) => c,
                            Err(e) => {
                                return End::Failed(PostgresError::Unexpected(format!(
                                    "from the target: {e}"
                                )));
                            }
                        };
                        if let Err(e) = m.start_copy(copy, binary, columns, session.target()).await
                        {
                            return End::Failed(PostgresError::Unexpected(e));
                        }
                    }
                    b'N' => {
                        carries_data = true;
                        // A notice that cannot be read cannot be masked: never passed as is.
                        match messages::mask_notice(&m.masker, h.tag, body, &mut out, &mut m.tally)
                        {
                            Ok(true) => {}
                            Ok(false) => out.extend_from_slice(frame),
                            Err(e) => {
                                return End::Failed(PostgresError::Unexpected(format!(
                                    "from the target: {e}"
                                )));
                            }
                        }
                        forward += h.frame_len;
                        continue;
                    }
                    b'Z' => {
                        shared.with(|s| {
                            while let Some(e) = s.expect.pop_front() {
                                if matches!(e, Expect::Sync | Expect::Query(_)) {
                                    break;
                                }
                            }
                        });
                    }
                    _ => {}
                }
            }
            let rest = buf.get(forward..).unwrap_or(&[]);
            if matches!(h.tag, b'D' | b'd') {
                carries_data = true;
                rows += 1;
                if h.tag == b'D'
                    && capture.wants_row()
                    && let Some(body) = rest.get(5..h.frame_len)
                {
                    capture.row(body);
                }
                let n = h.frame_len.min(rest.len());
                forward += n;
                passthrough = h.frame_len - n;
                continue;
            }
            if h.frame_len > codec::MAX_INSPECTED_BACKEND {
                return End::Failed(PostgresError::Unexpected(format!(
                    "the target sent a '{}' message of {} bytes",
                    char::from(h.tag),
                    h.frame_len
                )));
            }
            let Some(body) = rest.get(5..h.frame_len) else {
                break;
            };
            // Masking: an error's echoed data is masked before it is read for the record.
            let mut masked_error: Option<Vec<u8>> = None;
            if h.tag == b'E'
                && let Some(m) = masking.as_mut()
            {
                let mut rewritten = Vec::new();
                match messages::mask_notice(&m.masker, h.tag, body, &mut rewritten, &mut m.tally) {
                    Ok(true) => masked_error = Some(rewritten),
                    Ok(false) => {}
                    // Unreadable, so unmaskable: never passed as is.
                    Err(e) => {
                        return End::Failed(PostgresError::Unexpected(format!(
                            "from the target: {e}"
                        )));
                    }
                }
            }
            let body = match &masked_error {
                Some(frame) => frame.get(5..).unwrap_or(&[]),
                None => body,
            };
            carries_data |= !is_bookkeeping(h.tag);
            let mut replacement: Option<BytesMut> = None;
            let outcome = match h.tag {
                b'C' => backend::command_complete(body).map(|t| {
                    // Rows changed (INSERT 0 5) or, for reads, rows sent, as the tag says.
                    if let Some(n) = backend::tag_rows(t) {
                        rows = n;
                    }
                    Some(Outcome::Complete(t.to_owned()))
                }),
                b'E' => backend::error_fields(body).map(|f| {
                    saw_fatal |= f.severity == "FATAL" || f.severity == "PANIC";
                    // The server's failure at a refusal marker becomes Airlock's refusal.
                    let swap = f.message.find(DENIAL_MARKER).map(|at| {
                        let marker: String = f
                            .message
                            .get(at..)
                            .unwrap_or("")
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        // A marker Airlock no longer knows still never reaches the client.
                        shared
                            .with(|s| s.denials.remove(&marker))
                            .unwrap_or_else(|| {
                                denial_reply(
                                    "airlock: the statement was refused and not run".into(),
                                    None,
                                )
                            })
                    });
                    if let Some(r) = swap {
                        let mut bytes = BytesMut::new();
                        r.encode(&mut bytes);
                        replacement = Some(bytes);
                        let fields = backend::ErrorFields {
                            severity: r.severity.into(),
                            code: r.code.into(),
                            message: r.message,
                        };
                        return Some(Outcome::Error(fields));
                    }
                    Some(Outcome::Error(f))
                }),
                b'S' => backend::parameter_status(body).map(|(name, value)| {
                    if name == "standard_conforming_strings" {
                        let on = value == "on";
                        shared.with(|s| s.standard_conforming_strings = on);
                    }
                    None
                }),
                b'I' => Ok(Some(Outcome::Empty)),
                b'T' if capture.on() && masking.is_none() => {
                    capture.describe(body);
                    Ok(None)
                }
                b's' => Ok(Some(Outcome::Suspended)),
                b'Z' => backend::ready_for_query(body).map(|status| {
                    became_idle |= shared.with(|s| {
                        s.tx_status = status;
                        s.outstanding = s.outstanding.saturating_sub(1);
                        s.outstanding == 0
                    });
                    None
                }),
                _ => Ok(None),
            };
            match outcome {
                Ok(Some(o)) => {
                    let now = Instant::now();
                    let started = shared.with(|s| std::mem::replace(&mut s.mark, now));
                    let micros =
                        u64::try_from(now.duration_since(started).as_micros()).unwrap_or(u64::MAX);
                    let mut draft = translate::result_draft(o, rows, micros);
                    if let serde_json::Value::Object(d) = &mut draft.detail {
                        if let Some(counts) = masking.as_mut().and_then(ResultMasking::take_counts)
                        {
                            d.insert("masked".into(), counts);
                        }
                        if let Some(captured) = capture.take() {
                            d.insert("captured_rows".into(), captured);
                        }
                    }
                    drafts.push(draft);
                    rows = 0;
                }
                Ok(None) => {}
                Err(e) => {
                    return End::Failed(PostgresError::Unexpected(format!("from the target: {e}")));
                }
            }
            if masking.is_some() {
                // Masking: the run is assembled in `out`.
                let rest = buf.get(forward..).unwrap_or(&[]);
                match (&replacement, &masked_error) {
                    (Some(r), _) => out.extend_from_slice(r),
                    (None, Some(e)) => out.extend_from_slice(e),
                    (None, None) => out.extend_from_slice(rest.get(..h.frame_len).unwrap_or(&[])),
                }
                forward += h.frame_len;
                continue;
            }
            if let Some(bytes) = replacement {
                // Send what precedes the server's error, then the refusal in its place.
                if !drafts.is_empty()
                    && session
                        .record_later(std::mem::take(&mut drafts))
                        .await
                        .is_err()
                {
                    return End::OutcomeUnrecorded;
                }
                let mut chunk = buf.split_to(forward + h.frame_len);
                chunk.truncate(forward);
                chunk.extend_from_slice(&bytes);
                if let Err(e) = shared.pass_gate().await {
                    return ended_by(e);
                }
                if let Err(e) = shared.write_client(&chunk).await {
                    return ended_by(e);
                }
                forward = 0;
                continue;
            }
            forward += h.frame_len;
        }
        // Queued before the client sees the outcome (see the module doc).
        if !drafts.is_empty() && session.record_later(drafts).await.is_err() {
            return End::OutcomeUnrecorded;
        }
        if masking.is_some() && forward > 0 {
            let _ = buf.split_to(forward);
            if !out.is_empty() {
                if carries_data && let Err(e) = shared.pass_gate().await {
                    return ended_by(e);
                }
                // Whole frames only: the client never holds part of one.
                if let Err(e) = shared.write_client(&out).await {
                    return ended_by(e);
                }
                out.clear();
                if out.capacity() > 4 * READ_CHUNK {
                    out.shrink_to(READ_CHUNK);
                }
            }
        } else if forward > 0 {
            let chunk = buf.split_to(forward);
            // Until the write completes the client may hold a partial frame (this future
            // can be dropped mid-write when the session ends).
            if carries_data && let Err(e) = shared.pass_gate().await {
                return ended_by(e);
            }
            shared.with(|s| s.mid_frame = true);
            if let Err(e) = shared.write_client(&chunk).await {
                return ended_by(e);
            }
            shared.with(|s| s.mid_frame = passthrough > 0);
        }
        if became_idle {
            shared.idle.notify_waiters();
        }
        buf.reserve(READ_CHUNK);
        let clean = buf.is_empty() && passthrough == 0;
        shared.with(|s| s.upstream_clean = clean);
        let read = rd.read_buf(buf).await;
        shared.with(|s| s.upstream_clean = false);
        match read {
            Ok(0) => {
                return End::UpstreamClosed {
                    explained: saw_fatal,
                };
            }
            Ok(_) => {}
            Err(_) => {
                return End::UpstreamClosed {
                    explained: saw_fatal,
                };
            }
        }
    }
}

/// Masks one `CopyData` row of `COPY ... TO STDOUT` with the detectors (text and CSV rows
/// take the replacement in place: it holds no tab, comma, quote or backslash). Returns
/// whether `out` received a rewritten frame.
fn mask_copy_data(
    m: &mut ResultMasking,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<bool, CodecError> {
    let masked = if let Some(plan) = m.copy.as_mut() {
        match crate::masking::copy::mask_row(&m.masker, plan, body, &mut m.tally) {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(false),
            Err(_) => {
                return Err(CodecError::Malformed {
                    what: "CopyData",
                    detail: "a COPY row does not have the columns masking expected",
                });
            }
        }
    } else {
        let mut masked = Vec::new();
        if m.masker.scan(body, &mut masked, &mut m.tally)
            == airlock_engine::masking::rules::Scan::Clean
        {
            return Ok(false);
        }
        masked
    };
    if m.copy_binary {
        // Binary COPY fields carry their lengths: a replacement in place would break the
        // stream, and the field types are unknown. Fail closed.
        return Err(CodecError::Malformed {
            what: "CopyData",
            detail: "a binary COPY result holds values that masking must hide; use COPY in text or CSV format",
        });
    }
    let mut frame = BytesMut::new();
    codec::put_message(&mut frame, b'd', &masked);
    out.extend_from_slice(&frame);
    Ok(true)
}
