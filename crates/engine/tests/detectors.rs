//! Property tests of the PII detectors and the replacement writer: generated cards are
//! found and never leak through a mask, every replacement stays in the safe character
//! set, and `find` keeps its output contract on arbitrary bytes.
//!
//! Fail closed: for each detector, generated values are glued to random letters, digits
//! and punctuation, have their case changed, and are encoded (URL, JSON `\u`, HTML
//! entities, full-width forms, base64 at any alignment, hex); after masking, no part of
//! the value is left in the output, in plain or in the encoding used. Ordinary values
//! (dates, UUIDs, prices, ids, words) are left alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use airlock_engine::masking::detect::{BUILTIN, DetectorSpec, Finding, Scanner};
use airlock_engine::masking::redact::{HashKey, Style, rewrite, write_mask};
use proptest::prelude::*;

fn scanner(names: &[&str]) -> Scanner {
    let specs: Vec<DetectorSpec> = names
        .iter()
        .map(|n| DetectorSpec::Builtin((*n).to_owned()))
        .collect();
    Scanner::new(&specs).unwrap()
}

fn all() -> Scanner {
    scanner(BUILTIN)
}

/// One scanner with every built-in detector, shared by the generated cases.
fn shared() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(all)
}

fn key() -> HashKey {
    HashKey::new((0u8..32).collect())
}

fn safe(out: &[u8]) -> bool {
    out.iter().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'[' | b']' | b':' | b'_' | b'*' | b'.' | b'@' | b'-')
    })
}

/// Issuer prefixes and the lengths each issues.
const BRANDS: &[(&str, &[usize])] = &[
    ("4", &[13, 16, 19]),
    ("51", &[16]),
    ("55", &[16]),
    ("2221", &[16]),
    ("2720", &[16]),
    ("34", &[15]),
    ("37", &[15]),
    ("6011", &[16, 17, 18, 19]),
    ("65", &[16, 19]),
    ("644", &[16]),
    ("649", &[16]),
    ("3528", &[16, 19]),
    ("3589", &[16]),
    ("36", &[14]),
    ("38", &[16]),
    ("30", &[14, 19]),
    ("62", &[16, 17, 18, 19]),
];

fn luhn_complete(body: &[u8]) -> u8 {
    // The check digit makes the doubled-from-the-right sum a multiple of 10.
    let mut sum = 0u32;
    for (k, &d) in body.iter().rev().enumerate() {
        let d = u32::from(d);
        sum += if k % 2 == 0 {
            let y = d * 2;
            if y > 9 { y - 9 } else { y }
        } else {
            d
        };
    }
    ((10 - sum % 10) % 10) as u8
}

/// A card number's digits, Luhn-valid with a known IIN and length.
fn card_digits() -> impl Strategy<Value = Vec<u8>> {
    (
        0..BRANDS.len(),
        any::<prop::sample::Index>(),
        prop::collection::vec(0u8..10, 19),
    )
        .prop_map(|(brand, len_index, random)| {
            let (prefix, lengths) = BRANDS[brand];
            let len = *len_index.get(lengths);
            let mut digits: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
            digits.extend_from_slice(&random[..len - 1 - digits.len()]);
            digits.push(luhn_complete(&digits));
            digits
        })
}

/// Groups of four with a short tail merged into the last group: 4-4-4-4, 4-4-5, 4-4-4-4-3.
fn grouped(digits: &[u8], sep: Option<char>) -> String {
    let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    let Some(sep) = sep else { return text };
    let mut groups: Vec<String> = text
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    if groups.last().unwrap().len() < 3 {
        let tail = groups.pop().unwrap();
        groups.last_mut().unwrap().push_str(&tail);
    }
    groups.join(&sep.to_string())
}

/// Text without digits, ending (or starting) with a byte that is not a letter, digit
/// or `_`, so that it is a boundary.
fn surround() -> impl Strategy<Value = (String, String)> {
    let free = "[^0-9]{0,40}";
    let boundary = prop::sample::select(vec![
        " ", ",", "\"", "{", "}", ":", "=", "(", ")", "\n", "\t", "北", "ë", "'", "/", "[",
    ]);
    (free, boundary.clone(), boundary, free)
        .prop_map(|(a, l, r, b)| (format!("{a}{l}"), format!("{r}{b}")))
}

/// The output with every `[HASH:…]` token removed.
fn without_hashes(out: &str) -> (String, Vec<String>) {
    let mut rest = String::new();
    let mut hashes = Vec::new();
    let mut s = out;
    while let Some(i) = s.find("[HASH:") {
        rest.push_str(&s[..i]);
        let hex = &s[i + 6..i + 22];
        hashes.push(hex.to_owned());
        s = &s[i + 23..];
    }
    rest.push_str(s);
    (rest, hashes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// (1) A generated card between digit-free text is found, and no mask leaks it.
    #[test]
    fn cards_are_found_and_do_not_leak(
        digits in card_digits(),
        sep in prop::option::of(prop::sample::select(vec![' ', '-'])),
        (before, after) in surround(),
    ) {
        let card = grouped(&digits, sep);
        let text = format!("{before}{card}{after}");
        let start = before.len();
        let end = start + card.len();
        let s = all();
        let mut findings: Vec<Finding> = Vec::new();
        s.find(text.as_bytes(), &mut findings);
        let cover = findings.iter().find(|f| f.start <= start && end <= f.end);
        prop_assert!(cover.is_some(), "{text:?}: {findings:?}");
        let cover = cover.unwrap();
        if cover.start == start && cover.end == end {
            prop_assert_eq!(s.name(cover.detector), "card");
        }
        let card_digits: String = digits.iter().map(|d| char::from(b'0' + d)).collect();

        for style in [Style::Redact, Style::Hash, Style::Partial] {
            let mut out = Vec::new();
            rewrite(
                text.as_bytes(),
                &findings,
                |f, v, o| {
                    write_mask(style, s.name(f.detector), v, &key(), o);
                    true
                },
                &mut out,
            );
            let out = String::from_utf8(out).unwrap();
            let (rest, hashes) = without_hashes(&out);
            let leaked: String = rest.chars().filter(char::is_ascii_digit).collect();
            for hex in &hashes {
                prop_assert!(!card_digits.contains(hex.as_str()));
            }
            match style {
                Style::Partial if s.name(cover.detector) == "card" => {
                    prop_assert_eq!(&leaked, &card_digits[card_digits.len() - 4..], "{}", out);
                }
                _ => prop_assert_eq!(&leaked, "", "{}", out),
            }
        }
    }

    /// (2) Every replacement is in the safe character set, whatever the input.
    #[test]
    fn masks_are_always_safe(
        value in prop::collection::vec(any::<u8>(), 0..200),
        kind in prop_oneof![
            prop::sample::select(vec![
                "email", "card", "ssn", "iban", "phone", "ipv4", "column", "jwt",
                "private_key", "openai_key", "employee_id",
            ]).prop_map(str::to_owned),
            any::<String>(),
        ],
        style in prop::sample::select(vec![Style::Partial, Style::Hash, Style::Redact]),
        key_bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut out = Vec::new();
        write_mask(style, &kind, &value, &HashKey::new(key_bytes), &mut out);
        prop_assert!(!out.is_empty());
        prop_assert!(safe(&out), "{:?}", String::from_utf8_lossy(&out));
    }

    /// Masks of PII-shaped text: the same, with inputs near what detectors find.
    #[test]
    fn masks_of_pii_shaped_text_are_safe(
        value in "[0-9A-Za-z@. +()\\-\"',{}\\\\\u{e9}\u{5317}]{0,60}",
        kind in prop::sample::select(vec!["email", "card", "ssn", "iban", "phone", "ipv4", "column"]),
        style in prop::sample::select(vec![Style::Partial, Style::Hash, Style::Redact]),
    ) {
        let mut out = Vec::new();
        write_mask(style, kind, value.as_bytes(), &key(), &mut out);
        prop_assert!(safe(&out), "{:?}", String::from_utf8_lossy(&out));
    }

    /// (3) find never panics, and its findings are sorted, non-overlapping and in
    /// bounds; may_match is true whenever find finds something.
    #[test]
    fn find_keeps_its_contract(
        text in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            "[0-9 .+()\\-@a-zA-Z_:/,{}\"]{0,300}".prop_map(String::into_bytes),
            prop::collection::vec(
                prop::sample::select(vec![
                    "4111", "1111", " ", "-", ".", "+1", "(415)", "555", "2671", "@", "a",
                    "b.co", "eyJ", "hbGci", "sk-", "ant-", "AKIA", "ABCDEFGHIJ", "SK",
                    "0123456789abcdef", "-----BEGIN ", "RSA ", "PRIVATE KEY", "-----",
                    "-----END ", "DE89", "3704", "0044", "GB", "10", "255", "北京", "ë",
                    "xoxb-", "ghp_", "npm_", "SG.", "AIza", "_", "\n",
                ]),
                0..80,
            ).prop_map(|parts| parts.concat().into_bytes()),
        ],
    ) {
        let s = all();
        let mut out = Vec::new();
        s.find(&text, &mut out);
        for f in &out {
            prop_assert!(f.start < f.end && f.end <= text.len(), "{f:?}");
        }
        for pair in out.windows(2) {
            prop_assert!(pair[0].end <= pair[1].start, "{pair:?}");
        }
        if !out.is_empty() {
            prop_assert!(s.may_match(&text));
        }
        // Masking the findings yields safe replacements around untouched text.
        let mut masked = Vec::new();
        rewrite(
            &text,
            &out,
            |f, v, o| {
                write_mask(Style::Redact, s.name(f.detector), v, &key(), o);
                true
            },
            &mut masked,
        );
        if out.is_empty() {
            prop_assert_eq!(&masked, &text);
        }
    }
}

// === fail closed: glued, encoded and mixed-case values ===

/// `text` with every finding replaced by its `[REDACTED:…]` mask.
fn redacted(text: &str) -> String {
    let s = shared();
    let mut findings = Vec::new();
    s.find(text.as_bytes(), &mut findings);
    let mut out = Vec::new();
    rewrite(
        text.as_bytes(),
        &findings,
        |f, v, o| {
            write_mask(Style::Redact, s.name(f.detector), v, &key(), o);
            true
        },
        &mut out,
    );
    String::from_utf8(out).unwrap()
}

/// What a reader can decode from `text` without Airlock's code: `%HH` (twice), `\uHHHH`,
/// `\xHH`, `&#N;`, `&#xH;`, full-width forms; so that a value left half encoded in the
/// output is still seen by the checks.
fn unescape(text: &str) -> String {
    fn once(text: &str) -> String {
        let b = text.as_bytes();
        let hex = |s: &[u8]| {
            std::str::from_utf8(s)
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
        };
        let mut out: Vec<u8> = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let rest = &b[i..];
            if rest.len() >= 3
                && rest[0] == b'%'
                && let Some(v) = hex(&rest[1..3])
            {
                out.push(v as u8);
                i += 3;
            } else if rest.len() >= 6
                && rest[0] == b'\\'
                && rest[1] == b'u'
                && let Some(v) = hex(&rest[2..6])
            {
                let c = char::from_u32(v).unwrap_or('\u{FFFD}');
                out.extend_from_slice(c.to_string().as_bytes());
                i += 6;
            } else if rest.len() >= 4
                && rest[0] == b'\\'
                && rest[1] == b'x'
                && let Some(v) = hex(&rest[2..4])
            {
                out.push(v as u8);
                i += 4;
            } else if rest.starts_with(b"&#")
                && let Some(end) = rest.iter().position(|c| *c == b';')
            {
                let body = std::str::from_utf8(&rest[2..end]).unwrap_or("");
                let v = match body.strip_prefix(['x', 'X']) {
                    Some(h) => u32::from_str_radix(h, 16).ok(),
                    None => body.parse().ok(),
                };
                match v.and_then(char::from_u32) {
                    Some(c) => {
                        out.extend_from_slice(c.to_string().as_bytes());
                        i += end + 1;
                    }
                    None => {
                        out.push(b'&');
                        i += 1;
                    }
                }
            } else {
                out.push(rest[0]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out)
            .chars()
            .map(|c| match u32::from(c) {
                v @ 0xFF01..=0xFF5E => char::from_u32(v - 0xFEE0).unwrap_or(c),
                _ => c,
            })
            .collect()
    }
    once(&once(text))
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with the standard or URL-safe alphabet (told by `alphabet`), padded or not.
fn base64(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let engine = match (alphabet[62] == b'-', pad) {
        (false, true) => &STANDARD,
        (false, false) => &STANDARD_NO_PAD,
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
    };
    engine.encode(data)
}

/// How a value is written into the text.
#[derive(Clone, Copy, Debug)]
enum Encoding {
    Plain,
    /// Some characters (and every `@`) as `%HH`.
    Percent,
    /// `%HH` of `%HH`: double URL encoding.
    DoublePercent,
    /// Some characters as JSON `\u00HH`.
    JsonEscape,
    /// Some characters as `&#N;`.
    Entity,
    /// Every character in its full-width form (U+FF01..U+FF5E).
    FullWidth,
    /// The whole glued text as base64 (standard or URL-safe, padded or not), glued again.
    Base64 {
        url: bool,
        pad: bool,
    },
    /// The whole glued text as hex, after `\x` or not.
    Hex {
        upper: bool,
        bytea: bool,
    },
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        Just(Encoding::Plain),
        Just(Encoding::Percent),
        Just(Encoding::DoublePercent),
        Just(Encoding::JsonEscape),
        Just(Encoding::Entity),
        Just(Encoding::FullWidth),
        (any::<bool>(), any::<bool>()).prop_map(|(url, pad)| Encoding::Base64 { url, pad }),
        (any::<bool>(), any::<bool>()).prop_map(|(upper, bytea)| Encoding::Hex { upper, bytea }),
    ]
}

/// Writes `value` in `encoding`; `pick[k]` says whether character `k` is escaped (the
/// character `force` always is).
fn encode_chars(value: &str, encoding: Encoding, pick: &[bool], force: char) -> String {
    value
        .chars()
        .enumerate()
        .map(|(k, c)| {
            let escape = c == force || pick.get(k % pick.len().max(1)).copied().unwrap_or(false);
            let v = u32::from(c);
            match encoding {
                Encoding::Percent if escape => format!("%{v:02X}"),
                Encoding::DoublePercent if escape => format!("%25{v:02x}"),
                Encoding::JsonEscape if escape => format!("\\u{v:04x}"),
                Encoding::Entity if escape => format!("&#{v};"),
                Encoding::FullWidth if (0x21..=0x7E).contains(&v) => {
                    char::from_u32(v + 0xFEE0).unwrap().to_string()
                }
                _ => c.to_string(),
            }
        })
        .collect()
}

/// The text to scan: `value` between glue, encoded as `encoding` says. Returns the text
/// and the form the value took in it (what must not be left in the output).
fn embed(
    before: &str,
    value: &str,
    after: &str,
    encoding: Encoding,
    pick: &[bool],
    force: char,
    outer: &(String, String),
) -> (String, String) {
    match encoding {
        Encoding::Base64 { url, pad } => {
            let alphabet = if url { URL } else { STD };
            let run = base64(format!("{before}{value}{after}").as_bytes(), alphabet, pad);
            (format!("{}{run}{}", outer.0, outer.1), run)
        }
        Encoding::Hex { upper, bytea } => {
            let mut run: String = format!("{before}{value}{after}")
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect();
            if upper {
                run = run.to_ascii_uppercase();
            }
            let lead = if bytea { "\\x" } else { "" };
            (format!("{}{lead}{run}{}", outer.0, outer.1), run)
        }
        _ => {
            let written = encode_chars(value, encoding, pick, force);
            let before = glue_before(before, encoding);
            (format!("{before}{written}{after}"), written)
        }
    }
}

/// The glue put before a value: an escape character glued before an escaped value
/// changes how the value reads (`%A` then `4…` is `%A4`, `\\` then `\\u0034` is an
/// escaped backslash and plain text), so there it is left out.
fn glue_before(before: &str, encoding: Encoding) -> String {
    match encoding {
        Encoding::Percent | Encoding::DoublePercent | Encoding::JsonEscape | Encoding::Entity => {
            before
                .chars()
                .filter(|c| !matches!(c, '%' | '\\' | '&'))
                .collect()
        }
        _ => before.to_owned(),
    }
}

/// Glue a concatenation or a generated value puts next to a value: letters, digits
/// and punctuation, no whitespace.
const GLUE: &str = "[A-Za-z0-9._%+=:;,!#$&*/?|~^()<>'\"\\[\\]{}-]{0,12}";
/// The same without digits, for the side of a number that must not touch digits.
const GLUE_NO_DIGITS: &str = "[A-Za-z._%+=:;,!#$&*/?|~^()<>'\"\\[\\]{}-]{0,12}";
/// Glue around an encoded run: letters and punctuation, so it can shift the alignment
/// of base64 without adding digits.
fn outer_glue() -> impl Strategy<Value = (String, String)> {
    ("[A-Za-z:;,=\"'(){}-]{0,6}", "[A-Za-z:;,=\"'(){}-]{0,6}")
}

/// Random case changes: `flips[k]` flips the case of character `k`.
fn recase(value: &str, flips: &[bool]) -> String {
    value
        .chars()
        .enumerate()
        .map(|(k, c)| {
            if flips.get(k % flips.len().max(1)).copied().unwrap_or(false) {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            } else {
                c
            }
        })
        .collect()
}

fn digits_of(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// Asserts that nothing of a value is left: neither its encoded form as written, nor
/// any of `parts` (lower case) in what can be decoded from the output.
fn assert_gone(
    text: &str,
    written: &str,
    parts: &[String],
    digits: Option<&str>,
) -> Result<(), TestCaseError> {
    let out = redacted(text);
    prop_assert!(
        !out.to_lowercase().contains(&written.to_lowercase()),
        "{text:?} -> {out:?}"
    );
    let decoded = unescape(&out).to_lowercase();
    for part in parts {
        prop_assert!(
            !decoded.contains(part.as_str()),
            "{part:?} in {text:?} -> {out:?}"
        );
    }
    if let Some(d) = digits {
        prop_assert!(
            !digits_of(&decoded).contains(d),
            "{d} in {text:?} -> {out:?}"
        );
    }
    Ok(())
}

/// Whether `value` glued between `before` and `after` lies in a run of letters and
/// digits that is all hex digits, holds a letter and is 32 long or more.
fn in_hex_string(before: &str, value: &str, after: &str) -> bool {
    let left: String = before
        .chars()
        .rev()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    let right: String = after
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    let run = format!("{left}{value}{right}");
    run.len() >= 32
        && run.chars().all(|c| c.is_ascii_hexdigit())
        && run.chars().any(|c| c.is_ascii_alphabetic())
}

/// A valid IBAN for `country` (of length `len`) with a numeric BBAN.
fn iban(country: &str, len: usize, bban_digits: &[u8]) -> String {
    let bban: String = bban_digits[..len - 4]
        .iter()
        .map(|d| char::from(b'0' + d))
        .collect();
    let rearranged = format!("{bban}{country}00");
    let mut r = 0u32;
    for c in rearranged.bytes() {
        r = if c.is_ascii_digit() {
            (r * 10 + u32::from(c - b'0')) % 97
        } else {
            (r * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    format!("{country}{:02}{bban}", 98 - r)
}

const IBANS: &[(&str, usize)] = &[
    ("DE", 22),
    ("GB", 22),
    ("FR", 27),
    ("NL", 18),
    ("BE", 16),
    ("CH", 21),
    ("NO", 15),
    ("ES", 24),
    ("IT", 27),
];

/// Keys of each distinctive prefix, with the part that must not survive.
fn key_sample() -> impl Strategy<Value = (String, String, bool)> {
    // (key, secret part, whether a case change is in scope for it)
    let body = |n: usize| {
        prop::collection::vec(
            prop::sample::select(
                b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789".to_vec(),
            ),
            n,
        )
        .prop_map(|v| String::from_utf8(v).unwrap())
    };
    prop_oneof![
        body(36).prop_map(|b| (format!("ghp_{b}"), b, true)),
        body(40).prop_map(|b| (format!("github_pat_11A{b}"), b, true)),
        body(24).prop_map(|b| (format!("glpat-{b}"), b, true)),
        body(24).prop_map(|b| (format!("xoxb-1234567890-{b}"), b, true)),
        body(24).prop_map(|b| (format!("sk_live_{b}"), b, true)),
        body(33).prop_map(|b| (format!("AIzaSy{b}"), b, true)),
        body(36).prop_map(|b| (format!("npm_{b}"), b, true)),
        body(40).prop_map(|b| (format!("sk-ant-api03-{b}"), b, false)),
        // An AWS key id in one case (upper as issued, or lower-cased): in mixed case
        // it is only taken without text glued after it.
        (body(15), 0u8..10, any::<bool>()).prop_map(|(b, d, lower)| {
            let b = format!("{}{}", char::from(b'2' + d % 6), b.to_ascii_uppercase());
            let key = format!("AKIA{b}");
            if lower {
                (key.to_ascii_lowercase(), b.to_ascii_lowercase(), false)
            } else {
                (key, b, false)
            }
        }),
        (body(22), body(43)).prop_map(|(a, b)| (format!("SG.{a}.{b}"), b, true)),
        body(30).prop_map(|b| {
            let key = format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOi{b}.c2lnbmF0dXJl");
            (key, format!("eyJzdWIiOi{b}"), true)
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// E-mail addresses glued, recased and encoded are masked whole.
    #[test]
    fn glued_and_encoded_emails_do_not_leak(
        local in "[a-z]{2,5}[0-9]{2}([._+-][a-z0-9]{1,5})?",
        label in "[a-z]{3,8}[0-9][a-z]{0,3}",
        tld in prop::sample::select(vec!["com", "org", "net", "de", "io", "co.uk"]),
        (before, after) in (GLUE, GLUE),
        long in prop::option::of("[a-zA-Z]{60,120}"),
        flips in prop::collection::vec(any::<bool>(), 1..8),
        pick in prop::collection::vec(any::<bool>(), 1..8),
        encoding in encoding(),
        outer in outer_glue(),
    ) {
        let domain = format!("{label}.{tld}");
        let address = recase(&format!("{local}@{domain}"), &flips);
        // A large generated value: a long run of letters glued before the address.
        let before = match long { Some(l) => format!("{before}{l}"), None => before };
        let (text, written) = embed(&before, &address, &after, encoding, &pick, '@', &outer);
        assert_gone(&text, &written, &[local.clone(), domain.clone()], None)?;
    }

    /// Card numbers glued (letters, punctuation, digits on one side, or digits on both
    /// sides in a run of 20+), grouped or not, and encoded are masked with every digit.
    #[test]
    fn glued_and_encoded_cards_do_not_leak(
        digits in card_digits(),
        sep in prop::option::of(prop::sample::select(vec![' ', '-'])),
        (before, after) in (GLUE_NO_DIGITS, GLUE_NO_DIGITS),
        glue_digits in prop_oneof![
            Just((String::new(), String::new())),
            "[0-9]{1,3}".prop_map(|d| (d, String::new())),
            "[0-9]{1,3}".prop_map(|d| (String::new(), d)),
            ("[0-9]{2,10}", "[0-9]{2,10}").prop_map(|(a, b)| (format!("{a}{}", "0".repeat(4)), b)),
        ],
        pick in prop::collection::vec(any::<bool>(), 1..8),
        encoding in encoding(),
        outer in outer_glue(),
    ) {
        let plain: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        // Digits glued to digits only for a contiguous card (a group's length is its
        // shape) of 14 digits or more (13-digit windows are only read in runs of 20+),
        // and on both sides only when the run reaches 20 digits.
        let (lead, trail) = if sep.is_none() && (plain.len() >= 14 && (glue_digits.0.is_empty() || glue_digits.1.is_empty()) || glue_digits.0.len() + plain.len() + glue_digits.1.len() >= 20) {
            glue_digits
        } else {
            (String::new(), String::new())
        };
        let card = format!("{lead}{}{trail}", grouped(&digits, sep));
        // Documented exception: digits inside a hex string of 32+ are read as part of it.
        prop_assume!(!in_hex_string(&glue_before(&before, encoding), &card, &after));
        let (text, written) = embed(&before, &card, &after, encoding, &pick, '\0', &outer);
        assert_gone(&text, &written, &[], Some(&plain))?;
        // Nothing of the number is left at all: the glue has no other digits.
        if !matches!(encoding, Encoding::Base64 { .. } | Encoding::Hex { .. }) {
            let out = unescape(&redacted(&text));
            prop_assert_eq!(digits_of(&out), "", "{:?}", text);
        }
    }

    /// SSNs glued to letters and punctuation (and to digits across a separator),
    /// recased around and encoded, are masked.
    #[test]
    fn glued_and_encoded_ssns_do_not_leak(
        area in (1u32..900).prop_filter("valid area", |a| *a != 666),
        group in 1u32..100,
        serial in 1u32..10000,
        (before, after) in (GLUE_NO_DIGITS, GLUE_NO_DIGITS),
        lead in prop::option::of("[0-9]{1,3}[-.]"),
        pick in prop::collection::vec(any::<bool>(), 1..8),
        encoding in encoding(),
        outer in outer_glue(),
    ) {
        let ssn = format!("{area:03}-{group:02}-{serial:04}");
        let before = format!("{before}{}", lead.unwrap_or_default());
        let (text, written) = embed(&before, &ssn, &after, encoding, &pick, '-', &outer);
        let nine = format!("{area:03}{group:02}{serial:04}");
        assert_gone(&text, &written, std::slice::from_ref(&ssn), Some(&nine))?;
    }

    /// IBANs in any case, spaced or not, glued to anything and encoded, are masked.
    #[test]
    fn glued_and_encoded_ibans_do_not_leak(
        country in 0..IBANS.len(),
        bban in prop::collection::vec(0u8..10, 34),
        spaced in any::<bool>(),
        (before, after) in (GLUE, GLUE),
        flips in prop::collection::vec(any::<bool>(), 1..8),
        pick in prop::collection::vec(any::<bool>(), 1..8),
        encoding in encoding(),
        outer in outer_glue(),
    ) {
        let (cc, len) = IBANS[country];
        let compact = iban(cc, len, &bban);
        let written_iban = if spaced {
            compact.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(" ")
        } else {
            compact.clone()
        };
        // Documented exception: an IBAN of hex digits only (`BE…`, `DE…`) inside a hex
        // string of 32+ is read as part of it.
        prop_assume!(!in_hex_string(&glue_before(&before, encoding), &compact, &after));
        let value = recase(&written_iban, &flips);
        let (text, written) = embed(&before, &value, &after, encoding, &pick, '\0', &outer);
        // The account part, as digits: its spaces and the glue's digits aside.
        let account = compact[4..].to_owned();
        let out = redacted(&text);
        prop_assert!(!out.to_lowercase().contains(&written.to_lowercase()), "{:?} -> {:?}", text, out);
        let decoded: String = unescape(&out).chars().filter(|c| *c != ' ').collect();
        prop_assert!(!decoded.contains(&account), "{:?} -> {:?}", text, out);
    }

    /// NANP phone numbers glued to letters and punctuation and encoded are masked.
    #[test]
    fn glued_and_encoded_phones_do_not_leak(
        area in 200u32..990,
        exchange in 200u32..1000,
        line in 0u32..10000,
        sep in prop::sample::select(vec!['-', '.']),
        (before, after) in (GLUE_NO_DIGITS, GLUE_NO_DIGITS),
        pick in prop::collection::vec(any::<bool>(), 1..8),
        encoding in encoding(),
        outer in outer_glue(),
    ) {
        prop_assume!(area % 100 / 10 != 9);
        let phone = format!("{area}{sep}{exchange}{sep}{line:04}");
        let (text, written) = embed(&before, &phone, &after, encoding, &pick, sep, &outer);
        let ten = format!("{area}{exchange}{line:04}");
        assert_gone(&text, &written, std::slice::from_ref(&phone), Some(&ten))?;
    }

    /// Keys and tokens glued to letters and digits (the distinctive prefixes),
    /// recased and encoded are masked.
    #[test]
    fn glued_and_encoded_keys_do_not_leak(
        (key, secret, recasable) in key_sample(),
        (before, after) in ("[A-Za-z0-9]{0,12}", "[.,;:!\"' ]{0,1}[A-Za-z0-9]{0,4}"),
        flips in prop::collection::vec(any::<bool>(), 1..8),
        pick in prop::collection::vec(any::<bool>(), 1..8),
        encoding in encoding(),
        outer in outer_glue(),
    ) {
        let value = if recasable { recase(&key, &flips) } else { key.clone() };
        let secret = if recasable { recase(&secret, &flips) } else { secret };
        let (text, written) = embed(&before, &value, &after, encoding, &pick, '\0', &outer);
        let out = redacted(&text);
        prop_assert!(!out.to_lowercase().contains(&written.to_lowercase()), "{:?} -> {:?}", text, out);
        // Case-insensitive: a recased key is the key.
        let decoded = unescape(&out).to_lowercase();
        let tail = secret[secret.len() - 12..].to_lowercase();
        prop_assert!(!decoded.contains(&tail), "{:?} -> {:?}", text, out);
    }

    /// Ordinary values stay as they are: dates, timestamps, UUIDs, prices, small
    /// numbers, ids up to 12 digits, order ids, words and hex hashes.
    #[test]
    fn ordinary_values_are_left_alone(
        value in prop_oneof![
            (2000u32..2100, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}")),
            (2000u32..2100, 1u32..13, 1u32..29, 0u32..24, 0u32..60, 0u32..1_000_000)
                .prop_map(|(y, mo, d, h, mi, us)| format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{:02}.{us:06}+00", mi % 60)),
            any::<u128>().prop_map(|u| {
                let h = format!("{u:032x}");
                format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
            }),
            (0u32..100_000, 0u32..100).prop_map(|(a, c)| format!("{a}.{c:02}")),
            (0u64..1_000_000_000_000).prop_map(|n| n.to_string()),
            (2000u32..2100, 0u32..1_000_000).prop_map(|(y, n)| format!("ORD-{y}-{n:06}")),
            "[a-z]{1,12}( [a-z]{1,12}){0,5}",
            "[A-Z][a-z]{1,10}( [A-Z][a-z]{1,10}){0,3}",
            prop::collection::vec(any::<u8>(), 32).prop_map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
            // Base64 of random bytes (blobs, tokens): no letter key prefix, IBAN or
            // number found in it by chance.
            prop::collection::vec(any::<u8>(), 100..1500).prop_map(|b| base64(&b, STD, true)),

        ],
    ) {
        let mut found = Vec::new();
        shared().find(value.as_bytes(), &mut found);
        prop_assert!(found.is_empty(), "{:?}: {:?}", value, found);
    }
}
