//! The engine: pure, synchronous decisions over the model. Today it holds the one
//! `decide` seam every action passes through; SQL classification, Cedar policy and
//! masking detectors arrive here as modules of their own.

pub mod decide;

pub use decide::{AllowAll, Decide};
