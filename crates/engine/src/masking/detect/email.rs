//! The e-mail detector, run by the main pass at every `@`.
//!
//! It looks at most 64 bytes left for the local part and 253 bytes right for the
//! domain, so its work per `@` is bounded. The local part is `[A-Za-z0-9._%+-]` (the
//! quotes, braces and commas of JSON and PostgreSQL arrays end it), without a trailing
//! dot; leading dots are dropped. The domain is the longest run of labels
//! (`[A-Za-z0-9-]`, 1–63 bytes, no dash at either end) that ends in a top-level label
//! of 2+ letters, with at least two labels. Image file names such as `logo@2x.png` are
//! not addresses.
//!
//! Fail closed on glued text (a concatenation, a generated value): a local-part run
//! longer than 64 bytes is cut to the 64 bytes before the `@` (an address's local part
//! is never longer, so the real one is inside), and a last label that starts with 2+
//! letters and goes on with digits, a dash or more than 63 letters (`example.com2024`,
//! `example.com-x`) is a top-level label with text glued after it: the address ends
//! after the letters. A domain run longer than 253 bytes is read up to there.

use super::{at, before};

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 253;

/// Top-level labels that are file extensions, never TLDs.
const FILE_EXTENSIONS: &[&[u8]] = &[b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp"];

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// The address around the `@` at `a`, as `(start, end)`.
pub(super) fn at_sign(t: &[u8], a: usize) -> Option<(usize, usize)> {
    let mut s = a;
    while s > 0 && a - s < MAX_LOCAL && is_local(before(t, s)) {
        s -= 1;
    }
    while s < a && at(t, s) == b'.' {
        s += 1;
    }
    if s == a || before(t, a) == b'.' {
        return None;
    }
    let end = domain_end(t, a + 1)?;
    Some((s, end))
}

/// The end of the domain starting at `d`.
fn domain_end(t: &[u8], d: usize) -> Option<usize> {
    let mut p = d;
    while p - d < MAX_DOMAIN && is_domain(at(t, p)) {
        p += 1;
    }
    let run = t.get(d..p)?;
    let mut best = None;
    let mut offset = 0;
    for (index, label) in run.split(|b| *b == b'.').enumerate() {
        let well_formed = !label.is_empty()
            && label.len() <= 63
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-');
        let letters = label.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let tld = label.get(..letters).unwrap_or_default();
        if index >= 1
            && letters >= 2
            && !FILE_EXTENSIONS
                .iter()
                .any(|ext| tld.eq_ignore_ascii_case(ext))
        {
            best = Some(if well_formed && letters == label.len() {
                d + offset + label.len()
            } else {
                // Letters, then glued text: the address ends after the letters.
                d + offset + letters
            });
        }
        if !well_formed {
            break;
        }
        offset += label.len() + 1;
    }
    best
}
