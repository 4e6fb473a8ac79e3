//! Masking Server-Sent Events as they arrive: the stream is cut into lines, and each
//! `data:` line's value is masked on its own (as a JSON document when it is one, so
//! keys such as `password` are masked too; else by the detectors) and released at
//! once, so every event reaches the agent as soon as its lines are complete.

use std::sync::Arc;

use airlock_engine::masking::json_stream::{JsonStreamMasker, Mode};
use airlock_engine::masking::rules::{Masker, Scan, Tally};

use crate::body::Filter;

/// Longest line accepted (an event's `data` line); beyond it the stream is refused.
const MAX_LINE: usize = 4 * 1024 * 1024;

/// The SSE masking filter.
pub struct SseFilter {
    masker: Arc<Masker>,
    pending: Vec<u8>,
    tally: Tally,
}

impl SseFilter {
    /// A filter for one response.
    pub fn new(masker: Arc<Masker>) -> Self {
        SseFilter {
            masker,
            pending: Vec::new(),
            tally: Tally::default(),
        }
    }

    /// Masks one line (without its ending) into `out`.
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let Some(value) = line.strip_prefix(b"data:") else {
            out.extend_from_slice(line);
            return;
        };
        out.extend_from_slice(b"data:");
        let value = match value.strip_prefix(b" ") {
            Some(v) => {
                out.push(b' ');
                v
            }
            None => value,
        };
        let mut json = JsonStreamMasker::new(self.masker.clone(), Mode::Document);
        let mut masked = Vec::with_capacity(value.len());
        let as_json = json
            .push(value, &mut masked)
            .and_then(|()| json.finish(&mut masked));
        if as_json.is_ok() {
            self.tally.absorb(&mut json.tally());
            out.extend_from_slice(&masked);
            return;
        }
        masked.clear();
        match self.masker.scan(value, &mut masked, &mut self.tally) {
            Scan::Masked => out.extend_from_slice(&masked),
            Scan::Clean => out.extend_from_slice(value),
        }
    }
}

impl Filter for SseFilter {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        // A line ends at LF, CRLF or a lone CR; a CR at the very end may be the first
        // half of a CRLF, so it waits for the next chunk.
        let mut i = 0;
        while let Some(&b) = self.pending.get(i) {
            if b == b'\n' || b == b'\r' {
                let end = i;
                let mut next = i + 1;
                if b == b'\r' {
                    match self.pending.get(i + 1) {
                        Some(b'\n') => next = i + 2,
                        Some(_) => {}
                        None => break,
                    }
                }
                let line = self.pending.get(start..end).unwrap_or(&[]).to_vec();
                self.line(&line, out);
                out.extend_from_slice(self.pending.get(end..next).unwrap_or(&[]));
                start = next;
                i = next;
            } else {
                i += 1;
            }
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_LINE {
            return Err(format!(
                "an event-stream line is longer than {MAX_LINE} bytes; the stream was cut"
            ));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let rest = std::mem::take(&mut self.pending);
        if let Some(line) = rest.strip_suffix(b"\r") {
            self.line(line, out);
            out.push(b'\r');
        } else if !rest.is_empty() {
            self.line(&rest, out);
        }
        Ok(())
    }

    fn tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_engine::masking::redact::HashKey;
    use airlock_engine::masking::rules::{MaskingRules, default_rule};
    use airlock_model::{Principal, PrincipalSource};

    fn masker() -> Arc<Masker> {
        let rules = MaskingRules::compile(vec![default_rule(
            vec!["t".into()],
            Arc::new(HashKey::new(Vec::new())),
        )])
        .unwrap();
        rules
            .for_session(
                "t",
                &Principal {
                    name: "a".into(),
                    groups: vec![],
                    source: PrincipalSource::ServiceToken,
                    expires_at: None,
                },
            )
            .unwrap()
    }

    #[test]
    fn masks_each_event_in_any_chunking() {
        let stream = b"event: customer\r\ndata: {\"id\":1,\"email\":\"ada@example.com\",\"password\":\"x1\"}\r\n\r\nevent: note\ndata: call alan@example.org\n\n";
        let mut whole = Vec::new();
        let mut f = SseFilter::new(masker());
        f.push(stream, &mut whole).unwrap();
        f.finish(&mut whole).unwrap();
        let text = String::from_utf8(whole.clone()).unwrap();
        assert!(
            !text.contains("ada@example.com") && !text.contains("alan@example.org"),
            "{text}"
        );
        assert!(!text.contains("x1"), "{text}");
        assert!(
            text.starts_with("event: customer\r\ndata: {\"id\":1,"),
            "{text}"
        );
        assert!(text.ends_with("\n\n"));
        for size in 1..stream.len() {
            let mut f = SseFilter::new(masker());
            let mut out = Vec::new();
            for c in stream.chunks(size) {
                f.push(c, &mut out).unwrap();
            }
            f.finish(&mut out).unwrap();
            assert_eq!(out, whole, "chunks of {size}");
        }
    }
}
