//! The engine: pure, synchronous decisions over the model. SQL understanding
//! (`sql`), Cedar policy (`policy`), and the `decide` seam every action passes through.

pub mod decide;
pub mod policy;
pub mod sql;

pub use decide::{AllowAll, Decide};
