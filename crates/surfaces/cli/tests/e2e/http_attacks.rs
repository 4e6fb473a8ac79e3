//! Requests crafted to make Airlock decide on one thing and the upstream serve another:
//! path spellings (dot segments, encodings, overlong UTF-8, separators) and ambiguous
//! framing (request smuggling). Each is refused or normalised, never split, and what
//! reaches the upstream is what was decided.

use serde_json::Value;

use crate::http_proxy::HttpFixture;

#[test]
fn paths_are_normalised_before_the_decision_or_refused() {
    let f = HttpFixture::new();
    // (raw path, expected status, path the upstream sees when forwarded)
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/billing/v1/../admin", 403, None),
        ("/billing/v1/%2e%2e/admin", 403, None),
        ("/billing/v1/%2E%2E/%61dmin", 403, None),
        ("/billing//admin", 403, None),
        ("/billing/./admin/", 403, None),
        ("/billing/v1%2f..%2fadmin", 400, None),
        ("/billing/v1%5c..%5cadmin", 400, None),
        ("/billing/v1\\..\\admin", 400, None),
        ("/billing/admin%00/x", 400, None),
        ("/billing/%c0%ae%c0%ae/admin", 400, None),
        ("/billing/v1/%e0%80%ae%e0%80%ae/admin", 400, None),
        ("/billing/v1;x=1/../admin", 400, None),
        ("/billing/../ledger/v1/echo", 400, None),
        ("/billing/v1/../../admin", 400, None),
        ("/%62illing/admin", 400, None),
        (
            "/billing/v1/%252e%252e/admin",
            404,
            Some("/api/v1/%252e%252e/admin"),
        ),
        ("/billing/v1//echo/./", 404, Some("/api/v1/echo/")),
        ("/billing/v1/x/../echo", 200, Some("/api/v1/echo")),
        ("/billing/v1/%65cho", 200, Some("/api/v1/echo")),
    ];
    let mut failures = Vec::new();
    for (raw, want, forwarded) in cases {
        let before = f.api.requests().len();
        let (code, _, body) = f.curl(raw, &[]);
        let reached: Vec<Value> = f.api.requests().into_iter().skip(before).collect();
        if code != *want {
            failures.push(format!("{raw}: got {code}, want {want}: {body}"));
        }
        match forwarded {
            None if !reached.is_empty() => {
                failures.push(format!("{raw} reached the upstream: {reached:?}"))
            }
            Some(p) if reached.len() != 1 || reached[0]["path"] != *p => {
                failures.push(format!("{raw}: upstream saw {reached:?}, want {p}"))
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn raw(f: &HttpFixture, request: &str) -> String {
    let v = crate::http_proxy::http_client(
        "raw",
        &format!("127.0.0.1:{}", f.gw.http_port),
        &[("RAW_REQUEST", request)],
    );
    v["answer"].as_str().unwrap().to_owned()
}

#[test]
fn ambiguous_framing_is_refused_never_split() {
    let f = HttpFixture::new();
    let auth = format!("Authorization: Bearer {}", f.token);
    let smuggled = "GET /api/admin?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases = [
        // Transfer-Encoding together with Content-Length.
        format!(
            "POST /billing/v1/upload HTTP/1.1\r\nHost: a\r\n{auth}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        // Two different Content-Lengths.
        format!(
            "POST /billing/v1/upload HTTP/1.1\r\nHost: a\r\n{auth}\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        ),
        // An obs-folded header line.
        format!("GET /billing/v1/echo HTTP/1.1\r\nHost: a\r\n{auth}\r\nX-Folded: a\r\n b\r\n\r\n"),
        // A chunked body with a bad chunk size.
        format!(
            "POST /billing/v1/upload HTTP/1.1\r\nHost: a\r\n{auth}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{smuggled}"
        ),
    ];
    for request in &cases {
        let answer = raw(&f, request);
        let status = answer.lines().next().unwrap_or("");
        assert!(
            status.contains(" 400 ") || answer.is_empty() || status.contains(" 201 "),
            "{request:?} -> {answer:?}"
        );
    }
    let log = f.api.raw_log();
    assert!(
        !log.contains("smuggled"),
        "a smuggled request reached the upstream: {log}"
    );
    assert!(!log.contains("/api/admin"));
}
