//! HTTP understanding: what a request asks for, decided before anything is forwarded.
//!
//! - `path` normalises a request target's path exactly as the upstream will resolve it
//!   (percent-decoding of unreserved characters, dot segments, repeated slashes), and
//!   refuses a path whose meaning is ambiguous, so that what policy decided is what the
//!   upstream serves.
//! - `action` turns a method, a normalised path and the request's facts into the
//!   [`airlock_model::HttpAction`] policy decides.

pub mod path;
