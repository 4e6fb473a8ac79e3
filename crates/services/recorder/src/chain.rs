//! The event chain's hash: HMAC-SHA256 over the previous hash and the event's stored
//! columns, each length-prefixed so that no two different events encode alike.

use airlock_store::ChainedEvent;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash event `e` must carry, given its `prev_hash` (taken from `e`) and the key.
pub fn chain_hash(key: &[u8], e: &ChainedEvent) -> String {
    // HMAC accepts keys of any length, so construction cannot fail; fall back to an
    // impossible hash rather than panic if that ever changed.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::from("invalid-key");
    };
    let mut field = |bytes: &[u8]| {
        mac.update(&(bytes.len() as u64).to_be_bytes());
        mac.update(bytes);
    };
    field(e.prev_hash.as_bytes());
    field(&e.id.to_be_bytes());
    field(e.session_id.as_bytes());
    field(&e.seq.to_be_bytes());
    field(e.at.as_bytes());
    field(e.kind.as_bytes());
    // An absent column is distinguished from an empty one by a marker byte.
    match &e.statement {
        Some(s) => field(&[&[1u8][..], s.as_bytes()].concat()),
        None => field(&[0u8]),
    }
    match &e.decision {
        Some(s) => field(&[&[1u8][..], s.as_bytes()].concat()),
        None => field(&[0u8]),
    }
    field(e.detail.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> ChainedEvent {
        ChainedEvent {
            id: 1,
            session_id: "s".into(),
            seq: 1,
            at: "2026-11-25T00:00:00.000000Z".into(),
            kind: "query".into(),
            statement: Some("select 1".into()),
            decision: Some("allow".into()),
            detail: "{}".into(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        }
    }

    #[test]
    fn every_column_and_the_key_change_the_hash() {
        let base = chain_hash(b"k", &event());
        assert_eq!(base, chain_hash(b"k", &event()));
        assert_ne!(base, chain_hash(b"other", &event()));
        let edits: [fn(&mut ChainedEvent); 10] = [
            |e| e.id = 2,
            |e| e.session_id = "t".into(),
            |e| e.seq = 2,
            |e| e.at = "2026-11-25T00:00:00.000001Z".into(),
            |e| e.kind = "parse".into(),
            |e| e.statement = Some("select 2".into()),
            |e| e.statement = None,
            |e| e.decision = Some("deny".into()),
            |e| e.detail = "{ }".into(),
            |e| e.prev_hash = "1".into(),
        ];
        for edit in edits {
            let mut e = event();
            edit(&mut e);
            assert_ne!(chain_hash(b"k", &e), base);
        }
    }
}
