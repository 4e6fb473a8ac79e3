//! Scrubbing the target's credential out of what the upstream sends back: response
//! header values, redirect `Location`s and body bytes. An upstream that echoes the
//! `Authorization` it received (a debug page, an error dump, a redirect carrying an
//! `access_token`) must not hand the agent the secret Airlock holds for it.
//!
//! Every occurrence is overwritten with `*` of the same length, so a body keeps its
//! `Content-Length` and streams through unbuffered. Streaming keeps back only the end
//! of a chunk that could begin a needle (usually nothing, so a stream's events are not
//! delayed), so an occurrence split across chunks is still found. Needles are the credential as sent (the bearer token, the header value,
//! the `user:password` Base64 of basic auth, the password itself) and its
//! percent-encoded form, as it appears in URLs.

use memchr::memmem::Finder;

/// Shortest credential worth scrubbing: a needle of a few bytes would overwrite
/// ordinary text (an empty or toy credential is the operator's problem, not the body's).
const MIN_NEEDLE: usize = 6;

/// The needles of one target's credential.
#[derive(Clone)]
pub struct Scrubber {
    finders: Vec<Finder<'static>>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("needles", &self.finders.len())
            .finish()
    }
}

impl Scrubber {
    /// A scrubber for `needles` (duplicates and ones shorter than 6 bytes are dropped).
    pub fn new(needles: Vec<Vec<u8>>) -> Scrubber {
        let mut unique: Vec<Vec<u8>> = Vec::new();
        for n in needles {
            if n.len() >= MIN_NEEDLE && !unique.contains(&n) {
                unique.push(n);
            }
        }
        Scrubber {
            finders: unique
                .into_iter()
                .map(|n| Finder::new(&n).into_owned())
                .collect(),
        }
    }

    /// How many bytes at the end of `bytes` could be the start of a needle, to be held
    /// until the next chunk says: usually none, so a stream's events are not delayed.
    fn partial_tail(&self, bytes: &[u8]) -> usize {
        let mut keep = 0;
        for f in &self.finders {
            let needle = f.needle();
            let longest = needle.len().saturating_sub(1).min(bytes.len());
            for k in (keep + 1..=longest).rev() {
                if bytes.ends_with(needle.get(..k).unwrap_or(&[])) {
                    keep = k;
                    break;
                }
            }
        }
        keep
    }

    /// Whether there is nothing to scrub.
    pub fn is_empty(&self) -> bool {
        self.finders.is_empty()
    }

    /// Overwrites every occurrence in `bytes`; returns how many were found.
    pub fn scrub_in_place(&self, bytes: &mut [u8]) -> usize {
        let mut found = 0;
        for f in &self.finders {
            let len = f.needle().len();
            let mut from = 0;
            while let Some(at) = f.find(bytes.get(from..).unwrap_or(&[])) {
                let start = from + at;
                if let Some(hit) = bytes.get_mut(start..start + len) {
                    hit.fill(b'*');
                }
                found += 1;
                from = start + len;
            }
        }
        found
    }

    /// `text` with every occurrence overwritten, and whether there was one.
    #[cfg(test)]
    pub fn scrub_str(&self, text: &str) -> (String, bool) {
        let mut bytes = text.as_bytes().to_vec();
        let n = self.scrub_in_place(&mut bytes);
        // Only ASCII `*` replaced whole needles, which were valid UTF-8 substrings or
        // ASCII (Base64, percent-encoding); a lossy conversion never changes anything.
        (String::from_utf8_lossy(&bytes).into_owned(), n > 0)
    }

    /// A streaming scrubber over a body.
    pub fn stream(&self) -> ScrubStream {
        ScrubStream {
            scrubber: self.clone(),
            held: Vec::new(),
            found: 0,
        }
    }
}

/// Scrubs a body chunk by chunk (see the module doc).
#[derive(Debug)]
pub struct ScrubStream {
    scrubber: Scrubber,
    held: Vec<u8>,
    found: usize,
}

impl ScrubStream {
    /// Feeds `chunk`; appends to `out` what is safe to release.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.scrubber.is_empty() {
            out.extend_from_slice(chunk);
            return;
        }
        self.held.extend_from_slice(chunk);
        self.found += self.scrubber.scrub_in_place(&mut self.held);
        let keep = self.scrubber.partial_tail(&self.held);
        let release = self.held.len() - keep;
        out.extend_from_slice(self.held.get(..release).unwrap_or(&[]));
        self.held.drain(..release);
    }

    /// Feeds a chunk of a body that no other filter touches and returns what may be
    /// released: one copy per chunk (the held tail joined in front of it), and none when
    /// there is nothing to scrub.
    pub fn push_bytes(&mut self, chunk: bytes::Bytes) -> bytes::Bytes {
        if self.scrubber.is_empty() {
            return chunk;
        }
        let mut joined = bytes::BytesMut::with_capacity(self.held.len() + chunk.len());
        joined.extend_from_slice(&self.held);
        joined.extend_from_slice(&chunk);
        self.found += self.scrubber.scrub_in_place(&mut joined);
        let keep = self.scrubber.partial_tail(&joined);
        let tail = joined.split_off(joined.len() - keep);
        self.held.clear();
        self.held.extend_from_slice(&tail);
        joined.freeze()
    }

    /// Releases what is left.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.found += self.scrubber.scrub_in_place(&mut self.held);
        out.append(&mut self.held);
    }

    /// How many occurrences were overwritten so far.
    pub fn found(&self) -> usize {
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber() -> Scrubber {
        Scrubber::new(vec![b"bill-0123456789".to_vec(), b"abc".to_vec()])
    }

    #[test]
    fn overwrites_every_occurrence_keeping_the_length() {
        let s = scrubber();
        let (out, found) = s.scrub_str("a bill-0123456789 b bill-0123456789");
        assert!(found);
        assert_eq!(out, "a *************** b ***************");
        // Too short to be a needle: left alone.
        assert_eq!(s.scrub_str("abc").0, "abc");
    }

    #[test]
    fn holds_back_only_what_could_begin_a_needle() {
        let s = scrubber();
        let mut st = s.stream();
        let mut out = Vec::new();
        st.push(b"event done\n", &mut out);
        assert_eq!(
            out, b"event done\n",
            "nothing held: no needle starts at the end"
        );
        out.clear();
        st.push(b"then bill-01", &mut out);
        assert_eq!(out, b"then ", "the possible start of a needle waits");
        st.push(b"23456789!", &mut out);
        assert_eq!(out, b"then ***************!");
    }

    #[test]
    fn finds_needles_split_across_chunks_at_every_position() {
        let s = scrubber();
        let body = b"xx bill-0123456789 yy bill-0123456789".to_vec();
        for cut in 0..body.len() {
            for second in cut..body.len() {
                let mut st = s.stream();
                let mut out = Vec::new();
                st.push(&body[..cut], &mut out);
                st.push(&body[cut..second], &mut out);
                st.push(&body[second..], &mut out);
                st.finish(&mut out);
                assert_eq!(
                    out, b"xx *************** yy ***************",
                    "cuts {cut} {second}"
                );
                assert_eq!(st.found(), 2);
            }
        }
    }
}
