//! Replacement writer: what an agent sees instead of a detected value or a masked
//! column.
//!
//! # Forms
//!
//! - [`Style::Redact`]: `[REDACTED:<kind>]`, e.g. `[REDACTED:email]`. A kind that is not
//!   `[A-Za-z0-9_]+` is written `[REDACTED]`.
//! - [`Style::Hash`]: `[HASH:<16 lowercase hex>]`, the first 8 bytes of
//!   HMAC-SHA256(key, value). The kind is not hashed, so one value hashes the same in
//!   every column and under every detector, and joins and `GROUP BY` on masked values
//!   still work. Nothing is normalised except cards, whose digits alone are hashed
//!   (`4111 1111 1111 1111` and `4111111111111111` hash the same).
//! - [`Style::Partial`], by kind:
//!   - `email`: `****@example.com` (the domain kept). If there is no `@`, or the domain
//!     is empty, longer than 253 bytes or holds a byte outside `[A-Za-z0-9.-]`:
//!     `****@[REDACTED]`.
//!   - `card`: `****1111` (the last 4 digits); `****` when there are fewer than 12
//!     digits.
//!   - `ssn`: `***-**-6789`; `***-**-****` unless there are exactly 9 digits.
//!   - `iban`: the country code and last 4 kept, one `*` per hidden character, spaces
//!     removed (`DE89 3704 0044 0532 0130 00` → `DE****************3000`);
//!     `[REDACTED:iban]` unless the value is 12+ letters and digits (spaces aside)
//!     starting with two letters.
//!   - `phone`: the last 2 digits kept, one `*` per hidden digit (`********89`); `****`
//!     when there are fewer than 7 digits.
//!   - `ipv4`: the first octet kept (`10.*.*.*`); `[REDACTED:ipv4]` if the value does
//!     not start with 1–3 digits and a dot.
//!   - `column` (a whole masked column value, any text): `****abcd`, the last 4
//!     characters kept when the value has at least 12 characters and those 4 are in
//!     `[A-Za-z0-9._@-]`; otherwise `****`.
//!   - every other kind (keys, tokens, JWTs, private keys, custom detectors): the
//!     Redact form. A partial secret is still a secret.
//!
//! # Invariant
//!
//! Every replacement is made only of `A-Z a-z 0-9 [ ] : _ * . @ -`: no quote, comma,
//! brace, parenthesis, backslash, whitespace or non-ASCII byte. So it can be put in
//! place of a value inside PostgreSQL array, composite, JSON, COPY text or CSV output
//! without quoting or escaping, whatever the input bytes were.
#![deny(clippy::indexing_slicing)]

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::detect::Finding;

/// How a value is replaced, from least to most restrictive: `max()` picks the strictest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Style {
    Partial,
    Hash,
    Redact,
}

/// The keyed-hash key. Its bytes are zeroized on drop and never printed: `Debug`
/// shows `HashKey(..)`.
#[derive(Clone)]
pub struct HashKey(Zeroizing<Vec<u8>>);

impl HashKey {
    /// The key length callers should supply: 32 random bytes. A shorter or guessable
    /// key lets anyone who sees a hash confirm a guessed card or SSN.
    pub const RECOMMENDED_LEN: usize = 32;

    /// Takes ownership of `bytes` (wiped when the key is dropped). Callers supply the
    /// randomness, e.g. 32 bytes from the OS generator kept in the vault.
    pub fn new(bytes: Vec<u8>) -> HashKey {
        HashKey(Zeroizing::new(bytes))
    }

    /// The key length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty key (hashes are then unkeyed and guessable).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// Writes the replacement for `value`, found by detector `kind` (a detector name such
/// as `"email"`, `"card"`, or for a masked column the label `"column"`), to `out`.
/// See the module documentation for each form; the output is always in the safe
/// character set, whatever `kind` and `value` hold.
pub fn write_mask(style: Style, kind: &str, value: &[u8], key: &HashKey, out: &mut Vec<u8>) {
    match style {
        Style::Redact => write_redacted(kind, out),
        Style::Hash => write_hash(kind, value, key, out),
        Style::Partial => write_partial(kind, value, out),
    }
}

/// Writes `text` to `out` with findings replaced: `replace` writes the replacement of
/// one finding (its bytes given) and returns `true`, or returns `false` to keep it as
/// it is. `findings` are expected as [`Scanner::find`] returns them (sorted,
/// non-overlapping, in bounds); a finding that is not is skipped. Returns whether
/// anything was replaced.
pub fn rewrite(
    text: &[u8],
    findings: &[Finding],
    mut replace: impl FnMut(&Finding, &[u8], &mut Vec<u8>) -> bool,
    out: &mut Vec<u8>,
) -> bool {
    let mut copied = 0usize;
    let mut replaced = false;
    for f in findings {
        if f.start < copied || f.end <= f.start {
            continue;
        }
        let (Some(plain), Some(value)) = (text.get(copied..f.start), text.get(f.start..f.end))
        else {
            continue;
        };
        let mark = out.len();
        out.extend_from_slice(plain);
        if replace(f, value, out) {
            copied = f.end;
            replaced = true;
        } else {
            out.truncate(mark);
        }
    }
    out.extend_from_slice(text.get(copied..).unwrap_or_default());
    replaced
}

/// Punctuation a mask may contain besides ASCII letters and digits. Nothing else ever
/// appears in a replacement, so a byte outside this set (a COPY delimiter, a quote) can
/// never be produced by masking.
pub const MASK_PUNCTUATION: &[u8] = b"[]:_*.@-";

/// Whether `b` may appear in a replacement.
pub fn may_appear_in_mask(b: u8) -> bool {
    b.is_ascii_alphanumeric() || MASK_PUNCTUATION.contains(&b)
}

fn kind_is_safe(kind: &str) -> bool {
    !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn write_redacted(kind: &str, out: &mut Vec<u8>) {
    if kind_is_safe(kind) {
        out.extend_from_slice(b"[REDACTED:");
        out.extend_from_slice(kind.as_bytes());
        out.push(b']');
    } else {
        out.extend_from_slice(b"[REDACTED]");
    }
}

fn write_hash(kind: &str, value: &[u8], key: &HashKey, out: &mut Vec<u8>) {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key.0) else {
        // HMAC takes keys of any length, so this cannot happen; fail closed anyway.
        write_redacted(kind, out);
        return;
    };
    if kind == "card" {
        for run in value.split(|b| !b.is_ascii_digit()) {
            mac.update(run);
        }
    } else {
        mac.update(value);
    }
    let tag = mac.finalize().into_bytes();
    out.extend_from_slice(b"[HASH:");
    for b in tag.iter().take(8) {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0x0f));
    }
    out.push(b']');
}

fn hex_digit(n: u8) -> u8 {
    match n {
        0..=9 => b'0' + n,
        _ => b'a' + (n & 0x0f) - 10,
    }
}

fn write_partial(kind: &str, value: &[u8], out: &mut Vec<u8>) {
    match kind {
        "email" => partial_email(value, out),
        "card" => {
            let (n, last) = digits_tail::<4>(value);
            out.extend_from_slice(b"****");
            if n >= 12 {
                out.extend_from_slice(&last);
            }
        }
        "ssn" => {
            let (n, last) = digits_tail::<4>(value);
            out.extend_from_slice(b"***-**-");
            if n == 9 {
                out.extend_from_slice(&last);
            } else {
                out.extend_from_slice(b"****");
            }
        }
        "iban" => partial_iban(value, out),
        "phone" => {
            let (n, last) = digits_tail::<2>(value);
            if n >= 7 {
                out.resize(out.len() + (n - 2), b'*');
                out.extend_from_slice(&last);
            } else {
                out.extend_from_slice(b"****");
            }
        }
        "ipv4" => partial_ipv4(value, out),
        "column" => partial_column(value, out),
        _ => write_redacted(kind, out),
    }
}

/// How many ASCII digits `value` holds, and the last `N` of them (`b'0'`-padded at the
/// front when there are fewer).
fn digits_tail<const N: usize>(value: &[u8]) -> (usize, [u8; N]) {
    let mut last = [b'0'; N];
    let mut n = 0usize;
    for &b in value.iter().filter(|b| b.is_ascii_digit()) {
        last.rotate_left(1);
        if let Some(slot) = last.last_mut() {
            *slot = b;
        }
        n += 1;
    }
    (n, last)
}

fn partial_email(value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"****@");
    let domain = value
        .iter()
        .rposition(|b| *b == b'@')
        .and_then(|i| value.get(i + 1..))
        .unwrap_or_default();
    let safe = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-');
    if safe {
        out.extend_from_slice(domain);
    } else {
        out.extend_from_slice(b"[REDACTED]");
    }
}

fn partial_iban(value: &[u8], out: &mut Vec<u8>) {
    let chars = || value.iter().copied().filter(|b| *b != b' ');
    let n = chars().count();
    let shaped = n >= 12
        && chars().all(|b| b.is_ascii_alphanumeric())
        && chars().take(2).all(|b| b.is_ascii_alphabetic());
    if !shaped {
        write_redacted("iban", out);
        return;
    }
    for (k, b) in chars().enumerate() {
        out.push(if k < 2 || k >= n - 4 { b } else { b'*' });
    }
}

fn partial_ipv4(value: &[u8], out: &mut Vec<u8>) {
    let first = value
        .iter()
        .position(|b| *b == b'.')
        .and_then(|dot| value.get(..dot));
    match first {
        Some(octet) if (1..=3).contains(&octet.len()) && octet.iter().all(u8::is_ascii_digit) => {
            out.extend_from_slice(octet);
            out.extend_from_slice(b".*.*.*");
        }
        _ => write_redacted("ipv4", out),
    }
}

fn partial_column(value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"****");
    // Characters, counting a UTF-8 sequence once (bytes if the value is not UTF-8).
    let chars = value.iter().filter(|b| (**b & 0xC0) != 0x80).count();
    let tail = value.len().checked_sub(4).and_then(|s| value.get(s..));
    if let Some(tail) = tail
        && chars >= 12
        && tail
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
    {
        out.extend_from_slice(tail);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn key() -> HashKey {
        HashKey::new(vec![7u8; 32])
    }

    fn mask(style: Style, kind: &str, value: &[u8]) -> String {
        let mut out = Vec::new();
        write_mask(style, kind, value, &key(), &mut out);
        String::from_utf8(out).unwrap()
    }

    pub(crate) fn safe(out: &[u8]) -> bool {
        out.iter().all(|b| may_appear_in_mask(*b))
    }

    const KINDS: &[&str] = &[
        "email",
        "card",
        "ssn",
        "iban",
        "phone",
        "ipv4",
        "column",
        "jwt",
        "private_key",
        "aws_access_key",
        "openai_key",
        "employee_id",
        "",
        "bad kind",
        "a,b",
        "x\"y",
        "ünï",
        "{}",
        "[REDACTED]",
    ];

    const ADVERSARIAL: &[&[u8]] = &[
        b"",
        b"a@b.co",
        b"a@\"b\".co",
        b"a@b,c.co",
        b"a@{b}.co",
        b"x@",
        b"@",
        b"@@@",
        b"a@b.co\n",
        b"a@b\\.co",
        b"a@b c.co",
        b"a@b\t.co",
        "zo\u{eb}@m\u{fc}ller.de".as_bytes(),
        b"4111 1111 1111 1111",
        b"4111-1111-1111-1111",
        b"123-45-6789",
        b"DE89 3704 0044 0532 0130 00",
        b"de89 3704 0044 0532 0130 00",
        b"DE\"89,3704{0044}0532 0130 00",
        b"+1 (415) 555-2671",
        b"10.0.0.1",
        b"\"1\".0.0.1",
        b"1234.5.6.7",
        b"abcdefghijkl",
        b"abcdefgh,\"}{",
        b"abcdefghij\xe9\xe8\xff\xfe",
        "\u{5317}\u{4eac}\u{5317}\u{4eac}\u{5317}\u{4eac}\u{5317}\u{4eac}\u{5317}\u{4eac}\u{5317}\u{4eac}ab".as_bytes(),
        b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
        b"'); DROP TABLE x; --",
        b"\\\\\\\\\\\\\\\\\\\\\\\\\\\\",
        b"{\"a\":\"b\",\"c\":[1,2,3]}",
        b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
    ];

    #[test]
    fn every_form_is_in_the_safe_charset() {
        for style in [Style::Partial, Style::Hash, Style::Redact] {
            for kind in KINDS {
                for value in ADVERSARIAL {
                    let mut out = Vec::new();
                    write_mask(style, kind, value, &key(), &mut out);
                    assert!(
                        safe(&out),
                        "{style:?} {kind:?} {:?} -> {:?}",
                        String::from_utf8_lossy(value),
                        String::from_utf8_lossy(&out)
                    );
                    assert!(!out.is_empty());
                }
            }
        }
    }

    #[test]
    fn redact_names_the_kind() {
        assert_eq!(mask(Style::Redact, "email", b"a@b.co"), "[REDACTED:email]");
        assert_eq!(mask(Style::Redact, "column", b"x"), "[REDACTED:column]");
        assert_eq!(mask(Style::Redact, "a,b", b"x"), "[REDACTED]");
        assert_eq!(mask(Style::Redact, "", b"x"), "[REDACTED]");
    }

    #[test]
    fn hash_is_keyed_and_ignores_the_kind() {
        let a = mask(Style::Hash, "email", b"a@b.co");
        assert_eq!(a.len(), "[HASH:]".len() + 16);
        assert!(a.starts_with("[HASH:") && a.ends_with(']'));
        assert!(
            a[6..22]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(a, mask(Style::Hash, "column", b"a@b.co"));
        assert_eq!(a, mask(Style::Hash, "custom_x", b"a@b.co"));
        assert_ne!(a, mask(Style::Hash, "email", b"a@b.cO"));
        let mut other = Vec::new();
        write_mask(
            Style::Hash,
            "email",
            b"a@b.co",
            &HashKey::new(vec![8u8; 32]),
            &mut other,
        );
        assert_ne!(a.as_bytes(), other.as_slice());
    }

    #[test]
    fn hash_matches_hmac_sha256_prefix() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut out = Vec::new();
        write_mask(
            Style::Hash,
            "column",
            b"what do ya want for nothing?",
            &HashKey::new(b"Jefe".to_vec()),
            &mut out,
        );
        assert_eq!(out, b"[HASH:5bdcc146bf60754e]");
    }

    #[test]
    fn card_hash_uses_digits_only() {
        let a = mask(Style::Hash, "card", b"4111 1111 1111 1111");
        assert_eq!(a, mask(Style::Hash, "card", b"4111-1111-1111-1111"));
        assert_eq!(a, mask(Style::Hash, "card", b"4111111111111111"));
        // Other kinds are hashed as they are.
        assert_ne!(
            mask(Style::Hash, "phone", b"415-555-2671"),
            mask(Style::Hash, "phone", b"4155552671")
        );
    }

    #[test]
    fn partial_forms() {
        let p = |kind: &str, v: &str| mask(Style::Partial, kind, v.as_bytes());
        assert_eq!(p("email", "jane.doe@example.com"), "****@example.com");
        assert_eq!(p("email", "jane@exa\"mple.com"), "****@[REDACTED]");
        assert_eq!(p("email", "no-at-sign"), "****@[REDACTED]");
        assert_eq!(p("email", "jane@"), "****@[REDACTED]");
        assert_eq!(p("card", "4111 1111 1111 1111"), "****1111");
        assert_eq!(p("card", "3782-822463-10005"), "****0005");
        assert_eq!(p("card", "12345"), "****");
        assert_eq!(p("ssn", "123-45-6789"), "***-**-6789");
        assert_eq!(p("ssn", "12-345"), "***-**-****");
        assert_eq!(
            p("iban", "DE89 3704 0044 0532 0130 00"),
            "DE****************3000"
        );
        assert_eq!(
            p("iban", "GB29NWBK60161331926819"),
            "GB****************6819"
        );
        assert_eq!(p("iban", "DE89-3704"), "[REDACTED:iban]");
        assert_eq!(p("phone", "(415) 555-2689"), "********89");
        assert_eq!(p("phone", "+44 20 7946 0958"), "**********58");
        assert_eq!(p("phone", "12345"), "****");
        assert_eq!(p("ipv4", "10.1.2.3"), "10.*.*.*");
        assert_eq!(p("ipv4", "x10.1.2.3"), "[REDACTED:ipv4]");
        assert_eq!(p("column", "customer-abcd"), "****abcd");
        assert_eq!(p("column", "abcdefghijk"), "****");
        assert_eq!(p("column", "abcdefghijk\""), "****");
        assert_eq!(p("column", "Zoë Müller Straße 12"), "****");
        assert_eq!(p("jwt", "eyJ.eyJ.x"), "[REDACTED:jwt]");
        assert_eq!(p("employee_id", "E-123"), "[REDACTED:employee_id]");
    }

    #[test]
    fn column_counts_characters_not_bytes() {
        // 11 characters, 22 bytes: too short to show anything.
        let p = |v: &str| mask(Style::Partial, "column", v.as_bytes());
        assert_eq!(p("ééééééé1234"), "****");
        assert_eq!(p("éééééééé1234"), "****1234");
    }

    #[test]
    fn strictest_style_wins() {
        assert_eq!(Style::Partial.max(Style::Hash), Style::Hash);
        assert_eq!(Style::Redact.max(Style::Hash), Style::Redact);
    }

    #[test]
    fn key_is_not_printable() {
        let k = HashKey::new(b"super secret".to_vec());
        assert_eq!(format!("{k:?}"), "HashKey(..)");
        assert_eq!(format!("{:?}", Some(&k)), "Some(HashKey(..))");
    }
}
