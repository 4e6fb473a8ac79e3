//! Custom detectors: a user's regular expression under a user's name.
//!
//! Patterns are compiled over bytes with Unicode off (`\d`, `\w`, `\b` and case
//! folding are ASCII; a non-ASCII literal still matches its UTF-8 bytes) and with
//! limits on pattern length, nesting, compiled size and lazy-DFA cache, so a hostile
//! pattern cannot exhaust memory; `regex` itself guarantees linear-time search. A
//! pattern that matches the empty string is refused: it would "find" a value at every
//! position. That is checked on a few probe texts when compiling, and any empty match
//! at run time is ignored.

use regex::bytes::{Regex, RegexBuilder};

use super::{BUILTIN, DetectError, DetectorId, Finding, MAX_NAME_LEN, MAX_PATTERN_LEN, push};

/// Compiled program size limit for one pattern.
const SIZE_LIMIT: usize = 1 << 20;
/// Lazy DFA cache limit for one pattern (per thread searching with it).
const DFA_SIZE_LIMIT: usize = 2 << 20;
const NEST_LIMIT: u32 = 64;

/// Texts a pattern must not match emptily.
const PROBES: &[&[u8]] = &[
    b"",
    b"a",
    b" a b ",
    b"0",
    b"-_.@",
    b"\n\n",
    "\u{e9}\u{5317}".as_bytes(),
];

/// Names a custom detector cannot take besides the built-ins: group names and the
/// label of masked columns.
const RESERVED: &[&str] = &["secrets", "column"];

pub(super) struct Custom {
    id: DetectorId,
    re: Regex,
}

/// A custom name is `[a-z0-9_]{1,64}` and not a built-in, group or reserved name.
pub(super) fn check_name(name: &str) -> Result<(), DetectError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(DetectError::InvalidName {
            name: name.to_owned(),
        });
    }
    if BUILTIN.contains(&name) || RESERVED.contains(&name) {
        return Err(DetectError::DuplicateName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

pub(super) fn compile(name: &str, pattern: &str) -> Result<Regex, DetectError> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(DetectError::PatternTooLong {
            name: name.to_owned(),
            len: pattern.len(),
            max: MAX_PATTERN_LEN,
        });
    }
    let re = RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .nest_limit(NEST_LIMIT)
        .build()
        .map_err(|source| DetectError::BadPattern {
            name: name.to_owned(),
            source,
        })?;
    let empty = PROBES
        .iter()
        .any(|probe| re.find_iter(probe).any(|m| m.is_empty()));
    if empty {
        return Err(DetectError::MatchesEmpty {
            name: name.to_owned(),
        });
    }
    Ok(re)
}

impl Custom {
    pub(super) fn new(id: DetectorId, re: Regex) -> Custom {
        Custom { id, re }
    }

    /// Appends the matches in `t`; with `STOP`, the first one only.
    pub(super) fn find<const STOP: bool>(&self, t: &[u8], out: &mut Vec<Finding>) {
        for m in self.re.find_iter(t) {
            if !m.is_empty() {
                push(out, m.start(), m.end(), self.id);
                if STOP {
                    return;
                }
            }
        }
    }
}
