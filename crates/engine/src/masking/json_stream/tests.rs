use std::sync::Arc;

use airlock_model::{Principal, PrincipalSource};

use super::*;
use crate::masking::json::mask_json;
use crate::masking::redact::{HashKey, Style};
use crate::masking::rules::{MaskingRules, RuleSpec, default_rule};

fn principal() -> Principal {
    Principal {
        name: "agent".into(),
        groups: Vec::new(),
        source: PrincipalSource::ServiceToken,
        expires_at: None,
    }
}

fn masker_with(spec: RuleSpec) -> Arc<Masker> {
    let rules = MaskingRules::compile(vec![spec]).unwrap();
    rules.for_session("shop", &principal()).unwrap()
}

fn default_masker() -> Arc<Masker> {
    masker_with(default_rule(
        vec!["shop".into()],
        Arc::new(HashKey::new(b"0123456789abcdef".to_vec())),
    ))
}

/// Streams `chunks` through a fresh masker.
fn stream<'a>(
    m: &Arc<Masker>,
    mode: Mode,
    limit: usize,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, JsonStreamError> {
    let mut s = JsonStreamMasker::new(m.clone(), mode).with_max_value_bytes(limit);
    let mut out = Vec::new();
    for c in chunks {
        s.push(c, &mut out)?;
    }
    s.finish(&mut out)?;
    Ok(out)
}

/// The masked body, after checking that feeding it whole, split at every position (or
/// at a sample of positions when it is long) and one byte at a time all give the same
/// output or the same error.
fn check_with(
    m: &Arc<Masker>,
    mode: Mode,
    limit: usize,
    doc: &[u8],
) -> Result<Vec<u8>, JsonStreamError> {
    let whole = stream(m, mode, limit, [doc]);
    let splits: Vec<usize> = if doc.len() <= 2000 {
        (0..=doc.len()).collect()
    } else {
        (0..=16).map(|k| doc.len() * k / 16 + k).collect()
    };
    for k in splits.into_iter().filter(|k| *k <= doc.len()) {
        let (a, b) = doc.split_at(k);
        assert_eq!(stream(m, mode, limit, [a, b]), whole, "split at {k}");
    }
    assert_eq!(stream(m, mode, limit, doc.chunks(1)), whole, "byte by byte");
    assert_eq!(
        stream(m, mode, limit, doc.chunks(7)),
        whole,
        "7 bytes at a time"
    );
    whole
}

fn check(mode: Mode, doc: &str) -> Result<String, JsonStreamError> {
    check_with(
        &default_masker(),
        mode,
        DEFAULT_MAX_VALUE_BYTES,
        doc.as_bytes(),
    )
    .map(|o| String::from_utf8(o).unwrap())
}

fn doc(text: &str) -> String {
    check(Mode::Document, text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn masked_keys_replace_whole_values_of_any_type() {
    let input = r#"{"user": {"name": "Ada", "password": "hunter2", "Password": 42,
  "user_password": [1, "two"], "pass\u0077ord": {"a": "b"},
  "ssn": ["123-45-6789", "x"], "card": {"number": "4111111111111111", "exp": "12/30"},
  "api_token": "tok", "API_TOKEN": true, "refresh_token": null, "keep": "plain \u00e9"}}"#;
    let expected = r#"{"user": {"name": "Ada", "password": "[REDACTED:column]", "Password": "[REDACTED:column]",
  "user_password": "[REDACTED:column]", "pass\u0077ord": "[REDACTED:column]",
  "ssn": "[REDACTED:column]", "card": "[REDACTED:column]",
  "api_token": "[REDACTED:column]", "API_TOKEN": "[REDACTED:column]", "refresh_token": null, "keep": "plain \u00e9"}}"#;
    assert_eq!(doc(input), expected);

    let m = default_masker();
    let mut s = JsonStreamMasker::new(m.clone(), Mode::Document);
    let mut out = Vec::new();
    s.push(input.as_bytes(), &mut out).unwrap();
    s.finish(&mut out).unwrap();
    let t = s.tally();
    assert_eq!(t.to_json(&m), serde_json::json!({"default": {"column": 8}}));
    assert!(s.tally().is_empty(), "taken");
}

#[test]
fn escaped_keys_are_matched_on_their_decoded_text() {
    for key in [
        r"pass\u0077ord",
        r"\u0070assword",
        r"PASS\u0057ORD",
        r"api\u005ftoken",
        r"\u0073\u0073\u006e",
    ] {
        let input = format!(r#"{{"{key}": "hunter2", "k": 1}}"#);
        assert_eq!(
            doc(&input),
            format!(r#"{{"{key}": "[REDACTED:column]", "k": 1}}"#)
        );
    }
}

#[test]
fn nested_objects_and_arrays_of_objects() {
    let input = r#"[{"id": 1, "profile": {"contact": {"password": {"old": "a", "new": "b"}, "name": "x"}}},
 {"id": 2, "items": [{"card": "4111 1111 1111 1111"}, {"card": null}, {"note": "ok"}]}]"#;
    let expected = r#"[{"id": 1, "profile": {"contact": {"password": "[REDACTED:column]", "name": "x"}}},
 {"id": 2, "items": [{"card": "[REDACTED:column]"}, {"card": null}, {"note": "ok"}]}]"#;
    assert_eq!(doc(input), expected);
}

#[test]
fn strings_are_scanned_on_their_decoded_text() {
    let input = r#"[{"note": "write to alan@example.org"}, {"note": "grace\u0040example.net"},
 {"q": "say \"hi\"\n to alan@example.org\t!"}, {"alan@example.org": 1},
 {"a": "https:\/\/example.com\/x", "b": "tab\there \u00e9 \ud83d\ude00"}]"#;
    let expected = r#"[{"note": "write to [REDACTED:email]"}, {"note": "[REDACTED:email]"},
 {"q": "say \"hi\"\n to [REDACTED:email]\t!"}, {"[REDACTED:email]": 1},
 {"a": "https:\/\/example.com\/x", "b": "tab\there \u00e9 \ud83d\ude00"}]"#;
    assert_eq!(doc(input), expected);
    // Masked strings are written again as valid JSON: escapes, control bytes,
    // surrogates.
    let input = r#"{"x": "\ud83d\ude00 \u0001 \"q\" \\ alan@example.org \udc00"}"#;
    assert_eq!(
        doc(input),
        "{\"x\": \"\u{1f600} \\u0001 \\\"q\\\" \\\\ [REDACTED:email] \\udc00\"}"
    );
}

#[test]
fn numbers_are_kept_verbatim_unless_they_hold_a_card() {
    let input = r#"{"n": 4111111111111111, "id": 12345678901234567890, "f": -1.5e+10,
 "z": 0, "e": 2E-3, "arr": [4111111111111111,0]}"#;
    let expected = r#"{"n": "[REDACTED:card]", "id": 12345678901234567890, "f": -1.5e+10,
 "z": 0, "e": 2E-3, "arr": ["[REDACTED:card]",0]}"#;
    assert_eq!(doc(input), expected);
    assert_eq!(doc("  4111111111111111 \n"), "  \"[REDACTED:card]\" \n");
    assert_eq!(doc("4111111111111111"), "\"[REDACTED:card]\"");
    assert_eq!(doc("-0.5"), "-0.5");
    assert_eq!(doc(" \"alan@example.org\" "), " \"[REDACTED:email]\" ");
    assert_eq!(doc("true"), "true");
}

#[test]
fn the_output_matches_the_whole_document_walk() {
    let m = default_masker();
    for input in [
        r#"{"id": 12345678901234567890, "password": {"nested": [1, "x"]}, "note" : "mail ada@example.com", "api_key": null, "n": 4111111111111111}"#,
        r#"[1, {"a": "b"}, [], {}, "", -0, 1e5, true, false, null]"#,
        r#"{"email": "a@b.co", "Phone": [1, 2], "deep": {"secret_x": {"y": 1}}}"#,
        "{\n  \"k\" :\t[ 1 ,\r\n 2 ] }",
    ] {
        let mut expected = Vec::new();
        mask_json(&m, input.as_bytes(), &mut expected, &mut Tally::default()).unwrap();
        assert_eq!(doc(input), String::from_utf8(expected).unwrap(), "{input}");
    }
}

#[test]
fn deep_nesting_is_walked_to_the_limit() {
    let input = r#"{"a":"#.repeat(60)
        + r#"{"password": "x", "note": "alan@example.org", "l": [[["ssn"]]]}"#
        + &"}".repeat(60);
    let expected = r#"{"a":"#.repeat(60)
        + r#"{"password": "[REDACTED:column]", "note": "[REDACTED:email]", "l": [[["ssn"]]]}"#
        + &"}".repeat(60);
    assert_eq!(doc(&input), expected);
    // A masked value may itself be deep.
    let input = r#"{"password": "#.to_owned() + &"[".repeat(200) + &"]".repeat(200) + "}";
    assert_eq!(doc(&input), r#"{"password": "[REDACTED:column]"}"#);

    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert_eq!(doc(&ok), ok);
    let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
    assert_eq!(
        check(Mode::Document, &deep),
        Err(JsonStreamError::TooDeep {
            offset: MAX_DEPTH as u64
        })
    );
}

#[test]
fn a_long_string_is_scanned_whole() {
    let filler = "lorem ipsum dolor ".repeat(300_000 / 18);
    let input = format!(r#"{{"blob": "{filler}alan@example.org {filler}", "n": 1}}"#);
    assert!(input.len() > 600_000);
    let expected = format!(r#"{{"blob": "{filler}[REDACTED:email] {filler}", "n": 1}}"#);
    assert_eq!(doc(&input), expected);

    let m = default_masker();
    assert_eq!(
        check_with(&m, Mode::Document, 100_000, input.as_bytes()),
        Err(JsonStreamError::ValueTooLong {
            offset: 9,
            limit: 100_000
        })
    );
    // Under a redacted key the value is dropped as it comes: no limit.
    let input = format!(r#"{{"password": "{filler}", "n": 1}}"#);
    assert_eq!(
        check_with(&m, Mode::Document, 1000, input.as_bytes()).unwrap(),
        br#"{"password": "[REDACTED:column]", "n": 1}"#.to_vec()
    );
}

#[test]
fn hashed_values_are_hashed_from_their_raw_bytes_within_the_limit() {
    let mut spec = default_rule(
        vec!["shop".into()],
        Arc::new(HashKey::new(b"0123456789abcdef".to_vec())),
    );
    spec.style = Style::Hash;
    let m = masker_with(spec);
    let input = br#"{"password": {"a": [1, "x"]}, "other": {"password": {"a": [1, "x"]}}}"#;
    let out =
        String::from_utf8(check_with(&m, Mode::Document, DEFAULT_MAX_VALUE_BYTES, input).unwrap())
            .unwrap();
    let mut expected = Vec::new();
    mask_json(&m, input, &mut expected, &mut Tally::default()).unwrap();
    assert_eq!(out, String::from_utf8(expected).unwrap());
    assert!(out.contains("[HASH:"), "{out}");
    assert_eq!(
        check_with(&m, Mode::Document, 10, input),
        Err(JsonStreamError::ValueTooLong {
            offset: 13,
            limit: 10
        })
    );
}

#[test]
fn observe_only_column_values_are_still_scanned() {
    let mut watch = default_rule(Vec::new(), Arc::new(HashKey::new(Vec::new())));
    watch.name = "watch".into();
    watch.detectors = Vec::new();
    watch.enforce = false;
    let mut mail = default_rule(Vec::new(), Arc::new(HashKey::new(Vec::new())));
    mail.columns = Vec::new();
    mail.detectors = vec!["email".into()];
    let rules = MaskingRules::compile(vec![watch, mail]).unwrap();
    let m = rules.for_session("shop", &principal()).unwrap();
    let input = br#"{"password": "alan@example.org", "token": null}"#;
    let out = check_with(&m, Mode::Document, DEFAULT_MAX_VALUE_BYTES, input).unwrap();
    assert_eq!(
        out,
        br#"{"password": "[REDACTED:email]", "token": null}"#.to_vec()
    );
    let mut s = JsonStreamMasker::new(m.clone(), Mode::Document);
    s.push(input, &mut Vec::new()).unwrap();
    assert_eq!(
        s.tally().to_json(&m),
        serde_json::json!({"watch": {"column": 1}, "default": {"email": 1}})
    );
}

#[test]
fn sequences_of_documents() {
    let input = "{\"a\":1}\n{\"password\":\"x\"}\n\x1e{\"b\":\"alan@example.org\"}\r\n\"str\"\n\
                 4111111111111111\n[1,2]{\"c\":3}\n";
    let expected = "{\"a\":1}\n{\"password\":\"[REDACTED:column]\"}\n\x1e{\"b\":\"[REDACTED:email]\"}\r\n\"str\"\n\
                    \"[REDACTED:card]\"\n[1,2]{\"c\":3}\n";
    assert_eq!(check(Mode::Sequence, input).unwrap(), expected);
    assert_eq!(
        check(Mode::Document, input),
        Err(JsonStreamError::Invalid { offset: 8 })
    );
    assert_eq!(check(Mode::Sequence, "").unwrap(), "");
    assert_eq!(check(Mode::Sequence, " \n").unwrap(), " \n");
    assert_eq!(check(Mode::Sequence, "1 2").unwrap(), "1 2");
    assert_eq!(
        check(Mode::Document, ""),
        Err(JsonStreamError::Truncated { offset: 0 })
    );
    assert_eq!(
        check(Mode::Sequence, "truefalse"),
        Err(JsonStreamError::Invalid { offset: 4 })
    );
    assert_eq!(
        check(Mode::Sequence, "12\"a\""),
        Err(JsonStreamError::Invalid { offset: 2 })
    );
    assert_eq!(
        check(Mode::Sequence, "{\"a\":1}\n{\"a\""),
        Err(JsonStreamError::Truncated { offset: 12 })
    );
}

#[test]
fn invalid_json_is_an_error_at_its_byte() {
    use JsonStreamError::{Invalid, Truncated};
    for (input, error) in [
        ("{", Truncated { offset: 1 }),
        ("[1,]", Invalid { offset: 3 }),
        ("{\"a\" 1}", Invalid { offset: 5 }),
        ("\"open", Truncated { offset: 5 }),
        ("{\"a\":tru}", Invalid { offset: 8 }),
        ("nul", Truncated { offset: 3 }),
        ("01", Invalid { offset: 1 }),
        ("[1 2]", Invalid { offset: 3 }),
        ("{\"a\":1}}", Invalid { offset: 7 }),
        ("]", Invalid { offset: 0 }),
        ("\"\\x\"", Invalid { offset: 2 }),
        ("\"\\u12g4\"", Invalid { offset: 5 }),
        ("\"a\u{1}\"", Invalid { offset: 2 }),
        ("-", Truncated { offset: 1 }),
        ("1.", Truncated { offset: 2 }),
        ("1.e5", Invalid { offset: 2 }),
        ("+1", Invalid { offset: 0 }),
        ("{,}", Invalid { offset: 1 }),
        ("{\"a\":1,}", Invalid { offset: 7 }),
        ("[1}", Invalid { offset: 2 }),
        ("{\"a\":1e}", Invalid { offset: 7 }),
        ("{1:2}", Invalid { offset: 1 }),
        ("1 2", Invalid { offset: 2 }),
        ("\x1e1", Invalid { offset: 0 }),
        ("{\"password\": [1,]}", Invalid { offset: 16 }),
        ("{\"password\": \"x", Truncated { offset: 15 }),
    ] {
        assert_eq!(check(Mode::Document, input), Err(error), "{input:?}");
    }
}

#[test]
fn a_failed_or_finished_stream_refuses_more() {
    let mut s = JsonStreamMasker::new(default_masker(), Mode::Document);
    let mut out = Vec::new();
    s.push(b"[1, \"alan@example.org\"", &mut out).unwrap();
    let written = out.len();
    let e = s.push(b", ]", &mut out).unwrap_err();
    assert_eq!(e, JsonStreamError::Invalid { offset: 24 });
    assert_eq!(out.len(), written, "nothing of the failed chunk is written");
    assert_eq!(s.push(b"1]", &mut out), Err(e.clone()));
    assert_eq!(s.finish(&mut out), Err(e));

    let mut s = JsonStreamMasker::new(default_masker(), Mode::Document);
    s.push(b"{}", &mut out).unwrap();
    s.finish(&mut out).unwrap();
    assert_eq!(s.push(b" ", &mut out), Err(JsonStreamError::Finished));
}

#[test]
fn masked_output_is_json_whenever_the_input_is() {
    let m = default_masker();
    for input in [
        r#"{"a": "x\u0040alan@example.org", "b": ["4111 1111 1111 1111", "\u0034111111111111111"]}"#,
        r#"{"c": "line\nalan@example.org", "d": "\\nalan@example.org", "e": "id4111111111111111\""}"#,
        r#"{"f": "\uff41\uff4c\uff41\uff4e\uff20example.org", "g": "YWxhbkBleGFtcGxlLm9yZw=="}"#,
    ] {
        let out = check_with(
            &m,
            Mode::Document,
            DEFAULT_MAX_VALUE_BYTES,
            input.as_bytes(),
        )
        .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{input} -> {}: {e}", String::from_utf8_lossy(&out)));
        let text = value.to_string();
        for secret in ["alan@", "4111", "\u{ff20}", "YWxh"] {
            assert!(!text.contains(secret), "{input} -> {text}");
        }
    }
}

#[test]
fn a_large_array_streams_in_bounded_memory() {
    let mut body = Vec::with_capacity(51 << 20);
    body.push(b'[');
    let mut n = 0u64;
    while body.len() < 50 << 20 {
        if n > 0 {
            body.extend_from_slice(b",\n");
        }
        body.extend_from_slice(
            format!(
                r#"{{"id": {n}, "name": "user {n}", "email": "u{n}@example.org", "note": "write to u{n}@example.org", "tags": ["a", "b"], "score": 12.5}}"#
            )
            .as_bytes(),
        );
        n += 1;
    }
    body.push(b']');
    let m = default_masker();
    let mut s = JsonStreamMasker::new(m.clone(), Mode::Document);
    let mut out = Vec::new();
    let mut written = 0;
    let mut most = 0;
    for chunk in body.chunks(64 * 1024) {
        s.push(chunk, &mut out).unwrap();
        most = most.max(s.buffered());
        written += out.len();
        out.clear();
    }
    s.finish(&mut out).unwrap();
    written += out.len();
    assert!(most < 4096, "buffers held {most} bytes");
    assert!(written > 40 << 20);
    assert_eq!(
        s.tally().to_json(&m),
        serde_json::json!({"default": {"column": n, "email": n}})
    );
}
