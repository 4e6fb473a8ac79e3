//! Undoing the upstream's `Content-Encoding` before the body is scrubbed and masked.
//!
//! Airlock asks every upstream for `Accept-Encoding: identity`, so a compressed answer
//! is an upstream ignoring it. `gzip` (and `x-gzip`) and `deflate` are decoded here,
//! streaming; any other coding (`br`, `zstd`, a stack of codings) cannot be inspected,
//! so the response is refused rather than passed through unmasked.

use std::io::Write;

use flate2::write::{GzDecoder, ZlibDecoder};

use crate::body::Filter;

/// Largest expansion accepted: more output than this many times the input so far is
/// taken for a decompression bomb.
const MAX_RATIO: u64 = 1000;

/// A streaming decoder for one content coding.
pub enum Decoder {
    /// `gzip`.
    Gzip(GzDecoder<Vec<u8>>),
    /// `deflate` (zlib-wrapped, as RFC 9110 defines it).
    Deflate(ZlibDecoder<Vec<u8>>),
}

/// What to do about a response's `Content-Encoding`.
pub enum Coding {
    /// Not encoded (absent or `identity`).
    Identity,
    /// Decoded by this filter.
    Decode(Box<Decoder>),
    /// Cannot be decoded: refuse the response.
    Unsupported(String),
}

/// The decoder for a `Content-Encoding` header value.
pub fn coding(header: Option<&str>) -> Coding {
    let Some(value) = header else {
        return Coding::Identity;
    };
    let codings: Vec<String> = value
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    match codings.as_slice() {
        [] => Coding::Identity,
        [one] if one == "gzip" || one == "x-gzip" => {
            Coding::Decode(Box::new(Decoder::Gzip(GzDecoder::new(Vec::new()))))
        }
        [one] if one == "deflate" => {
            Coding::Decode(Box::new(Decoder::Deflate(ZlibDecoder::new(Vec::new()))))
        }
        _ => Coding::Unsupported(value.to_owned()),
    }
}

/// The decoder as a body filter.
pub struct DecodeFilter {
    decoder: Box<Decoder>,
    read: u64,
    written: u64,
}

impl DecodeFilter {
    /// A filter around `decoder`.
    pub fn new(decoder: Box<Decoder>) -> Self {
        DecodeFilter {
            decoder,
            read: 0,
            written: 0,
        }
    }

    fn drain(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let buf = match self.decoder.as_mut() {
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Deflate(d) => d.get_mut(),
        };
        self.written += buf.len() as u64;
        out.append(buf);
        if self.written > self.read.max(1024) * MAX_RATIO {
            return Err("the upstream's compressed body expands more than 1000-fold; refused as a decompression bomb".into());
        }
        Ok(())
    }
}

impl Filter for DecodeFilter {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.read += chunk.len() as u64;
        let written = match self.decoder.as_mut() {
            Decoder::Gzip(d) => d.write_all(chunk),
            Decoder::Deflate(d) => d.write_all(chunk),
        };
        written.map_err(|e| format!("the upstream's compressed body is corrupt: {e}"))?;
        self.drain(out)
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let finished = match self.decoder.as_mut() {
            Decoder::Gzip(d) => d.try_finish(),
            Decoder::Deflate(d) => d.try_finish(),
        };
        finished.map_err(|e| format!("the upstream's compressed body is truncated: {e}"))?;
        self.drain(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_gzip_in_any_chunking() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let text = b"{\"email\":\"ada@example.com\"}".repeat(50);
        let _ = enc.write_all(&text);
        let Ok(gz) = enc.finish() else {
            panic!("gzip failed")
        };
        for size in [1, 7, 64, gz.len()] {
            let Coding::Decode(d) = coding(Some("gzip")) else {
                panic!("gzip is decodable")
            };
            let mut f = DecodeFilter::new(d);
            let mut out = Vec::new();
            for c in gz.chunks(size) {
                f.push(c, &mut out).unwrap();
            }
            f.finish(&mut out).unwrap();
            assert_eq!(out, text);
        }
    }

    #[test]
    fn refuses_what_it_cannot_decode() {
        assert!(matches!(coding(Some("br")), Coding::Unsupported(_)));
        assert!(matches!(coding(Some("gzip, gzip")), Coding::Unsupported(_)));
        assert!(matches!(coding(Some("identity")), Coding::Identity));
        let Coding::Decode(d) = coding(Some("gzip")) else {
            panic!("gzip is decodable")
        };
        let mut f = DecodeFilter::new(d);
        let mut out = Vec::new();
        let corrupt = f
            .push(b"not gzip at all", &mut out)
            .and_then(|()| f.finish(&mut out));
        assert!(corrupt.is_err());
    }
}
