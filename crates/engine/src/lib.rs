//! The engine: pure, synchronous decisions over the model. SQL understanding (`sql`)
//! turns statements into actions; Cedar policy (`policy`) is the one decision point
//! every action of every protocol passes through; `effects` tells whether actions can
//! change anything beyond their answer.

pub mod effects;
pub mod policy;
pub mod sql;
