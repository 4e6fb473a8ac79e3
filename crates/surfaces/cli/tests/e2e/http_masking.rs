//! Masking of HTTP responses while they stream: JSON (nested objects, arrays, keys at
//! any depth, escaped keys and values), NDJSON, Server-Sent Events, text, a compressed
//! body, and what is refused rather than passed unmasked.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http_proxy::HttpFixture;

const PII: &[&str] = &[
    "ada@example.com",
    "alan@example.org",
    "hunter2",
    "078-05-1120",
    "4111 1111 1111 1111",
    "5500000000000004",
    "tok-9f8e7d6c5b4a",
    "s3cret-escaped",
];

fn leaks(text: &str) -> Vec<&'static str> {
    // Also decode JSON, so an escaped value counts as a leak.
    let mut all = text.to_owned();
    for line in std::iter::once(text).chain(text.lines()) {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            all.push_str(&v.to_string());
        }
    }
    PII.iter().copied().filter(|p| all.contains(p)).collect()
}

#[test]
fn json_is_masked_by_key_and_value_at_any_depth() {
    let f = HttpFixture::new();
    let (code, hdrs, body) = f.curl("/billing/v1/people", &[]);
    assert_eq!(code, 200);
    assert!(
        hdrs.to_ascii_lowercase()
            .contains(&format!("content-length: {}", body.len())),
        "a small masked body is sent with its new length: {hdrs}"
    );
    let v: Value = serde_json::from_str(&body).expect("still JSON");
    assert_eq!(leaks(&body), Vec::<&str>::new(), "{body}");
    let ada = &v["people"][0];
    assert_eq!(ada["name"], "Ada Lovelace");
    assert_eq!(ada["password"], "[REDACTED:column]");
    assert_eq!(ada["profile"]["ssn"], "[REDACTED:column]");
    assert_eq!(ada["profile"]["cards"][0]["card"], "[REDACTED:column]");
    assert_eq!(
        ada["Secret_Key"], "[REDACTED:column]",
        "a masked key's object value is replaced whole"
    );
    assert_eq!(
        ada["notes"],
        serde_json::json!(["call [REDACTED:email]", "ok"])
    );
    assert_eq!(v["count"], 2);
    // The escaped key and value of the second person.
    assert_eq!(v["people"][1]["password"], "[REDACTED:column]");
}

#[test]
fn ndjson_and_text_are_masked_and_gzip_is_decoded_first() {
    let f = HttpFixture::new();
    let (code, _, body) = f.curl("/billing/v1/people.ndjson", &[]);
    assert_eq!(code, 200);
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(leaks(&body), Vec::<&str>::new(), "{body}");

    let (code, hdrs, body) = f.curl("/billing/v1/gzip", &["-H", "Accept-Encoding: gzip"]);
    assert_eq!(code, 200);
    assert!(
        !hdrs.to_ascii_lowercase().contains("content-encoding"),
        "{hdrs}"
    );
    assert_eq!(leaks(&body), Vec::<&str>::new(), "{body}");
    assert!(body.contains("Ada Lovelace"));

    let (code, _, body) = f.curl("/billing/v1/debug", &[]);
    assert_eq!(code, 500);
    assert!(body.starts_with("<pre>Authorization: Bearer"), "{body}");

    // What cannot be inspected is refused, not passed on.
    let (code, _, body) = f.curl("/billing/v1/brotli", &[]);
    assert_eq!(code, 502, "{body}");
    // Range cannot carve a masked body into unmasked pieces: it is not forwarded.
    let (code, _, body) = f.curl("/billing/v1/people", &["-H", "Range: bytes=0-40"]);
    assert_eq!(code, 200);
    assert_eq!(leaks(&body), Vec::<&str>::new());
    let range = f.api.requests().into_iter().last().unwrap();
    assert!(
        !range["headers"]
            .to_string()
            .to_ascii_lowercase()
            .contains("\"range\"")
    );
}

#[test]
fn a_body_that_is_not_what_it_claims_is_refused_or_cut_off() {
    let f = HttpFixture::new();
    // Small (it has a Content-Length): masked whole, so refused with a problem.
    let (code, _, body) = f.curl("/billing/v1/not-json", &[]);
    assert_eq!(code, 502, "{body}");
    assert!(!body.contains("ada@example.com"), "{body}");
    assert!(body.contains("could not be masked"), "{body}");
    let s = f.gw.last_session_of("crew", "billing");
    let results = crate::events_of(&s, "result");
    let error = results[0]["detail"]["error"].as_str().unwrap();
    assert!(error.contains("could not be masked"), "{error}");
    // Streamed (chunked, no length): cut off where it stops being JSON.
    let out = Command::new("curl")
        .args(["-sk", "-H"])
        .arg(format!("Authorization: Bearer {}", f.token))
        .arg(f.url("/billing/v1/not-json-stream"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "curl sees a broken response");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(!body.contains("alan@example.org"), "{body}");
}

#[test]
fn server_sent_events_are_masked_and_delivered_as_they_arrive() {
    let f = HttpFixture::new();
    let mut child = Command::new("curl")
        .args(["-skN", "-H"])
        .arg(format!("Authorization: Bearer {}", f.token))
        .arg(f.url("/billing/v1/events"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let started = Instant::now();
    let mut first = String::new();
    while !first.ends_with("\n\n") {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended early"
        );
        first.push_str(&line);
    }
    // The upstream sends the second event a second later: the first one arrived whole
    // while the stream is still open.
    assert!(
        child.try_wait().unwrap().is_none(),
        "the stream is still open"
    );
    let mut rest = String::new();
    for line in reader.lines() {
        rest.push_str(&line.unwrap());
        rest.push('\n');
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    let _ = child.wait();
    assert!(
        first.starts_with("event: person\ndata: {\"id\":1,"),
        "{first}"
    );
    assert!(!first.contains("second"));
    assert!(rest.contains("event: note"), "{rest}");
    assert_eq!(
        leaks(&(first.clone() + &rest)),
        Vec::<&str>::new(),
        "{first}{rest}"
    );
}

#[test]
fn a_rule_can_withhold_what_cannot_be_masked() {
    let f = HttpFixture::with(|b| {
        b.extra(
            "\n[[masking]]\nname = \"strict-billing\"\ntargets = [\"billing\"]\ndetectors = [\"email\"]\nunmaskable = \"withhold\"\n",
        )
    });
    let (code, _, body) = f.curl("/billing/v1/big?mb=1", &[]);
    assert_eq!(code, 502, "{}", &body[..body.len().min(200)]);
    let p: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(p["type"], "https://airlock.dev/problems/response-withheld");
    assert!(
        p["detail"].as_str().unwrap().contains("strict-billing"),
        "{p}"
    );
    // What can be masked still passes, masked; other targets are not affected.
    let (code, _, body) = f.curl("/billing/v1/people", &[]);
    assert_eq!(code, 200);
    assert_eq!(leaks(&body), Vec::<&str>::new());
    let (code, hdrs, _) = f.curl("/files/v1/big?mb=1", &[]);
    assert_eq!(code, 200);
    assert!(
        hdrs.to_ascii_lowercase()
            .contains("content-length: 1048576"),
        "{hdrs}"
    );
}
