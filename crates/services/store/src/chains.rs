//! How several gateways share one event log without sharing a chain: each recording
//! gateway (a replica, identified by its `data_dir`) extends a chain of its own, and a
//! chain owns one range of event ids, `[chain << CHAIN_BITS, (chain + 1) << CHAIN_BITS)`.
//!
//! Why ranges rather than one chain for all: a replica makes its records durable in its
//! own journal before anything is forwarded, and only then copies them into the store.
//! One shared chain would need a round trip to the store (and a lock held across every
//! replica) before each journal write; two replicas extending the same head would fork
//! it. With a range each, a replica numbers and hashes its events alone, ids stay
//! unique in the shared tables, and `audit verify` walks every chain from its genesis:
//! within a chain, a deleted, edited or reordered event breaks the links as before.
//!
//! Chain 0 is the chain of a store with a single writer (SQLite; and what a PostgreSQL
//! store imported from SQLite holds). A shared store hands out chains 1, 2, … from a
//! sequence ([`crate::Store::new_chain`]); the gateway keeps its number in its
//! `data_dir` and continues that chain when it restarts.

/// Bits of an event id that number events within their chain: 2^44 (1.7 × 10^13)
/// events per chain, five years of a replica recording 100,000 events a second; the
/// other 19 bits number chains up to [`MAX_CHAIN`].
pub const CHAIN_BITS: u32 = 44;

/// The highest chain number (the range past it would overflow an `i64`).
pub const MAX_CHAIN: i64 = (1 << (63 - CHAIN_BITS)) - 2;

/// The chain event `id` belongs to.
pub fn chain_of(id: i64) -> i64 {
    id >> CHAIN_BITS
}

/// The id of the first event of `chain` (its `prev_hash` is the genesis hash).
pub fn first_id(chain: i64) -> i64 {
    (chain << CHAIN_BITS) + 1
}

/// The first id past `chain`'s range.
pub fn end_id(chain: i64) -> i64 {
    (chain + 1) << CHAIN_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_zero_numbers_from_one_as_a_single_writer_always_did() {
        assert_eq!(first_id(0), 1);
        assert_eq!(chain_of(1), 0);
        assert_eq!(chain_of(end_id(0) - 1), 0);
        assert_eq!(chain_of(end_id(0)), 1);
    }

    #[test]
    fn every_chain_owns_its_own_range() {
        for chain in [1, 2, 7, MAX_CHAIN] {
            assert_eq!(chain_of(first_id(chain)), chain);
            assert_eq!(chain_of(end_id(chain) - 1), chain);
            assert_eq!(end_id(chain - 1) + 1, first_id(chain));
        }
    }
}
