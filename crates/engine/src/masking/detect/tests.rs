#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::numbers::{brand_length_ok, iban_mod97, luhn};
use super::*;

fn all() -> Scanner {
    let specs: Vec<DetectorSpec> = BUILTIN
        .iter()
        .map(|n| DetectorSpec::Builtin((*n).to_owned()))
        .collect();
    Scanner::new(&specs).unwrap()
}

fn only(names: &[&str]) -> Scanner {
    let specs: Vec<DetectorSpec> = names
        .iter()
        .map(|n| DetectorSpec::Builtin((*n).to_owned()))
        .collect();
    Scanner::new(&specs).unwrap()
}

/// `(detector, matched text)` for every finding, checking the output contract.
fn scan_with(scanner: &Scanner, text: &[u8]) -> Vec<(String, String)> {
    let mut out = vec![Finding {
        start: 0,
        end: 0,
        detector: DetectorId(999),
    }];
    scanner.find(text, &mut out);
    assert_eq!(out[0].detector, DetectorId(999), "earlier findings kept");
    let found = &out[1..];
    for pair in found.windows(2) {
        assert!(pair[0].end <= pair[1].start, "sorted, non-overlapping");
    }
    for f in found {
        assert!(f.start < f.end && f.end <= text.len());
    }
    if !found.is_empty() {
        assert!(scanner.may_match(text), "may_match is a superset");
    }
    found
        .iter()
        .map(|f| {
            (
                scanner.name(f.detector).to_owned(),
                String::from_utf8_lossy(&text[f.start..f.end]).into_owned(),
            )
        })
        .collect()
}

fn scan(text: &str) -> Vec<(String, String)> {
    scan_with(&all(), text.as_bytes())
}

fn one(kind: &str, text: &str, expected: &str) {
    assert_eq!(
        scan(text),
        vec![(kind.to_owned(), expected.to_owned())],
        "in {text:?}"
    );
}

fn none(text: &str) {
    assert_eq!(scan(text), vec![], "in {text:?}");
}

/// Appends the Luhn check digit to `body`.
fn with_check_digit(body: &str) -> String {
    for d in 0..10 {
        let candidate = format!("{body}{d}");
        let digits: Vec<u8> = candidate.bytes().map(|b| b - b'0').collect();
        if luhn(&digits) {
            return candidate;
        }
    }
    unreachable!()
}

// === config ===

#[test]
fn builtin_lists_are_consistent() {
    assert_eq!(BUILTIN.len(), 20);
    for n in SECRETS.iter().chain(DEFAULT_ON) {
        assert!(BUILTIN.contains(n), "{n}");
    }
    assert!(!DEFAULT_ON.contains(&"ipv4"));
    assert_eq!(DEFAULT_ON.len(), BUILTIN.len() - 1);
    assert_eq!(expand_group("secrets"), Some(SECRETS));
    assert_eq!(expand_group("email"), None);
    for (i, n) in BUILTIN.iter().enumerate() {
        assert_eq!(Kind::from_name(n).map(|k| k as usize), Some(i));
    }
}

#[test]
fn names_and_ids() {
    let s = Scanner::new(&[
        DetectorSpec::Builtin("email".into()),
        DetectorSpec::Custom {
            name: "employee_id".into(),
            pattern: "EMP-[0-9]{6}".into(),
        },
        DetectorSpec::Builtin("email".into()),
    ])
    .unwrap();
    assert_eq!(s.len(), 2);
    assert!(!s.is_empty());
    assert_eq!(s.id_of("email"), Some(DetectorId(0)));
    assert_eq!(s.id_of("employee_id"), Some(DetectorId(1)));
    assert_eq!(s.name(DetectorId(1)), "employee_id");
    assert_eq!(s.name(DetectorId(7)), "unknown");
    assert_eq!(s.id_of("card"), None);
    assert_eq!(
        scan_with(&s, b"EMP-123456 wrote to a@b.co"),
        vec![
            ("employee_id".to_owned(), "EMP-123456".to_owned()),
            ("email".to_owned(), "a@b.co".to_owned())
        ]
    );
}

#[test]
fn group_name_expands() {
    let s = only(&["secrets"]);
    assert_eq!(s.len(), SECRETS.len());
    assert!(s.id_of("jwt").is_some() && s.id_of("email").is_none());
}

#[test]
fn empty_scanner_finds_nothing() {
    let s = Scanner::new(&[]).unwrap();
    assert!(s.is_empty());
    assert!(!s.may_match(b"a@b.co 4111111111111111"));
    assert_eq!(scan_with(&s, b"a@b.co 4111111111111111"), vec![]);
}

#[test]
fn bad_specs_are_refused_with_the_detector_named() {
    let custom = |name: &str, pattern: &str| {
        Scanner::new(&[DetectorSpec::Custom {
            name: name.into(),
            pattern: pattern.into(),
        }])
        .unwrap_err()
    };
    let e = Scanner::new(&[DetectorSpec::Builtin("emails".into())]).unwrap_err();
    assert!(matches!(e, DetectError::UnknownBuiltin { ref name } if name == "emails"));
    assert!(e.to_string().contains("emails"));
    assert!(matches!(
        custom("Bad", "x"),
        DetectError::InvalidName { .. }
    ));
    assert!(matches!(
        custom("a-b", "x"),
        DetectError::InvalidName { .. }
    ));
    assert!(matches!(custom("", "x"), DetectError::InvalidName { .. }));
    assert!(matches!(
        custom(&"a".repeat(65), "x"),
        DetectError::InvalidName { .. }
    ));
    assert!(matches!(
        custom("email", "x"),
        DetectError::DuplicateName { .. }
    ));
    assert!(matches!(
        custom("column", "x"),
        DetectError::DuplicateName { .. }
    ));
    assert!(matches!(
        custom("secrets", "x"),
        DetectError::DuplicateName { .. }
    ));
    let e = custom("broken", "(unclosed");
    assert!(matches!(e, DetectError::BadPattern { ref name, .. } if name == "broken"));
    for empty in ["x*", "", "\\b", "(?m)^", "a|", "[0-9]{0,3}"] {
        let e = custom("empty", empty);
        assert!(
            matches!(e, DetectError::MatchesEmpty { ref name } if name == "empty"),
            "{empty}: {e}"
        );
    }
    assert!(matches!(
        custom("big", &"a".repeat(MAX_PATTERN_LEN + 1)),
        DetectError::PatternTooLong { .. }
    ));
    // A pattern that compiles to a huge program is refused, not built.
    assert!(matches!(
        custom("huge", "[a-z]{1000}{1000}"),
        DetectError::BadPattern { .. }
    ));
    let dup = Scanner::new(&[
        DetectorSpec::Custom {
            name: "x".into(),
            pattern: "a".into(),
        },
        DetectorSpec::Custom {
            name: "x".into(),
            pattern: "b".into(),
        },
    ])
    .unwrap_err();
    assert!(matches!(dup, DetectError::DuplicateName { .. }));
}

#[test]
fn scanner_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Scanner>();
}

// === email ===

#[test]
fn email_positives() {
    one("email", "jane.doe@example.com", "jane.doe@example.com");
    one(
        "email",
        "Contact: JANE_DOE+tag@Mail.Example.CO.UK.",
        "JANE_DOE+tag@Mail.Example.CO.UK",
    );
    one("email", "{\"email\":\"a@b.co\"}", "a@b.co");
    one("email", "Jane <jane@example.org>", "jane@example.org");
    one("email", "mailto:x@y.io?subject=hi", "x@y.io");
    one("email", "Zoë a@b.co北京", "a@b.co");
    one("email", "北京a@b.co", "a@b.co");
    one("email", "...dots@b.co", "dots@b.co");
    one("email", "a@b.co.1", "a@b.co");
    assert_eq!(
        scan("{a@b.co,\"x y\",c@d.org}"),
        vec![
            ("email".to_owned(), "a@b.co".to_owned()),
            ("email".to_owned(), "c@d.org".to_owned())
        ]
    );
}

#[test]
fn email_negatives() {
    for t in [
        "@user",
        "user@",
        "a@localhost",
        "icon@2x.png",
        "logo@3x.JPG",
        "lodash@4.17.21",
        "@types/node@20.1.0",
        "a@b.c",
        "user@.com",
        "a.@b.com",
        "x@-a.com",
        "x@a-.com",
        "@@",
        "zoë@müller.de",
    ] {
        none(t);
    }
}

// === card ===

#[test]
fn card_positives() {
    for c in [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "378282246310005",
        "3782 822463 10005",
        "5555555555554444",
        "2223003122003222",
        "6011111111111117",
        "3530111333300000",
        "30569309025904",
        "4222222222222",
    ] {
        one("card", c, c);
        one("card", &format!("card: {c}."), c);
        one("card", &format!("\"cc\":\"{c}\""), c);
        one("card", &format!("Zoë{c}北京"), c);
    }
    let unionpay = with_check_digit("620000000000000");
    one("card", &unionpay, &unionpay);
    let discover19 = with_check_digit("601100000000000000");
    one("card", &discover19, &discover19);
    assert_eq!(
        scan("{4111111111111111,5555555555554444}"),
        vec![
            ("card".to_owned(), "4111111111111111".to_owned()),
            ("card".to_owned(), "5555555555554444".to_owned())
        ]
    );
    // A number before the card, separated by a space, is not part of it.
    one("card", "qty 12 4111111111111111", "4111111111111111");
}

#[test]
fn card_negatives() {
    let luhn_valid_ids = [
        with_check_digit("123456781234567"),
        with_check_digit("999999999999999"),
        with_check_digit("170000000000"),    // epoch milliseconds
        with_check_digit("170000000000000"), // epoch microseconds
    ];
    for id in &luhn_valid_ids {
        none(id);
    }
    for t in [
        "4111111111111112",
        "4111 1111-1111 1111",
        "4111  1111 1111 1111",
        "41111 1111 1111 111",
        "41111111-1111-1111-1111-111111111111",
        "123e4567-e89b-12d3-a456-426614174000",
        "0.30000000000000004",
        "2024-01-15 10:23:45.123456+00",
        "$4,111,111,111,111,111.00",
    ] {
        assert!(
            scan(t).iter().all(|(k, _)| k != "card"),
            "{t}: {:?}",
            scan(t)
        );
    }
    // 15-digit Visa is not an issued length.
    let visa15 = with_check_digit("41111111111111");
    none(&visa15);
}

#[test]
fn brand_table() {
    let d = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<u8>>();
    assert!(brand_length_ok(&d("4111111111111111")));
    assert!(!brand_length_ok(&d("411111111111111")));
    assert!(brand_length_ok(&d("2720990000000000")));
    assert!(!brand_length_ok(&d("2721000000000000")));
    assert!(brand_length_ok(&d("6449000000000000")));
    assert!(!brand_length_ok(&d("6430000000000000")));
    assert!(!brand_length_ok(&d("3500000000000000")));
    assert!(brand_length_ok(&d("3528000000000000")));
    assert!(!brand_length_ok(&d("1234567890123456")));
    assert!(!luhn(&[]));
}

// === ssn ===

#[test]
fn ssn() {
    one("ssn", "123-45-6789", "123-45-6789");
    one("ssn", "SSN: 078-05-1120.", "078-05-1120");
    one("ssn", "{123-45-6789,\"x\"}", "123-45-6789");
    // Glued to letters, digits and punctuation: the groups delimit it.
    for t in [
        "1-123-45-6789",
        "123-45-6789-1",
        "123-45-6789.5",
        "A123-45-6789",
        "ssn123-45-6789x",
        "_123-45-6789_",
    ] {
        one("ssn", t, "123-45-6789");
    }
    for t in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "123-00-4567",
        "123-45-0000",
        "123456789",
        "123 45 6789",
        "123-45-67890",
        "1123-45-6789",
        "123-456-6789",
        "2024-01-15",
    ] {
        none(t);
    }
}

// === iban ===

#[test]
fn iban_positives() {
    for t in [
        "DE89370400440532013000",
        "DE89 3704 0044 0532 0130 00",
        "GB29NWBK60161331926819",
        "GB29 NWBK 6016 1331 9268 19",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "BE68539007547034",
        "NO9386011117947",
        "CH9300762011623852957",
    ] {
        one("iban", t, t);
        one("iban", &format!("IBAN: {t}, BIC"), t);
        // Any case, and glued to what is around it: the length is the country's.
        let lower = t.to_ascii_lowercase();
        one("iban", &lower, &lower);
        one("iban", &format!("xx{t}"), t);
        one("iban", &format!("iban{t}X"), t);
        one("iban", &format!("x{t}y"), t);
    }
    one(
        "iban",
        "12GB29NWBK60161331926819-3",
        "GB29NWBK60161331926819",
    );
    one(
        "iban",
        "12DE8937040044053201300034",
        "DE89370400440532013000",
    );
    // Inside a hex string (a hash), an IBAN-shaped piece of hex digits is chance.
    none("0123456789abcdef5ae52dcf7e5e73e246045842abcdef");
    // So is a Luhn-valid digit run.
    none("00000000000000000000b4101633474368a00000000000000000000000000000");
    one("card", "b4101633474368a", "4101633474368");
    assert_eq!(iban_mod97(b"DE89370400440532013000"), 1);
}

#[test]
fn iban_negatives() {
    for t in [
        "DE88370400440532013000",
        "XX89370400440532013000",
        "DE8937040044053201300",
        "DE89 37040044 0532013000",
        "DE89 3704 0044 0532 0130 0",
    ] {
        assert!(
            scan(t).iter().all(|(k, _)| k != "iban"),
            "{t}: {:?}",
            scan(t)
        );
    }
}

// === phone ===

#[test]
fn phone_positives() {
    for t in [
        "+44 20 7946 0958",
        "+14155552671",
        "+1 (415) 555-2671",
        "+1-415-555-2671",
        "+44 (0)20 7946 0958",
        "+33 1 42 68 53 00",
        "+49.30.1234567",
        "(415) 555-2671",
        "(415)555-2671",
        "(415) 555.2671",
        "415-555-2671",
        "415.555.2671",
        "1-415-555-2671",
        "1.415.555.2671",
    ] {
        one("phone", t, t);
        one("phone", &format!("tel: {t}."), t);
        one("phone", &format!("电话{t}北京"), t);
    }
    one("phone", "call 415-555-2671 now", "415-555-2671");
    // Glued: the groups delimit it.
    for t in [
        "x415-555-2671",
        "415-555-2671-3",
        "tel415.555.2671ext",
        "x(415) 555-2671y",
    ] {
        let found = scan(t);
        assert_eq!(found.len(), 1, "{t}: {found:?}");
        assert_eq!(found[0].0, "phone", "{t}");
    }
    one("phone", "tel:+14155552671x", "+14155552671");
}

#[test]
fn phone_negatives() {
    for t in [
        "4155552671",
        "415 555 2671",
        "2024-01-15",
        "2024-01-15T10:23:45+05:30",
        "10:23:45",
        "1.2.3",
        "v4.15.555",
        "123-456-7890",
        "415-055-2671",
        "495-555-2671",
        "415-555-26710",
        "2415-555-2671",
        "+1234",
        "+1234567",
        "1e+100000000",
        "+0 123 456 789",
        "+1234567890123456",
        "+4111 1111 1111 1111",
        "+44 20 7946 0958 1234",
        "+0000",
        "(415) 555-26710",
        "(415) 055-2671",
        "192.168.100.1",
        "$415.555.26",
        "12.345.6789",
    ] {
        assert!(
            scan(t).iter().all(|(k, _)| k != "phone"),
            "{t}: {:?}",
            scan(t)
        );
    }
}

// === ipv4 ===

#[test]
fn ipv4() {
    one("ipv4", "10.0.0.1", "10.0.0.1");
    one("ipv4", "host 192.168.1.254:5432", "192.168.1.254");
    one("ipv4", "10.1.0.0/16", "10.1.0.0");
    one("ipv4", "北京255.255.255.255", "255.255.255.255");
    assert_eq!(
        scan("10.0.0.1-10.0.0.5"),
        vec![
            ("ipv4".to_owned(), "10.0.0.1".to_owned()),
            ("ipv4".to_owned(), "10.0.0.5".to_owned())
        ]
    );
    for t in [
        "1.2.3.4.5",
        "v1.2.3.4",
        "a.1.2.3.4",
        "1.2.3.4a",
        "1.2.3.4.b",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3",
        "1..2.3.4",
    ] {
        none(t);
    }
    // Off by default.
    let defaults: Vec<&str> = DEFAULT_ON.to_vec();
    assert_eq!(scan_with(&only(&defaults), b"10.0.0.1"), vec![]);
}

// === secrets ===

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

#[test]
fn jwt() {
    one("jwt", JWT, JWT);
    one("jwt", &format!("Authorization: Bearer {JWT}"), JWT);
    one("jwt", &format!("{{\"token\":\"{JWT}\"}}"), JWT);
    let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.";
    one("jwt", unsigned, unsigned);
    none("eyJhbGciOiJIUzI1NiJ9");
    // Glued to a word, or in another case: still a bearer token.
    one("jwt", &format!("x{JWT}"), JWT);
    one("jwt", &format!("tok3n{JWT}Z"), &format!("{JWT}Z"));
    let upper = JWT.to_ascii_uppercase();
    one("jwt", &upper, &upper);
    none("eyJhbGciOiJIUzI1NiJ9.notjson.sig");
}

#[test]
fn private_keys() {
    let block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
    one("private_key", &format!("key:\n{block}\nnext"), block);
    let escaped = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADAN\\n-----END PRIVATE KEY-----";
    one("private_key", &format!("{{\"k\":\"{escaped}\"}}"), escaped);
    let pgp = "-----BEGIN PGP PRIVATE KEY BLOCK-----\nxcLYBF\n-----END PGP PRIVATE KEY BLOCK-----";
    one("private_key", pgp, pgp);
    for label in ["EC ", "DSA ", "OPENSSH ", "ENCRYPTED "] {
        let b =
            format!("-----BEGIN {label}PRIVATE KEY-----\nAAAA\n-----END {label}PRIVATE KEY-----");
        one("private_key", &format!("x {b} y"), &b);
    }
    // No END line, or the wrong one: to the end of the text.
    let open =
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA a@b.co 4111111111111111";
    one("private_key", &format!("x {open}"), open);
    let wrong = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\ntail";
    one("private_key", wrong, wrong);
    // Glued to the text before it (`\n` escaped in JSON), or with an extra dash.
    let glued = "-----BEGIN EC PRIVATE KEY-----\\nAAAA\\n-----END EC PRIVATE KEY-----";
    one("private_key", &format!("\"abc{glued}\""), glued);
    one("private_key", &format!("x -{block} y"), block);
    none("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
    none("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----");
}

#[test]
fn cloud_and_saas_tokens() {
    let cases: &[(&str, String)] = &[
        ("aws_access_key", "AKIAIOSFODNN7EXAMPLE".into()),
        ("aws_access_key", "ASIAY34FZKBOKMUTVV7A".into()),
        (
            "github_token",
            format!("ghp_{}", "a1B2c3D4e5".repeat(4)[..36].to_owned()),
        ),
        ("github_token", format!("gho_{}", "Z".repeat(40))),
        (
            "github_token",
            format!("github_pat_11ABCDEFG0{}", "x_Y9".repeat(14)),
        ),
        ("gitlab_token", "glpat-xxxxxxxxxxxxxxxxxxxx".into()),
        ("gitlab_token", "glpat-Ab1_-Cd2Ef3Gh4Ij5Kl6".into()),
        (
            "slack_token",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx".into(),
        ),
        ("slack_token", "xoxp-1234567890".into()),
        (
            "slack_webhook",
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX".into(),
        ),
        ("stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc".into()),
        ("stripe_key", "rk_test_4eC39HqLyjWDarjtT1zdp7dc".into()),
        ("stripe_key", "pk_live_4eC39HqLyjWDarjtT1zdp7dc".into()),
        (
            "google_api_key",
            format!(
                "AIza{}",
                "SyA-1_bcdEfghIjklMnopQrstUvwxyz0123"[..35].to_owned()
            ),
        ),
        ("openai_key", format!("sk-{}", "T3BlbkFJ".repeat(6))),
        (
            "openai_key",
            "sk-proj-abcdefghij_KLMNOPQRST-uvwxyz0123456789".into(),
        ),
        (
            "anthropic_key",
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz".into(),
        ),
        ("npm_token", format!("npm_{}", "aB3".repeat(12))),
        (
            "sendgrid_key",
            format!(
                "SG.{}.{}",
                "a".repeat(22),
                "B-_9".repeat(11)[..43].to_owned()
            ),
        ),
        (
            "twilio_key",
            format!("SK{}", "0123456789abcdefABCDEF0123456789"),
        ),
    ];
    for (kind, token) in cases {
        one(kind, token, token);
        one(kind, &format!("token=\"{token}\"; next"), token);
        one(kind, &format!("北京 {token}\n"), token);
        one(kind, &format!("{{{token},x}}"), token);
    }
}

#[test]
fn token_negatives() {
    for t in [
        "AKIAIOSFODNN7EXAMPL",
        "ASIAPACIFICREGIONALOFFICE",
        "Accademiadellebellearti",
        "task-ant-colony-simulation-runner",
        "ghp_short",
        "glpat-short",
        "xoxb-short",
        "https://hooks.slack.com/services/",
        "sk_live_short",
        "sk_prod_4eC39HqLyjWDarjtT1zdp7dc",
        "task-runner-is-a-long-hyphenated-name",
        "sk-this-is-all-lowercase-words-here",
        "risk-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "SK0123456789abcdef",
        "ASK0123456789abcdefABCDEF0123456789",
        "DISK0123456789abcdefABCDEF0123456789",
        "npm_tooShort",
        "SG.short.short",
        "AIzaShort",
    ] {
        none(t);
    }
    // An Anthropic key is not an OpenAI key, even with anthropic_key off.
    let s = only(&["openai_key"]);
    assert_eq!(
        scan_with(&s, b"sk-ant-api03-abcdefghijklmnopqrstuvwxyz"),
        vec![]
    );
}

// === overlaps, positions, robustness ===

#[test]
fn earliest_start_then_longest_wins() {
    // The e-mail starts before the phone number inside it.
    one(
        "email",
        "415-555-2671@example.com",
        "415-555-2671@example.com",
    );
    // A custom pattern that starts first wins over the e-mail inside it.
    let s = Scanner::new(&[
        DetectorSpec::Builtin("email".into()),
        DetectorSpec::Custom {
            name: "contact".into(),
            pattern: "contact=[^ ]+".into(),
        },
    ])
    .unwrap();
    assert_eq!(
        scan_with(&s, b"contact=a@b.co x@y.io"),
        vec![
            ("contact".to_owned(), "contact=a@b.co".to_owned()),
            ("email".to_owned(), "x@y.io".to_owned())
        ]
    );
    // Same start: the longest wins.
    let s = Scanner::new(&[
        DetectorSpec::Custom {
            name: "short".into(),
            pattern: "ab".into(),
        },
        DetectorSpec::Custom {
            name: "long".into(),
            pattern: "abcd".into(),
        },
    ])
    .unwrap();
    assert_eq!(
        scan_with(&s, b"abcd ab"),
        vec![
            ("long".to_owned(), "abcd".to_owned()),
            ("short".to_owned(), "ab".to_owned())
        ]
    );
}

#[test]
fn values_at_the_edges_of_the_text() {
    let all = all();
    for v in [
        "a@b.co",
        "4111111111111111",
        "123-45-6789",
        "+14155552671",
        "10.0.0.1",
        "DE89370400440532013000",
        "AKIAIOSFODNN7EXAMPLE",
        JWT,
    ] {
        assert_eq!(scan_with(&all, v.as_bytes()).len(), 1, "{v}");
        assert_eq!(scan_with(&all, format!("x {v}").as_bytes()).len(), 1, "{v}");
        assert_eq!(scan_with(&all, format!("{v} x").as_bytes()).len(), 1, "{v}");
        // Every strict prefix and suffix of the value alone finds at most a smaller
        // value, and never panics.
        for cut in 0..v.len() {
            let _ = scan_with(&all, &v.as_bytes()[..cut]);
            let _ = scan_with(&all, &v.as_bytes()[cut..]);
        }
    }
}

#[test]
fn typical_values_are_left_alone() {
    for t in [
        "2024-01-15",
        "2024-01-15 10:23:45.123456+00",
        "2024-01-15T10:23:45Z",
        "123e4567-e89b-12d3-a456-426614174000",
        "v1.2.3",
        "1.2.3.4.5",
        "ORD-2024-000123",
        "19.99",
        "1234567.89",
        "-42",
        "9223372036854775807",
        "{1,2,3}",
        "(1,\"x y\",2024-01-15)",
        "Zoë Müller, Straße 12, 10115 Berlin",
        "北京市朝阳区建国路 88 号",
        "status: shipped",
        "The quick brown fox jumps over the lazy dog.",
        "0.30000000000000004",
        "1700000000000",
        "+1",
        "(555) 12",
    ] {
        none(t);
    }
}

#[test]
fn repeated_prefixes_stay_linear() {
    // Each of these would make a naive scan quadratic; at 1 MiB that takes minutes.
    let big = 1 << 20;
    let s = all();
    for unit in [
        "-eyJ",
        "sk-a",
        "sk-ant-",
        "-ghp_",
        "glpat-",
        "xoxb-",
        "-AIza",
        "a@",
        "@a.",
        ".eyJa",
        "-----BEGIN RSA PRIVATE KEY-----",
        "1-",
        "1 ",
        "1.",
        "+1 ",
        "(",
        // Glued prefixes, found inside long runs.
        "xghp_",
        "aakia1",
        "xeyJ",
        "0sk-ant-",
        "xSG.",
        "aaiza",
        "1a",
    ] {
        let text = unit.repeat(big / unit.len());
        let mut out = Vec::new();
        s.find(text.as_bytes(), &mut out);
        let _ = s.may_match(text.as_bytes());
    }
    // A long run of token characters after one prefix is one finding.
    let text = format!("sk-{}", "A1".repeat(big / 2));
    assert_eq!(scan_with(&s, text.as_bytes()).len(), 1);
}

#[test]
fn may_match_is_false_on_plain_values() {
    let s = only(DEFAULT_ON);
    for t in ["", "Zoë Müller", "2024-01-15", "19.99", "shipped", "北京"] {
        assert!(!s.may_match(t.as_bytes()), "{t}");
    }
    // Exact for built-ins: a prefix alone is not enough.
    for t in ["eyJ", "DE89", "AKIA", "@", "+1", "415-555"] {
        assert!(!s.may_match(t.as_bytes()), "{t}");
    }
    for t in [
        "a@b.co",
        JWT,
        "415-555-2671",
        "DE89370400440532013000",
        "x 4111111111111111",
    ] {
        assert!(s.may_match(t.as_bytes()), "{t}");
    }
}

#[test]
fn non_utf8_bytes_are_fine() {
    let s = all();
    let text = b"\xff\xfea@b.co\xc3\x28 4111111111111111\x80";
    assert_eq!(
        scan_with(&s, text),
        vec![
            ("email".to_owned(), "a@b.co".to_owned()),
            ("card".to_owned(), "4111111111111111".to_owned())
        ]
    );
}

#[test]
fn secrets_are_the_key_and_token_detectors() {
    assert_eq!(SECRETS.first(), Some(&"jwt"));
    assert_eq!(SECRETS.last(), BUILTIN.last());
    for pii in ["email", "card", "ssn", "iban", "phone", "ipv4"] {
        assert!(!SECRETS.contains(&pii), "{pii}");
    }
}

// === fail closed: glued, encoded, mixed case ===

#[test]
fn glued_emails() {
    one(
        "email",
        "...xxxxada@example.comyyyy...",
        "xxxxada@example.comyyyy",
    );
    one("email", "ada@example.com2024", "ada@example.com");
    one("email", "ada@example.com-x", "ada@example.com");
    one("email", "id42ada@example.org_99", "id42ada@example.org");
    one("email", "ADA@EXAMPLE.COM", "ADA@EXAMPLE.COM");
    one("email", "aDa@ExAmPlE.cOm", "aDa@ExAmPlE.cOm");
    // A local-part run longer than 64 bytes is text glued before an address: the 64
    // bytes before the `@` are masked (no local part is longer).
    let glued = format!("{}ada@example.com", "x".repeat(100));
    one("email", &glued, &glued[glued.len() - 64 - 12..]);
    // A domain run longer than 253 bytes is read up to there.
    let long = format!("ada@example.com{}", "y".repeat(400));
    let found = scan(&long);
    assert_eq!(found.len(), 1);
    assert!(found[0].1.starts_with("ada@example.com"), "{found:?}");
}

#[test]
fn glued_cards() {
    let card = "4111111111111111";
    for t in [
        "x4111111111111111",
        "4111111111111111x",
        "_4111111111111111",
        "0.4111111111111111",
        "4111111111111111.5",
        "1-4111111111111111",
        "cc:4111111111111111;exp",
        "ref4111 1111 1111 1111end",
    ] {
        let found = scan(t);
        assert_eq!(found.len(), 1, "{t}: {found:?}");
        assert_eq!(found[0].0, "card", "{t}");
        assert_eq!(found[0].1.replace(' ', ""), card, "{t}");
    }
    // Digits glued to digits: the whole run is masked when a window is a card.
    for t in [
        "41111111111111110",                    // a digit after (17 digits, start window)
        "5555555555554444000",                  // three after
        "3782822463100050",                     // Amex and a digit
        "9994111111111111111",                  // three before (19 digits, end window)
        "41111111111111111111",                 // 20 digits: any window
        "123456789041111111111111111123456789", // a card inside a 36-digit number
    ] {
        one("card", t, t);
    }
}

#[test]
fn long_numbers_that_hold_no_card_stay() {
    // Ids and integers up to 19 digits are read whole, or by windows of 14+ digits at
    // one end: these (Luhn-valid or not) hold no card.
    for t in [
        with_check_digit("123456781234567"), // a Visa-13 window would be inside
        "9223372036854775807".to_owned(),    // a Mastercard window is inside
        "18446744073709551615".to_owned(),   // 20 digits, no valid window
        with_check_digit("170000000000000"),
        "4111111111111112".to_owned(),
    ] {
        none(&t);
    }
}

#[test]
fn glued_keys() {
    let ghp = format!("ghp_{}", "a1B2c3D4e5".repeat(4)[..36].to_owned());
    let cases: Vec<(&str, String, String)> = vec![
        (
            "aws_access_key",
            "xAKIAIOSFODNN7EXAMPLE".into(),
            "AKIAIOSFODNN7EXAMPLE".into(),
        ),
        (
            "aws_access_key",
            "AKIAIOSFODNN7EXAMPLEX".into(),
            "AKIAIOSFODNN7EXAMPLEX".into(),
        ),
        (
            "aws_access_key",
            "key=akiaiosfodnn7example;".into(),
            "akiaiosfodnn7example".into(),
        ),
        ("github_token", format!("token{ghp}"), ghp.clone()),
        ("github_token", format!("99{ghp}"), ghp.clone()),
        (
            "github_token",
            ghp.to_ascii_uppercase(),
            ghp.to_ascii_uppercase(),
        ),
        (
            "stripe_key",
            "cfgsk_live_4eC39HqLyjWDarjtT1zdp7dc".into(),
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc".into(),
        ),
        (
            "slack_token",
            "abcxoxb-123456789012-AbCdEfGhIj".into(),
            "xoxb-123456789012-AbCdEfGhIj".into(),
        ),
        (
            "npm_token",
            format!("x1npm_{}yy", "aB3".repeat(12)),
            format!("npm_{}yy", "aB3".repeat(12)),
        ),
        (
            "google_api_key",
            format!("k{}", "AIzaSyA-1_bcdEfghIjklMnopQrstUvwxyz0123"),
            "AIzaSyA-1_bcdEfghIjklMnopQrstUvwxyz0123".into(),
        ),
        (
            "anthropic_key",
            "kk-sk-ant-api03-abcdefghijklmnopqrstuvwxyz".into(),
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz".into(),
        ),
        (
            "anthropic_key",
            "xsk-ant-api03-abcdefghijklmnopqrstuvwxyz".into(),
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz".into(),
        ),
        (
            "sendgrid_key",
            format!(
                "abcSG.{}.{}",
                "a".repeat(22),
                "B-_9".repeat(11)[..43].to_owned()
            ),
            format!(
                "SG.{}.{}",
                "a".repeat(22),
                "B-_9".repeat(11)[..43].to_owned()
            ),
        ),
        (
            "twilio_key",
            "sk0123456789abcdefabcdef0123456789xyz".into(),
            "sk0123456789abcdefabcdef0123456789xyz".into(),
        ),
        (
            "slack_webhook",
            "xhttps://hooks.slack.com/services/T0/B0/XX".into(),
            "https://hooks.slack.com/services/T0/B0/XX".into(),
        ),
    ];
    for (kind, text, expected) in &cases {
        one(kind, text, expected);
    }
    // An AWS key id with its case changed at random: taken with a clean end only.
    one(
        "aws_access_key",
        "id AkIaIoSfOdNn7ExAmPlE.",
        "AkIaIoSfOdNn7ExAmPlE",
    );
    none("AkIaIoSfOdNn7ExAmPlEzz");
    // Deep inside a long run, a letter prefix is chance (random base64), a JWT is not.
    let deep = "Zm9vYmFyYmF6cXV4".repeat(5);
    none(&format!("{deep}ghp_{}", "a1B2c3D4e5".repeat(4)));
    one("jwt", &format!("{deep}{JWT}"), JWT);
    // The weak prefixes only start a word.
    for t in [
        "risk-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "DISK0123456789abcdefABCDEF0123456789",
        "SK-2024-ABCDEFGHIJKLMNOPQRSTUV",
    ] {
        none(t);
    }
}

#[test]
fn escaped_values() {
    for (t, kind) in [
        ("ada%40example.com", "email"),
        ("ada%2540example.com", "email"),
        ("ada\\u0040example.com", "email"),
        ("ada\\U0040example.com", "email"),
        ("\\u0061\\u0064\\u0061\\u0040\\u0065xample.com", "email"),
        ("ada&#64;example.com", "email"),
        ("ada&#x40;example.com", "email"),
        ("ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ", "email"),
        ("ada＠example.com", "email"),
        ("ada%EF%BC%A0example.com", "email"),
        ("４１１１１１１１１１１１１１１１", "card"),
        ("４１１１ １１１１ １１１１ １１１１", "card"),
        ("4111%201111%201111%201111", "card"),
        ("\\u0034111111111111111", "card"),
        ("１２３－４５－６７８９", "ssn"),
        ("ＤＥ８９３７０４００４４０５３２０１３０００", "iban"),
        (
            "https:\\/\\/hooks.slack.com\\/services\\/T0\\/B0\\/XX",
            "slack_webhook",
        ),
        ("AKIA\\u0049OSFODNN7EXAMPLE", "aws_access_key"),
    ] {
        // The whole value is the finding: every escape in it is masked whole.
        one(kind, t, t);
        one(kind, &format!("[\"{t}\"]"), t);
    }
    // Glued to what is around it, as plain values are (`xx@` is no local part).
    let found = scan("xx\\u0040ada\\u0040example.comyy");
    assert_eq!(
        found,
        vec![("email".to_owned(), "ada\\u0040example.comyy".to_owned())]
    );
    // An escaped backslash is not an escape; full-width punctuation alone makes no view.
    none("C:\\\\u0040dir");
    none("价格（含税）：１９．９９元，");
    none("50% off, 100%");
}

#[test]
fn findings_never_cut_an_escape() {
    // The local part runs left to `u0040`: the finding takes the backslash with it, so
    // no `\[` (an invalid JSON escape) is left behind.
    let found = scan("x\\u0040ada@example.com");
    assert_eq!(found[0].1, "\\u0040ada@example.com");
    let found = scan("a\\nada@example.com");
    assert_eq!(found[0].1, "\\nada@example.com");
    // After an escaped backslash, the backslash before the value is not an escape.
    let found = scan("a\\\\nada@example.com");
    assert_eq!(found[0].1, "nada@example.com");
    // A finding that ends inside `%40`-style escapes takes them whole.
    let found = scan("4111111111111111%41");
    assert_eq!(found[0].1, "4111111111111111");
}

#[test]
fn base64_and_hex_runs() {
    use std::fmt::Write;
    /// Base64 with the standard or URL-safe alphabet (told by `alphabet`), padded or not.
    fn b64(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
        use base64::Engine;
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        let engine = match (alphabet[62] == b'-', pad) {
            (false, true) => &STANDARD,
            (false, false) => &STANDARD_NO_PAD,
            (true, true) => &URL_SAFE,
            (true, false) => &URL_SAFE_NO_PAD,
        };
        engine.encode(data)
    }
    let std = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let url = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_eq!(b64(b"ada@example.com", std, true), "YWRhQGV4YW1wbGUuY29t");
    let secrets: &[(&str, &str)] = &[
        ("email", "ada@example.com"),
        ("email", "{\"user\":\"zoe.muller@mail.example.de\"}"),
        ("card", "card 4111 1111 1111 1111 exp 12/29"),
        ("ssn", "ssn=123-45-6789"),
        ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
        ("jwt", JWT),
    ];
    for (kind, secret) in secrets {
        for lead in ["", "x", "xy", "xyz"] {
            let data = format!("{lead}{secret}");
            for alphabet in [std, url] {
                for pad in [false, true] {
                    let encoded = b64(data.as_bytes(), alphabet, pad);
                    // Alone, glued to letters (a shifted alignment) and in text.
                    for text in [
                        encoded.clone(),
                        format!("ab{encoded}"),
                        format!("data: {encoded}, next"),
                    ] {
                        let found = scan(&text);
                        assert_eq!(found.len(), 1, "{secret} as {text}: {found:?}");
                        assert_eq!(found[0].0, *kind, "{text}");
                        assert!(found[0].1.contains(&encoded), "{text}: {found:?}");
                    }
                }
            }
        }
        let mut hex = String::new();
        for b in secret.bytes() {
            write!(hex, "{b:02x}").unwrap();
        }
        let bytea = format!("\\x{hex}");
        let found = scan(&bytea);
        assert_eq!(found.len(), 1, "{bytea}: {found:?}");
        assert_eq!(found[0].0, *kind);
        assert!(found[0].1.contains(&hex));
        let upper = format!("0{}", hex.to_ascii_uppercase());
        assert_eq!(scan(&upper).len(), 1, "{upper}");
    }
    // Text glued around an unpadded run decodes to noise next to the value; values of
    // exact groups that end or start there are still found.
    for secret in ["200-200-0000", "123-45-6789", "4111 1111 1111 1111"] {
        for (before, after) in [
            ("", "w"),
            ("", "waaA"),
            ("wxyz", ""),
            ("wxyzwxyz", "zzzzzzzz"),
        ] {
            let text = format!("{before}{}{after}", b64(secret.as_bytes(), std, false));
            assert_eq!(scan(&text).len(), 1, "{secret} as {text}");
        }
    }
    // Base64 and hex of binary data are not read: random bytes would hold an "address"
    // every few megabytes.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let binary: Vec<u8> = (0..48 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut hex = String::new();
    for b in &binary {
        write!(hex, "{b:02x}").unwrap();
    }
    for blob in [b64(&binary, std, true), b64(&binary, url, false), hex] {
        let mut out = Vec::new();
        all().find(blob.as_bytes(), &mut out);
        assert!(out.iter().all(|f| f.end - f.start < 100), "{out:?}");
    }
    // Base64 and hex of ordinary text, hashes and UUIDs hold nothing.
    for t in [
        b64(b"The quick brown fox jumps over the lazy dog", std, true),
        b64(b"order 4 of 12, batch B-17", url, false),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned(),
        "123E4567-E89B-12D3-A456-426614174000".to_owned(),
        "customer_requested_invoice".to_owned(),
        "Lieferung_an_Nachbarn_2024".to_owned(),
        "/usr/local/lib/postgresql/16/bin".to_owned(),
    ] {
        none(&t);
    }
}

#[test]
fn overlapping_findings_are_merged() {
    // A custom pattern that starts inside an address and ends after it: both are
    // masked as one span (the earliest start's detector), nothing of either is left.
    let s = Scanner::new(&[
        DetectorSpec::Builtin("email".into()),
        DetectorSpec::Custom {
            name: "tail".into(),
            pattern: "example\\.com [0-9]+".into(),
        },
    ])
    .unwrap();
    assert_eq!(
        scan_with(&s, b"ada@example.com 42 rest"),
        vec![("email".to_owned(), "ada@example.com 42".to_owned())]
    );
}

#[test]
fn encoded_input_stays_linear() {
    // Escapes and runs everywhere: each layer is decoded once, in bounded chunks.
    let big = 1 << 19;
    let s = all();
    for unit in [
        "%41", "\\u0041", "&#65;", "ａ", "%2541", "YWRh", "6164", "\\x61", "%", "\\", "&#",
    ] {
        let text = unit.repeat(big / unit.len());
        let mut out = Vec::new();
        s.find(text.as_bytes(), &mut out);
        let _ = s.may_match(text.as_bytes());
    }
    let text = "4".repeat(big);
    let _ = scan_with(&s, text.as_bytes());
}
