//! Kubernetes understanding: what a request to a Kubernetes API server asks for, decided
//! before anything is forwarded.
//!
//! - `request_info` ports the API server's request-info rules (which verb, group,
//!   version, namespace, resource, subresource and name a method, path and query name),
//!   and refuses a request whose path or query two parsers could read differently, so
//!   that what policy decided on is what the API server serves.
//!
//! Hand-written because no Rust crate parses requests the way the API server does
//! (client crates build paths, they never decide on them), and what matters is agreeing
//! with one Go function to the letter: its rules are re-expressed here from the Go source
//! and checked against the API server's own test tables.

pub mod request_info;

pub use request_info::{RequestInfo, RequestInfoError, request_info};
