//! Fuzzes the startup phase as a connection goes through it: length-prefixed packets,
//! each decided by `startup::Negotiation` (SSLRequest at most once, GSSENCRequest
//! declined, a cancel or an unsupported version ends it, the startup message ends it).
//! Never a panic; lengths outside the server's bounds are errors; TLS is never asked for
//! twice.
#![no_main]

use airlock_postgres_codec::startup::{self, Negotiation, Step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (direct, mut rest) = match data.split_first() {
        Some((first, rest)) => (first & 1 == 1, rest),
        None => return,
    };
    let mut n = Negotiation::new(direct);
    let mut upgrades = 0;
    loop {
        let Some(prefix) = rest.get(..4) else { return };
        let Ok(len) = startup::body_len([prefix[0], prefix[1], prefix[2], prefix[3]]) else {
            return;
        };
        let Some(body) = rest.get(4..4 + len) else { return };
        rest = &rest[4 + len..];
        match n.step(body) {
            Ok(Step::UpgradeToTls) => {
                upgrades += 1;
                assert!(upgrades == 1 && !direct, "TLS is negotiated once, and not after direct TLS");
                assert!(n.tls());
            }
            Ok(Step::DeclineGssEncryption) => assert!(!n.tls()),
            Ok(Step::Startup { params, .. }) => {
                for (k, v) in &params {
                    assert!(!k.is_empty() && !k.contains('\0') && !v.contains('\0'));
                }
                let _ = startup::protocol_options(&params);
                return;
            }
            Ok(_) | Err(_) => return,
        }
    }
});
