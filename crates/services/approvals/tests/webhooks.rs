//! Webhook deliveries over real HTTP on 127.0.0.1: signed JSON and Slack payloads,
//! the groups filter, retries and their limits, redirects, timeouts, and URLs kept out
//! of errors. The receiver is a small HTTP/1.1 server on a raw `TcpListener`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_approvals::notify::{Notifier, NotifyError, sign, verify_signature};
use airlock_config::ApprovalsConfig;
use airlock_model::{Approval, ApprovalStatus, Timestamp};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const KEY: &str = "whsec_0123456789abcdef";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone)]
enum Reply {
    Status(u16),
    Redirect(String),
    /// Read the request, then say nothing until the client gives up.
    Silence,
}

/// A webhook receiver on 127.0.0.1. Answers the n-th request with `script[n]` (the last
/// entry repeats) and records every request.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(script: Vec<Reply>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let reply = script
                    .get(n)
                    .or(script.last())
                    .cloned()
                    .unwrap_or(Reply::Status(200));
                n += 1;
                let Some(request) = read_request(&mut stream).await else {
                    continue;
                };
                log.lock().unwrap().push(request);
                let response = match reply {
                    Reply::Status(code) => {
                        let body = if code < 300 { "ok" } else { "no_service" };
                        format!(
                            "HTTP/1.1 {code} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    Reply::Redirect(to) => format!(
                        "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    ),
                    Reply::Silence => {
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            drop(stream);
                        });
                        continue;
                    }
                };
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        Receiver { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 request with a `content-length` body.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A file holding `value`, for `file:` references (tests cannot set environment
/// variables without `unsafe`).
fn secret_file(name: &str, value: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("airlock-webhooks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path
}

fn key_ref(test: &str) -> String {
    format!(
        "file:{}",
        secret_file(&format!("{test}.key"), KEY).display()
    )
}

fn config(toml_text: &str) -> ApprovalsConfig {
    toml::from_str(toml_text).unwrap()
}

fn approval(group: &str) -> Approval {
    let now = Timestamp::now();
    Approval {
        id: uuid::Uuid::now_v7().to_string(),
        status: ApprovalStatus::Pending,
        session_id: "sess-1".into(),
        principal: "agent-7".into(),
        target: "shop".into(),
        protocol: "postgres".into(),
        statement: "DELETE FROM orders WHERE id = $1".into(),
        params: json!(["42"]),
        digest: "ab".repeat(32),
        policy_version: "v3".into(),
        policies: vec!["hold-deletes".into()],
        approver_group: group.into(),
        reason: "deletes need a DBA".into(),
        created_at: now,
        expires_at: now.plus(Duration::from_secs(3600)),
        decided_by: None,
        decided_at: None,
        comment: None,
        used_at: None,
        used_in_session: None,
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn json_delivery_is_signed_and_carries_the_request() {
    let rx = Receiver::start(vec![Reply::Status(200)]).await;
    let notifier = Notifier::from_config(
        &config(&format!(
            r#"
            [[webhooks]]
            name = "audit"
            url = "{}"
            secret = "{}"
            "#,
            rx.url("/hooks/airlock"),
            key_ref("json")
        )),
        Some("https://127.0.0.1:8080/".into()),
    )
    .unwrap();
    assert!(!notifier.is_empty());
    let a = approval("dba");

    let deliveries = notifier.approval_requested(&a).await;
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert_eq!(d.webhook, "audit");
    assert!(d.delivered, "{d:?}");
    assert_eq!(
        (d.status, d.attempts, d.error.as_deref()),
        (Some(200), 1, None)
    );

    let got = rx.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/hooks/airlock")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-airlock-event"), Some("approval.requested"));
    let delivery = uuid::Uuid::parse_str(r.header("x-airlock-delivery").unwrap()).unwrap();
    assert_eq!(delivery.get_version_num(), 7);
    assert!(r.header("user-agent").unwrap().starts_with("airlock/"));

    let signature = r.header("x-airlock-signature").unwrap();
    assert!(verify_signature(
        KEY.as_bytes(),
        signature,
        &r.body,
        now_unix(),
        300
    ));
    assert!(!verify_signature(
        b"another key",
        signature,
        &r.body,
        now_unix(),
        300
    ));

    let v = r.json();
    assert_eq!(v["event"], "approval.requested");
    let ap = &v["approval"];
    assert_eq!(ap["id"], a.id.as_str());
    assert_eq!(ap["status"], "pending");
    assert_eq!(ap["session_id"], "sess-1");
    assert_eq!(ap["principal"], "agent-7");
    assert_eq!(ap["target"], "shop");
    assert_eq!(ap["protocol"], "postgres");
    assert_eq!(ap["statement"], "DELETE FROM orders WHERE id = $1");
    assert_eq!(ap["params"], json!(["42"]));
    assert_eq!(ap["approver_group"], "dba");
    assert_eq!(ap["reason"], "deletes need a DBA");
    assert_eq!(ap["policies"], json!(["hold-deletes"]));
    assert_eq!(ap["policy_version"], "v3");
    assert_eq!(ap["created_at"], a.created_at.to_string());
    assert_eq!(ap["expires_at"], a.expires_at.to_string());
    let base = format!("https://127.0.0.1:8080/api/approvals/{}", a.id);
    assert_eq!(v["links"]["self"], base.as_str());
    assert_eq!(v["links"]["approve"], format!("{base}/approve"));
    assert_eq!(v["links"]["deny"], format!("{base}/deny"));
    assert_eq!(
        v["commands"]["approve"],
        format!("airlock approve {} --comment '...'", a.id)
    );
    assert_eq!(
        v["commands"]["deny"],
        format!("airlock deny {} --reason '...'", a.id)
    );
}

#[tokio::test]
async fn a_tampered_body_fails_verification() {
    let rx = Receiver::start(vec![Reply::Status(204)]).await;
    let notifier = Notifier::from_config(
        &config(&format!(
            "[[webhooks]]\nname = \"audit\"\nurl = \"{}\"\nsecret = \"{}\"\n",
            rx.url("/"),
            key_ref("tamper")
        )),
        None,
    )
    .unwrap();
    let d = notifier.approval_requested(&approval("dba")).await;
    assert!(d[0].delivered);
    assert_eq!(d[0].status, Some(204));
    let r = &rx.requests()[0];
    let signature = r.header("x-airlock-signature").unwrap();
    assert!(verify_signature(
        KEY.as_bytes(),
        signature,
        &r.body,
        now_unix(),
        300
    ));
    let tampered = String::from_utf8(r.body.clone())
        .unwrap()
        .replace("DELETE FROM orders", "SELECT 1 FROM orders");
    assert_ne!(tampered.as_bytes(), r.body.as_slice());
    assert!(!verify_signature(
        KEY.as_bytes(),
        signature,
        tampered.as_bytes(),
        now_unix(),
        300
    ));
    // Without public_url there are no links.
    assert!(r.json().get("links").is_none());
}

#[tokio::test]
async fn slack_payload_is_a_message_with_blocks() {
    let rx = Receiver::start(vec![Reply::Status(200)]).await;
    let signed = Receiver::start(vec![Reply::Status(200)]).await;
    let notifier = Notifier::from_config(
        &config(&format!(
            r#"
            [[webhooks]]
            name = "slack-dba"
            url = "{}"
            format = "slack"

            [[webhooks]]
            name = "slack-signed"
            url = "{}"
            format = "slack"
            secret = "{}"
            "#,
            rx.url("/services/T0/B0/X"),
            signed.url("/x"),
            key_ref("slack")
        )),
        Some("https://airlock.example.com".into()),
    )
    .unwrap();
    let mut a = approval("dba");
    a.statement = format!("UPDATE t SET v = '{}'", "x".repeat(4000));
    let deliveries = notifier.approval_requested(&a).await;
    let names: Vec<_> = deliveries
        .iter()
        .map(|d| (d.webhook.as_str(), d.delivered))
        .collect();
    assert_eq!(names, [("slack-dba", true), ("slack-signed", true)]);

    let r = &rx.requests()[0];
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("x-airlock-signature").is_none());
    let v = r.json();
    let text = v["text"].as_str().unwrap();
    assert!(!text.contains('\n'));
    assert!(text.contains("agent-7") && text.contains("shop") && text.contains("dba"));
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    let all = serde_json::to_string(blocks).unwrap();
    for needle in [
        "agent-7",
        "shop",
        "dba",
        "deletes need a DBA",
        "```UPDATE t SET v = 'xxx",
        "Truncated: the statement has",
        &format!("airlock approve {} --comment '...'", a.id),
        &format!("airlock deny {} --reason '...'", a.id),
        &format!("https://airlock.example.com/api/approvals/{}", a.id),
        "<!date^",
    ] {
        assert!(all.contains(needle), "blocks lack {needle:?}: {all}");
    }
    for b in blocks {
        assert!(["header", "section", "context"].contains(&b["type"].as_str().unwrap()));
        if let Some(t) = b["text"]["text"].as_str() {
            assert!(t.chars().count() <= 3000, "a block is too long for Slack");
        }
    }

    let s = &signed.requests()[0];
    let sig = s.header("x-airlock-signature").unwrap();
    assert!(verify_signature(
        KEY.as_bytes(),
        sig,
        &s.body,
        now_unix(),
        300
    ));
}

#[tokio::test]
async fn webhooks_get_only_their_groups() {
    let ops = Receiver::start(vec![Reply::Status(200)]).await;
    let dba = Receiver::start(vec![Reply::Status(200)]).await;
    let all = Receiver::start(vec![Reply::Status(200)]).await;
    let key = key_ref("groups");
    let notifier = Notifier::from_config(
        &config(&format!(
            r#"
            [[webhooks]]
            name = "ops"
            url = "{}"
            secret = "{key}"
            groups = ["ops"]

            [[webhooks]]
            name = "dba"
            url = "{}"
            secret = "{key}"
            groups = ["security", "dba"]

            [[webhooks]]
            name = "everyone"
            url = "{}"
            secret = "{key}"
            "#,
            ops.url("/"),
            dba.url("/"),
            all.url("/")
        )),
        None,
    )
    .unwrap();
    let d = notifier.approval_requested(&approval("dba")).await;
    let names: Vec<_> = d.iter().map(|d| d.webhook.as_str()).collect();
    assert_eq!(names, ["dba", "everyone"]);
    assert!(d.iter().all(|d| d.delivered));
    assert!(ops.requests().is_empty());
    assert_eq!(dba.requests().len(), 1);
    assert_eq!(all.requests().len(), 1);

    let only_ops = Notifier::from_config(
        &config(&format!(
            "[[webhooks]]\nname = \"ops\"\nurl = \"{}\"\nsecret = \"{key}\"\ngroups = [\"ops\"]\n",
            ops.url("/")
        )),
        None,
    )
    .unwrap();
    assert!(
        only_ops
            .approval_requested(&approval("dba"))
            .await
            .is_empty()
    );
    assert!(ops.requests().is_empty());
}

#[tokio::test]
async fn server_errors_are_retried_with_the_same_delivery_id() {
    let rx = Receiver::start(vec![
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(200),
    ])
    .await;
    let notifier = Notifier::from_config(
        &config(&format!(
            "[[webhooks]]\nname = \"flaky\"\nurl = \"{}\"\nsecret = \"{}\"\n",
            rx.url("/"),
            key_ref("retry")
        )),
        None,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let d = notifier.approval_requested(&approval("dba")).await;
    let elapsed = started.elapsed();
    assert!(d[0].delivered, "{:?}", d[0]);
    assert_eq!(
        (d[0].status, d[0].attempts, d[0].error.as_deref()),
        (Some(200), 3, None)
    );
    // 500 ms, then 1 s between attempts.
    assert!(elapsed >= Duration::from_millis(1400), "{elapsed:?}");

    let got = rx.requests();
    assert_eq!(got.len(), 3);
    let id = got[0].header("x-airlock-delivery").unwrap();
    assert!(
        got.iter()
            .all(|r| r.header("x-airlock-delivery") == Some(id))
    );
    assert!(got.iter().all(|r| r.body == got[0].body));
    for r in &got {
        let sig = r.header("x-airlock-signature").unwrap();
        assert!(verify_signature(
            KEY.as_bytes(),
            sig,
            &r.body,
            now_unix(),
            300
        ));
    }
}

#[tokio::test]
async fn rate_limits_and_request_timeouts_are_retried() {
    let rx = Receiver::start(vec![
        Reply::Status(429),
        Reply::Status(408),
        Reply::Status(503),
    ])
    .await;
    let notifier = Notifier::from_config(
        &config(&format!(
            "[[webhooks]]\nname = \"busy\"\nurl = \"{}\"\nsecret = \"{}\"\n",
            rx.url("/"),
            key_ref("busy")
        )),
        None,
    )
    .unwrap();
    let d = notifier.approval_requested(&approval("dba")).await;
    assert!(!d[0].delivered);
    assert_eq!((d[0].status, d[0].attempts), (Some(503), 3));
    assert!(d[0].error.as_deref().unwrap().contains("503"), "{:?}", d[0]);
    assert_eq!(rx.requests().len(), 3);
}

#[tokio::test]
async fn a_closed_port_fails_after_three_attempts_without_naming_the_url() {
    let port = closed_port().await;
    let url = format!("http://127.0.0.1:{port}/services/T0/B0/SeCrEtPaTh");
    let notifier = Notifier::from_config(
        &config(&format!(
            "[[webhooks]]\nname = \"gone\"\nurl = \"{url}\"\nformat = \"slack\"\n"
        )),
        None,
    )
    .unwrap();
    let d = notifier.approval_requested(&approval("dba")).await;
    assert_eq!(d.len(), 1);
    let d = &d[0];
    assert_eq!(d.webhook, "gone");
    assert!(!d.delivered);
    assert_eq!((d.status, d.attempts), (None, 3));
    let error = d.error.as_deref().unwrap();
    assert!(error.contains("could not connect"), "{error}");
    assert!(!error.contains(&url), "{error}");
    assert!(!error.contains("SeCrEtPaTh"), "{error}");
    assert!(!error.contains("http://"), "{error}");
    assert!(!format!("{d:?}").contains("SeCrEtPaTh"));
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let rx = Receiver::start(vec![Reply::Status(400), Reply::Status(200)]).await;
    let notifier = Notifier::from_config(
        &config(&format!(
            "[[webhooks]]\nname = \"picky\"\nurl = \"{}\"\nformat = \"slack\"\n",
            rx.url("/")
        )),
        None,
    )
    .unwrap();
    let d = notifier.approval_requested(&approval("dba")).await;
    assert!(!d[0].delivered);
    assert_eq!((d[0].status, d[0].attempts), (Some(400), 1));
    let error = d[0].error.as_deref().unwrap();
    assert!(
        error.contains("400") && error.contains("no_service"),
        "{error}"
    );
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let elsewhere = Receiver::start(vec![Reply::Status(200)]).await;
    let rx = Receiver::start(vec![Reply::Redirect(elsewhere.url("/stolen"))]).await;
    let notifier = Notifier::from_config(
        &config(&format!(
            "[[webhooks]]\nname = \"moved\"\nurl = \"{}\"\nsecret = \"{}\"\n",
            rx.url("/"),
            key_ref("redirect")
        )),
        None,
    )
    .unwrap();
    let d = notifier.approval_requested(&approval("dba")).await;
    assert!(!d[0].delivered);
    assert_eq!((d[0].status, d[0].attempts), (Some(302), 1));
    assert!(d[0].error.as_deref().unwrap().contains("redirect"));
    assert!(elsewhere.requests().is_empty());
}

#[tokio::test]
async fn each_attempt_is_bounded_by_the_timeout() {
    let rx = Receiver::start(vec![Reply::Silence]).await;
    let notifier = Notifier::from_config(
        &config(&format!(
            "[[webhooks]]\nname = \"slow\"\nurl = \"{}\"\nsecret = \"{}\"\ntimeout = \"300ms\"\n",
            rx.url("/"),
            key_ref("slow")
        )),
        None,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let d = notifier.approval_requested(&approval("dba")).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!d[0].delivered);
    assert_eq!((d[0].status, d[0].attempts), (None, 3));
    assert_eq!(d[0].error.as_deref(), Some("no answer within 300ms"));
    assert_eq!(rx.requests().len(), 3);
}

#[tokio::test]
async fn https_needs_a_certificate_from_a_public_root() {
    // A receiver with a self-signed certificate: the handshake happens (rustls with
    // aws-lc-rs) and fails, as the client trusts the Mozilla roots only.
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&handshakes);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let ok = acceptor.accept(stream).await.is_ok();
            log.lock().unwrap().push(ok);
        }
    });
    let url = format!("https://127.0.0.1:{port}/hook");
    let notifier = Notifier::from_config(
        &config(&format!(
            "[[webhooks]]\nname = \"tls\"\nurl = \"{url}\"\nsecret = \"{}\"\n",
            key_ref("tls")
        )),
        None,
    )
    .unwrap();
    let d = notifier.approval_requested(&approval("dba")).await;
    assert!(!d[0].delivered);
    assert_eq!((d[0].status, d[0].attempts), (None, 3));
    let error = d[0].error.as_deref().unwrap();
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert!(!error.contains(&url), "{error}");
    // The server side may log the last failed handshake just after the client gave up.
    for _ in 0..50 {
        if handshakes.lock().unwrap().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*handshakes.lock().unwrap(), [false, false, false]);
}

/// The variable the child process of `from_config_resolves_an_env_url_reference` reads.
const URL_VAR: &str = "AIRLOCK_TEST_WEBHOOK_URL";

/// Runs only in the child process started by the test below, where `URL_VAR` is set.
#[tokio::test]
async fn env_reference_child() {
    if std::env::var_os(URL_VAR).is_none() {
        return;
    }
    let notifier = Notifier::from_config(
        &config(&format!(
            "[[webhooks]]\nname = \"from-env\"\nurl = \"env:{URL_VAR}\"\nsecret = \"{}\"\n",
            key_ref("env-child")
        )),
        None,
    )
    .unwrap();
    let d = notifier.approval_requested(&approval("dba")).await;
    assert!(d[0].delivered, "{:?}", d[0]);
}

#[tokio::test]
async fn from_config_resolves_an_env_url_reference() {
    let rx = Receiver::start(vec![Reply::Status(200)]).await;
    // Setting a variable in this process needs `unsafe`: run the child test instead.
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "env_reference_child",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(URL_VAR, format!("  {}\n", rx.url("/from-env")))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/from-env");

    // An unset variable is named as a reference; the webhook is named too.
    let err = Notifier::from_config(
        &config(
            "[[webhooks]]\nname = \"slack\"\nurl = \"env:AIRLOCK_TEST_SURELY_UNSET_URL\"\nformat = \"slack\"\n",
        ),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, NotifyError::UrlReference { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("`slack`") && text.contains("env:AIRLOCK_TEST_SURELY_UNSET_URL"),
        "{text}"
    );
}

#[test]
fn from_config_refuses_bad_urls_without_echoing_them() {
    let secret = "T0/B0/SeCrEt";
    for url in [
        format!("http://hooks.example.com/services/{secret}"),
        format!("ftp://hooks.example.com/{secret}"),
    ] {
        let err = Notifier::from_config(
            &config(&format!(
                "[[webhooks]]\nname = \"bad\"\nurl = \"{url}\"\nformat = \"slack\"\n"
            )),
            None,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, NotifyError::Url { .. }), "{err:?}");
        assert!(text.starts_with("webhook `bad`:"), "{text}");
        assert!(
            !text.contains("SeCrEt") && !text.contains("hooks.example.com"),
            "{text}"
        );
    }

    // A URL read from a file is checked like a literal.
    let path = secret_file("bad-url", &format!("http://hooks.example.com/{secret}"));
    let err = Notifier::from_config(
        &config(&format!(
            "[[webhooks]]\nname = \"bad\"\nurl = \"file:{}\"\nformat = \"slack\"\n",
            path.display()
        )),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, NotifyError::Url { .. }), "{err:?}");
    assert!(!err.to_string().contains("SeCrEt"));
}

#[test]
fn from_config_needs_a_key_for_json_and_names_the_webhook_on_errors() {
    let err = Notifier::from_config(
        &config("[[webhooks]]\nname = \"unsigned\"\nurl = \"https://example.com/hook\"\n"),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, NotifyError::MissingSecret { .. }), "{err:?}");
    assert!(err.to_string().contains("`unsigned`"));

    let err = Notifier::from_config(
        &config(
            "[[webhooks]]\nname = \"nokey\"\nurl = \"https://example.com/hook\"\nsecret = \"file:/nonexistent/airlock/key\"\n",
        ),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, NotifyError::Secret { .. }), "{err:?}");
    assert!(err.to_string().contains("`nokey`"));

    assert!(
        Notifier::from_config(&ApprovalsConfig::default(), None)
            .unwrap()
            .is_empty()
    );
    assert!(Notifier::none().is_empty());
}

#[test]
fn sign_matches_verify() {
    let header = sign(KEY.as_bytes(), 1_700_000_000, b"{}");
    assert!(verify_signature(
        KEY.as_bytes(),
        &header,
        b"{}",
        1_700_000_010,
        300
    ));
    assert!(!verify_signature(
        KEY.as_bytes(),
        &header,
        b"{}",
        1_700_000_400,
        300
    ));
}
