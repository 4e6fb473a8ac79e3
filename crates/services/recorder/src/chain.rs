//! The event chain's hash: HMAC-SHA256 over the previous hash and the event's stored
//! columns, each length-prefixed so that no two different events encode alike.

use airlock_store::ChainedEvent;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The store setting that holds [`audit_key_check`] of the key its chains were
/// recorded with.
pub const AUDIT_KEY_CHECK: &str = "audit_key_check";

/// A keyed hash of a fixed text: tells whether two gateways have the same audit key
/// without storing anything the key could be found from.
pub fn audit_key_check(key: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(b"airlock audit key check v1");
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::from("invalid-key"),
    }
}

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash event `e` must carry, given its `prev_hash` (taken from `e`) and the key.
pub fn chain_hash(key: &[u8], e: &ChainedEvent) -> String {
    // HMAC accepts keys of any length, so construction cannot fail; fall back to an
    // impossible hash rather than panic if that ever changed.
    match ChainKey::new(key) {
        Some(k) => k.hash(e),
        None => String::from("invalid-key"),
    }
}

/// The chain's HMAC with its key already absorbed: cloning it per event skips hashing
/// the key's two padded blocks each time (the writer hashes every event it records).
#[derive(Clone)]
pub struct ChainKey(Hmac<Sha256>);

impl ChainKey {
    /// `None` only if HMAC ever refused a key length (it accepts any today).
    pub fn new(key: &[u8]) -> Option<ChainKey> {
        Hmac::<Sha256>::new_from_slice(key).ok().map(ChainKey)
    }

    /// The hash event `e` must carry (see [`chain_hash`]).
    pub fn hash(&self, e: &ChainedEvent) -> String {
        let mut mac = self.0.clone();
        let mut field = |parts: &[&[u8]]| {
            let len: usize = parts.iter().map(|p| p.len()).sum();
            mac.update(&(len as u64).to_be_bytes());
            for p in parts {
                mac.update(p);
            }
        };
        field(&[e.prev_hash.as_bytes()]);
        field(&[&e.id.to_be_bytes()]);
        field(&[e.session_id.as_bytes()]);
        field(&[&e.seq.to_be_bytes()]);
        field(&[e.at.as_bytes()]);
        field(&[e.kind.as_bytes()]);
        // An absent column is distinguished from an empty one by a marker byte.
        for column in [&e.statement, &e.decision] {
            match column {
                Some(s) => field(&[&[1u8], s.as_bytes()]),
                None => field(&[&[0u8]]),
            }
        }
        field(&[e.detail.as_bytes()]);
        let digest = mac.finalize().into_bytes();
        // Into a fixed buffer, then one allocation (`hex::encode` pushes char by char).
        let mut text = [0u8; 64];
        match hex::encode_to_slice(digest, &mut text) {
            Ok(()) => String::from_utf8_lossy(&text).into_owned(),
            Err(_) => hex::encode(digest),
        }
    }
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
    fn the_keyed_hash_is_the_hash_of_each_field_length_prefixed() {
        // Spelled out independently, so that a change to the encoding (which would
        // break every chain already recorded) fails here.
        let e = event();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        let fields: [&[u8]; 9] = [
            GENESIS_HASH.as_bytes(),
            &1i64.to_be_bytes(),
            b"s",
            &1i64.to_be_bytes(),
            b"2026-11-25T00:00:00.000000Z",
            b"query",
            b"\x01select 1",
            b"\x01allow",
            b"{}",
        ];
        for f in fields {
            mac.update(&(f.len() as u64).to_be_bytes());
            mac.update(f);
        }
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(chain_hash(b"k", &e), expected);
        let key = ChainKey::new(b"k").unwrap();
        assert_eq!(key.hash(&e), expected);
        assert_eq!(key.hash(&e), expected, "the key is reusable");
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
