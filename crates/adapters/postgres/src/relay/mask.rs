//! Masking results on their way to the client, for sessions with a masker: whole frames
//! are rewritten into the run (`ServerSide::out`) instead of streamed. Which description
//! masks which rows follows from what the client direction noted it forwarded
//! ([`Expect`]); anything that cannot be read, and so cannot be masked, ends the session
//! rather than pass unmasked.

use airlock_engine::masking::rules::Scan;
use bytes::BytesMut;

use super::End;
use super::server::{Run, ServerSide, from_target};
use super::state::Expect;
use crate::codec::{self, CodecError, Header};
use crate::error::PostgresError;
use crate::masking::{self, MAX_MASKED_FRAME, ResultMasking, messages, rows};

/// What masking did with a frame.
pub(super) enum Masked {
    /// It is in the run (as it came, rewritten, or dropped): forward past it.
    Done,
    /// Not all of it has arrived: read more first.
    Incomplete,
    /// Read it as any frame: the session does not mask, or the frame is not rewritten.
    Inspect,
}

impl ServerSide<'_> {
    /// Masks the frame at the front of `rest` into the run, if the session masks and the
    /// frame is one that masking rewrites or reads.
    pub(super) async fn mask_frame(
        &mut self,
        h: Header,
        rest: &[u8],
        run: &mut Run,
    ) -> Result<Masked, End> {
        if self.masking.is_none() {
            return Ok(Masked::Inspect);
        }
        // Masking rewrites whole messages: wait for all of one.
        if h.frame_len > MAX_MASKED_FRAME {
            return Err(End::Failed(PostgresError::Unexpected(format!(
                "the target sent a '{}' message of {} bytes, larger than masking handles ({} bytes); the session is closed rather than pass it unmasked",
                char::from(h.tag),
                h.frame_len,
                MAX_MASKED_FRAME
            ))));
        }
        let Some(frame) = rest.get(..h.frame_len) else {
            return Ok(Masked::Incomplete);
        };
        let body = frame.get(5..).unwrap_or(&[]);
        match h.tag {
            b'D' | b'd' => {
                run.carries_data = true;
                self.rows += 1;
                self.mask_row(h.tag, frame, body).map_err(from_target)?;
                Ok(Masked::Done)
            }
            b'T' | b'n' => {
                self.describe(h.tag, frame, body).await?;
                Ok(Masked::Done)
            }
            b'H' => {
                self.start_copy(body).await?;
                Ok(Masked::Inspect)
            }
            b'N' => {
                run.carries_data = true;
                self.mask_notice(h.tag, frame, body).map_err(from_target)?;
                Ok(Masked::Done)
            }
            b'Z' => {
                self.shared.with(|s| {
                    while let Some(e) = s.expect.pop_front() {
                        if matches!(e, Expect::Sync | Expect::Query(_)) {
                            break;
                        }
                    }
                });
                Ok(Masked::Inspect)
            }
            _ => Ok(Masked::Inspect),
        }
    }

    /// A DataRow or CopyData, masked into `out` (copied as it is when nothing in it is
    /// masked); a DataRow is captured as the client sees it.
    fn mask_row(&mut self, tag: u8, frame: &[u8], body: &[u8]) -> Result<(), CodecError> {
        let Some(m) = self.masking.as_mut() else {
            return Ok(());
        };
        let sent_from = self.out.len();
        let masked = match (tag, &m.plan) {
            (b'D', Some(plan)) => {
                rows::mask_data_row(&m.masker, plan, body, &mut self.out, &mut m.tally)
                    .map(|()| true)
            }
            (b'D', None) => Err(CodecError::Malformed {
                what: "DataRow",
                detail: "no RowDescription came before it",
            }),
            _ => mask_copy_data(m, body, &mut self.out),
        };
        if !masked? {
            self.out.extend_from_slice(frame);
        }
        if tag == b'D' && self.capture.wants_row() {
            self.capture
                .row(self.out.get(sent_from + 5..).unwrap_or(&[]));
        }
        Ok(())
    }

    /// A RowDescription or NoData: the plan that masks the rows after it, made for the
    /// statement it answers. The answer to a Describe that Airlock added is dropped.
    async fn describe(&mut self, tag: u8, frame: &[u8], body: &[u8]) -> Result<(), End> {
        let Some(m) = self.masking.as_mut() else {
            return Ok(());
        };
        // Whose answer is this: a Describe (Airlock's own is dropped),
        // or a statement of a simple Query.
        let (added, made_of) = self.shared.with(|s| match s.expect.front() {
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
        if tag == b'T' && computed.is_none() && m.reuse_plan(body) {
            self.capture.describe(body);
        } else if tag == b'T' {
            self.capture.describe(body);
            let description = body.to_vec();
            let fields = rows::row_description(body).map_err(from_target)?;
            let reusable = computed.is_none();
            m.describe(&fields, self.session.target(), self.tables, computed)
                .await;
            if reusable {
                m.remember_plan(description);
            }
        } else {
            m.plan = None;
        }
        if !added {
            self.out.extend_from_slice(frame);
        }
        Ok(())
    }

    /// A CopyOutResponse: how the rows of the COPY it starts are masked.
    async fn start_copy(&mut self, body: &[u8]) -> Result<(), End> {
        let Some(m) = self.masking.as_mut() else {
            return Ok(());
        };
        // The COPY this answers: of an Execute (noted at its Describe) or
        // the next COPY of the running simple Query.
        let copy = m.pending_copies.pop_front().or_else(|| {
            self.shared.with(|s| match s.expect.front_mut() {
                Some(Expect::Query(facts)) => facts.copies.pop_front(),
                _ => None,
            })
        });
        let (binary, columns) = masking::copy_columns(body).map_err(from_target)?;
        m.start_copy(copy, binary, columns, self.session.target())
            .await
            .map_err(|e| End::Failed(PostgresError::Unexpected(e)))
    }

    /// A NoticeResponse, masked into `out` (copied as it is when nothing in it is
    /// masked). A notice that cannot be read cannot be masked: never passed as is.
    fn mask_notice(&mut self, tag: u8, frame: &[u8], body: &[u8]) -> Result<(), CodecError> {
        let Some(m) = self.masking.as_mut() else {
            return Ok(());
        };
        if !messages::mask_notice(&m.masker, tag, body, &mut self.out, &mut m.tally)? {
            self.out.extend_from_slice(frame);
        }
        Ok(())
    }

    /// An ErrorResponse with the data it echoes masked, so that it is masked before it is
    /// read for the record; `None` if nothing in it is masked (or the session does not
    /// mask, or it is not an error).
    pub(super) fn mask_error(&mut self, tag: u8, body: &[u8]) -> Result<Option<Vec<u8>>, End> {
        if tag != b'E' {
            return Ok(None);
        }
        let Some(m) = self.masking.as_mut() else {
            return Ok(None);
        };
        let mut rewritten = Vec::new();
        match messages::mask_notice(&m.masker, tag, body, &mut rewritten, &mut m.tally) {
            Ok(true) => Ok(Some(rewritten)),
            Ok(false) => Ok(None),
            // Unreadable, so unmaskable: never passed as is.
            Err(e) => Err(from_target(e)),
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
        match masking::copy::mask_row(&m.masker, plan, body, &mut m.tally) {
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
        if m.masker.scan(body, &mut masked, &mut m.tally) == Scan::Clean {
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
