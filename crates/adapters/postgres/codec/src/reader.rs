//! A bounds-checked cursor over a message body.

/// Why bytes could not be read as the message they claim to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A length field is negative or smaller than its own size.
    #[error("message '{}' has an invalid length {len}", char::from(*tag))]
    BadLength {
        /// Message tag.
        tag: u8,
        /// The length read.
        len: i64,
    },
    /// A message is larger than Airlock accepts for its type.
    #[error("message '{}' of {len} bytes exceeds the {limit} byte limit", char::from(*tag))]
    TooLarge {
        /// Message tag.
        tag: u8,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A message type that has no business in this direction or phase.
    #[error("unexpected message type '{}'", char::from(*tag))]
    UnexpectedTag {
        /// Message tag.
        tag: u8,
    },
    /// The body ends early or holds something impossible.
    #[error("malformed {what} message: {detail}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// What is wrong.
        detail: &'static str,
    },
}

/// Reads fields from a message body, front to back.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, naming the message `what` in errors.
    pub fn new(what: &'static str, buf: &'a [u8]) -> Self {
        Reader { buf, what }
    }

    fn err(&self, detail: &'static str) -> CodecError {
        CodecError::Malformed {
            what: self.what,
            detail,
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        let (&b, rest) = self.buf.split_first().ok_or(self.err("truncated"))?;
        self.buf = rest;
        Ok(b)
    }

    /// A big-endian i16.
    pub fn i16(&mut self) -> Result<i16, CodecError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }

    /// A big-endian i32.
    pub fn i32(&mut self) -> Result<i32, CodecError> {
        let b = self.bytes(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(i32::from_be_bytes(a))
    }

    /// `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.buf.len() {
            return Err(self.err("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// A NUL-terminated string (the NUL consumed, not returned), as UTF-8.
    pub fn cstr(&mut self) -> Result<&'a str, CodecError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(self.err("string without terminator"))?;
        let (s, rest) = self.buf.split_at(end);
        self.buf = rest.get(1..).unwrap_or(&[]);
        std::str::from_utf8(s).map_err(|_| self.err("string is not valid UTF-8"))
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}
