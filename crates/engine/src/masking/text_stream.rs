//! Masking a text response body while it streams: the detectors run over text fed in
//! chunks of any size and split anywhere, and no finding is missed, or masked
//! differently, because it straddles a chunk boundary.
//!
//! Text is held back and released, scanned, only up to a safe cut, a place no finding
//! crosses:
//!
//! - after the last newline held: no detector finding holds a newline, except a
//!   private key block, which is never cut (below);
//! - when more than [`SOFT_LIMIT`] bytes are held without a newline, after a whitespace
//!   byte that is not a separator inside a value: cards, IBANs and phone numbers are
//!   groups joined by single spaces (`4111 1111 1111 1111`, `GB82 WEST 1234 …`,
//!   `+1 (415) 555-2671`), so a single space between two bytes that may belong to such a
//!   group (letters, digits, bytes above 0x7F, `()+-` and the escape bytes `&#;%\`) is
//!   not a cut; a run of two whitespace bytes, or one next to other punctuation, is;
//! - a `-----BEGIN … PRIVATE KEY …-----` block is held, newlines and all, until its
//!   `-----END …-----` line, as the detector masks it from one to the other.
//!
//! Limits, where the output may differ from a scan of the whole body:
//!
//! - when [`HARD_LIMIT`] bytes are held without a cut (a megabyte with no newline and
//!   no safe whitespace), the text is cut there anyway, at a UTF-8 boundary. A value
//!   straddling that cut may be missed: a run of letters, digits or base64 a megabyte
//!   long holding a key or token near the cut. A private key block open at such a cut
//!   is masked from the cut on until its END line (fail closed);
//! - a custom regex detector whose matches can hold a newline, or two whitespace
//!   bytes, may miss a match that a cut splits.
//!
//! Bytes that are not UTF-8 pass through the detectors as bytes; a cut never falls
//! inside a UTF-8 sequence (except, at the hard limit, in text that is not UTF-8).
//! Memory: at most [`HARD_LIMIT`] plus [`SOFT_LIMIT`] bytes are held, whatever the
//! size of the body or of the chunks pushed.
//!
//! Hand-written: where a finding may straddle a cut depends on the shapes of this
//! crate's own detectors, which no general streaming search knows.
#![deny(clippy::indexing_slicing)]

use std::sync::Arc;

use super::rules::{Masker, Scan, Tally};

#[cfg(test)]
mod tests;

/// Bytes held without a newline before a whitespace cut is taken.
pub const SOFT_LIMIT: usize = 64 * 1024;
/// Bytes held without any safe cut before the text is cut anyway.
pub const HARD_LIMIT: usize = 1024 * 1024;

/// What the detector's private key blocks start with.
const BEGIN: &[u8] = b"-----BEGIN ";
/// Longest PEM label looked for after `-----BEGIN `.
const MAX_LABEL: usize = 64;

/// Masks a text body pushed in chunks; see the module documentation.
#[derive(Debug)]
pub struct TextStreamMasker {
    masker: Arc<Masker>,
    /// Text not yet released.
    pending: Vec<u8>,
    /// `pending[..walked]` was looked at for cuts and private key blocks.
    walked: usize,
    /// The last cut after a newline in `pending`, 0 for none.
    nl_cut: usize,
    /// The last safe whitespace cut in `pending`, 0 for none.
    ws_cut: usize,
    /// A private key block whose END line was not seen yet.
    open: Option<Block>,
    /// The BEGIN line of a block cut at the hard limit: put before the next text
    /// released, so the detector masks it up to the END line.
    carry: Option<Vec<u8>>,
    scratch: Vec<u8>,
    tally: Tally,
}

#[derive(Debug)]
struct Block {
    /// Where its BEGIN line starts in `pending`.
    begin: usize,
    /// `-----BEGIN <label>-----`.
    header: Vec<u8>,
    /// `-----END <label>-----`.
    end: Vec<u8>,
    /// `pending[..searched]` holds no END line.
    searched: usize,
    /// Its start was released at the hard limit.
    carried: bool,
}

/// What follows a `-----BEGIN ` marker.
enum Header {
    /// Not enough text yet to tell.
    Incomplete,
    /// Not a private key block.
    Other,
    /// A private key block: its BEGIN line's length and its END line.
    Private { len: usize, end: Vec<u8> },
}

fn header(t: &[u8], at_end: bool) -> Header {
    let Some(rest) = t.get(BEGIN.len()..) else {
        return Header::Other;
    };
    let window = rest.get(..MAX_LABEL + 5).unwrap_or(rest);
    let found = window
        .windows(5)
        .position(|w| w == b"-----")
        .filter(|k| !window.get(..*k).unwrap_or_default().contains(&b'\n'));
    let Some(k) = found else {
        return if rest.len() < MAX_LABEL + 5 && !rest.contains(&b'\n') && !at_end {
            Header::Incomplete
        } else {
            Header::Other
        };
    };
    let label = rest.get(..k).unwrap_or_default();
    // Looser than the detector (which knows a few labels): holding a block that is no
    // key only delays it.
    if !label.windows(11).any(|w| w == b"PRIVATE KEY") {
        return Header::Other;
    }
    let mut end = b"-----END ".to_vec();
    end.extend_from_slice(label);
    end.extend_from_slice(b"-----");
    Header::Private {
        len: BEGIN.len() + k + 5,
        end,
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(k) = hay
        .get(from..)
        .and_then(|h| h.iter().position(|&b| b == first))
    {
        let at = from + k;
        match hay.get(at..at + needle.len()) {
            Some(w) if w == needle => return Some(at),
            Some(_) => from = at + 1,
            None => return None,
        }
    }
    None
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C)
}

/// Whether `b` may be part of a value whose groups are joined by single spaces (or of
/// an escape that decodes into one).
fn glue(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || b >= 0x80
        || matches!(
            b,
            b'(' | b')' | b'+' | b'-' | b'&' | b'#' | b';' | b'%' | b'\\'
        )
}

// === impl TextStreamMasker ===

impl TextStreamMasker {
    /// A masker for one body.
    pub fn new(masker: Arc<Masker>) -> TextStreamMasker {
        TextStreamMasker {
            masker,
            pending: Vec::new(),
            walked: 0,
            nl_cut: 0,
            ws_cut: 0,
            open: None,
            carry: None,
            scratch: Vec::new(),
            tally: Tally::default(),
        }
    }

    /// Feeds the next bytes of the body and appends to `out` the masked text that can
    /// be released; the rest is held for a later push or [`TextStreamMasker::finish`].
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        // In pieces, so that a huge chunk is not held whole.
        for piece in chunk.chunks(SOFT_LIMIT) {
            // Grown by doubling, but never past what may be held.
            let len = self.pending.len();
            let needed = len + piece.len();
            let capacity = self.pending.capacity();
            if needed > capacity {
                let grown = (2 * capacity).min(HARD_LIMIT + SOFT_LIMIT).max(needed);
                self.pending.reserve_exact(grown - len);
            }
            self.pending.extend_from_slice(piece);
            self.release(out);
        }
    }

    /// Ends the body: masks and appends everything still held. The masker can then
    /// take another body.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.walk(true);
        let all = self.pending.len();
        if all > 0 {
            self.emit(all, out);
        }
        self.pending = Vec::new();
        self.scratch = Vec::new();
        self.walked = 0;
        self.nl_cut = 0;
        self.ws_cut = 0;
        self.open = None;
        self.carry = None;
    }

    /// What was masked so far, taken: the next call counts from zero.
    pub fn tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Bytes of memory the masker's buffers hold (their capacity): at most about
    /// [`HARD_LIMIT`] plus [`SOFT_LIMIT`], twice that while a cut is masked.
    pub fn buffered(&self) -> usize {
        self.pending.capacity()
            + self.scratch.capacity()
            + self.carry.as_ref().map_or(0, Vec::capacity)
    }

    /// Releases text up to the safe cuts found so far.
    fn release(&mut self, out: &mut Vec<u8>) {
        loop {
            self.walk(false);
            let len = self.pending.len();
            let cut = if self.nl_cut > 0 {
                self.nl_cut
            } else if len > SOFT_LIMIT && self.ws_cut > 0 {
                self.ws_cut
            } else if len > HARD_LIMIT {
                self.forced_cut()
            } else {
                return;
            };
            self.emit(cut, out);
        }
    }

    /// Looks at the text not walked yet: notes cuts outside private key blocks, and
    /// opens and closes blocks. `at_end`: no more text will come.
    fn walk(&mut self, at_end: bool) {
        loop {
            let len = self.pending.len();
            if let Some(block) = &mut self.open {
                let from = block.searched;
                let rest = self.pending.get(from..).unwrap_or_default();
                match find(rest, &block.end) {
                    Some(k) => {
                        self.walked = from + k + block.end.len();
                        self.open = None;
                        continue;
                    }
                    None => {
                        // The END line may have begun in the last bytes.
                        let keep = block.end.len().saturating_sub(1);
                        block.searched = len.saturating_sub(keep).max(from);
                        return;
                    }
                }
            }
            let from = self.walked;
            let rest = self.pending.get(from..).unwrap_or_default();
            let Some(k) = find(rest, BEGIN) else {
                let upto = if at_end {
                    len
                } else {
                    len.saturating_sub(BEGIN.len() - 1).max(from)
                };
                self.note_cuts(from, upto);
                self.walked = upto;
                return;
            };
            let p = from + k;
            self.note_cuts(from, p);
            match header(self.pending.get(p..).unwrap_or_default(), at_end) {
                Header::Incomplete => {
                    self.walked = p;
                    return;
                }
                Header::Other => self.walked = p + 1,
                Header::Private { len: h, end } => {
                    self.open = Some(Block {
                        begin: p,
                        header: self.pending.get(p..p + h).unwrap_or_default().to_vec(),
                        end,
                        searched: p + h,
                        carried: false,
                    });
                    self.walked = p + h;
                }
            }
        }
    }

    /// Notes the cuts after the bytes `pending[from..to]`.
    fn note_cuts(&mut self, from: usize, to: usize) {
        let t = &self.pending;
        for i in from..to {
            let Some(&b) = t.get(i) else { break };
            if !is_ws(b) {
                continue;
            }
            let cut = i + 1;
            if b == b'\n' {
                self.nl_cut = cut;
                continue;
            }
            // The byte after must be known; the first byte held follows a cut.
            let Some(&next) = t.get(cut) else { break };
            let prev = i
                .checked_sub(1)
                .and_then(|j| t.get(j))
                .copied()
                .unwrap_or(b' ');
            if is_ws(prev) || is_ws(next) || !glue(prev) || !glue(next) {
                self.ws_cut = cut;
            }
        }
    }

    /// A cut at the hard limit, at a UTF-8 boundary when there is one near.
    fn forced_cut(&mut self) -> usize {
        let continuation = |i: usize| self.pending.get(i).is_some_and(|b| b & 0xC0 == 0x80);
        let cut = (HARD_LIMIT - 3..=HARD_LIMIT)
            .rev()
            .find(|&c| !continuation(c))
            .unwrap_or(HARD_LIMIT);
        if let Some(block) = &mut self.open
            && block.begin < cut
        {
            block.carried = true;
            self.carry = Some(block.header.clone());
        }
        cut
    }

    /// Masks `pending[..cut]` to `out` and drops it.
    fn emit(&mut self, cut: usize, out: &mut Vec<u8>) {
        let text = self.pending.get(..cut).unwrap_or_default();
        match &self.carry {
            None => {
                if self.masker.scan(text, out, &mut self.tally) == Scan::Clean {
                    out.extend_from_slice(text);
                }
            }
            Some(header) => {
                // The rest of a key block: scanned behind its BEGIN line.
                self.scratch.clear();
                self.scratch.extend_from_slice(header);
                self.scratch.extend_from_slice(text);
                let mark = out.len();
                if self.masker.scan(&self.scratch, out, &mut self.tally) == Scan::Clean {
                    out.extend_from_slice(text);
                } else if out.get(mark..).is_some_and(|o| o.starts_with(header)) {
                    out.drain(mark..mark + header.len());
                }
                self.scratch = Vec::new();
            }
        }
        self.pending.drain(..cut);
        if self.pending.capacity() > 2 * SOFT_LIMIT && self.pending.len() < SOFT_LIMIT {
            self.pending.shrink_to(SOFT_LIMIT);
        }
        self.walked = self.walked.saturating_sub(cut);
        self.nl_cut = self.nl_cut.saturating_sub(cut);
        self.ws_cut = self.ws_cut.saturating_sub(cut);
        match &mut self.open {
            Some(block) => {
                block.begin = block.begin.saturating_sub(cut);
                block.searched = block.searched.saturating_sub(cut);
                if !block.carried {
                    self.carry = None;
                }
            }
            None => self.carry = None,
        }
    }
}
