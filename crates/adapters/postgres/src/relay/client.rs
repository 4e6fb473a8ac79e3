//! The client → server direction: reads the client, scans the complete frames in the
//! buffer (each statement message inspected where it sits), records what they do, and
//! writes the run upstream in one write; then does what the frame that stopped the run
//! calls for (a refusal, a hold, a barrier, the end).
//!
//! A run's records are durable before it is forwarded, unless every statement in it may
//! be deferred: then it is forwarded at once and its answer waits at the gate.

use std::time::Instant;

use airlock_engine::policy::FunctionCatalog;
use airlock_engine::sql::Classifier;
use airlock_model::EventKind;
use airlock_session::{EventDraft, HoldTicket, Session};
use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tracing::Instrument;

use super::inspect::{Grant, Step};
use super::state::{Expect, ResultFacts, Shared};
use super::{End, READ_CHUNK, RelayContext, ended_by};
use crate::codec::{self, CodecError, Header, frontend};
use crate::error::PostgresError;
use crate::reply::{self, Reply};
use crate::stream::BoxIo;
use crate::translate::Statements;

/// How long the client direction waits, after a write to the server failed, for the
/// server direction to see the connection end.
const UPSTREAM_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The client→server side's view of the session.
pub(super) struct ClientSide<'a> {
    pub(super) session: &'a Session,
    pub(super) shared: &'a Shared,
    pub(super) statements: Statements,
    pub(super) classifier: &'a Classifier,
    pub(super) catalog: &'a dyn FunctionCatalog,
    /// Per-session random part of refusal markers, so a client cannot forge one.
    pub(super) nonce: String,
    pub(super) refusals: u64,
    /// The frame just inspected may change how later text parses
    /// (`standard_conforming_strings`): classify nothing after it until it has run.
    pub(super) barrier: bool,
    /// An Execute that may change parsing was forwarded: the barrier goes after the
    /// next Sync, when the server actually runs it.
    pub(super) barrier_at_sync: bool,
    /// A statement inspected in the current run may change something: the run waits
    /// for its records before it is forwarded.
    pub(super) may_change: bool,
    /// The server connection may be reused: the client's Terminate is not passed on.
    pub(super) keep_upstream: bool,
    /// The current run starts inside a transaction block: the server is idle with
    /// status `T`, so nothing in flight can end the block before the run arrives.
    pub(super) in_block: bool,
    /// Extended-protocol messages were forwarded since the last Sync.
    pub(super) extended_open: bool,
    /// The session masks results: Executes get a Describe added (see [`Expect`]).
    pub(super) masking: bool,
    /// Messages Airlock adds to the current run: (offset in the run, bytes).
    pub(super) added: Vec<(usize, BytesMut)>,
    /// What the result of the statement just inspected is made of (masking only).
    pub(super) facts: ResultFacts,
    /// An approval claimed for the held statement that is inspected next.
    pub(super) grant: Option<Grant>,
}

/// The complete frames at the front of the buffer, scanned: how many bytes go upstream,
/// the events they make, and what the frame that ended the scan calls for.
#[derive(Default)]
struct Run {
    drafts: Vec<EventDraft>,
    /// Queries and Syncs among the frames forwarded (each owes a ReadyForQuery).
    syncs: u64,
    /// Bytes at the front of the buffer to forward.
    forward: usize,
    after: Option<After>,
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

/// Runs the client → server direction until the relay ends; `buf` holds what the client
/// sent before the relay started.
pub(super) async fn client_to_server(
    mut client: ClientSide<'_>,
    mut rd: ReadHalf<BoxIo>,
    mut buf: BytesMut,
    up: &mut WriteHalf<BoxIo>,
) -> End {
    let shared = client.shared;
    // Bytes of a streamed (CopyData) frame still to pass through.
    let mut passthrough: usize = 0;
    loop {
        // What the scan finds arrived with the read just made: the gateway latency of
        // its statements runs from here to their forwarding (or refusal, or hold).
        let arrived = Instant::now();
        client.in_block = shared.with(|s| s.outstanding == 0 && s.tx_status == b'T');
        let run = match client.scan(&mut buf, &mut passthrough) {
            Ok(run) => run,
            Err(end) => return end,
        };
        let span = statements_span(&run.drafts);
        let next = client
            .handle_run(run, arrived, &mut rd, &mut buf, up)
            .instrument(span)
            .await;
        if let Err(end) = next {
            return end;
        }
    }
}

/// The span of a run's statements, from their decision until they are forwarded (or
/// refused, or released from a hold): how many, and the strictest decision. Never
/// their text. Debug level: made only when something takes it (an exporter of spans,
/// `AIRLOCK_LOG=debug`); none when the run decides nothing.
fn statements_span(drafts: &[EventDraft]) -> tracing::Span {
    let mut decided = 0usize;
    let mut strictest = "";
    for label in drafts.iter().filter_map(|d| d.decision) {
        decided += 1;
        let rank = |l: &str| match l {
            "deny" => 3,
            "hold" => 2,
            "" => 0,
            _ => 1,
        };
        if rank(label) > rank(strictest) {
            strictest = label;
        }
    }
    if decided == 0 {
        return tracing::Span::none();
    }
    // An i64: exporters take signed integers (an unsigned one would become text).
    let count = i64::try_from(decided).unwrap_or(i64::MAX);
    tracing::debug_span!("statements", count, decision = strictest)
}

impl<'a> ClientSide<'a> {
    /// The client direction of a relay that has just started.
    pub(super) fn new(
        context: &RelayContext<'a>,
        session: &'a Session,
        shared: &'a Shared,
    ) -> Self {
        ClientSide {
            session,
            shared,
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
        }
    }
}

impl ClientSide<'_> {
    /// Records a scanned run, forwards its frames and does what the frame that ended it
    /// calls for; `Err` when the relay ends.
    async fn handle_run(
        &mut self,
        run: Run,
        arrived: Instant,
        rd: &mut ReadHalf<BoxIo>,
        buf: &mut BytesMut,
        up: &mut WriteHalf<BoxIo>,
    ) -> Result<(), End> {
        let shared = self.shared;
        let decided = run.drafts.iter().filter(|d| d.decision.is_some()).count();
        let strict = std::mem::take(&mut self.may_change) || run.after.is_some();
        self.record(run.drafts, strict).await?;
        let extended_open = self.extended_open;
        shared.with(|s| {
            // Published once per run: the pool reads it when the session ends.
            s.extended_open = extended_open;
            if run.forward > 0 {
                s.outstanding += run.syncs;
                s.mark = Instant::now();
            }
        });
        if run.forward > 0 {
            let chunk = buf.split_to(run.forward);
            if let Err(e) = self.write_run(up, &chunk).await {
                return Err(upstream_write_failed(e).await);
            }
        }
        if decided > 0 {
            self.session.metrics().forwarded(arrived, decided);
        }
        self.added.clear();
        match run.after {
            // Nothing complete to act on: read more.
            None if run.forward == 0 => read_client(rd, buf).await,
            None => Ok(()),
            Some(after) => self.finish_run(after, rd, buf, up).await,
        }
    }

    /// Scans the complete frames at the front of `buf`, inspecting each statement
    /// message, up to the first that cannot simply be forwarded (or the end of what was
    /// read). `passthrough` carries the rest of a streamed CopyData frame across reads.
    fn scan(&mut self, buf: &mut BytesMut, passthrough: &mut usize) -> Result<Run, End> {
        let mut run = Run::default();
        loop {
            let rest = buf.get(run.forward..).unwrap_or(&[]);
            if *passthrough > 0 {
                let n = (*passthrough).min(rest.len());
                if n == 0 {
                    break;
                }
                run.forward += n;
                *passthrough -= n;
                continue;
            }
            let h = match codec::header(rest) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(End::Failed(e.into())),
            };
            if h.tag == b'd' {
                // CopyData: stream it, complete or not.
                let n = h.frame_len.min(rest.len());
                run.forward += n;
                *passthrough = h.frame_len - n;
                continue;
            }
            if h.frame_len > codec::MAX_INSPECTED_FRONTEND {
                return Err(End::Failed(
                    CodecError::TooLarge {
                        tag: h.tag,
                        len: h.frame_len,
                        limit: codec::MAX_INSPECTED_FRONTEND,
                    }
                    .into(),
                ));
            }
            let Some(body) = rest.get(5..h.frame_len) else {
                break;
            };
            let step = match self.inspect(h.tag, body, &mut run.drafts) {
                Ok(step) => step,
                Err(e) => return Err(End::Failed(e.into())),
            };
            let after = match step {
                Step::Forward { sync } => self.forwarded(h, body, sync, &mut run),
                Step::Terminate => {
                    if self.keep_upstream {
                        // The server connection outlives this client.
                        let _ = buf.split_off(run.forward);
                    } else {
                        run.forward += h.frame_len;
                    }
                    Some(After::Terminate)
                }
                Step::Refuse(reply, consumed_ready) => Some(After::Refuse {
                    reply,
                    skip: h.frame_len,
                    ready: consumed_ready,
                }),
                Step::Close(message) => {
                    run.drafts.push(EventDraft::new(
                        EventKind::Refused,
                        json!({ "message": char::from(h.tag).to_string(), "reason": message }),
                    ));
                    Some(After::Close(message))
                }
                Step::Hold { ticket, as_query } => Some(After::Hold {
                    ticket,
                    skip: h.frame_len,
                    as_query,
                }),
                Step::Substitute { replacement, sync } => {
                    self.extended_open |= !sync;
                    Some(After::Substitute {
                        replacement,
                        skip: h.frame_len,
                        sync,
                    })
                }
            };
            if after.is_some() {
                run.after = after;
                break;
            }
        }
        Ok(run)
    }

    /// Adds a frame to be forwarded to the run; `Some` when the scan must stop after it.
    fn forwarded(&mut self, h: Header, body: &[u8], sync: bool, run: &mut Run) -> Option<After> {
        if self.masking {
            self.expect_answer(h.tag, body, run.forward);
        }
        run.forward += h.frame_len;
        run.syncs += u64::from(sync);
        match h.tag {
            b'S' => self.extended_open = false,
            b'P' | b'B' | b'E' | b'D' | b'C' | b'H' => self.extended_open = true,
            _ => {}
        }
        if self.barrier {
            // What follows may parse differently once this has run.
            self.barrier = false;
            return Some(After::Barrier);
        }
        None
    }

    /// Masking: notes whose answer the server→client side will see for a message
    /// forwarded at `offset` in the run, adding a Describe before an Execute.
    fn expect_answer(&mut self, tag: u8, body: &[u8], offset: usize) {
        match tag {
            b'Q' => {
                let facts = std::mem::take(&mut self.facts);
                self.expect(Expect::Query(facts));
            }
            b'S' => self.expect(Expect::Sync),
            b'D' => self.expect(Expect::Describe {
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
                self.added.push((offset, describe));
                let facts = std::mem::take(&mut self.facts);
                self.expect(Expect::Describe {
                    added: true,
                    made_of: Some(facts),
                });
            }
            _ => {}
        }
    }

    /// Notes, for the server→client side, a message forwarded whose answer places
    /// result descriptions.
    pub(super) fn expect(&self, e: Expect) {
        if self.masking {
            self.shared.with(|s| s.expect.push_back(e));
        }
    }

    /// Records the run's events: durably before it is forwarded when `strict`, else
    /// submitted, with the gate holding back its answer until they are durable.
    async fn record(&self, drafts: Vec<EventDraft>, strict: bool) -> Result<(), End> {
        if drafts.is_empty() {
            return Ok(());
        }
        if strict {
            // Recorded before forwarded: nothing below runs until the events are
            // durable.
            if let Err(e) = self.session.record(drafts).await {
                tracing::error!(error = %e, "statement not forwarded: recording failed");
                return Err(End::RecorderFailed);
            }
        } else {
            // Plain reads: forwarded now, answered once recorded (the gate; how
            // durable is `[audit] read_durability`).
            match self.session.submit_read(drafts).await {
                Ok(pending) => self.shared.with(|s| s.gate = Some(pending)),
                Err(e) => {
                    tracing::error!(error = %e, "statement not forwarded: recording failed");
                    return Err(End::RecorderFailed);
                }
            }
        }
        Ok(())
    }

    /// Writes a run's frames upstream, with the messages Airlock adds to it in place.
    async fn write_run(
        &mut self,
        up: &mut WriteHalf<BoxIo>,
        chunk: &[u8],
    ) -> Result<(), PostgresError> {
        let metrics = self.session.metrics();
        if self.added.is_empty() {
            write_all_flush(up, chunk).await?;
            metrics.relayed_to_target(chunk.len());
            return Ok(());
        }
        let mut joined = BytesMut::with_capacity(chunk.len() + 64);
        let mut at = 0usize;
        for (offset, bytes) in std::mem::take(&mut self.added) {
            joined.extend_from_slice(chunk.get(at..offset).unwrap_or(&[]));
            joined.extend_from_slice(&bytes);
            at = offset;
        }
        joined.extend_from_slice(chunk.get(at..).unwrap_or(&[]));
        write_all_flush(up, &joined).await?;
        metrics.relayed_to_target(joined.len());
        Ok(())
    }

    /// Does what the frame that stopped the run calls for, once the frames before it
    /// are forwarded; `Err` when the relay ends.
    async fn finish_run(
        &mut self,
        after: After,
        rd: &mut ReadHalf<BoxIo>,
        buf: &mut BytesMut,
        up: &mut WriteHalf<BoxIo>,
    ) -> Result<(), End> {
        let shared = self.shared;
        match after {
            After::Terminate => Err(End::ClientTerminated),
            After::Close(message) => {
                // What was sent before is answered first; then the session ends.
                shared.wait_idle().await;
                let _ = shared
                    .reply(&[reply::credential_ended(&message)], false)
                    .await;
                Err(End::CredentialEnded)
            }
            After::Barrier => {
                shared.wait_idle().await;
                Ok(())
            }
            After::Substitute {
                replacement,
                skip,
                sync,
            } => self.substitute(up, buf, replacement, skip, sync).await,
            After::Hold {
                ticket,
                skip,
                as_query,
            } => self.hold(ticket, skip, as_query, rd, buf, up).await,
            After::Refuse { reply, skip, ready } => {
                let _ = buf.split_to(skip.min(buf.len()));
                shared.wait_idle().await;
                shared.reply(&[reply], ready).await.map_err(ended_by)
            }
        }
    }

    /// Drops the refused frame (`skip` bytes at the front of `buf`) and sends the server
    /// its failing replacement.
    pub(super) async fn substitute(
        &self,
        up: &mut WriteHalf<BoxIo>,
        buf: &mut BytesMut,
        replacement: BytesMut,
        skip: usize,
        sync: bool,
    ) -> Result<(), End> {
        let _ = buf.split_to(skip.min(buf.len()));
        self.shared.with(|s| s.outstanding += u64::from(sync));
        if sync {
            self.expect(Expect::Query(ResultFacts::default()));
        }
        match write_all_flush(up, &replacement).await {
            Ok(()) => {
                self.session.metrics().relayed_to_target(replacement.len());
                Ok(())
            }
            Err(e) => Err(upstream_write_failed(e).await),
        }
    }
}

/// Reads more from the client into `buf`; `Err` when the client is gone.
pub(super) async fn read_client(rd: &mut ReadHalf<BoxIo>, buf: &mut BytesMut) -> Result<(), End> {
    buf.reserve(READ_CHUNK);
    match rd.read_buf(buf).await {
        Ok(0) => Err(End::ClientClosed),
        Ok(_) => Ok(()),
        Err(e) => Err(End::Failed(e.into())),
    }
}

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

async fn write_all_flush(w: &mut WriteHalf<BoxIo>, bytes: &[u8]) -> Result<(), PostgresError> {
    w.write_all(bytes).await?;
    w.flush().await?;
    Ok(())
}
