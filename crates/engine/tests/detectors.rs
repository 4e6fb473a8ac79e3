//! Property tests of the PII detectors and the replacement writer: generated cards are
//! found and never leak through a mask, every replacement stays in the safe character
//! set, and `find` keeps its output contract on arbitrary bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

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
