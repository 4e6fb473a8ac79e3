//! HTTP targets through the HTTPS listener with real clients (curl, requests, httpx)
//! against a real upstream API: credential injection verified on the upstream's side,
//! the agent's token never forwarded, refusals as problem documents that never reach the
//! upstream, the credential scrubbed from answers, and what is recorded.

use std::process::{Command, Stdio};

use airlock_testkit::{AirlockBuilder, HttpApi, UP_APIKEY, UP_BASIC, UP_BEARER};
use serde_json::Value;

use crate::bin;

/// The policy of the HTTP tests.
pub const HTTP_POLICY: &str = r#"
@id("connect")
permit(principal in Group::"ai-agents", action == Action::"connect", resource);
@id("read")
permit(principal in Group::"ai-agents", action in Http::Action::"read", resource);
@id("uploads")
permit(principal in Group::"ai-agents", action in [Http::Action::"post", Http::Action::"put"], resource in Http::Path::"billing/v1/upload");
@id("ws")
permit(principal in Group::"ai-agents", action == Http::Action::"websocket", resource in Http::Path::"billing/v1/ws");
@id("no-admin")
@reason("the admin API is for people only")
forbid(principal, action, resource in Http::Path::"billing/admin");
@id("refunds-need-dba")
@hold("dba")
permit(principal in Group::"ai-agents", action == Http::Action::"post", resource in Http::Path::"billing/v1/refunds")
when { !(context.body_fields.contains("override")) };
"#;

/// A gateway with three HTTP targets on one upstream API: `billing` (bearer), `ledger`
/// (an API key header) and `files` (basic), and an agent token.
pub struct HttpFixture {
    pub gw: airlock_testkit::Airlock,
    pub api: HttpApi,
    pub token: String,
}

impl HttpFixture {
    pub fn new() -> HttpFixture {
        Self::with(|b| b)
    }

    pub fn with(customize: impl FnOnce(AirlockBuilder) -> AirlockBuilder) -> HttpFixture {
        Self::build("", customize)
    }

    /// With `billing_extra` lines added to the `billing` target.
    pub fn build(
        billing_extra: &str,
        customize: impl FnOnce(AirlockBuilder) -> AirlockBuilder,
    ) -> HttpFixture {
        let api = HttpApi::start();
        let p = api.port;
        let builder = AirlockBuilder::new(bin())
            .http()
            .policy(Some(HTTP_POLICY))
            .raw_target(&format!(
                "[[targets]]\nname = \"billing\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{p}/api\"\nauth = {{ bearer = \"env:T_BEARER\" }}\ncapture_bytes = 256\n{billing_extra}\n"
            ))
            .raw_target(&format!(
                "[[targets]]\nname = \"ledger\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{p}/key/\"\nauth = {{ header = \"X-Api-Key\", value = \"env:T_APIKEY\" }}\n"
            ))
            .raw_target(&format!(
                "[[targets]]\nname = \"files\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{p}/basic\"\nauth = {{ basic_user = \"svc\", basic_password = \"env:T_BASIC\" }}\n"
            ))
            .env("T_BEARER", UP_BEARER)
            .env("T_APIKEY", UP_APIKEY)
            .env("T_BASIC", UP_BASIC);
        let gw = customize(builder).start();
        let token = gw.token("crew", &["ai-agents"]);
        HttpFixture { gw, api, token }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.gw.http_port)
    }

    /// curl through the gateway with the agent's token: (status, headers, body).
    pub fn curl(&self, path: &str, extra: &[&str]) -> (u16, String, String) {
        curl_with(&self.url(path), Some(&self.token), extra)
    }
}

/// curl with `--path-as-is` (so the path reaches the gateway as written).
pub fn curl_with(url: &str, token: Option<&str>, extra: &[&str]) -> (u16, String, String) {
    let dir = airlock_testkit::scratch_dir("curl");
    let headers = dir.join("headers");
    let mut cmd = Command::new("curl");
    cmd.args(["-sk", "--path-as-is", "-o", "-", "-D"])
        .arg(&headers)
        .args(["-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    let out = cmd
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let hdrs = std::fs::read_to_string(&headers).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (code.trim().parse().unwrap_or(0), hdrs, body.to_owned())
}

/// Runs a scenario of `tests/clients/python/http_client.py` against `target` (a URL, or
/// HOST:PORT for `raw`) with the environment `env`; returns its JSON.
pub fn http_client(scenario: &str, target: &str, env: &[(&str, &str)]) -> Value {
    let out = Command::new(airlock_testkit::python())
        .arg(airlock_testkit::workspace_root().join("tests/clients/python/http_client.py"))
        .arg(scenario)
        .arg(target)
        .envs(env.iter().copied())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{scenario}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.trim_ascii()).expect("the client prints JSON")
}

/// Every session of `principal` on `target`, with its events.
pub fn sessions_of(gw: &airlock_testkit::Airlock, principal: &str, target: &str) -> Vec<Value> {
    gw.sessions()
        .into_iter()
        .filter(|s| s["principal"] == principal && s["target"] == target)
        .map(|s| gw.session(s["id"].as_str().unwrap()))
        .collect()
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn header_values<'a>(request: &'a Value, name: &str) -> Vec<&'a str> {
    request["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap())
        .collect()
}

#[test]
fn injects_each_credential_form_and_never_forwards_the_agent_token() {
    let f = HttpFixture::new();
    let t = f.token.clone();
    let smuggled = [
        // HTTP/1.1: HTTP/2 has no Connection header to name hop-by-hop headers with.
        "--http1.1".to_owned(),
        "-H".to_owned(),
        format!("Proxy-Authorization: Bearer {t}"),
        "-H".to_owned(),
        format!("Cookie: theme=dark; airlock={t}; lang=en"),
        "-H".to_owned(),
        format!("X-Agent-Token: {t}"),
        "-H".to_owned(),
        "X-Forwarded-For: 6.6.6.6".to_owned(),
        "-H".to_owned(),
        "Connection: keep-alive, X-Hop".to_owned(),
        "-H".to_owned(),
        "X-Hop: secret-hop".to_owned(),
    ];
    let extra: Vec<&str> = smuggled.iter().map(String::as_str).collect();
    for (target, path) in [("billing", "/api"), ("ledger", "/key"), ("files", "/basic")] {
        let (code, _, body) = f.curl(&format!("/{target}/v1/echo?probe={target}&x=%41"), &extra);
        assert_eq!(code, 200, "{target}: {body}");
        let seen = json(&body);
        assert_eq!(seen["path"], format!("{path}/v1/echo"));
        assert_eq!(
            seen["query"],
            format!("probe={target}&x=%41"),
            "the query is forwarded unchanged"
        );
    }
    let log = f.api.requests();
    assert_eq!(
        log.len(),
        3,
        "each request reached the upstream once: {log:?}"
    );
    assert_eq!(
        header_values(&log[0], "authorization"),
        vec![format!("Bearer {UP_BEARER}")]
    );
    assert_eq!(header_values(&log[1], "x-api-key"), vec![UP_APIKEY]);
    assert!(header_values(&log[1], "authorization").is_empty());
    let basic = header_values(&log[2], "authorization");
    assert_eq!(basic.len(), 1);
    assert!(basic[0].starts_with("Basic "), "{basic:?}");
    for r in &log {
        assert_eq!(header_values(r, "cookie"), vec!["theme=dark; lang=en"]);
        assert_eq!(header_values(r, "x-forwarded-for"), vec!["127.0.0.1"]);
        assert_eq!(header_values(r, "x-forwarded-proto"), vec!["https"]);
        assert!(header_values(r, "forwarded")[0].contains("for=\"127.0.0.1\""));
        assert_eq!(
            header_values(r, "host"),
            vec![format!("127.0.0.1:{}", f.api.port)]
        );
        assert!(
            header_values(r, "x-hop").is_empty(),
            "a header Connection names is hop-by-hop"
        );
        assert!(header_values(r, "proxy-authorization").is_empty());
        assert!(header_values(r, "x-agent-token").is_empty());
    }
    assert!(
        !f.api.raw_log().contains(&t),
        "the agent's token reached the upstream"
    );
}

#[test]
fn refusals_are_problem_documents_and_never_reach_the_upstream() {
    let f = HttpFixture::new();
    let (code, hdrs, body) = curl_with(&f.url("/billing/v1/echo?probe=none"), None, &[]);
    assert_eq!(code, 401, "{body}");
    assert!(
        hdrs.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{hdrs}"
    );
    let (code, hdrs, _) = curl_with(
        &f.url("/billing/v1/echo?probe=bad"),
        Some("alk_not-a-token"),
        &[],
    );
    assert_eq!(code, 401);
    assert!(hdrs.contains("invalid_token"), "{hdrs}");

    let (code, hdrs, body) = f.curl("/billing/admin/users?probe=admin", &[]);
    assert_eq!(code, 403, "{body}");
    // Recorded with its decision.
    let s = f.gw.last_session_of("crew", "billing");
    let requests: Vec<&Value> = crate::events_of(&s, "request");
    assert_eq!(requests[0]["decision"], "deny", "{s}");
    assert_eq!(requests[0]["detail"]["status"], 403);
    assert!(
        hdrs.to_ascii_lowercase()
            .contains("content-type: application/problem+json")
    );
    let p = json(&body);
    assert_eq!(p["status"], 403);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("\"no-admin\": the admin API is for people only"),
        "{p}"
    );
    assert_eq!(p["policies"], serde_json::json!(["no-admin"]));

    // Spelled differently, still the admin path.
    let (code, _, _) = f.curl("/billing/v1/../admin?probe=dots", &[]);
    assert_eq!(code, 403);
    let (code, _, _) = f.curl("/billing/v1/%2e%2e/Admin/../admin?probe=enc", &[]);
    assert_eq!(code, 403);

    let (code, _, body) = f.curl(
        "/billing/v1/invoices?probe=post",
        &[
            "-X",
            "POST",
            "-d",
            "{}",
            "-H",
            "content-type: application/json",
        ],
    );
    assert_eq!(code, 403);
    let detail = json(&body)["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("permitted there: GET, HEAD, OPTIONS"),
        "{detail}"
    );

    let (code, _, body) = f.curl("/payroll/v1/x?probe=unknown", &[]);
    assert_eq!(code, 404);
    let p = json(&body);
    assert_eq!(
        p["available_targets"],
        serde_json::json!(["billing", "files", "ledger"])
    );
    // `/mcp` is Airlock's own MCP server, never a target: it takes POSTed messages only.
    let (code, _, _) = f.curl("/mcp?probe=mcp", &[]);
    assert_eq!(code, 405);
    assert!(
        !f.api.raw_log().contains("probe=mcp"),
        "/mcp never reaches an upstream"
    );
    let (code, _, body) = f.curl("/billing/v1/echo?probe=x", &["-X", "FROB"]);
    assert_eq!(code, 405, "{body}");
    let (code, _, _) = f.curl(&format!("/billing/v1/echo?probe=leak&t={}", f.token), &[]);
    assert_eq!(code, 400, "a token in the query string is refused");
    // A body declared JSON that is not: refused, its fields could not be decided on.
    let (code, _, body) = f.curl(
        "/billing/v1/refunds?probe=notjson",
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"override": true, /* x */ }"#,
        ],
    );
    assert_eq!(code, 400, "{body}");

    assert!(
        f.api
            .requests()
            .iter()
            .all(|r| !r["query"].as_str().unwrap().contains("probe=")),
        "a refused request reached the upstream: {:?}",
        f.api.requests()
    );
    // A refusal before the decision is recorded too.
    let s = f.gw.last_session_of("crew", "billing");
    let requests: Vec<&Value> = crate::events_of(&s, "request");
    assert_eq!(requests[0]["detail"]["status"], 400, "{s}");
    assert!(
        !requests[0].to_string().contains(&f.token),
        "the token is not recorded"
    );
}

#[test]
fn the_credential_is_scrubbed_from_every_answer() {
    let f = HttpFixture::new();
    let (code, hdrs, body) = f.curl("/billing/v1/debug", &[]);
    assert_eq!(code, 500);
    assert!(
        !hdrs.contains(UP_BEARER) && !body.contains(UP_BEARER),
        "{hdrs}{body}"
    );
    assert!(body.contains("Authorization: Bearer ****"), "{body}");
    let (code, hdrs, _) = f.curl("/files/v1/debug", &[]);
    assert_eq!(code, 500);
    assert!(!hdrs.contains(UP_BASIC), "{hdrs}");
    let (code, hdrs, _) = f.curl("/billing/v1/redirect", &[]);
    assert_eq!(code, 302);
    let location = hdrs
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("location:"))
        .unwrap()
        .to_owned();
    assert!(
        location.contains(&format!(
            "https://127.0.0.1:{}/billing/v1/echo?token=*",
            f.gw.http_port
        )),
        "{location}"
    );
    assert!(!location.contains(UP_BEARER));
    assert!(!f.gw.log().contains(UP_BEARER), "the credential was logged");
    assert!(
        !f.gw.log().contains(&f.token),
        "the agent's token was logged"
    );
}

#[test]
fn python_clients_work_unchanged() {
    let f = HttpFixture::new();
    for scenario in ["requests", "httpx"] {
        let r = http_client(
            scenario,
            &f.url("/billing/v1/people"),
            &[("AIRLOCK_TOKEN", &f.token)],
        );
        assert_eq!(r["status"], 200, "{scenario}: {r}");
        assert_eq!(r["body"]["people"][0]["name"], "Ada Lovelace");
        assert_eq!(r["body"]["people"][0]["email"], "[REDACTED:column]");
    }
}

#[test]
fn each_request_and_outcome_is_recorded_in_one_session_per_connection() {
    let f = HttpFixture::new();
    // Two requests on one keep-alive connection (curl reuses it for both URLs).
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-o", "/dev/null", "-H"])
        .arg(format!("Authorization: Bearer {}", f.token))
        .arg(f.url("/billing/v1/echo?n=1"))
        .arg(f.url("/billing/v1/people?email=ada@example.com"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = f.gw.last_session_of("crew", "billing");
    assert_eq!(s["protocol"], "http");
    let requests = crate::events_of(&s, "request");
    assert_eq!(requests.len(), 2, "{s}");
    assert_eq!(requests[0]["statement"], "GET /billing/v1/echo?n=1");
    assert_eq!(requests[0]["decision"], "allow");
    assert!(
        !requests[1]["statement"]
            .as_str()
            .unwrap()
            .contains("ada@example.com"),
        "the query is recorded masked: {}",
        requests[1]
    );
    let results = crate::events_of(&s, "result");
    assert_eq!(results.len(), 2, "{s}");
    assert_eq!(results[1]["detail"]["status"], 200);
    assert!(results[1]["detail"]["response_bytes"].as_u64().unwrap() > 100);
    let capture = results[1]["detail"]["capture"].as_str().unwrap();
    assert!(capture.starts_with("{\"people\""), "{capture}");
    assert!(!capture.contains("ada@example.com"));
    assert!(
        results[1]["detail"]["masked"]["default"]["column"]
            .as_u64()
            .unwrap()
            > 0
    );
    f.gw.cli_ok(&["audit", "verify"]);
}

#[test]
fn an_oidc_access_token_works_on_http_targets_and_trace_logs_hold_no_secret() {
    let idp = airlock_testkit::Idp::start("k1");
    let f = HttpFixture::with(|b| {
        b.env("AIRLOCK_LOG", "trace").extra(&format!(
            "\n[identity]\n\n[[identity.oidc]]\nname = \"local\"\nissuer = \"{}\"\naudiences = [\"urn:airlock\"]\nprincipal_claim = \"client_id\"\ngroups_claim = \"groups\"\n",
            idp.issuer()
        ))
    });
    let jwt = idp.token("agent-1");
    let (code, _, body) = curl_with(&f.url("/billing/v1/echo?probe=oidc"), Some(&jwt), &[]);
    assert_eq!(code, 200, "{body}");
    let seen = json(&body);
    assert_eq!(seen["query"], "probe=oidc");
    assert!(
        !f.api.raw_log().contains(&jwt),
        "the OIDC token reached the upstream"
    );
    let s = f.gw.last_session_of("agent-1", "billing");
    assert_eq!(
        crate::events_of(&s, "connect")[0]["detail"]["principal_source"],
        "oidc"
    );
    // A tampered token is refused.
    let (code, _, _) = curl_with(
        &f.url("/billing/v1/echo?probe=tampered"),
        Some(&format!("{jwt}x")),
        &[],
    );
    assert_eq!(code, 401);
    let (code, _, _) = f.curl("/billing/v1/debug", &[]);
    assert_eq!(code, 500);
    let log = f.gw.log();
    assert!(log.contains("TRACE"), "the gateway logs at trace level");
    for secret in [jwt.as_str(), f.token.as_str(), UP_BEARER, UP_APIKEY] {
        assert!(!log.contains(secret), "a secret is in the trace log");
    }
}

#[test]
fn an_upstream_that_goes_away_is_a_clear_error_and_is_recorded() {
    let closed = airlock_testkit::free_port();
    let f = HttpFixture::with(|b| {
        b.raw_target(&format!(
            "[[targets]]\nname = \"gone\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{closed}\"\nconnect_timeout = \"2s\"\n"
        ))
    });
    // Nothing listens: 502 with words for the agent.
    let (code, _, body) = f.curl("/gone/v1/x", &[]);
    assert_eq!(code, 502, "{body}");
    let p = json(&body);
    assert_eq!(p["type"], "https://airlock.dev/problems/upstream-failed");
    assert!(p["detail"].as_str().unwrap().contains("`gone`"), "{p}");
    // The upstream hangs up mid-body: a body masked whole (this one is small) is
    // withheld with a 502 that says so, never passed on half-masked.
    let (code, _, body) = f.curl("/billing/v1/truncated", &["--http1.1"]);
    assert_eq!(code, 502, "{body}");
    assert!(!body.contains("ada@example.com"));
    let p = json(&body);
    assert_eq!(p["type"], "https://airlock.dev/problems/response-withheld");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("upstream's body failed"),
        "{p}"
    );
    let s = f.gw.last_session_of("crew", "billing");
    let results = crate::events_of(&s, "result");
    let error = results[0]["detail"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("upstream"), "{s}");
    // The gateway serves the next request as usual.
    let (code, _, _) = f.curl("/billing/v1/echo", &[]);
    assert_eq!(code, 200);
}
