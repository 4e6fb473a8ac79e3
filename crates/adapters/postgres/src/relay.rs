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
//!
//! The stages, one module each:
//!
//! - `state`: what the two directions share (transaction status, answers owed, the
//!   gate, the refusals in flight, what masking expects next).
//! - `client`: the client → server loop: reading, framing, recording, writing upstream.
//! - `inspect`: understanding one client message: parse, actions, decision, effects.
//! - `refusal`: refusing a statement in order, through a marker the server fails on.
//! - `hold`: holding a statement for approval while watching the client.
//! - `server`: the server → client loop: outcomes, capture, writing to the client.
//! - `mask`: masking results (rows, descriptions, COPY, notices) on their way out.
#![deny(clippy::indexing_slicing)]

mod client;
mod hold;
mod inspect;
mod mask;
mod refusal;
mod server;
mod state;

use airlock_engine::policy::FunctionCatalog;
use airlock_engine::sql::Classifier;
use airlock_session::Session;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::codec::{self, CodecError};
use crate::error::PostgresError;
use crate::masking::ResultMasking;
use crate::masking::columns::TableCache;
use crate::reply::{self, Reply};
use crate::stream::BoxIo;

use client::ClientSide;
use state::Shared;

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

    /// Whether the session ended because something failed (the target, the recorder,
    /// the connection), not because a side chose to end it; marks the session for
    /// reviewers.
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            End::UpstreamClosed { .. }
                | End::RecorderFailed
                | End::OutcomeUnrecorded
                | End::Failed(_)
        )
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
    let shared = Shared::new(client_wr, context.standard_conforming_strings);
    let client = ClientSide::new(&context, session, &shared);
    let c2s = client::client_to_server(client, client_rd, client_buf, &mut up_wr);
    let masking = session.masker().cloned().map(ResultMasking::new);
    let s2c = server::server_to_client(
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
    if let Some(r) = last_words(&shared, session, &end) {
        // The client may already be gone; nothing more to do then.
        let _ = shared.reply(&[r], false).await;
    }
    let mut w = shared.client_wr.lock().await;
    let _ = w.shutdown().await;
    let kept = reusable.then(|| (up_rd.unsplit(up_wr), upstream_buf));
    (end, kept)
}

/// What the client is told as the relay ends, if anything can still be said: nothing
/// when it was last sent part of a frame.
fn last_words(shared: &Shared, session: &Session, end: &End) -> Option<Reply> {
    match end {
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
    }
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
