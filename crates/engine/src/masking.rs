//! Masking: what an agent may see of a result.
//!
//! - `detect` finds PII and secrets in a value's bytes (e-mail, cards, national ids,
//!   keys and tokens, user regexes), whatever the column is called. A new detector goes
//!   there.
//! - `redact` writes the replacement for one found value or one masked column: full
//!   redaction, a partial form, or a keyed hash.
//! - `columns` matches column name patterns; `json` masks inside JSON documents by key
//!   and value; `rules` compiles the configured rules and gives each session its
//!   [`rules::Masker`]. A new rule kind goes in `rules`.
//! - `json_stream` masks a JSON or NDJSON body as it streams, in bounded memory, with
//!   the semantics of `json` (keys and strings judged on their decoded text).
//! - `text_stream` runs the detectors over a text body as it streams, releasing text
//!   only up to cuts that no finding straddles.
//!
//! Every replacement is made of characters that need no quoting in any PostgreSQL text
//! output (arrays, composites, JSON strings, COPY text and CSV), so a value can be
//! rewritten in place inside a larger text without breaking its syntax.

pub mod columns;
pub mod detect;
pub mod json;
pub mod json_stream;
pub mod redact;
pub mod rules;
pub mod text_stream;
