use std::sync::Arc;

use airlock_model::{Principal, PrincipalSource};

use super::*;
use crate::masking::redact::HashKey;
use crate::masking::rules::{MaskingRules, default_rule};

fn masker() -> Arc<Masker> {
    let rules = MaskingRules::compile(vec![default_rule(
        vec!["shop".into()],
        Arc::new(HashKey::new(Vec::new())),
    )])
    .unwrap();
    let principal = Principal {
        name: "agent".into(),
        groups: Vec::new(),
        source: PrincipalSource::ServiceToken,
        expires_at: None,
    };
    rules.for_session("shop", &principal).unwrap()
}

/// What a scan of the whole text at once gives.
fn scanned(m: &Masker, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if m.scan(text, &mut out, &mut Tally::default()) == Scan::Clean {
        return text.to_vec();
    }
    out
}

/// Streams `chunks`; returns the output and the most memory held.
fn stream<'a>(m: &Arc<Masker>, chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<u8>, usize) {
    let mut s = TextStreamMasker::new(m.clone());
    let mut out = Vec::new();
    let mut most = 0;
    for c in chunks {
        s.push(c, &mut out);
        most = most.max(s.buffered());
    }
    s.finish(&mut out);
    (out, most)
}

/// Checks that streaming `text` whole, split at every position (or a sample when it is
/// long), and in chunks of 1, 7 and 4096 bytes gives what a scan of the whole text does;
/// returns that.
fn check(text: &[u8]) -> Vec<u8> {
    let m = masker();
    let whole = scanned(&m, text);
    assert_eq!(stream(&m, [text]).0, whole, "whole");
    let splits: Vec<usize> = if text.len() <= 3000 {
        (0..=text.len()).collect()
    } else {
        (0..=16)
            .map(|k| (text.len() * k / 16 + 3 * k).min(text.len()))
            .collect()
    };
    for k in splits {
        let (a, b) = text.split_at(k);
        assert_eq!(stream(&m, [a, b]).0, whole, "split at {k}");
    }
    for size in [1, 7, 4096] {
        assert_eq!(
            stream(&m, text.chunks(size)).0,
            whole,
            "{size} bytes at a time"
        );
    }
    whole
}

fn check_str(text: &str) -> String {
    String::from_utf8(check(text.as_bytes())).unwrap()
}

#[test]
fn findings_across_chunk_boundaries_are_masked() {
    let out = check_str(
        "hello alan@example.org\ncard 4111 1111 1111 1111 ok\nphone +1 (415) 555-2671\n\
         IBAN GB82 WEST 1234 5698 7654 32 end\n\nescaped grace%40example.net and \
         grace\\u0040example.net\nno newline at the end: 4111111111111111",
    );
    assert_eq!(
        out,
        "hello [REDACTED:email]\ncard [REDACTED:card] ok\nphone [REDACTED:phone]\n\
         IBAN [REDACTED:iban] end\n\nescaped [REDACTED:email] and \
         [REDACTED:email]\nno newline at the end: [REDACTED:card]"
    );
    assert_eq!(check_str(""), "");
    assert_eq!(check_str("plain text\n"), "plain text\n");
}

#[test]
fn private_key_blocks_are_never_cut() {
    let body = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n".repeat(40);
    let text = format!(
        "key:\n-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----\n\
         after alan@example.org\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    );
    let out = String::from_utf8(check(text.as_bytes())).unwrap();
    assert_eq!(
        out,
        "key:\n[REDACTED:private_key]\nafter [REDACTED:email]\n\
         -----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    );
    // Without an END line, to the end of the text.
    let text = format!("x\n-----BEGIN PRIVATE KEY-----\n{body}tail alan@example.org\n");
    assert_eq!(
        String::from_utf8(check(text.as_bytes())).unwrap(),
        "x\n[REDACTED:private_key]"
    );
}

#[test]
fn long_lines_are_cut_only_where_no_value_continues() {
    let segment = "word, 4111 1111 1111 1111 and GB82 WEST 1234 5698 7654 32; +1 (415) 555-2671 x \
                   4111-1111-1111-1111 alan@example.org lorem ipsum dolor sit amet, ";
    let line = segment.repeat(300_000 / segment.len());
    let out = check_str(&line);
    assert!(!out.contains("4111") && !out.contains("WEST") && !out.contains("alan@"));
    let m = masker();
    let (_, most) = stream(&m, line.as_bytes().chunks(1));
    assert!(most < 4 * SOFT_LIMIT, "held {most}");

    // A value just after the soft limit, behind text with no safe cut before it.
    let filler = "x".repeat(SOFT_LIMIT + 10);
    for value in [
        " 4111 1111 1111 1111 ",
        " GB82 WEST 1234 5698 7654 32 ",
        " +1 (415) 555-2671 ",
        ", 4111 1111 1111 1111, ",
        " &#52;111 1111 1111 1111 ",
        " -----BEGIN RSA PRIVATE KEY----- MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo -----END RSA PRIVATE KEY----- ",
    ] {
        let text = format!("{filler}{value}{filler} tail");
        let out = check_str(&text);
        assert!(out.contains("[REDACTED:"), "{value}");
    }
}

#[test]
fn text_without_any_cut_is_cut_at_the_hard_limit_on_a_utf8_boundary() {
    let m = masker();
    let mut text = Vec::new();
    for k in 0..12 {
        text.extend_from_slice("é".repeat(150_000).as_bytes());
        text.extend_from_slice(format!(",alan{k}@example.org,").as_bytes());
    }
    text.extend_from_slice(&[0xFF, 0xFE, b' ', 0x80]);
    let expected = scanned(&m, &text);
    assert_eq!(
        expected
            .windows(16)
            .filter(|w| w == b"[REDACTED:email]")
            .count(),
        12
    );
    for size in [1, 1000, 64 * 1024, 5 << 20] {
        let (out, most) = stream(&m, text.chunks(size));
        assert_eq!(out, expected, "{size} bytes at a time");
        assert!(most <= 2 * (HARD_LIMIT + SOFT_LIMIT), "held {most}");
    }
}

#[test]
fn a_private_key_cut_at_the_hard_limit_stays_masked() {
    let m = masker();
    let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2\n";
    let text = format!(
        "start\n-----BEGIN PRIVATE KEY-----\n{}-----END PRIVATE KEY-----\nafter alan@example.org\n",
        line.repeat(2 * HARD_LIMIT / line.len())
    );
    for size in [1000, 64 * 1024, text.len()] {
        let (out, _) = stream(&m, text.as_bytes().chunks(size));
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("start\n[REDACTED:private_key]"), "{size}");
        assert!(
            out.ends_with("[REDACTED:private_key]\nafter [REDACTED:email]\n"),
            "{size}"
        );
        assert!(!out.contains("QUJD") && !out.contains("-----"), "{size}");
    }
}

#[test]
fn memory_stays_bounded_over_a_long_body() {
    let m = masker();
    let mut s = TextStreamMasker::new(m.clone());
    let line = b"2026-01-01 INFO request from alan@example.org took 12ms\n";
    let chunk = line.repeat(64 * 1024 / line.len());
    let mut out = Vec::new();
    let mut most = 0;
    for _ in 0..80 {
        s.push(&chunk, &mut out);
        most = most.max(s.buffered());
        out.clear();
    }
    s.finish(&mut out);
    assert!(most <= 2 * SOFT_LIMIT, "held {most}");
    let n = 80 * (64 * 1024 / line.len());
    assert_eq!(
        s.tally().to_json(&m),
        serde_json::json!({"default": {"email": n}})
    );
}
