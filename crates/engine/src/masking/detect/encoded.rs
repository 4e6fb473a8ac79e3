//! Encoded forms of a value: escapes (`%40`, `\u0040`, `&#64;`, full-width `＠`) and
//! base64 or hex runs. The detectors themselves only read plain ASCII; this module turns
//! an encoded text into plain bytes they can read, with the way back to the original
//! offsets, so that an address written `ada%40example.com` or `YWRhQGV4YW1wbGUuY29t` is
//! masked like `ada@example.com` (fail closed: what decodes to PII is PII).
//!
//! # The escape view
//!
//! The main pass notes whether the text holds an escape ([`starts_escape`]); only then is
//! a [`View`] built: every escape is decoded (`%HH`, `\uHHHH` with surrogate pairs,
//! `\xHH`, `\/`, `&#NN;`, `&#xHH;`), every full-width form U+FF01..U+FF5E (full-width
//! digits, letters, `＠`, `．`) is folded to its ASCII twin, and the view records where
//! each escape and each copied stretch came from. The detectors run on the view and
//! their findings are mapped back to whole source escapes. `\\` is copied as it is, so that
//! `\\u0040` (an escaped backslash, then text) is not read as an `@`.
//!
//! # Runs
//!
//! [`runs`] finds the runs of base64 characters (`[A-Za-z0-9+/_-]`) of at least
//! [`MIN_RUN`] bytes. Such a run always holds a whole aligned 8-byte word, so the search
//! reads the text 8 bytes at a time and rejects a word with a few integer operations
//! and one branch when it holds a byte at or above 0x80, below `+`, or a `.`, `,` or
//! `:` (spaces, tabs, quotes, non-ASCII text, decimals and times): ordinary text costs
//! about a cycle per 8 bytes. Canonical UUIDs, the commonest run in result rows, are
//! skipped whole ([`is_uuid`]). A run that looks like base64 (a letter outside `a-f`, and two of upper case, lower
//! case and digits: base64 of text always has them, plain words, UUIDs and hex hashes
//! do not) is decoded at each of the four character alignments (a prefix glued before
//! it shifts the alignment), and a hex run of at least [`MIN_HEX`] digits
//! (PostgreSQL's `bytea` output, hex-encoded strings) at both; the detectors read what
//! it decodes to when that is text ([`looks_like_text`]), not binary data. Long runs are
//! decoded in overlapping chunks, so memory stays bounded.

/// Shortest base64 run that is looked into: 11 bytes of text (`ab@cde.com`). 15 is the
/// shortest length that always holds an aligned 8-byte word, which the search relies on.
pub(super) const MIN_RUN: usize = 15;
/// Shortest hex run that is decoded: 8 bytes of text. Shorter hex runs are UUID groups,
/// ids and colours.
pub(super) const MIN_HEX: usize = 16;
/// Source bytes decoded at a time; chunks overlap by [`OVERLAP`] so that a value cut by a
/// chunk end is whole in the next chunk.
pub(super) const CHUNK: usize = 64 * 1024;
/// More than the encoded size of the longest bounded finding (an e-mail address: 318
/// bytes, 6 source bytes each when every byte is a `\u` escape).
pub(super) const OVERLAP: usize = 2048;

/// Whether the byte at `i` (a `%`, `\`, `&` or 0xEF) begins an escape the view decodes
/// into something a detector reads: a `%` or `\x` byte, a `\u` or `&#` character, `\/`,
/// or a full-width digit, letter or `＠`. Full-width punctuation such as `，` and `（`,
/// common in CJK text, does not make a view: it cannot start or join a value.
#[inline]
pub(super) fn starts_escape(t: &[u8], i: usize) -> bool {
    let (b1, b2) = (at(t, i + 1), at(t, i + 2));
    match at(t, i) {
        b'%' => hex(b1).is_some() && hex(b2).is_some(),
        b'\\' => match b1 {
            b'u' | b'U' => (2..6).all(|k| hex(at(t, i + k)).is_some()),
            b'x' => hex(b2).is_some() && hex(at(t, i + 3)).is_some(),
            b'/' => true,
            _ => false,
        },
        b'&' => b1 == b'#',
        0xEF => matches!((b1, b2), (0xBC, 0x90..=0x99 | 0xA0..=0xBA) | (0xBD, 0x81..=0x9A)),
        _ => false,
    }
}

#[inline]
fn at(t: &[u8], i: usize) -> u8 {
    t.get(i).copied().unwrap_or(0)
}

#[inline]
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The value of the `n` hex digits at `i`, if they all are.
fn hex_value(t: &[u8], i: usize, n: usize) -> Option<u32> {
    (i..i + n).try_fold(0u32, |v, p| Some((v << 4) | u32::from(hex(at(t, p))?)))
}

/// A piece of a [`View`]: from view byte `view` on (to the next piece), either source
/// bytes copied one for one from `src`, or the bytes an escape `src..end` decodes to.
#[derive(Clone, Copy)]
struct Piece {
    view: usize,
    src: usize,
    /// The end of the escape; `None` for copied bytes.
    escape_end: Option<usize>,
}

/// A decoded copy of part of a text, with the way back: plain stretches are copied in
/// bulk, and only escapes and stretch starts are recorded ([`Piece`]), so building a
/// view costs about a copy of the text.
#[derive(Default)]
pub(super) struct View {
    pub(super) text: Vec<u8>,
    pieces: Vec<Piece>,
}

impl View {
    /// The source range of the view's bytes `start..end` (`start < end`): from the
    /// start of the first byte's source to the end of the last one's, so that an escape
    /// is always whole.
    pub(super) fn source(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        let (s, _) = self.source_of(start)?;
        let (_, e) = self.source_of(end.checked_sub(1)?)?;
        Some((s, e))
    }

    /// The source range view byte `v` came from.
    fn source_of(&self, v: usize) -> Option<(usize, usize)> {
        let k = self
            .pieces
            .partition_point(|p| p.view <= v)
            .checked_sub(1)?;
        let piece = self.pieces.get(k)?;
        Some(match piece.escape_end {
            Some(end) => (piece.src, end),
            None => {
                let p = piece.src + (v - piece.view);
                (p, p + 1)
            }
        })
    }

    /// Copies `t[from..to]` as it is.
    fn copy(&mut self, t: &[u8], from: usize, to: usize) {
        let Some(bytes) = t.get(from..to).filter(|b| !b.is_empty()) else {
            return;
        };
        self.pieces.push(Piece {
            view: self.text.len(),
            src: from,
            escape_end: None,
        });
        self.text.extend_from_slice(bytes);
    }

    /// Appends what the escape `t[from..to]` decodes to.
    fn escape(&mut self, bytes: &[u8], from: usize, to: usize) {
        self.pieces.push(Piece {
            view: self.text.len(),
            src: from,
            escape_end: Some(to),
        });
        self.text.extend_from_slice(bytes);
        self.fold_full_width();
    }

    fn escape_char(&mut self, c: char, from: usize, to: usize) {
        let mut buf = [0u8; 4];
        self.escape(c.encode_utf8(&mut buf).as_bytes(), from, to);
    }

    /// A full-width form just completed by an escape (`EF BC 81..BF`, `EF BD 80..9E`,
    /// however its bytes were written: `%EF%BC%A0`, `\uff20`) becomes its ASCII twin,
    /// mapped to all of its source. Full-width forms written as they are never get here:
    /// [`View::decode`] folds them as it meets them.
    fn fold_full_width(&mut self) {
        let n = self.text.len();
        let Some(tail) = n.checked_sub(3).and_then(|s| self.text.get(s..)) else {
            return;
        };
        let ascii = match *tail {
            [0xEF, 0xBC, b @ 0x81..=0xBF] => b - 0x60,
            [0xEF, 0xBD, b @ 0x80..=0x9E] => b - 0x20,
            _ => return,
        };
        let (Some((from, _)), Some((_, to))) = (self.source_of(n - 3), self.source_of(n - 1))
        else {
            return;
        };
        self.text.truncate(n - 3);
        while self.pieces.last().is_some_and(|p| p.view >= n - 3) {
            self.pieces.pop();
        }
        self.escape(&[ascii], from, to);
    }

    /// Decodes `t[start..end]` (an escape that begins before `end` is read whole).
    pub(super) fn decode(t: &[u8], start: usize, end: usize) -> View {
        let mut v = View::default();
        v.text.reserve(end.saturating_sub(start));
        // Where the stretch still to be copied starts.
        let mut plain = start;
        let mut i = start;
        while i < end {
            i = next_lead(t, i, end);
            if i >= end {
                break;
            }
            // An escaped backslash stays as it is, and what follows it is not an escape.
            if at(t, i) == b'\\' && at(t, i + 1) == b'\\' {
                i += 2;
                continue;
            }
            let Some((len, decoded)) = unit(t, i) else {
                i += 1;
                continue;
            };
            v.copy(t, plain, i);
            match decoded {
                Decoded::Byte(b) => v.escape(&[b], i, i + len),
                Decoded::Char(c) => v.escape_char(c, i, i + len),
            }
            i += len;
            plain = i;
        }
        v.copy(t, plain, end);
        v
    }
}

/// The first byte at or after `i` (before `end`; else `end`) that may begin an escape:
/// `%`, `\\`, `&` or 0xEF, looked for 8 bytes at a time.
fn next_lead(t: &[u8], mut i: usize, end: usize) -> usize {
    while i + 8 <= end
        && let Some(bytes) = word(t, i)
    {
        let x = u64::from_le_bytes(bytes);
        let leads = bytes_eq(x, b'%') | bytes_eq(x, b'\\') | bytes_eq(x, b'&') | bytes_eq(x, 0xEF);
        if leads != 0 {
            break;
        }
        i += 8;
    }
    while i < end && !matches!(at(t, i), b'%' | b'\\' | b'&' | 0xEF) {
        i += 1;
    }
    i
}

/// What an escape decodes to.
enum Decoded {
    Byte(u8),
    Char(char),
}

/// The escape at `i` (whose byte is `%`, `\`, `&` or 0xEF), if it is one: its length in
/// the source and what it decodes to. A full-width form is decoded to its ASCII twin.
fn unit(t: &[u8], i: usize) -> Option<(usize, Decoded)> {
    let (b1, b2) = (at(t, i + 1), at(t, i + 2));
    match at(t, i) {
        b'%' => Some((3, Decoded::Byte((hex(b1)? << 4) | hex(b2)?))),
        b'\\' => match b1 {
            b'u' | b'U' => {
                let cp = hex_value(t, i + 2, 4)?;
                // A surrogate pair is one character written as two escapes.
                if (0xD800..0xDC00).contains(&cp)
                    && at(t, i + 6) == b'\\'
                    && matches!(at(t, i + 7), b'u' | b'U')
                    && let Some(low) = hex_value(t, i + 8, 4)
                    && (0xDC00..0xE000).contains(&low)
                {
                    let c = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    return Some((12, Decoded::Char(char::from_u32(c).unwrap_or('\u{FFFD}'))));
                }
                Some((6, Decoded::Char(char::from_u32(cp).unwrap_or('\u{FFFD}'))))
            }
            b'x' => Some((
                4,
                Decoded::Byte(u8::try_from(hex_value(t, i + 2, 2)?).ok()?),
            )),
            b'/' => Some((2, Decoded::Byte(b'/'))),
            _ => None,
        },
        b'&' if b1 == b'#' => {
            let hex_form = matches!(b2, b'x' | b'X');
            let digits_at = if hex_form { i + 3 } else { i + 2 };
            let mut p = digits_at;
            let mut cp = 0u32;
            while p < digits_at + 7 {
                let b = at(t, p);
                let d = if hex_form {
                    hex(b).map(u32::from)
                } else {
                    b.is_ascii_digit().then(|| u32::from(b - b'0'))
                };
                let Some(d) = d else { break };
                cp = cp.saturating_mul(if hex_form { 16 } else { 10 }) + d;
                p += 1;
            }
            if p == digits_at || at(t, p) != b';' {
                return None;
            }
            Some((
                p + 1 - i,
                Decoded::Char(char::from_u32(cp).unwrap_or('\u{FFFD}')),
            ))
        }
        0xEF => match (b1, b2) {
            (0xBC, b @ 0x81..=0xBF) => Some((3, Decoded::Byte(b - 0x60))),
            (0xBD, b @ 0x80..=0x9E) => Some((3, Decoded::Byte(b - 0x20))),
            _ => None,
        },
        _ => None,
    }
}

// === runs ===

/// Base64 characters, standard and URL-safe alphabets both, by byte value.
static B64: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        #[allow(clippy::indexing_slicing)] // constant evaluation
        {
            t[i] = b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'_' || b == b'-';
        }
        i += 1;
    }
    t
};

#[inline]
fn is_b64(b: u8) -> bool {
    B64.get(usize::from(b)).copied().unwrap_or(false)
}

fn b64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` that is `b` (and maybe of bytes after one): the
/// classic zero-byte test on `x ^ b…b`, exact as to whether there is one.
#[inline]
fn bytes_eq(x: u64, b: u8) -> u64 {
    let y = x ^ (ONES * u64::from(b));
    y.wrapping_sub(ONES) & !y & HIGH
}

/// Whether all 8 bytes are base64 characters. A few integer operations, and one branch,
/// reject what ordinary text holds (a byte at or above 0x80, below `+`, or `.`, `,`,
/// `:`); the table is read only for the rest.
#[inline]
fn all_b64(bytes: [u8; 8]) -> bool {
    let x = u64::from_le_bytes(bytes);
    // "Has a byte less than n", exact for ASCII bytes (and bytes from 0x80 are caught
    // by the first term).
    let below_plus = x.wrapping_sub(ONES * u64::from(b'+')) & !x & HIGH;
    let common =
        (x & HIGH) | below_plus | bytes_eq(x, b'.') | bytes_eq(x, b',') | bytes_eq(x, b':');
    common == 0 && bytes.iter().map(|b| u32::from(is_b64(*b))).sum::<u32>() == 8
}

/// The 8 bytes at `i`, if there are that many.
#[inline]
fn word(t: &[u8], i: usize) -> Option<[u8; 8]> {
    t.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok())
}

/// Calls `visit(start, end)` for every maximal run of base64 characters in `t` at least
/// [`MIN_RUN`] long, in order, until `visit` returns `true`.
pub(super) fn runs(t: &[u8], mut visit: impl FnMut(usize, usize) -> bool) {
    if t.len() < MIN_RUN {
        return;
    }
    let mut w = 0usize;
    // Where the last visited run ended: a run's start is looked for after it.
    let mut floor = 0usize;
    while let Some(bytes) = word(t, w) {
        if !all_b64(bytes) {
            w += 8;
            continue;
        }
        // The word before was rejected (or is before `floor`): the run starts at most
        // 7 bytes back.
        let mut s = w;
        while s > floor && is_b64(at(t, s - 1)) {
            s -= 1;
        }
        let mut e = w + 8;
        while word(t, e).is_some_and(all_b64) {
            e += 8;
        }
        while e < t.len() && is_b64(at(t, e)) {
            e += 1;
        }
        if e - s >= MIN_RUN && visit(s, e) {
            return;
        }
        floor = e;
        // No word holding `t[e]` (not base64) is inside a run.
        w = (e / 8 + 1) * 8;
    }
}

// Bits of [`SHAPE`], per byte.
const UPPER: u8 = 1;
const LOWER: u8 = 2;
const DIGIT: u8 = 4;
/// A letter that is not a hex digit.
const PAST_F: u8 = 8;
/// Neither a hex digit nor `-`.
const NOT_HEX: u8 = 16;

static SHAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b.is_ascii_uppercase() {
            c |= UPPER;
        }
        if b.is_ascii_lowercase() {
            c |= LOWER;
        }
        if b.is_ascii_digit() {
            c |= DIGIT;
        }
        if b.is_ascii_alphabetic() && !b.is_ascii_hexdigit() {
            c |= PAST_F;
        }
        if !b.is_ascii_hexdigit() && b != b'-' {
            c |= NOT_HEX;
        }
        #[allow(clippy::indexing_slicing)] // constant evaluation
        {
            t[i] = c;
        }
        i += 1;
    }
    t
};

/// What a run of base64 characters may be, from one pass over it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Shape {
    /// Looks like base64 of something: a letter that is not a hex digit, and two kinds
    /// of upper case, lower case and digits. Plain words (one case), hex hashes and
    /// UUIDs (no letter past `f`) do not.
    pub(super) base64: bool,
    /// Only hex digits and dashes (UUIDs, hashes).
    pub(super) hex_only: bool,
}

pub(super) fn shape(run: &[u8]) -> Shape {
    let kinds = run.iter().fold(0u8, |k, b| {
        k | SHAPE.get(usize::from(*b)).copied().unwrap_or(0)
    });
    let cases = (kinds & (UPPER | LOWER | DIGIT)).count_ones();
    Shape {
        base64: kinds & PAST_F != 0 && cases >= 2,
        hex_only: kinds & NOT_HEX == 0,
    }
}

/// Whether `run` is a UUID in its canonical form (8-4-4-4-12 hex digits): the most
/// common run in result rows, which holds nothing to decode.
pub(super) fn is_uuid(run: &[u8]) -> bool {
    run.len() == 36
        && [8, 13, 18, 23].iter().all(|k| run.get(*k) == Some(&b'-'))
        && shape(run).hex_only
}

/// Whether decoded bytes are text, the only thing a detector is run on: valid UTF-8, or
/// printable ASCII but for a quarter of the bytes and `noise` more (text glued around
/// the run decodes to a few bytes of noise at its edges). Random bytes are neither:
/// decoded, a base64 image or a `bytea` file would hold an "address" (`x@y.ab`) every
/// few megabytes, and the whole run would be masked.
pub(super) fn looks_like_text(decoded: &[u8], noise: usize) -> bool {
    let other = decoded
        .iter()
        .filter(|b| !matches!(b, 0x20..=0x7E | b'\t' | b'\n' | b'\r'))
        .count();
    other <= decoded.len() / 4 + noise || std::str::from_utf8(decoded).is_ok()
}

/// Decodes base64 `src` (whole groups of four and a trailing partial group) into `out`.
pub(super) fn decode_base64(src: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &c in src {
        let Some(v) = b64_value(c) else { break };
        acc = ((acc << 6) | u32::from(v)) & 0xFFFF;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xFF).unwrap_or(0));
        }
    }
}

/// Decodes hex digit pairs of `src` into `out`.
pub(super) fn decode_hex(src: &[u8], out: &mut Vec<u8>) {
    out.clear();
    for pair in src.chunks_exact(2) {
        if let [h, l] = *pair
            && let (Some(h), Some(l)) = (hex(h), hex(l))
        {
            out.push((h << 4) | l);
        }
    }
}

/// The maximal runs of hex digits in `t[start..end]` at least [`MIN_HEX`] long.
pub(super) fn hex_runs(t: &[u8], start: usize, end: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut p = start;
    std::iter::from_fn(move || {
        while p < end {
            while p < end && !at(t, p).is_ascii_hexdigit() {
                p += 1;
            }
            let s = p;
            while p < end && at(t, p).is_ascii_hexdigit() {
                p += 1;
            }
            if p - s >= MIN_HEX {
                return Some((s, p));
            }
        }
        None
    })
}

/// The chunks `[s, e)` of `start..end` to decode, each at most [`CHUNK`] long and
/// overlapping the previous by [`OVERLAP`]; both are multiples of 4, so a chunk keeps the
/// base64 alignment of `start`.
pub(super) fn chunks(start: usize, end: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut s = start;
    let mut done = start >= end;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let e = (s + CHUNK).min(end);
        let chunk = (s, e);
        if e == end {
            done = true;
        } else {
            s = e - OVERLAP;
        }
        Some(chunk)
    })
}

/// Where a finding's edges cut an escape, the whole escape: a mask must not leave a
/// `\` or `\u00` behind (the rest of a JSON string, or of a COPY field, would be read
/// differently) nor a dangling `%4`.
pub(super) fn snap(t: &[u8], start: usize, end: usize) -> (usize, usize) {
    let mut s = start;
    if let Some((es, ee)) = escape_around(t, start)
        && es < start
        && start < ee
    {
        s = es;
    }
    let mut e = end;
    if let Some((es, ee)) = escape_around(t, end.saturating_sub(1))
        && es < end
        && end < ee
    {
        e = ee;
    }
    (s, e)
}

/// The escape (`\u` + 4 hex, `\x` + 2 hex, `\` + one byte, `%` + 2 hex) that covers
/// byte `i`, if any.
fn escape_around(t: &[u8], i: usize) -> Option<(usize, usize)> {
    // Most findings have no escape character near their edges.
    let near = t.get(i.saturating_sub(5)..=i).unwrap_or_default();
    if !near.iter().any(|b| matches!(b, b'\\' | b'%')) {
        return None;
    }
    for back in 0..6usize {
        let Some(s) = i.checked_sub(back) else { break };
        let len = match at(t, s) {
            b'\\' if backslash_escapes(t, s) => match at(t, s + 1) {
                b'u' | b'U' if hex_value(t, s + 2, 4).is_some() => 6,
                b'x' if hex_value(t, s + 2, 2).is_some() => 4,
                _ => 2,
            },
            b'%' if hex_value(t, s + 1, 2).is_some() => 3,
            _ => continue,
        };
        if s + len > i {
            return Some((s, s + len));
        }
    }
    None
}

/// Whether the backslash at `s` starts an escape: it follows an even run of backslashes.
fn backslash_escapes(t: &[u8], s: usize) -> bool {
    let run = t
        .get(..s)
        .unwrap_or_default()
        .iter()
        .rev()
        .take_while(|b| **b == b'\\')
        .count();
    run % 2 == 0
}
