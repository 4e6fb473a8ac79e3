//! Masking inside a JSON document (a `json`/`jsonb` value, `row_to_json(t)`), keeping
//! every byte that is not masked exactly as the server sent it.
//!
//! Hand-written rather than serde_json: a parse and re-serialisation would reformat the
//! document and turn large numbers into floats. This walk copies bytes through and
//! replaces only: the value of an object key that a column rule names (the whole value,
//! whatever its type, becomes a JSON string), strings and keys in which a detector finds
//! something, and numbers in which one does (a card number stored as a number becomes a
//! string). Nesting deeper than [`MAX_DEPTH`] or text that is not JSON is an error, and
//! the caller withholds the value (fail closed).

use super::rules::{Apply, Masker, Scan, Tally};

/// Deepest nesting walked.
pub const MAX_DEPTH: usize = 256;

/// Why a document could not be masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at the given byte.
    #[error("not valid JSON at byte {0}")]
    Invalid(usize),
    /// Nested too deeply.
    #[error("JSON nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// Masks `text`, writing the result to `out`. Returns whether anything changed (when
/// not, `out` holds a copy of `text`).
pub fn mask_json(
    masker: &Masker,
    text: &[u8],
    out: &mut Vec<u8>,
    tally: &mut Tally,
) -> Result<bool, JsonError> {
    let mut w = Walk {
        masker,
        text,
        at: 0,
        out,
        tally,
        changed: false,
    };
    w.ws();
    w.value(0, None)?;
    w.ws();
    if w.at != text.len() {
        return Err(JsonError::Invalid(w.at));
    }
    Ok(w.changed)
}

struct Walk<'a, 'o> {
    masker: &'a Masker,
    text: &'a [u8],
    at: usize,
    out: &'o mut Vec<u8>,
    tally: &'o mut Tally,
    changed: bool,
}

impl Walk<'_, '_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn ws(&mut self) {
        while let Some(c @ (b' ' | b'\t' | b'\n' | b'\r')) = self.peek() {
            self.out.push(c);
            self.at += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), JsonError> {
        if self.peek() != Some(c) {
            return Err(JsonError::Invalid(self.at));
        }
        self.out.push(c);
        self.at += 1;
        Ok(())
    }

    fn value(&mut self, depth: usize, mask: Option<Apply>) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        if let Some(apply) = mask {
            return self.masked_value(depth, &apply);
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => {
                self.expect(b'[')?;
                self.ws();
                if self.peek() == Some(b']') {
                    return self.expect(b']');
                }
                loop {
                    self.value(depth + 1, None)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => {
                            self.expect(b',')?;
                            self.ws();
                        }
                        _ => return self.expect(b']'),
                    }
                }
            }
            Some(b'"') => {
                let (start, end) = self.skip_string()?;
                self.write_string(start, end);
                Ok(())
            }
            Some(_) => {
                let (start, end) = self.skip_scalar()?;
                let raw = self.text.get(start..end).unwrap_or(&[]);
                let mut masked = Vec::new();
                if self.masker.scan(raw, &mut masked, self.tally) == Scan::Masked {
                    // A number that holds a card number becomes a string.
                    self.out.push(b'"');
                    self.out.extend_from_slice(&masked);
                    self.out.push(b'"');
                    self.changed = true;
                } else {
                    self.out.extend_from_slice(raw);
                }
                Ok(())
            }
            None => Err(JsonError::Invalid(self.at)),
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), JsonError> {
        self.expect(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            return self.expect(b'}');
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(JsonError::Invalid(self.at));
            }
            let (start, end) = self.skip_string()?;
            let key = self.text.get(start + 1..end - 1).unwrap_or(&[]);
            let rule = std::str::from_utf8(key)
                .ok()
                .and_then(|k| self.masker.name_is_masked(k));
            self.write_string(start, end);
            self.ws();
            self.expect(b':')?;
            self.ws();
            self.value(depth + 1, rule)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.expect(b',')?;
                    self.ws();
                }
                _ => return self.expect(b'}'),
            }
        }
    }

    /// A value under a masked key: replaced whole by a JSON string (`null` stays `null`).
    fn masked_value(&mut self, depth: usize, apply: &Apply) -> Result<(), JsonError> {
        let start = self.at;
        let mark = self.out.len();
        // Walk it to find its end (and validate it); what was copied, and what its
        // detectors counted, is dropped: the value is replaced whole.
        let changed = self.changed;
        let counted = self.tally.clone();
        self.value(depth, None)?;
        self.changed = changed;
        *self.tally = counted;
        self.out.truncate(mark);
        let raw = self.text.get(start..self.at).unwrap_or(&[]);
        if raw == b"null" {
            self.out.extend_from_slice(raw);
            return Ok(());
        }
        let mut mask = Vec::new();
        if self.masker.whole(apply, raw, &mut mask, self.tally) {
            self.out.push(b'"');
            self.out.extend_from_slice(&mask);
            self.out.push(b'"');
            self.changed = true;
        } else {
            self.out.extend_from_slice(raw);
        }
        Ok(())
    }

    /// Writes the string token `text[start..end]` (quotes included), with detector
    /// findings in its content replaced.
    fn write_string(&mut self, start: usize, end: usize) {
        let content = self.text.get(start + 1..end - 1).unwrap_or(&[]);
        self.out.push(b'"');
        if self.masker.scan(content, self.out, self.tally) == Scan::Masked {
            self.changed = true;
        } else {
            self.out.extend_from_slice(content);
        }
        self.out.push(b'"');
    }

    /// Skips a string token; returns its span including the quotes.
    fn skip_string(&mut self) -> Result<(usize, usize), JsonError> {
        let start = self.at;
        self.at += 1;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok((start, self.at));
                }
                Some(b'\\') => self.at += 2,
                Some(c) if c < 0x20 => return Err(JsonError::Invalid(self.at)),
                Some(_) => self.at += 1,
                None => return Err(JsonError::Invalid(self.at)),
            }
        }
    }

    /// Skips a number, `true`, `false` or `null`.
    fn skip_scalar(&mut self) -> Result<(usize, usize), JsonError> {
        let start = self.at;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.') {
                self.at += 1;
            } else {
                break;
            }
        }
        let raw = self.text.get(start..self.at).unwrap_or(&[]);
        let ok = matches!(raw, b"true" | b"false" | b"null")
            || (!raw.is_empty()
                && raw
                    .iter()
                    .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')));
        if ok {
            Ok((start, self.at))
        } else {
            Err(JsonError::Invalid(start))
        }
    }
}

/// The JSON form of a whole masked value (a masked `json`/`jsonb` column): a JSON
/// string, so clients that parse JSON still can.
pub fn whole_as_json(mask: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    out.extend_from_slice(mask);
    out.push(b'"');
}
