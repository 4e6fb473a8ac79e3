//! Which masking filter a response body gets, by its media type:
//!
//! - JSON (`application/json`, `application/*+json`): the engine's streaming JSON
//!   masker, one document; newline-delimited JSON and JSON text sequences
//!   (`application/x-ndjson`, `application/jsonl`, `application/json-seq`...) as a
//!   sequence of documents. Column rules apply to object keys, detectors to every
//!   string and number.
//! - `text/event-stream`: each event's `data` masked as it arrives (`sse`).
//! - Other `text/*`, and a body without a type: the detectors over the text.
//! - Anything else passes unmasked (only the credential scrub applies).

use std::sync::Arc;

use airlock_engine::masking::json_stream::{JsonStreamMasker, Mode};
use airlock_engine::masking::rules::{Masker, Tally};
use airlock_engine::masking::text_stream::TextStreamMasker;

use crate::body::Filter;

/// The masking filter for a body of `media_type` in a session with `masker`.
/// `stream`: the body is a stream of JSON documents whatever its type says (a
/// Kubernetes watch is `application/json`, one event after another).
pub fn filter_for(
    masker: Option<&Arc<Masker>>,
    media_type: &str,
    stream: bool,
) -> Option<Box<dyn Filter>> {
    let masker = masker?.clone();
    let json_sequence = (stream && crate::inspect::is_json(media_type))
        || matches!(
            media_type,
            "application/x-ndjson"
                | "application/ndjson"
                | "application/jsonl"
                | "application/x-jsonlines"
                | "application/jsonlines"
                | "application/json-seq"
        );
    if json_sequence {
        return Some(Box::new(JsonFilter(JsonStreamMasker::new(
            masker,
            Mode::Sequence,
        ))));
    }
    if crate::inspect::is_json(media_type) {
        return Some(Box::new(JsonFilter(JsonStreamMasker::new(
            masker,
            Mode::Document,
        ))));
    }
    if media_type == "text/event-stream" {
        return Some(Box::new(crate::sse::SseFilter::new(masker)));
    }
    if media_type.is_empty() || media_type.starts_with("text/") {
        return Some(Box::new(TextFilter(TextStreamMasker::new(masker))));
    }
    None
}

struct JsonFilter(JsonStreamMasker);

impl Filter for JsonFilter {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.0
            .push(chunk, out)
            .map_err(|e| format!("the JSON response could not be masked: {e}"))
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        self.0
            .finish(out)
            .map_err(|e| format!("the JSON response could not be masked: {e}"))
    }

    fn tally(&mut self) -> Tally {
        self.0.tally()
    }
}

struct TextFilter(TextStreamMasker);

impl Filter for TextFilter {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.0.push(chunk, out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        self.0.finish(out);
        Ok(())
    }

    fn tally(&mut self) -> Tally {
        self.0.tally()
    }
}
