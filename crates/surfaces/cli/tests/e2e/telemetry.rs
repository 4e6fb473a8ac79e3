//! `[telemetry]`: Airlock's own spans reach a real OTLP/HTTP receiver
//! (`tests/clients/python/otlp_receiver.py`, decoding with the official
//! `opentelemetry-proto` definitions) as children of the agent's trace, with target,
//! protocol and principal and nothing secret; a receiver that is down costs nothing
//! but a warning now and then.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock_testkit::{
    AirlockBuilder, HttpApi, Postgres, free_port, psql, python, scratch_dir, wait_port,
    workspace_root,
};
use serde_json::Value;

use crate::bin;
use crate::postgres_policy::READ_ONLY;

/// The agent's trace: its trace id and the id of its span that called Airlock.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const AGENT_SPAN: &str = "00f067aa0ba902b7";
/// Another agent span, for the HTTP request.
const AGENT_HTTP_SPAN: &str = "b7ad6b7169203331";
/// The span of an agent whose token is refused.
const REFUSED_SPAN: &str = "1111222233334444";
/// The collector's key, sent as a header from an environment variable.
const COLLECTOR_KEY: &str = "collector-key-5e1d0c9b";
/// Text only the statements contain: never in a span.
const MARKER: &str = "stmt_marker_7f3a2c";

/// A running `otlp_receiver.py`, stopped when dropped.
struct Receiver {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl Receiver {
    fn start() -> Receiver {
        let dir = scratch_dir("otlp");
        let port = free_port();
        let child = Command::new(python())
            .arg(workspace_root().join("tests/clients/python/otlp_receiver.py"))
            .arg(port.to_string())
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/clients/python/otlp_receiver.py");
        wait_port(port, Duration::from_secs(20)).expect(
            "the OTLP receiver listens (needs `opentelemetry-proto` in AIRLOCK_TEST_PYTHON's venv: see scripts/test)",
        );
        Receiver { port, dir, child }
    }

    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("spans.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits (up to 20 s) until `done` holds of the spans received; returns them.
    fn spans_until(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the receiver was sent: bodies (bytes) and request lines with headers.
    fn everything(&self) -> (Vec<u8>, String) {
        (
            std::fs::read(self.dir.join("received.bin")).unwrap_or_default(),
            std::fs::read_to_string(self.dir.join("requests.jsonl")).unwrap_or_default(),
        )
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn telemetry_section(port: u16) -> String {
    format!(
        "\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\n[telemetry.headers]\nauthorization = \"env:OTEL_COLLECTOR_KEY\"\nx-tenant = \"acme\"\n"
    )
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// psql with a traceparent in `application_name`, and curl with a `traceparent`
/// header: each session's span is a child of the agent's span, carries target,
/// protocol and principal, and nothing of the token, the statements or the
/// credentials reaches the receiver; the collector's key is sent as a header.
#[test]
fn spans_join_the_agents_trace_and_carry_nothing_secret() {
    let receiver = Receiver::start();
    let api = HttpApi::start();
    let pg = Postgres::shared();
    let db = pg.create_database("otel");
    let policy = format!(
        "{READ_ONLY}\n@id(\"billing\")\npermit(principal in Group::\"ai-agents\", action, resource in Target::\"billing\");\n"
    );
    let mut gw = AirlockBuilder::new(bin())
        .http()
        .policy(Some(&policy))
        .target("shop", pg, &db)
        .raw_target(&format!(
            "[[targets]]\nname = \"billing\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{}/api\"\nauth = {{ bearer = \"env:T_BEARER\" }}\n",
            api.port
        ))
        .env("T_BEARER", airlock_testkit::UP_BEARER)
        .env("OTEL_COLLECTOR_KEY", COLLECTOR_KEY)
        .extra(&telemetry_section(receiver.port))
        .start();
    let token = gw.token("agent", &["ai-agents"]);

    let conn = format!(
        "{} application_name='crew traceparent=00-{TRACE}-{AGENT_SPAN}-01'",
        gw.conn("shop", &token)
    );
    let out = psql(
        &conn,
        &[
            &format!("select '{MARKER}' as marker, name from customers where id = 1"),
            &format!("delete from orders where note = '{MARKER}'"),
        ],
    );
    assert!(
        out.stdout.contains(MARKER) && !out.ok,
        "the delete is denied: {out:?}"
    );

    let curl = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "-H",
            &format!("traceparent: 00-{TRACE}-{AGENT_HTTP_SPAN}-01"),
        ])
        .arg(format!(
            "https://127.0.0.1:{}/billing/v1/people?q={MARKER}",
            gw.http_port
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "200");

    // An unauthenticated client cannot write into the collector.
    let refused = format!(
        "{} application_name='crew traceparent=00-{TRACE}-{REFUSED_SPAN}-01'",
        gw.conn("shop", "not-a-token")
    );
    assert!(!psql(&refused, &["select 1"]).ok);

    // The batch's timer is 5 s: stopping at once shows the flush at shutdown.
    gw.stop();
    let spans = receiver.spans_until(|s| {
        s.iter().any(|x| x["name"] == "airlock postgresql session")
            && s.iter().any(|x| x["name"] == "airlock http request")
            && s.iter()
                .filter(|x| x["name"] == "airlock statements")
                .count()
                >= 2
    });
    let all = serde_json::to_string_pretty(&spans).unwrap();

    let session = spans
        .iter()
        .find(|s| s["name"] == "airlock postgresql session")
        .unwrap_or_else(|| panic!("no session span: {all}\nlog:\n{}", gw.log()));
    assert_eq!(session["trace_id"], TRACE, "{all}");
    assert_eq!(session["parent_span_id"], AGENT_SPAN, "{all}");
    assert_eq!(session["kind"], 2, "a server span: {all}");
    let a = &session["attributes"];
    assert_eq!(a["airlock.target"], "shop", "{all}");
    assert_eq!(a["airlock.protocol"], "postgresql", "{all}");
    assert_eq!(a["airlock.principal"], "agent", "{all}");
    let id = a["airlock.session"].as_str().unwrap();
    assert_eq!(gw.last_session_of("agent", "shop")["id"], id, "{all}");
    assert_eq!(session["resource"]["service.name"], "airlock", "{all}");
    assert_eq!(session["events"], 0, "{all}");

    // One span per statement run, children of the session's span, with its decision.
    let statements: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "airlock statements")
        .collect();
    for s in &statements {
        assert_eq!(s["trace_id"], TRACE, "{all}");
        assert_eq!(s["parent_span_id"], session["span_id"], "{all}");
        assert_eq!(s["attributes"]["airlock.statements"], 1, "{all}");
    }
    let decisions: Vec<&Value> = statements
        .iter()
        .map(|s| &s["attributes"]["airlock.decision"])
        .collect();
    assert!(decisions.contains(&&Value::from("allow")), "{all}");
    assert!(decisions.contains(&&Value::from("deny")), "{all}");

    let request = spans
        .iter()
        .find(|s| s["name"] == "airlock http request")
        .unwrap();
    assert_eq!(request["trace_id"], TRACE, "{all}");
    assert_eq!(request["parent_span_id"], AGENT_HTTP_SPAN, "{all}");
    let a = &request["attributes"];
    assert_eq!(a["airlock.target"], "billing", "{all}");
    assert_eq!(a["airlock.protocol"], "http", "{all}");
    assert_eq!(a["airlock.principal"], "agent", "{all}");

    assert!(
        spans.iter().all(|s| s["parent_span_id"] != REFUSED_SPAN),
        "a refused connection is not exported: {all}"
    );

    // Only the allowlisted attributes, on every span.
    for s in &spans {
        for key in s["attributes"].as_object().unwrap().keys() {
            assert!(
                [
                    "airlock.target",
                    "airlock.protocol",
                    "airlock.principal",
                    "airlock.session",
                    "airlock.statements",
                    "airlock.decision"
                ]
                .contains(&key.as_str()),
                "{key}: {all}"
            );
        }
    }

    // Nothing secret anywhere in what the receiver got; its key in the headers only.
    let (bodies, requests) = receiver.everything();
    for secret in [
        token.as_str(),
        MARKER,
        airlock_testkit::APP_PASSWORD,
        airlock_testkit::UP_BEARER,
        COLLECTOR_KEY,
        "customers",
        "delete",
    ] {
        assert!(!contains(&bodies, secret), "`{secret}` was exported");
    }
    assert!(!requests.contains(&token), "the agent's token was sent");
    assert!(
        requests.lines().all(|l| {
            let r: Value = serde_json::from_str(l).unwrap();
            r["path"] == "/v1/traces"
                && r["headers"]["authorization"] == COLLECTOR_KEY
                && r["headers"]["x-tenant"] == "acme"
                && r["headers"]["content-type"] == "application/x-protobuf"
        }),
        "{requests}"
    );
    assert!(
        !gw.log().contains(COLLECTOR_KEY),
        "the collector's key is never logged"
    );
}

/// An MCP agent's requests: the POST's `traceparent` header, or a message's
/// `_meta.traceparent` (which wins), is the parent of the request's span.
#[test]
fn mcp_requests_join_the_header_or_the_messages_trace() {
    let receiver = Receiver::start();
    let up = airlock_testkit::McpServer::start(&["--stateless", "--json-response"]);
    let mut gw = AirlockBuilder::new(bin())
        .http()
        .policy(Some(crate::mcp_gateway::MCP_POLICY))
        .raw_target(&format!(
            "[[targets]]\nname = \"tools\"\nkind = \"mcp\"\nurl = \"{}\"\n",
            up.url()
        ))
        .env("OTEL_COLLECTOR_KEY", COLLECTOR_KEY)
        .extra(&telemetry_section(receiver.port))
        .start();
    let token = gw.token("crew", &["ai-agents"]);
    let meta_span = "aaaabbbbccccdddd";
    let url = format!("https://127.0.0.1:{}/tools", gw.http_port);
    let header = format!("traceparent: 00-{TRACE}-{AGENT_HTTP_SPAN}-01");
    let post = |body: &str| {
        let args = [
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-H",
            "accept: application/json, text/event-stream",
            "-H",
            &header,
            "--data-binary",
            body,
        ];
        crate::http_proxy::curl_with(&url, Some(&token), &args)
    };
    let (code, _, answer) = post(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    assert_eq!(code, 200, "{answer}");
    let (code, _, answer) = post(&format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"add","arguments":{{"a":1,"b":2}},"_meta":{{"traceparent":"00-{TRACE}-{meta_span}-01"}}}}}}"#
    ));
    assert_eq!(code, 200, "{answer}");
    gw.stop();
    let spans = receiver.spans_until(|s| {
        s.iter()
            .filter(|x| x["name"] == "airlock mcp request")
            .count()
            >= 2
    });
    let all = serde_json::to_string_pretty(&spans).unwrap();
    let requests: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "airlock mcp request")
        .collect();
    assert_eq!(requests.len(), 2, "{all}");
    for r in &requests {
        assert_eq!(r["trace_id"], TRACE, "{all}");
        assert_eq!(r["attributes"]["airlock.target"], "tools", "{all}");
        assert_eq!(r["attributes"]["airlock.protocol"], "mcp", "{all}");
        assert_eq!(r["attributes"]["airlock.principal"], "crew", "{all}");
    }
    let parents: Vec<&Value> = requests.iter().map(|r| &r["parent_span_id"]).collect();
    assert!(parents.contains(&&Value::from(AGENT_HTTP_SPAN)), "{all}");
    assert!(parents.contains(&&Value::from(meta_span)), "{all}");
    let (bodies, _) = receiver.everything();
    assert!(!contains(&bodies, &token) && !contains(&bodies, "arguments"));
}

/// A receiver that is down does not hurt the gateway: statements work, stopping takes
/// no longer than the bounded flush, and the log has a warning now and then, no error.
#[test]
fn a_receiver_that_is_down_costs_dropped_spans_and_a_warning() {
    let down = free_port();
    let pg = Postgres::shared();
    let db = pg.create_database("otel_down");
    let mut gw = AirlockBuilder::new(bin())
        .target("shop", pg, &db)
        .env("OTEL_COLLECTOR_KEY", COLLECTOR_KEY)
        .extra(&telemetry_section(down))
        .start();
    let token = gw.token("agent", &["ai-agents"]);
    let conn = format!(
        "{} application_name='crew traceparent=00-{TRACE}-{AGENT_SPAN}-01'",
        gw.conn("shop", &token)
    );
    for round in 0..3 {
        let out = psql(&conn, &["select count(*) from customers", "select 1"]);
        assert!(out.ok, "round {round}: {out:?}\nlog:\n{}", gw.log());
    }
    // Past the batch's 5 s timer: at least one export has failed meanwhile.
    std::thread::sleep(Duration::from_secs(7));
    let out = psql(&conn, &["select 2"]);
    assert!(out.ok, "{out:?}");
    let stopping = Instant::now();
    gw.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(9),
        "stopping took {:?}",
        stopping.elapsed()
    );
    let log = gw.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("telemetry"))
        .count();
    assert!((1..=2).contains(&warnings), "{warnings} warnings:\n{log}");
    assert!(
        !log.lines().any(|l| l.contains("ERROR")),
        "no error is logged:\n{log}"
    );
    assert!(!log.contains(COLLECTOR_KEY), "{log}");
}

/// `airlock check` resolves the collector's headers: a missing variable is named, its
/// value never shown; a build without the feature would say so.
#[test]
fn check_resolves_the_collectors_headers() {
    let pg = Postgres::shared();
    let gw = AirlockBuilder::new(bin())
        .target("shop", pg, "postgres")
        .extra(&telemetry_section(free_port()))
        .write();
    let out = gw.cli(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("[telemetry] headers: `authorization`")
            && err.contains("env:OTEL_COLLECTOR_KEY"),
        "{err}"
    );
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(gw.config_path())
        .env("AIRLOCK_TEST_PW_SHOP", "x")
        .env("OTEL_COLLECTOR_KEY", COLLECTOR_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(COLLECTOR_KEY));
}
