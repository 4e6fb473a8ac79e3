//! The e-mail detector, run by the main pass at every `@`.
//!
//! It looks at most 64 bytes left for the local part and 253 bytes right for the
//! domain, so its work per `@` is bounded. The local part is `[A-Za-z0-9._%+-]` (the
//! quotes, braces and commas of JSON and PostgreSQL arrays end it), without a trailing
//! dot; leading dots are dropped. The domain is the longest run of labels
//! (`[A-Za-z0-9-]`, 1–63 bytes, no dash at either end) that ends in a letters-only
//! top-level label of 2+ letters, with at least two labels. Image file names such as
//! `logo@2x.png` are not addresses.

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
    while is_local(before(t, s)) && s > 0 {
        s -= 1;
        if a - s > MAX_LOCAL {
            return None;
        }
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
    while is_domain(at(t, p)) {
        p += 1;
        if p - d > MAX_DOMAIN {
            return None;
        }
    }
    let run = t.get(d..p)?;
    let mut best = None;
    let mut offset = 0;
    for (index, label) in run.split(|b| *b == b'.').enumerate() {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-');
        if !ok {
            break;
        }
        offset += label.len();
        if index >= 1
            && label.len() >= 2
            && label.iter().all(u8::is_ascii_alphabetic)
            && !FILE_EXTENSIONS
                .iter()
                .any(|ext| label.eq_ignore_ascii_case(ext))
        {
            best = Some(d + offset);
        }
        offset += 1;
    }
    best
}
