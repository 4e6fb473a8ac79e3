//! The engine: pure, synchronous decisions over the model. SQL understanding (`sql`)
//! turns statements into actions; Cedar policy (`policy`) is the one decision point
//! every action of every protocol passes through; `effects` tells whether actions can
//! change anything beyond their answer; `masking` finds PII and secrets in results and
//! rewrites them; `http` normalises HTTP request paths and turns requests into actions.

pub mod effects;
pub mod http;
pub mod masking;
pub mod policy;
pub mod sql;
