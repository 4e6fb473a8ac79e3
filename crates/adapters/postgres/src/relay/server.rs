//! The server → client direction: reads the server, scans its frames for the few that
//! matter (command completions, errors, ReadyForQuery), queues an outcome event for each
//! statement answered, and writes the run to the client. Data rows are counted and
//! streamed through however large, so memory stays bounded by the read buffer; a
//! masking session instead rewrites whole frames (see `mask`).
//!
//! A run that carries data waits at the gate; an error at a refusal marker is replaced
//! by Airlock's refusal.

use std::time::Instant;

use airlock_session::{EventDraft, Session};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, ReadHalf};

use super::mask::Masked;
use super::refusal;
use super::state::Shared;
use super::{End, READ_CHUNK, ended_by};
use crate::capture::Capture;
use crate::codec::{self, CodecError, Header, backend};
use crate::error::PostgresError;
use crate::masking::ResultMasking;
use crate::masking::columns::TableCache;
use crate::stream::BoxIo;
use crate::translate::{self, Outcome};

/// The server→client side's view of the session.
pub(super) struct ServerSide<'a> {
    pub(super) shared: &'a Shared,
    pub(super) session: &'a Session,
    /// Tables looked up for masking.
    pub(super) tables: &'a TableCache,
    /// Masking sessions only: how results are masked.
    pub(super) masking: Option<ResultMasking>,
    /// Rows kept for the outcome event, when the target asks for them.
    pub(super) capture: Capture,
    /// Bytes of a streamed (DataRow or CopyData) frame still to pass through.
    passthrough: usize,
    /// Rows sent since the last outcome (or changed, as its command tag says).
    pub(super) rows: u64,
    /// The server sent a FATAL (or PANIC) error: its closing the connection is explained.
    saw_fatal: bool,
    /// Masking sessions: the run as it goes to the client (frames copied, or rewritten).
    pub(super) out: Vec<u8>,
}

/// The frames at the front of the buffer, scanned: how many bytes go to the client and
/// the outcome events they make.
#[derive(Default)]
pub(super) struct Run {
    forward: usize,
    drafts: Vec<EventDraft>,
    /// A ReadyForQuery left the server owing nothing.
    became_idle: bool,
    /// The run holds something beyond protocol bookkeeping (rows, errors, notices):
    /// it may only reach the client once the records before it are durable.
    pub(super) carries_data: bool,
}

/// Runs the server → client direction until the relay ends; `buf` holds what was read
/// from the server before the relay started.
pub(super) async fn server_to_client(
    shared: &Shared,
    session: &Session,
    rd: &mut ReadHalf<BoxIo>,
    buf: &mut BytesMut,
    masking: Option<ResultMasking>,
    tables: &TableCache,
) -> End {
    let mut server = ServerSide {
        shared,
        session,
        tables,
        masking,
        capture: Capture::new(session.target().config.capture_rows),
        passthrough: 0,
        rows: 0,
        saw_fatal: false,
        out: Vec::new(),
    };
    loop {
        let mut run = Run::default();
        if let Err(end) = server.scan(buf, &mut run).await {
            return end;
        }
        // Queued before the client sees the outcome (see the module doc).
        if !run.drafts.is_empty() && session.record_later(run.drafts).await.is_err() {
            return End::OutcomeUnrecorded;
        }
        if let Err(e) = server.send(buf, run.forward, run.carries_data).await {
            return ended_by(e);
        }
        if run.became_idle {
            shared.idle.notify_waiters();
        }
        if let Err(end) = server.read(rd, buf).await {
            return end;
        }
    }
}

impl ServerSide<'_> {
    /// Scans the frames in `buf` from `run.forward` on, up to the first that is not all
    /// there (streamed frames excepted): outcomes noted, refusals swapped in, and when
    /// masking, the run assembled in `out`.
    async fn scan(&mut self, buf: &mut BytesMut, run: &mut Run) -> Result<(), End> {
        loop {
            let rest = buf.get(run.forward..).unwrap_or(&[]);
            if self.passthrough > 0 {
                let n = self.passthrough.min(rest.len());
                if n == 0 {
                    return Ok(());
                }
                run.forward += n;
                self.passthrough -= n;
                continue;
            }
            let h = match codec::header(rest) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(()),
                Err(e) => return Err(from_target(e)),
            };
            match self.mask_frame(h, rest, run).await? {
                Masked::Done => {
                    run.forward += h.frame_len;
                    continue;
                }
                Masked::Incomplete => return Ok(()),
                Masked::Inspect => {}
            }
            if matches!(h.tag, b'D' | b'd') {
                self.stream_row(h, rest, run);
                continue;
            }
            if h.frame_len > codec::MAX_INSPECTED_BACKEND {
                return Err(End::Failed(PostgresError::Unexpected(format!(
                    "the target sent a '{}' message of {} bytes",
                    char::from(h.tag),
                    h.frame_len
                ))));
            }
            let Some(body) = rest.get(5..h.frame_len) else {
                return Ok(());
            };
            // Masking: an error's echoed data is masked before it is read for the record.
            let masked_error = self.mask_error(h.tag, body)?;
            let body = match &masked_error {
                Some(frame) => frame.get(5..).unwrap_or(&[]),
                None => body,
            };
            run.carries_data |= !is_bookkeeping(h.tag);
            let (outcome, replacement) = self.read_frame(h.tag, body, run).map_err(from_target)?;
            if let Some(o) = outcome {
                self.note_outcome(o, run);
            }
            if self.masking.is_some() {
                // Masking: the run is assembled in `out`.
                match (&replacement, &masked_error) {
                    (Some(r), _) => self.out.extend_from_slice(r),
                    (None, Some(e)) => self.out.extend_from_slice(e),
                    (None, None) => self
                        .out
                        .extend_from_slice(rest.get(..h.frame_len).unwrap_or(&[])),
                }
                run.forward += h.frame_len;
                continue;
            }
            if let Some(bytes) = replacement {
                // Send what precedes the server's error, then the refusal in its place.
                self.send_refusal(buf, run, h.frame_len, &bytes).await?;
                continue;
            }
            run.forward += h.frame_len;
        }
    }

    /// Counts a DataRow or CopyData and streams it through, complete or not (a DataRow
    /// is captured if it is all there).
    fn stream_row(&mut self, h: Header, rest: &[u8], run: &mut Run) {
        run.carries_data = true;
        self.rows += 1;
        if h.tag == b'D'
            && self.capture.wants_row()
            && let Some(body) = rest.get(5..h.frame_len)
        {
            self.capture.row(body);
        }
        let n = h.frame_len.min(rest.len());
        run.forward += n;
        self.passthrough = h.frame_len - n;
    }

    /// Reads a frame for what the record and the relay need of it: the outcome it
    /// reports, if any, and for an error at a refusal marker, the refusal to send in its
    /// place.
    fn read_frame(
        &mut self,
        tag: u8,
        body: &[u8],
        run: &mut Run,
    ) -> Result<(Option<Outcome>, Option<BytesMut>), CodecError> {
        let outcome = match tag {
            b'C' => {
                let t = backend::command_complete(body)?;
                // Rows changed (INSERT 0 5) or, for reads, rows sent, as the tag says.
                if let Some(n) = backend::tag_rows(t) {
                    self.rows = n;
                }
                Some(Outcome::Complete(t.to_owned()))
            }
            b'E' => return backend::error_fields(body).map(|f| self.error(f)),
            b'S' => {
                let (name, value) = backend::parameter_status(body)?;
                if name == "standard_conforming_strings" {
                    let on = value == "on";
                    self.shared.with(|s| s.standard_conforming_strings = on);
                }
                None
            }
            b'I' => Some(Outcome::Empty),
            b'T' if self.capture.on() && self.masking.is_none() => {
                self.capture.describe(body);
                None
            }
            b's' => Some(Outcome::Suspended),
            b'Z' => {
                let status = backend::ready_for_query(body)?;
                run.became_idle |= self.shared.with(|s| {
                    s.tx_status = status;
                    s.outstanding = s.outstanding.saturating_sub(1);
                    s.outstanding == 0
                });
                None
            }
            _ => None,
        };
        Ok((outcome, None))
    }

    /// An error from the server as recorded, and the refusal that replaces it if it
    /// failed at a refusal marker.
    fn error(&mut self, f: backend::ErrorFields) -> (Option<Outcome>, Option<BytesMut>) {
        self.saw_fatal |= f.severity == "FATAL" || f.severity == "PANIC";
        // The server's failure at a refusal marker becomes Airlock's refusal.
        let Some(r) = refusal::claimed(self.shared, &f.message) else {
            return (Some(Outcome::Error(f)), None);
        };
        let mut bytes = BytesMut::new();
        r.encode(&mut bytes);
        let fields = backend::ErrorFields {
            severity: r.severity.into(),
            code: r.code.into(),
            message: r.message,
        };
        (Some(Outcome::Error(fields)), Some(bytes))
    }

    /// Queues the outcome event of the statement just answered, with its duration, rows,
    /// what was masked and the rows captured.
    fn note_outcome(&mut self, o: Outcome, run: &mut Run) {
        let now = Instant::now();
        let started = self.shared.with(|s| std::mem::replace(&mut s.mark, now));
        let micros = u64::try_from(now.duration_since(started).as_micros()).unwrap_or(u64::MAX);
        let mut draft = translate::result_draft(o, self.rows, micros);
        if let serde_json::Value::Object(d) = &mut draft.detail {
            if let Some(counts) = self.masking.as_mut().and_then(ResultMasking::take_counts) {
                d.insert("masked".into(), counts);
            }
            if let Some(captured) = self.capture.take() {
                d.insert("captured_rows".into(), captured);
                let columns = self.capture.columns();
                if columns.as_array().is_some_and(|c| !c.is_empty()) {
                    d.insert("captured_columns".into(), columns);
                }
            }
        }
        run.drafts.push(draft);
        self.rows = 0;
    }

    /// Sends the frames before the server's error at a refusal marker, then the refusal
    /// in its place (`frame_len` bytes of the error dropped), once the outcomes so far
    /// are queued.
    async fn send_refusal(
        &mut self,
        buf: &mut BytesMut,
        run: &mut Run,
        frame_len: usize,
        refusal: &[u8],
    ) -> Result<(), End> {
        if !run.drafts.is_empty()
            && self
                .session
                .record_later(std::mem::take(&mut run.drafts))
                .await
                .is_err()
        {
            return Err(End::OutcomeUnrecorded);
        }
        let mut chunk = buf.split_to(run.forward + frame_len);
        chunk.truncate(run.forward);
        chunk.extend_from_slice(refusal);
        self.shared.pass_gate().await.map_err(ended_by)?;
        self.shared.write_client(&chunk).await.map_err(ended_by)?;
        self.session.metrics().relayed_to_client(chunk.len());
        run.forward = 0;
        Ok(())
    }

    /// Sends the run to the client: its first `forward` bytes of `buf`, or when masking
    /// what was assembled in `out`; past the gate first if it carries data.
    async fn send(
        &mut self,
        buf: &mut BytesMut,
        forward: usize,
        carries_data: bool,
    ) -> Result<(), PostgresError> {
        if forward == 0 {
            return Ok(());
        }
        if self.masking.is_some() {
            let _ = buf.split_to(forward);
            if self.out.is_empty() {
                return Ok(());
            }
            if carries_data {
                self.shared.pass_gate().await?;
            }
            // Whole frames only: the client never holds part of one.
            self.shared.write_client(&self.out).await?;
            self.session.metrics().relayed_to_client(self.out.len());
            self.out.clear();
            if self.out.capacity() > 4 * READ_CHUNK {
                self.out.shrink_to(READ_CHUNK);
            }
            return Ok(());
        }
        let chunk = buf.split_to(forward);
        // Until the write completes the client may hold a partial frame (this future
        // can be dropped mid-write when the session ends).
        if carries_data {
            self.shared.pass_gate().await?;
        }
        self.shared.with(|s| s.mid_frame = true);
        self.shared.write_client(&chunk).await?;
        self.session.metrics().relayed_to_client(chunk.len());
        let partial = self.passthrough > 0;
        self.shared.with(|s| s.mid_frame = partial);
        Ok(())
    }

    /// Reads more from the server into `buf`; `Err` when the server is gone.
    async fn read(&mut self, rd: &mut ReadHalf<BoxIo>, buf: &mut BytesMut) -> Result<(), End> {
        buf.reserve(READ_CHUNK);
        let clean = buf.is_empty() && self.passthrough == 0;
        self.shared.with(|s| s.upstream_clean = clean);
        let read = rd.read_buf(buf).await;
        self.shared.with(|s| s.upstream_clean = false);
        match read {
            Ok(0) | Err(_) => Err(End::UpstreamClosed {
                explained: self.saw_fatal,
            }),
            Ok(_) => Ok(()),
        }
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

/// How the relay ends when the server sent something it cannot read.
pub(super) fn from_target(e: impl std::fmt::Display) -> End {
    End::Failed(PostgresError::Unexpected(format!("from the target: {e}")))
}
