//! PostgreSQL wire framing, and the few messages Airlock reads, for the PostgreSQL
//! adapter (`airlock-postgres`, which re-exports it as `codec`). Pure: no I/O, no async;
//! fuzzed by `fuzz/` (run by `scripts/fuzz`).
//!
//! Hand-written on purpose: the gateway must find frame boundaries in a read buffer
//! without copying, relay every frame it does not need untouched, and read only a
//! handful of messages. Every read is bounds-checked; a malformed frame is an error,
//! never a panic.
#![deny(clippy::indexing_slicing)]

pub mod backend;
pub mod frontend;
mod reader;
pub mod startup;

pub use reader::{CodecError, Reader};

/// Length limit of a startup packet (PostgreSQL uses the same).
pub const MAX_STARTUP_LEN: usize = 10_000;

/// Largest frontend message Airlock buffers whole to read it (Query, Parse, Bind...).
/// Bigger ones are refused; COPY data is streamed and not subject to this.
pub const MAX_INSPECTED_FRONTEND: usize = 64 << 20;

/// Largest backend message Airlock buffers whole to read it (CommandComplete, errors).
/// Data rows and COPY data are streamed and not subject to this.
pub const MAX_INSPECTED_BACKEND: usize = 16 << 20;

/// The header of a typed message: its tag and its total length on the wire (tag byte
/// included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type byte.
    pub tag: u8,
    /// Bytes the whole frame occupies, including tag and length.
    pub frame_len: usize,
}

/// Reads the header at the front of `buf`: `Ok(None)` if fewer than 5 bytes are there.
pub fn header(buf: &[u8]) -> Result<Option<Header>, CodecError> {
    let (Some(&tag), Some(len)) = (
        buf.first(),
        buf.get(1..5).and_then(|b| <[u8; 4]>::try_from(b).ok()),
    ) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes(len);
    if len < 4 {
        return Err(CodecError::BadLength {
            tag,
            len: i64::from(len),
        });
    }
    Ok(Some(Header {
        tag,
        frame_len: len as usize + 1,
    }))
}

/// Appends a typed message with `body` to `out`.
pub fn put_message(out: &mut bytes::BytesMut, tag: u8, body: &[u8]) {
    out.extend_from_slice(&[tag]);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_needs_five_bytes_and_a_sane_length() {
        assert_eq!(header(b"Q\0\0\0").unwrap(), None);
        assert_eq!(
            header(b"Q\0\0\0\x09select").unwrap(),
            Some(Header {
                tag: b'Q',
                frame_len: 10
            })
        );
        assert!(header(b"Q\0\0\0\x03").is_err());
        assert!(header(b"Q\xff\xff\xff\xff").is_err());
    }
}
