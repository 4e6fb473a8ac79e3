//! The relay: after startup, one future per direction inside the connection's task.
//!
//! Client → server: frames are scanned where they sit in the read buffer. Statement
//! messages (Query, Parse, Bind, Execute) are decided and recorded — durably, one
//! recorder round per read — and only then is the whole run of frames written upstream
//! in one write, without copying. COPY data is streamed through without buffering a
//! whole frame.
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

use airlock_model::{Decision, EventKind};
use airlock_session::{EventDraft, Session};
use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Notify, watch};

use crate::codec::{self, CodecError, backend, frontend};
use crate::error::PostgresError;
use crate::reply::{self, Reply};
use crate::stream::BoxIo;
use crate::translate::{self, Outcome, Statements};

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
    /// A statement was refused in a way that ends the session; the reply says why.
    Refused(Reply),
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
            End::RecorderFailed => "recorder_failed".into(),
            End::Refused(_) => "refused".into(),
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

/// Runs the relay until either side ends, the gateway shuts down, or recording fails.
/// `client_buf` holds bytes the client sent after its password (normally none).
pub async fn run(
    session: &Session,
    client: BoxIo,
    client_buf: BytesMut,
    upstream: BoxIo,
    upstream_buf: BytesMut,
    mut shutdown: watch::Receiver<bool>,
) -> End {
    let (client_rd, client_wr) = tokio::io::split(client);
    let (up_rd, up_wr) = tokio::io::split(upstream);
    let shared = Shared {
        state: Mutex::new(State {
            outstanding: 0,
            tx_status: b'I',
            mark: Instant::now(),
            mid_frame: false,
        }),
        idle: Notify::new(),
        client_wr: tokio::sync::Mutex::new(client_wr),
    };
    let c2s = client_to_server(&shared, session, client_rd, client_buf, up_wr);
    let s2c = server_to_client(&shared, session, up_rd, upstream_buf);
    let end = tokio::select! {
        e = c2s => e,
        e = s2c => e,
        _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => End::Shutdown,
    };
    let last_words = match &end {
        _ if shared.with(|s| s.mid_frame) => None,
        End::RecorderFailed => Some(reply::recorder_unavailable("FATAL")),
        End::Refused(r) => Some(r.clone()),
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
    end
}

// === client → server ===

async fn client_to_server(
    shared: &Shared,
    session: &Session,
    mut rd: ReadHalf<BoxIo>,
    mut buf: BytesMut,
    mut up: WriteHalf<BoxIo>,
) -> End {
    let mut statements = Statements::default();
    // Bytes of a streamed (CopyData) frame still to pass through.
    let mut passthrough: usize = 0;
    loop {
        let mut drafts: Vec<EventDraft> = Vec::new();
        let mut syncs = 0u64;
        let mut forward = 0usize;
        let mut after: Option<After> = None;
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
            match inspect_frontend(h.tag, body, session, &mut statements, &mut drafts) {
                Ok(Step::Forward { sync }) => {
                    forward += h.frame_len;
                    syncs += u64::from(sync);
                }
                Ok(Step::Terminate) => {
                    forward += h.frame_len;
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
                Ok(Step::Close(r)) => {
                    after = Some(After::Close(r));
                    break;
                }
                Err(e) => return End::Failed(e.into()),
            }
        }
        if !drafts.is_empty() {
            // Recorded before forwarded: nothing below runs until the events are durable.
            if let Err(e) = session.record(drafts).await {
                tracing::error!(error = %e, "statement not forwarded: recording failed");
                return End::RecorderFailed;
            }
        }
        if forward > 0 {
            shared.with(|s| {
                s.outstanding += syncs;
                s.mark = Instant::now();
            });
            let chunk = buf.split_to(forward);
            if let Err(e) = write_all_flush(&mut up, &chunk).await {
                return End::Failed(e);
            }
        }
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
            Some(After::Close(r)) => return End::Refused(r),
            Some(After::Refuse { reply, skip, ready }) => {
                let _ = buf.split_to(skip.min(buf.len()));
                shared.wait_idle().await;
                if let Err(e) = shared.reply(&[reply], ready).await {
                    return End::Failed(e);
                }
            }
        }
    }
}

/// What to do after forwarding the frames before the current one.
enum After {
    Terminate,
    Refuse {
        reply: Reply,
        skip: usize,
        ready: bool,
    },
    Close(Reply),
}

enum Step {
    Forward {
        sync: bool,
    },
    Terminate,
    /// Answer the client ourselves (and with ReadyForQuery if `true`), drop the frame.
    Refuse(Reply, bool),
    /// Answer with a FATAL error and end the session.
    Close(Reply),
}

fn inspect_frontend(
    tag: u8,
    body: &[u8],
    session: &Session,
    statements: &mut Statements,
    drafts: &mut Vec<EventDraft>,
) -> Result<Step, CodecError> {
    Ok(match tag {
        b'Q' => {
            let text = frontend::query(body)?;
            let decision = session.decide(&Statements::sql_action(text));
            drafts.push(translate::statement_draft(
                EventKind::Query,
                Some(text),
                Some(&decision),
                json!({}),
            ));
            match decision {
                Decision::Allow => Step::Forward { sync: true },
                other => Step::Refuse(refusal(&other), true),
            }
        }
        b'P' => {
            let p = frontend::parse(body)?;
            let decision = session.decide(&Statements::sql_action(p.text));
            drafts.push(translate::statement_draft(
                EventKind::Parse,
                Some(p.text),
                Some(&decision),
                json!({ "name": p.name, "param_types": p.param_types }),
            ));
            statements.parsed(p.name, p.text);
            match decision {
                Decision::Allow => Step::Forward { sync: false },
                // TODO(#3): refuse inside an extended-protocol batch without ending the session.
                other => Step::Close(refusal(&other)),
            }
        }
        b'B' => {
            let b = frontend::bind(body)?;
            let text = statements.bound(b.portal, b.statement);
            drafts.push(translate::statement_draft(
                EventKind::Bind,
                text.as_deref(),
                None,
                json!({ "portal": b.portal, "statement_name": b.statement, "params": translate::recorded_params(&b) }),
            ));
            Step::Forward { sync: false }
        }
        b'E' => {
            let (portal, max_rows) = frontend::execute(body)?;
            let text = statements.portal(portal).map(str::to_owned);
            let decision = text
                .as_deref()
                .map(|t| session.decide(&Statements::sql_action(t)));
            drafts.push(translate::statement_draft(
                EventKind::Execute,
                text.as_deref(),
                decision.as_ref(),
                json!({ "portal": portal, "max_rows": max_rows }),
            ));
            match decision {
                // TODO(#3): a portal of a statement prepared with SQL PREPARE has no text
                // here; once policy lands it must be decided as the prepared statement.
                None | Some(Decision::Allow) => Step::Forward { sync: false },
                Some(other) => Step::Close(refusal(&other)),
            }
        }
        b'C' => {
            let (kind, name) = frontend::close(body)?;
            statements.closed(kind, name);
            Step::Forward { sync: false }
        }
        b'S' => Step::Forward { sync: true },
        b'D' | b'H' | b'c' | b'f' => Step::Forward { sync: false },
        b'X' => Step::Terminate,
        b'F' => {
            drafts.push(EventDraft::new(EventKind::Refused, json!({ "message": "FunctionCall", "reason": "fast-path function calls bypass SQL inspection" })));
            Step::Refuse(reply::function_call_refused(), true)
        }
        other => return Err(CodecError::UnexpectedTag { tag: other }),
    })
}

fn refusal(decision: &Decision) -> Reply {
    let (message, hint) = match decision {
        Decision::Allow => ("allowed".to_owned(), None),
        Decision::Deny { reason } => (
            format!("statement refused by Airlock policy: {reason}"),
            None,
        ),
        Decision::Hold { group, reason } => (
            format!("statement needs approval by group \"{group}\": {reason}"),
            Some(
                "Approvals are not available yet; ask the operator to allow the statement."
                    .to_owned(),
            ),
        ),
    };
    Reply {
        severity: "ERROR",
        code: "42501",
        message,
        detail: None,
        hint,
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
    mut rd: ReadHalf<BoxIo>,
    mut buf: BytesMut,
) -> End {
    let mut passthrough: usize = 0;
    let mut rows: u64 = 0;
    let mut saw_fatal = false;
    loop {
        let mut forward = 0usize;
        let mut drafts: Vec<EventDraft> = Vec::new();
        let mut became_idle = false;
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
            if matches!(h.tag, b'D' | b'd') {
                rows += 1;
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
                    Some(Outcome::Error(f))
                }),
                b'I' => Ok(Some(Outcome::Empty)),
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
                    drafts.push(translate::result_draft(o, rows, micros));
                    rows = 0;
                }
                Ok(None) => {}
                Err(e) => {
                    return End::Failed(PostgresError::Unexpected(format!("from the target: {e}")));
                }
            }
            forward += h.frame_len;
        }
        // Queued before the client sees the outcome (see the module doc).
        if !drafts.is_empty() && session.record_later(drafts).await.is_err() {
            return End::RecorderFailed;
        }
        if forward > 0 {
            let chunk = buf.split_to(forward);
            // Until the write completes the client may hold a partial frame (this future
            // can be dropped mid-write when the session ends).
            shared.with(|s| s.mid_frame = true);
            if let Err(e) = shared.write_client(&chunk).await {
                return End::Failed(e);
            }
            shared.with(|s| s.mid_frame = passthrough > 0);
        }
        if became_idle {
            shared.idle.notify_waiters();
        }
        buf.reserve(READ_CHUNK);
        match rd.read_buf(&mut buf).await {
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
