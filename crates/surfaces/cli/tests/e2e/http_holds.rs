//! Held HTTP requests: the agent's client sees nothing but a delay, an approver decides
//! (the same approval object and commands as for SQL), and exactly that request is
//! sent once; a timeout answers 503 with the approval id, and the identical retry after
//! approval runs once, on any connection.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::finish;
use crate::http_proxy::HttpFixture;

fn pending(f: &HttpFixture, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out =
            f.gw.cli_ok(&["approvals", "list", "--status", "pending", "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        let list = v["approvals"].as_array().cloned().unwrap_or_default();
        if list.len() == n {
            return list.first().cloned().unwrap_or(Value::Null);
        }
        assert!(Instant::now() < deadline, "expected {n} pending: {list:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post_bg(f: &HttpFixture, body: &str) -> std::process::Child {
    Command::new("curl")
        .args([
            "-sk",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
        ])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", f.token))
        .args(["--data-binary", body])
        .arg(f.url("/billing/v1/refunds?probe=held"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn upstream_posts(f: &HttpFixture) -> Vec<Value> {
    f.api
        .requests()
        .into_iter()
        .filter(|r| r["query"] == "probe=held")
        .collect()
}

#[test]
fn held_post_waits_silently_and_runs_once_after_approval() {
    let f = HttpFixture::new();
    let dba = f.gw.token("dana", &["dba"]);
    let body = r#"{"invoice":7,"amount":12.5,"note":"refund to ada@example.com"}"#;
    let held = post_bg(&f, body);
    let request = pending(&f, 1);
    let id = request["id"].as_str().unwrap().to_owned();
    assert_eq!(request["protocol"], "http");
    assert_eq!(request["statement"], "POST /billing/v1/refunds?probe=held");
    assert_eq!(request["params"]["body_bytes"], body.len());
    assert!(
        !request["params"]["body"]
            .as_str()
            .unwrap()
            .contains("ada@example.com"),
        "the approver sees the body masked: {request}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(upstream_posts(&f).is_empty(), "sent before approval");

    let out =
        f.gw.cli(&["approve", &id, "--token", &dba, "--comment", "ok"]);
    assert!(out.status.success(), "{out:?}");
    let (ok, stdout, _) = finish(held);
    assert!(ok);
    let (answer, code) = stdout.trim().rsplit_once('\n').unwrap();
    assert_eq!(code, "201", "{answer}");
    let sent = upstream_posts(&f);
    assert_eq!(sent.len(), 1, "sent exactly once");
    assert_eq!(sent[0]["body_len"], body.len());

    // The approval is used: the same request again needs a new one.
    let again = post_bg(&f, body);
    let second = pending(&f, 1);
    assert_ne!(second["id"], id.as_str());
    let out = f.gw.cli(&[
        "deny",
        second["id"].as_str().unwrap(),
        "--token",
        &dba,
        "--reason",
        "not twice",
    ]);
    assert!(out.status.success(), "{out:?}");
    let (_, stdout, _) = finish(again);
    let (answer, code) = stdout.trim().rsplit_once('\n').unwrap();
    assert_eq!(code, "403", "{answer}");
    let p: Value = serde_json::from_str(answer).unwrap();
    assert!(p["detail"].as_str().unwrap().contains("not twice"), "{p}");
    assert_eq!(upstream_posts(&f).len(), 1);

    // A body field the policy excludes is not held but denied by default.
    let (code, _, _) = f.curl(
        "/billing/v1/refunds?probe=held",
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"override":true}"#,
        ],
    );
    assert_eq!(code, 403);
}

#[test]
fn a_timeout_answers_503_and_the_identical_retry_runs_once_after_approval() {
    let f = HttpFixture::build("hold_timeout = \"1s\"", |b| b);
    let dba = f.gw.token("dana", &["dba"]);
    let body = r#"{"invoice":9}"#;
    let post = || {
        f.curl(
            "/billing/v1/refunds?probe=held",
            &[
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "--data-binary",
                body,
            ],
        )
    };
    let (code, hdrs, answer) = post();
    assert_eq!(code, 503, "{answer}");
    assert!(hdrs.to_ascii_lowercase().contains("retry-after:"), "{hdrs}");
    let p: Value = serde_json::from_str(&answer).unwrap();
    let id = p["approval_id"].as_str().unwrap().to_owned();
    assert!(
        p["hint"]
            .as_str()
            .unwrap()
            .contains("send exactly the same request again"),
        "{p}"
    );
    assert_eq!(pending(&f, 1)["id"], id.as_str());
    assert!(upstream_posts(&f).is_empty());

    let out = f.gw.cli(&["approve", &id, "--token", &dba]);
    assert!(out.status.success(), "{out:?}");
    // A different body is a different request: held anew, not run.
    let (code, _, _) = f.curl(
        "/billing/v1/refunds?probe=held",
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-binary",
            r#"{"invoice":10}"#,
        ],
    );
    assert_eq!(code, 503);
    assert!(upstream_posts(&f).is_empty());
    // The identical request, on a new connection: runs once.
    let (code, _, answer) = post();
    assert_eq!(code, 201, "{answer}");
    assert_eq!(upstream_posts(&f).len(), 1);
    let (code, _, _) = post();
    assert_eq!(code, 503, "an approval runs its request once");
    assert_eq!(upstream_posts(&f).len(), 1);
}
