//! Masking a JSON response body while it streams: one document, or a sequence of them
//! (NDJSON, RFC 7464 JSON text sequences), fed in chunks of any size and split anywhere,
//! masked in memory bounded by the nesting depth and the longest single token, never by
//! the size of the body.
//!
//! The output is the input byte for byte (formatting, escapes and numbers as sent)
//! except where something is masked, with the semantics of [`super::json`]:
//!
//! - the value of an object key that a column rule names (`password`, `*_token`, `ssn`,
//!   any case, at any depth) is replaced whole, whatever its type, by the JSON string
//!   of [`Masker::whole`]; `null` stays `null`. Keys are matched on their decoded text,
//!   so `"pass\u0077ord"` is the key `password`;
//! - strings and keys are scanned by the detectors on their decoded text, so
//!   `"grace\u0040example.net"` is an address. A string in which something is masked is
//!   written again as a valid JSON string; one in which nothing is keeps its bytes;
//! - a number in which a detector finds something (a card number) becomes a string.
//!
//! Unlike [`super::json`], a value under a key of an observe-only column rule is still
//! scanned by the detectors of the other rules (that walk copies it through unscanned).
//!
//! Only the current string or number token is buffered, plus, under a masked key of a
//! `hash` or `partial` rule, the raw value (the mask is computed from it): each is
//! limited to `max_value_bytes`. A longer one, nesting deeper than [`MAX_DEPTH`], and
//! anything that is not JSON are errors; the caller withholds the rest of the body
//! (fail closed). Bytes that are not UTF-8 inside strings are tolerated as
//! [`super::json`] tolerates them.
//!
//! Hand-written rather than serde_json or a pull parser: those need the whole document
//! or a blocking reader, re-serialise it (reformatting it, turning large numbers into
//! floats), and none keeps the raw bytes of each token so that what is not masked is
//! passed through untouched.
#![deny(clippy::indexing_slicing)]

use std::sync::Arc;

use super::json::{MAX_DEPTH, whole_as_json};
use super::redact::Style;
use super::rules::{Apply, Masker, Scan, Tally};

#[cfg(test)]
mod tests;

/// Default limit of one buffered token or masked value: 8 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 8 << 20;

/// Buffers that grew beyond this are released after their token.
const RETAIN: usize = 64 * 1024;

/// The record separator that starts each text of an RFC 7464 JSON text sequence.
const RS: u8 = 0x1E;

/// What the body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Exactly one JSON value, with whitespace around it (`application/json`).
    Document,
    /// Any number of JSON values, separated by whitespace, newlines or the RS byte
    /// (0x1E) of RFC 7464 (NDJSON, JSON lines, `application/json-seq`). Objects,
    /// arrays and strings may also follow one another with nothing between them; a
    /// number, `true`, `false` or `null` must be followed by a separator.
    Sequence,
}

/// Why a body could not be masked. Offsets count bytes from the start of the body.
/// After an error the masker refuses everything: the caller must not forward the
/// rest of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonStreamError {
    /// The byte at `offset` cannot come there in JSON.
    #[error("not valid JSON at byte {offset}")]
    Invalid {
        /// The offending byte.
        offset: u64,
    },
    /// An object or array opened at `offset` is nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} at byte {offset}")]
    TooDeep {
        /// The opening bracket.
        offset: u64,
    },
    /// A string, number, or value under a masked key that starts at `offset` is longer
    /// than the limit.
    #[error("JSON value at byte {offset} is longer than {limit} bytes")]
    ValueTooLong {
        /// Where the value starts.
        offset: u64,
        /// The limit (`max_value_bytes`).
        limit: usize,
    },
    /// The body ended at `offset` inside a value, or before the one value of a
    /// [`Mode::Document`].
    #[error("JSON ended inside a value at byte {offset}")]
    Truncated {
        /// The length of the body.
        offset: u64,
    },
    /// `push` or `finish` after `finish`.
    #[error("JSON stream already finished")]
    Finished,
}

/// Masks a JSON body pushed in chunks; see the module documentation.
#[derive(Debug)]
pub struct JsonStreamMasker {
    masker: Arc<Masker>,
    mode: Mode,
    max_value_bytes: usize,
    state: State,
    /// Open objects and arrays, innermost last.
    stack: Vec<Container>,
    /// The column rule of the key just read, for the value that follows it.
    pending: Option<Apply>,
    /// The value under a masked key being read, if any.
    capture: Option<Capture>,
    /// The current string (its content, escapes as sent) or number token.
    tok: Vec<u8>,
    /// Where `tok` started.
    tok_start: u64,
    /// Scratch: the decoded string.
    dec: Vec<u8>,
    /// Scratch: what the masker writes.
    mask: Vec<u8>,
    /// The raw bytes of the captured value, when its rule needs them.
    held: Vec<u8>,
    tally: Tally,
    /// Bytes consumed before the current chunk.
    offset: u64,
    failed: Option<JsonStreamError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// A value under a masked key: read, not written, then replaced whole.
#[derive(Debug)]
struct Capture {
    apply: Apply,
    /// `stack.len()` where the value began: it ends when a value ends at this depth.
    depth: usize,
    /// The raw value goes to `held` (a hash or partial mask is computed from it).
    keep: bool,
    /// It is `null`, which stays `null`.
    null: bool,
    start: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between top-level values. `need_sep`: the last one was a number or literal.
    Top { need_sep: bool },
    /// The one value of a document was read: only whitespace may follow.
    Done,
    /// A value must come (after `:`, or `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ArrayStart,
    /// After `{`: a key or `}`.
    ObjectStart,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value in an object or array: `,` or the closing bracket.
    After,
    /// Inside a string (a key or a value).
    Str { key: bool, esc: Esc },
    /// Inside a number.
    Num(Num),
    /// Inside `true`, `false` or `null`; `at` bytes of `word` read.
    Lit { word: &'static [u8], at: usize },
    /// `finish` was called.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    No,
    /// After `\`.
    Backslash,
    /// After `\u` and this many hex digits.
    Hex(u8),
}

/// Where a number is in `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpInt,
}

impl Num {
    fn start(b: u8) -> Num {
        match b {
            b'-' => Num::Minus,
            b'0' => Num::Zero,
            _ => Num::Int,
        }
    }

    fn next(self, b: u8) -> Option<Num> {
        use Num::*;
        match (self, b) {
            (Minus, b'0') => Some(Zero),
            (Minus | Int, b'0'..=b'9') => Some(Int),
            (Zero | Int, b'.') => Some(Dot),
            (Zero | Int | Frac, b'e' | b'E') => Some(Exp),
            (Dot | Frac, b'0'..=b'9') => Some(Frac),
            (Exp, b'+' | b'-') => Some(ExpSign),
            (Exp | ExpSign | ExpInt, b'0'..=b'9') => Some(ExpInt),
            _ => None,
        }
    }

    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpInt)
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn invalid(offset: u64) -> JsonStreamError {
    JsonStreamError::Invalid { offset }
}

/// Drops a buffer's memory once it held a long token.
fn release(v: &mut Vec<u8>) {
    v.clear();
    if v.capacity() > RETAIN {
        *v = Vec::new();
    }
}

// === impl JsonStreamMasker ===

impl JsonStreamMasker {
    /// A masker for one body, with [`DEFAULT_MAX_VALUE_BYTES`].
    pub fn new(masker: Arc<Masker>, mode: Mode) -> JsonStreamMasker {
        JsonStreamMasker {
            masker,
            mode,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            state: State::Top { need_sep: false },
            stack: Vec::new(),
            pending: None,
            capture: None,
            tok: Vec::new(),
            tok_start: 0,
            dec: Vec::new(),
            mask: Vec::new(),
            held: Vec::new(),
            tally: Tally::default(),
            offset: 0,
            failed: None,
        }
    }

    /// Sets the longest string, number, or value under a masked key of a `hash` or
    /// `partial` rule (raw bytes) that is accepted; a longer one fails the stream.
    pub fn with_max_value_bytes(mut self, limit: usize) -> JsonStreamMasker {
        self.max_value_bytes = limit;
        self
    }

    /// Feeds the next bytes of the body (any split: inside strings, escapes, numbers,
    /// UTF-8 sequences) and appends to `out` the masked output they complete. A string
    /// or number is written once it ends, so some bytes may be held until a later push.
    ///
    /// On error nothing of this chunk is appended, and every later call fails with the
    /// same error.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), JsonStreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mark = out.len();
        match self.feed(chunk, out) {
            Ok(()) => {
                self.offset += chunk.len() as u64;
                Ok(())
            }
            Err(e) => Err(self.fail(e, out, mark)),
        }
    }

    /// Ends the body: writes a number that ends it, and checks that it ended between
    /// values (after the one value, for a [`Mode::Document`]).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), JsonStreamError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mark = out.len();
        if let State::Num(n) = self.state
            && n.complete()
        {
            self.number_end(out);
        }
        let ended = match self.state {
            State::Done => true,
            State::Top { .. } => self.mode == Mode::Sequence,
            State::Finished => return Err(JsonStreamError::Finished),
            _ => false,
        };
        if !ended {
            let e = JsonStreamError::Truncated {
                offset: self.offset,
            };
            return Err(self.fail(e, out, mark));
        }
        self.state = State::Finished;
        self.stack = Vec::new();
        release(&mut self.tok);
        release(&mut self.dec);
        release(&mut self.mask);
        release(&mut self.held);
        Ok(())
    }

    /// What was masked so far, taken: the next call counts from zero.
    pub fn tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Bytes of memory the masker's buffers hold (their capacity): bounded by the
    /// nesting depth and the longest token, whatever the size of the body.
    pub fn buffered(&self) -> usize {
        self.tok.capacity()
            + self.dec.capacity()
            + self.mask.capacity()
            + self.held.capacity()
            + self.stack.capacity() * std::mem::size_of::<Container>()
    }

    fn fail(&mut self, e: JsonStreamError, out: &mut Vec<u8>, mark: usize) -> JsonStreamError {
        out.truncate(mark);
        self.failed = Some(e.clone());
        self.capture = None;
        release(&mut self.tok);
        release(&mut self.dec);
        release(&mut self.mask);
        release(&mut self.held);
        e
    }

    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), JsonStreamError> {
        let mut i = 0;
        while let Some(&b) = chunk.get(i) {
            let at = self.offset + i as u64;
            let rest = chunk.get(i..).unwrap_or_default();
            match self.state {
                State::Str { key, esc: Esc::No } => {
                    // The run up to the next quote, backslash or control byte.
                    let n = rest
                        .iter()
                        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                        .unwrap_or(rest.len());
                    if n > 0 {
                        self.string_bytes(rest.get(..n).unwrap_or_default())?;
                        i += n;
                        continue;
                    }
                    match b {
                        b'"' => self.string_end(key, out)?,
                        b'\\' => {
                            self.string_bytes(b"\\")?;
                            self.state = State::Str {
                                key,
                                esc: Esc::Backslash,
                            };
                        }
                        _ => return Err(invalid(at)),
                    }
                }
                State::Str {
                    key,
                    esc: Esc::Backslash,
                } => {
                    let esc = match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Esc::No,
                        b'u' => Esc::Hex(0),
                        _ => return Err(invalid(at)),
                    };
                    self.string_bytes(&[b])?;
                    self.state = State::Str { key, esc };
                }
                State::Str {
                    key,
                    esc: Esc::Hex(n),
                } => {
                    if !b.is_ascii_hexdigit() {
                        return Err(invalid(at));
                    }
                    self.string_bytes(&[b])?;
                    let esc = if n == 3 { Esc::No } else { Esc::Hex(n + 1) };
                    self.state = State::Str { key, esc };
                }
                State::Num(n) => match n.next(b) {
                    Some(next) => {
                        self.token_byte(b)?;
                        self.state = State::Num(next);
                    }
                    // The byte after a number is read again in the state after it.
                    None if n.complete() => {
                        self.number_end(out);
                        continue;
                    }
                    None => return Err(invalid(at)),
                },
                State::Lit { word, at: k } => {
                    if word.get(k) != Some(&b) {
                        return Err(invalid(at));
                    }
                    if k + 1 == word.len() {
                        self.sink(word, out)?;
                        self.value_done(out, true);
                    } else {
                        self.state = State::Lit { word, at: k + 1 };
                    }
                }
                State::Top { need_sep } => {
                    if is_ws(b) || (b == RS && self.mode == Mode::Sequence) {
                        out.push(b);
                        self.state = State::Top { need_sep: false };
                    } else if need_sep {
                        return Err(invalid(at));
                    } else {
                        self.begin_value(b, at, out)?;
                    }
                }
                State::Done => {
                    let n = rest.iter().take_while(|c| is_ws(**c)).count();
                    if n == 0 {
                        return Err(invalid(at));
                    }
                    out.extend_from_slice(rest.get(..n).unwrap_or_default());
                    i += n;
                    continue;
                }
                State::Value
                | State::ArrayStart
                | State::ObjectStart
                | State::Key
                | State::Colon
                | State::After => {
                    let n = rest.iter().take_while(|c| is_ws(**c)).count();
                    if n > 0 {
                        self.sink(rest.get(..n).unwrap_or_default(), out)?;
                        i += n;
                        continue;
                    }
                    self.structural(b, at, out)?;
                }
                State::Finished => return Err(JsonStreamError::Finished),
            }
            i += 1;
        }
        Ok(())
    }

    /// A byte other than whitespace between tokens inside an object or array.
    fn structural(&mut self, b: u8, at: u64, out: &mut Vec<u8>) -> Result<(), JsonStreamError> {
        match (self.state, b) {
            (State::Value, _) => self.begin_value(b, at, out),
            (State::ArrayStart | State::After, b']')
            | (State::ObjectStart | State::After, b'}') => self.close(b, at, out),
            (State::ArrayStart, _) => self.begin_value(b, at, out),
            (State::ObjectStart | State::Key, b'"') => {
                self.begin_string(true, at)?;
                Ok(())
            }
            (State::Colon, b':') => {
                self.sink(b":", out)?;
                self.state = State::Value;
                Ok(())
            }
            (State::After, b',') => {
                self.sink(b",", out)?;
                self.state = match self.stack.last() {
                    Some(Container::Object) => State::Key,
                    _ => State::Value,
                };
                Ok(())
            }
            _ => Err(invalid(at)),
        }
    }

    /// The first byte `b` (at `at`) of a value.
    fn begin_value(&mut self, b: u8, at: u64, out: &mut Vec<u8>) -> Result<(), JsonStreamError> {
        if let Some(apply) = self.pending.take()
            && self.capture.is_none()
        {
            // Only `null` begins with `n`; it stays as it is and is not counted.
            let null = b == b'n';
            if apply.enforce {
                self.held.clear();
                self.capture = Some(Capture {
                    keep: apply.style != Style::Redact,
                    apply,
                    depth: self.stack.len(),
                    null,
                    start: at,
                });
            } else if !null {
                // Observe-only: counted, and the value is walked (and scanned) as usual.
                self.masker
                    .whole(&apply, &[], &mut self.mask, &mut self.tally);
                self.mask.clear();
            }
        }
        match b {
            b'{' | b'[' => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(JsonStreamError::TooDeep { offset: at });
                }
                let (container, state) = if b == b'{' {
                    (Container::Object, State::ObjectStart)
                } else {
                    (Container::Array, State::ArrayStart)
                };
                self.stack.push(container);
                self.sink(&[b], out)?;
                self.state = state;
            }
            b'"' => self.begin_string(false, at)?,
            b'-' | b'0'..=b'9' => {
                self.tok.clear();
                self.tok_start = at;
                self.token_byte(b)?;
                self.state = State::Num(Num::start(b));
            }
            b't' | b'f' | b'n' => {
                let word: &'static [u8] = match b {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                self.state = State::Lit { word, at: 1 };
            }
            _ => return Err(invalid(at)),
        }
        Ok(())
    }

    fn begin_string(&mut self, key: bool, at: u64) -> Result<(), JsonStreamError> {
        self.tok.clear();
        self.tok_start = at;
        if self.capture.is_some() {
            self.hold(b"\"")?;
        }
        self.state = State::Str { key, esc: Esc::No };
        Ok(())
    }

    /// `]` or `}` at `at`.
    fn close(&mut self, b: u8, at: u64, out: &mut Vec<u8>) -> Result<(), JsonStreamError> {
        let want = if b == b'}' {
            Container::Object
        } else {
            Container::Array
        };
        if self.stack.last() != Some(&want) {
            return Err(invalid(at));
        }
        self.stack.pop();
        self.sink(&[b], out)?;
        self.value_done(out, false);
        Ok(())
    }

    /// A value ended (`scalar`: a number or literal, which needs a separator after it
    /// at the top level). Writes the mask of a captured value that ends here.
    fn value_done(&mut self, out: &mut Vec<u8>, scalar: bool) {
        if let Some(c) = self.capture.take_if(|c| c.depth == self.stack.len()) {
            if c.null {
                out.extend_from_slice(b"null");
            } else {
                self.mask.clear();
                if self
                    .masker
                    .whole(&c.apply, &self.held, &mut self.mask, &mut self.tally)
                {
                    whole_as_json(&self.mask, out);
                } else {
                    out.extend_from_slice(&self.held);
                }
                release(&mut self.mask);
            }
            release(&mut self.held);
        }
        self.state = match (self.stack.last(), self.mode) {
            (Some(_), _) => State::After,
            (None, Mode::Document) => State::Done,
            (None, Mode::Sequence) => State::Top { need_sep: scalar },
        };
    }

    /// Bytes between tokens or of a literal: to the output, or held in a capture.
    fn sink(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), JsonStreamError> {
        if self.capture.is_some() {
            self.hold(bytes)
        } else {
            out.extend_from_slice(bytes);
            Ok(())
        }
    }

    /// Bytes of a captured value.
    fn hold(&mut self, bytes: &[u8]) -> Result<(), JsonStreamError> {
        let Some(c) = &self.capture else {
            return Ok(());
        };
        if !c.keep {
            return Ok(());
        }
        if self.held.len() + bytes.len() > self.max_value_bytes {
            return Err(JsonStreamError::ValueTooLong {
                offset: c.start,
                limit: self.max_value_bytes,
            });
        }
        self.held.extend_from_slice(bytes);
        Ok(())
    }

    /// Bytes of the current string's content.
    fn string_bytes(&mut self, bytes: &[u8]) -> Result<(), JsonStreamError> {
        if self.capture.is_some() {
            return self.hold(bytes);
        }
        if self.tok.len() + bytes.len() > self.max_value_bytes {
            return Err(JsonStreamError::ValueTooLong {
                offset: self.tok_start,
                limit: self.max_value_bytes,
            });
        }
        self.tok.extend_from_slice(bytes);
        Ok(())
    }

    fn token_byte(&mut self, b: u8) -> Result<(), JsonStreamError> {
        self.string_bytes(&[b])
    }

    /// The closing quote of a string: decode, match a key against the column rules,
    /// scan, write.
    fn string_end(&mut self, key: bool, out: &mut Vec<u8>) -> Result<(), JsonStreamError> {
        if self.capture.is_some() {
            // Validated and held; a key inside a masked value matters no more.
            self.hold(b"\"")?;
            if key {
                self.state = State::Colon;
            } else {
                self.value_done(out, false);
            }
            return Ok(());
        }
        let decoded: &[u8] = if self.tok.contains(&b'\\') {
            decode(&self.tok, &mut self.dec);
            &self.dec
        } else {
            &self.tok
        };
        if key {
            self.pending = self
                .masker
                .name_is_masked(&String::from_utf8_lossy(decoded));
        }
        self.mask.clear();
        out.push(b'"');
        if self.masker.scan(decoded, &mut self.mask, &mut self.tally) == Scan::Masked {
            encode(&self.mask, out);
        } else {
            out.extend_from_slice(&self.tok);
        }
        out.push(b'"');
        release(&mut self.tok);
        release(&mut self.dec);
        release(&mut self.mask);
        if key {
            self.state = State::Colon;
        } else {
            self.value_done(out, false);
        }
        Ok(())
    }

    /// The end of a complete number (read past it, or at the end of the body).
    fn number_end(&mut self, out: &mut Vec<u8>) {
        if self.capture.is_none() {
            self.mask.clear();
            if self.masker.scan(&self.tok, &mut self.mask, &mut self.tally) == Scan::Masked {
                // A number that holds a card number becomes a string; replacements
                // need no escaping.
                whole_as_json(&self.mask, out);
            } else {
                out.extend_from_slice(&self.tok);
            }
            release(&mut self.tok);
            release(&mut self.mask);
        }
        self.value_done(out, true);
    }
}

/// Decodes the content of a valid JSON string (`raw`, escapes as sent) into `dec`. A
/// lone surrogate escape is written as its generalised UTF-8 form (as WTF-8 does), so
/// that [`encode`] writes it back as the same escape.
fn decode(raw: &[u8], dec: &mut Vec<u8>) {
    dec.clear();
    let mut i = 0;
    while let Some(rest) = raw.get(i..).filter(|r| !r.is_empty()) {
        let Some(k) = rest.iter().position(|&c| c == b'\\') else {
            dec.extend_from_slice(rest);
            return;
        };
        dec.extend_from_slice(rest.get(..k).unwrap_or_default());
        i += k;
        let Some(&e) = raw.get(i + 1) else { return };
        i += 2;
        let byte = match e {
            b'b' => 0x08,
            b'f' => 0x0C,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let Some(mut code) = hex4(raw, i) else { return };
                i += 4;
                if (0xD800..0xDC00).contains(&code)
                    && raw.get(i) == Some(&b'\\')
                    && raw.get(i + 1) == Some(&b'u')
                    && let Some(low) = hex4(raw, i + 2)
                    && (0xDC00..0xE000).contains(&low)
                {
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                    i += 6;
                }
                push_code(code, dec);
                continue;
            }
            // `"`, `\`, `/`
            other => other,
        };
        dec.push(byte);
    }
}

fn hex4(raw: &[u8], i: usize) -> Option<u32> {
    let digits = std::str::from_utf8(raw.get(i..i + 4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

fn push_code(code: u32, dec: &mut Vec<u8>) {
    match char::from_u32(code) {
        Some(c) => {
            let mut buf = [0u8; 4];
            dec.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        // A lone surrogate (D800–DFFF): three bytes, as UTF-8 would encode it.
        None => dec.extend_from_slice(&[
            0xE0 | ((code >> 12) & 0x0F) as u8,
            0x80 | ((code >> 6) & 0x3F) as u8,
            0x80 | (code & 0x3F) as u8,
        ]),
    }
}

/// Writes `text` (a masked decoded string) as the content of a JSON string: `"`, `\`
/// and control characters escaped, UTF-8 copied, a lone surrogate written back as its
/// `\u` escape, and any other byte that is not UTF-8 as `\ufffd`, so the output is
/// always valid JSON.
fn encode(text: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        if b < 0x80 {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0C => out.extend_from_slice(b"\\f"),
                0..0x20 => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
                    out.push(HEX.get(usize::from(b & 0xF)).copied().unwrap_or(b'0'));
                }
                _ => out.push(b),
            }
            i += 1;
            continue;
        }
        if let Some(&[0xED, b1 @ 0xA0..=0xBF, b2 @ 0x80..=0xBF]) = text.get(i..i + 3) {
            let code = 0xD000 | (u32::from(b1 & 0x3F) << 6) | u32::from(b2 & 0x3F);
            out.extend_from_slice(format!("\\u{code:04x}").as_bytes());
            i += 3;
            continue;
        }
        let len = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => 0,
        };
        match text.get(i..i + len) {
            Some(seq) if len > 0 && std::str::from_utf8(seq).is_ok() => {
                out.extend_from_slice(seq);
                i += len;
            }
            _ => {
                out.extend_from_slice(b"\\ufffd");
                i += 1;
            }
        }
    }
}
