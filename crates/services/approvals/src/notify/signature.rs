//! The `X-Airlock-Signature` header: a Stripe-style HMAC-SHA256 over the send time and
//! the exact body bytes, `t=<unix seconds>,v1=<hex>`, so a receiver can check who sent a
//! request and refuse a replayed one.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A MAC over `"<t>.<body>"` with `key`. HMAC takes keys of any length, so this only
/// fails if the `hmac` crate changes its contract.
fn mac(key: &[u8], t: i64, body: &[u8]) -> Option<HmacSha256> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).ok()?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The `X-Airlock-Signature` value for `body` sent at `t` (Unix seconds):
/// `t=<t>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`.
pub fn sign(key: &[u8], t: i64, body: &[u8]) -> String {
    let v1 = mac(key, t, body)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("t={t},v1={v1}")
}

/// Checks an `X-Airlock-Signature` header against `body`: some `v1` must be the HMAC of
/// `"<t>.<body>"` under `key` (compared in constant time) and `t` must lie within
/// `tolerance_secs` of `now_unix`. A malformed header does not verify.
pub fn verify_signature(
    key: &[u8],
    header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> bool {
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else {
            return false;
        };
        match name {
            "t" => {
                if t.is_some() {
                    return false;
                }
                match value.parse::<i64>() {
                    Ok(v) => t = Some(v),
                    Err(_) => return false,
                }
            }
            "v1" => match hex::decode(value) {
                Ok(sig) => candidates.push(sig),
                Err(_) => return false,
            },
            // Later schemes (v2, ...) are ignored so that senders can add them.
            _ => {}
        }
    }
    let Some(t) = t else {
        return false;
    };
    if now_unix.abs_diff(t) > tolerance_secs.max(0).unsigned_abs() {
        return false;
    }
    candidates
        .iter()
        .any(|sig| mac(key, t, body).is_some_and(|m| m.verify_slice(sig).is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"event":"approval.requested"}"#;

    #[test]
    fn a_signature_verifies_with_its_key_body_and_time() {
        let header = sign(KEY, 1_700_000_000, BODY);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
        assert!(verify_signature(KEY, &header, BODY, 1_700_000_000, 300));
        assert!(verify_signature(KEY, &header, BODY, 1_700_000_299, 300));
        assert!(verify_signature(KEY, &header, BODY, 1_699_999_701, 300));
    }

    #[test]
    fn the_signed_string_is_time_dot_body() {
        // Receivers in other languages compute exactly this.
        let mut m = <HmacSha256 as Mac>::new_from_slice(KEY).unwrap();
        m.update(b"42.hello");
        let expected = hex::encode(m.finalize().into_bytes());
        assert_eq!(sign(KEY, 42, b"hello"), format!("t=42,v1={expected}"));
    }

    #[test]
    fn a_wrong_key_or_body_fails() {
        let header = sign(KEY, 1_700_000_000, BODY);
        assert!(!verify_signature(
            b"other",
            &header,
            BODY,
            1_700_000_000,
            300
        ));
        assert!(!verify_signature(KEY, &header, b"{}", 1_700_000_000, 300));
    }

    #[test]
    fn an_old_or_future_timestamp_fails() {
        let header = sign(KEY, 1_700_000_000, BODY);
        assert!(!verify_signature(KEY, &header, BODY, 1_700_000_301, 300));
        assert!(!verify_signature(KEY, &header, BODY, 1_699_999_699, 300));
        assert!(!verify_signature(KEY, &header, BODY, 1_700_000_001, -5));
    }

    #[test]
    fn a_moved_timestamp_fails() {
        let header = sign(KEY, 1_700_000_000, BODY);
        let moved = header.replace("t=1700000000", "t=1700000100");
        assert!(!verify_signature(KEY, &moved, BODY, 1_700_000_100, 300));
    }

    #[test]
    fn malformed_headers_fail() {
        let good = sign(KEY, 1_700_000_000, BODY);
        let v1 = good.split_once(",v1=").map(|(_, v)| v.to_owned()).unwrap();
        for header in [
            "".to_owned(),
            "garbage".to_owned(),
            format!("v1={v1}"),
            "t=1700000000".to_owned(),
            format!("t=abc,v1={v1}"),
            format!("t=1700000000,v1=zz{v1}"),
            format!("t=1700000000,t=1700000000,v1={v1}"),
            format!("t=1700000000,v1={}", &v1[..62]),
            format!("t=1700000000;v1={v1}"),
        ] {
            assert!(
                !verify_signature(KEY, &header, BODY, 1_700_000_000, 300),
                "{header:?} verified"
            );
        }
    }

    #[test]
    fn any_of_several_v1_values_may_match() {
        let good = sign(KEY, 1_700_000_000, BODY);
        let v1 = good.split_once(",v1=").map(|(_, v)| v.to_owned()).unwrap();
        let header = format!("t=1700000000,v1={},v1={v1},v2=abc", "00".repeat(32));
        assert!(verify_signature(KEY, &header, BODY, 1_700_000_000, 300));
    }
}
