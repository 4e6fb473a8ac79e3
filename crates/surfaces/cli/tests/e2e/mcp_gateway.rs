//! MCP targets through Airlock with the official SDKs: the Python SDK 2.x as client in
//! both protocol eras (auto: 2026-07-28 via server/discover; legacy: initialize and
//! Mcp-Session-Id) and as the upstream server (stateful, stateless, JSON answers), and
//! the TypeScript SDK from npm as a second client. Listings filtered by policy, calls
//! allowed, denied (never reaching the upstream) and held until approved, PII masked in
//! text, structuredContent and resource reads, tool pinning, malformed and ambiguous
//! messages refused, the upstream dying mid-call, and what is recorded.

use std::time::{Duration, Instant};

use airlock_testkit::{
    AirlockBuilder, McpServer, finish_client, mcp_client, node_mcp_client, node_sdk,
    spawn_mcp_client,
};
use serde_json::{Value, json};

use crate::bin;
use crate::http_proxy::curl_with;

pub(crate) const MCP_POLICY: &str = r#"
@id("connect")
permit(principal in Group::"ai-agents", action == Action::"connect", resource);
@id("add")
permit(principal in Group::"ai-agents", action == Mcp::Action::"call", resource == Mcp::Tool::"tools/add");
@id("lookup")
permit(principal in Group::"ai-agents", action == Mcp::Action::"call", resource == Mcp::Tool::"tools/lookup_customer");
@id("echo-short")
permit(principal in Group::"ai-agents", action == Mcp::Action::"call", resource == Mcp::Tool::"tools/echo")
when { !(context.arguments_json like "*secret*") };
@id("die")
permit(principal in Group::"ai-agents", action == Mcp::Action::"call", resource == Mcp::Tool::"tools/die");
@id("delete-needs-dba")
@hold("dba")
permit(principal in Group::"ai-agents", action == Mcp::Action::"call", resource == Mcp::Tool::"tools/delete_customer");
@id("customers")
permit(principal in Group::"ai-agents", action == Mcp::Action::"read", resource == Mcp::Resource::"tools/customers://1");
@id("greet")
permit(principal in Group::"ai-agents", action == Mcp::Action::"prompt", resource == Mcp::Prompt::"tools/greet");
"#;

const PII: [&str; 4] = [
    "ada@example.com",
    "4111 1111 1111 1111",
    "4111111111111111",
    "hunter2",
];

struct McpFixture {
    gw: airlock_testkit::Airlock,
    up: McpServer,
    token: String,
}

impl McpFixture {
    fn new(up_flags: &[&str], target_extra: &str) -> McpFixture {
        let up = McpServer::start(up_flags);
        let gw = AirlockBuilder::new(bin())
            .http()
            .policy(Some(MCP_POLICY))
            .raw_target(&format!(
                "[[targets]]\nname = \"tools\"\nkind = \"mcp\"\nurl = \"{}\"\n{target_extra}\n",
                up.url()
            ))
            .start();
        let token = gw.token("crew", &["ai-agents"]);
        McpFixture { gw, up, token }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/tools", self.gw.http_port)
    }

    fn run(&self, mode: &str, steps: Value) -> Value {
        mcp_client(&self.url(), &self.token, mode, &steps)
    }

    /// The events of the agent's sessions on `tools`, oldest first.
    fn events(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for s in self.gw.sessions() {
            if s["principal"] == "crew" && s["target"] == "tools" {
                let id = s["id"].as_str().unwrap().to_owned();
                let detail = self.gw.session(&id);
                all.extend(detail["events"].as_array().cloned().unwrap_or_default());
            }
        }
        all
    }
}

fn raw_pii(v: &Value) -> Vec<&'static str> {
    let text = v.to_string();
    PII.into_iter().filter(|p| text.contains(p)).collect()
}

fn everyday_steps() -> Value {
    json!([
        {"op": "list_tools"},
        {"op": "call", "name": "add", "args": {"a": 2, "b": 40}},
        {"op": "call", "name": "danger", "args": {}},
        {"op": "call", "name": "lookup_customer", "args": {"id": 1}},
        {"op": "call", "name": "Add", "args": {"a": 1, "b": 1}},
        {"op": "call", "name": "echo", "args": {"text": "my secret"}},
        {"op": "list_resources"},
        {"op": "read", "uri": "customers://1"},
        {"op": "read", "uri": "notes://readme"},
        {"op": "list_prompts"},
        {"op": "prompt", "name": "greet", "args": {"name": "Ada"}}
    ])
}

/// What every client must see for `everyday_steps`.
fn check_everyday(out: &Value, who: &str) {
    let steps = out["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: {out}"));
    let tools: Vec<&str> = steps[0]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: {out}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for want in ["add", "lookup_customer", "echo", "delete_customer"] {
        assert!(tools.contains(&want), "{who}: {want} listed: {tools:?}");
    }
    for hidden in ["danger", "slow", "env_value"] {
        assert!(
            !tools.contains(&hidden),
            "{who}: {hidden} is hidden: {tools:?}"
        );
    }
    assert_eq!(steps[1]["is_error"], false, "{who}: {}", steps[1]);
    assert!(
        steps[1]["text"].as_str().unwrap().contains("42"),
        "{who}: {}",
        steps[1]
    );
    let danger = &steps[2];
    assert!(
        danger["is_error"] == true || danger.get("error").is_some(),
        "{who}: danger refused: {danger}"
    );
    if danger["is_error"] == true {
        let text = danger["text"].as_str().unwrap();
        assert!(text.starts_with("airlock:"), "{who}: {text}");
        assert!(
            text.contains("danger"),
            "{who}: the refusal names the tool: {text}"
        );
    }
    let lookup = &steps[3];
    assert_eq!(lookup["is_error"], false, "{who}: {lookup}");
    assert!(lookup.to_string().contains("Lovelace"), "{who}: {lookup}");
    assert!(raw_pii(lookup).is_empty(), "{who}: masked: {lookup}");
    assert_eq!(lookup["structured"]["id"], 1, "{who}: types kept: {lookup}");
    let case_variant = &steps[4];
    assert!(
        case_variant["is_error"] == true || case_variant.get("error").is_some(),
        "{who}: `Add` is not `add`: {case_variant}"
    );
    let echo = &steps[5];
    assert!(
        echo["is_error"] == true || echo.get("error").is_some(),
        "{who}: an argument condition denies: {echo}"
    );
    let resources = steps[6]["resources"].as_array().unwrap();
    assert_eq!(
        resources,
        &[json!("customers://1")],
        "{who}: only permitted resources"
    );
    let read = &steps[7];
    assert!(read.to_string().contains("Lovelace"), "{who}: {read}");
    assert!(raw_pii(read).is_empty(), "{who}: masked read: {read}");
    assert!(
        steps[8].get("error").is_some(),
        "{who}: notes://readme is not permitted: {}",
        steps[8]
    );
    assert_eq!(steps[9]["prompts"], json!(["greet"]), "{who}");
    assert!(
        steps[10].to_string().contains("Ada"),
        "{who}: {}",
        steps[10]
    );
}

#[test]
fn sdk_clients_of_both_eras_get_filtered_lists_allowed_calls_refusals_and_masked_results() {
    let f = McpFixture::new(&[], "");
    let auto = f.run("auto", everyday_steps());
    assert_eq!(auto["protocol_version"], "2026-07-28", "{auto}");
    check_everyday(&auto, "python auto");
    let legacy = f.run("legacy", everyday_steps());
    assert_eq!(legacy["protocol_version"], "2025-11-25", "{legacy}");
    check_everyday(&legacy, "python legacy");
    if node_sdk().is_some() {
        let node = node_mcp_client(&f.url(), &f.token, &everyday_steps());
        check_everyday(&node, "typescript");
    } else {
        eprintln!("AIRLOCK_TEST_NODE not set: the TypeScript SDK client is skipped");
    }
    let calls = f.up.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("danger") || c.starts_with("echo")),
        "{calls:?}"
    );
    assert!(!f.up.dir.join("danger.ran").exists());
    assert!(calls.iter().any(|c| c == "add 2 40"), "{calls:?}");

    // What is recorded: each call with its decision and policy, each result's masking.
    let events = f.events();
    let denied = events
        .iter()
        .find(|e| e["statement"] == "tools/call danger")
        .unwrap_or_else(|| panic!("danger recorded: {events:#?}"));
    assert_eq!(denied["decision"], "deny");
    let allowed = events
        .iter()
        .find(|e| e["statement"] == "tools/call add")
        .unwrap();
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["detail"]["policies"], json!(["add"]));
    assert!(
        events.iter().any(|e| e["detail"]["masked"].is_object()),
        "a masked result is recorded with what was masked"
    );
    assert!(
        events.iter().any(|e| e["detail"]["hidden"]
            .as_array()
            .is_some_and(|h| h.contains(&json!("tools/danger")))),
        "hidden tools are recorded"
    );
    assert!(
        raw_pii(&Value::Array(events)).is_empty(),
        "the recording holds no raw PII"
    );
}

#[test]
fn stateless_json_upstreams_serve_both_eras_the_same() {
    let f = McpFixture::new(&["--stateless", "--json-response"], "");
    for mode in ["auto", "legacy"] {
        let out = f.run(mode, everyday_steps());
        check_everyday(&out, &format!("{mode} against a stateless JSON upstream"));
    }
}

fn pending_approval(f: &McpFixture) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out =
            f.gw.cli_ok(&["approvals", "list", "--status", "pending", "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        if let Some(first) = v["approvals"].as_array().and_then(|a| a.first()) {
            return first.clone();
        }
        assert!(Instant::now() < deadline, "no pending approval");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_held_call_waits_for_approval_and_runs_once() {
    let f = McpFixture::new(&[], "");
    let dba = f.gw.token("dana", &["dba"]);
    for (mode, id) in [("legacy", 7), ("auto", 8)] {
        // The client asks for progress: it hears what its call waits for.
        let steps = json!([{"op": "list_tools"}, {"op": "call", "name": "delete_customer", "args": {"id": id}, "progress": true}]);
        let client = spawn_mcp_client(&f.url(), &f.token, mode, &steps);
        let approval = pending_approval(&f);
        assert_eq!(approval["statement"], "tools/call delete_customer");
        assert_eq!(approval["params"]["arguments"]["id"], id);
        std::thread::sleep(Duration::from_millis(300));
        let ran = format!("delete_customer {id}");
        assert!(!f.up.calls().contains(&ran), "{mode}: ran before approval");
        let out =
            f.gw.cli(&["approve", approval["id"].as_str().unwrap(), "--token", &dba]);
        assert!(out.status.success(), "{out:?}");
        let result = finish_client(client);
        let call = &result["steps"][1];
        assert_eq!(call["is_error"], false, "{mode}: {result}");
        assert!(
            call["text"]
                .as_str()
                .unwrap()
                .contains(&format!("deleted customer {id}"))
        );
        assert_eq!(
            f.up.calls().iter().filter(|c| **c == ran).count(),
            1,
            "{mode}: ran once"
        );
        let progress = call["progress"].to_string();
        assert!(
            progress.contains(approval["id"].as_str().unwrap()),
            "{mode}: progress names the approval: {call}"
        );
    }
    // Denied by the approver: the model reads why, the upstream never sees it.
    let steps =
        json!([{"op": "list_tools"}, {"op": "call", "name": "delete_customer", "args": {"id": 9}}]);
    let client = spawn_mcp_client(&f.url(), &f.token, "auto", &steps);
    let approval = pending_approval(&f);
    let out = f.gw.cli(&[
        "deny",
        approval["id"].as_str().unwrap(),
        "--token",
        &dba,
        "--reason",
        "not this one",
    ]);
    assert!(out.status.success(), "{out:?}");
    let result = finish_client(client);
    let call = &result["steps"][1];
    assert_eq!(call["is_error"], true, "{result}");
    assert!(
        call["text"].as_str().unwrap().contains("not this one"),
        "{call}"
    );
    assert!(!f.up.calls().iter().any(|c| c == "delete_customer 9"));
}

#[test]
fn a_held_call_past_the_hold_timeout_says_it_is_pending_with_the_approval_id() {
    let f = McpFixture::new(&[], "hold_timeout = \"2s\"");
    let out = f.run(
        "auto",
        json!([{"op": "list_tools"}, {"op": "call", "name": "delete_customer", "args": {"id": 5}}]),
    );
    let call = &out["steps"][1];
    assert_eq!(call["is_error"], true, "{out}");
    let text = call["text"].as_str().unwrap();
    let approval = pending_approval(&f);
    assert!(text.contains(approval["id"].as_str().unwrap()), "{text}");
    assert!(!f.up.calls().iter().any(|c| c == "delete_customer 5"));
}

#[test]
fn a_tool_changed_upstream_is_blocked_until_an_operator_accepts_it() {
    let f = McpFixture::new(&[], "pin_tools = true");
    let steps = json!([
        {"op": "list_tools"},
        {"op": "call", "name": "lookup_customer", "args": {"id": 1}}
    ]);
    let first = f.run("legacy", steps.clone());
    assert_eq!(first["steps"][1]["is_error"], false, "{first}");
    f.up.flip(false);
    let changed = f.run("legacy", steps.clone());
    let names: Vec<&str> = changed["steps"][0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"lookup_customer"),
        "the changed tool is hidden: {names:?}"
    );
    assert!(names.contains(&"add"));
    let call = &changed["steps"][1];
    assert!(
        call["is_error"] == true || call.get("error").is_some(),
        "{changed}"
    );
    let before =
        f.up.calls()
            .iter()
            .filter(|c| c.starts_with("lookup_customer"))
            .count();
    assert_eq!(before, 1, "the changed tool did not run");

    let listed: Value = serde_json::from_str(
        &f.gw
            .cli_ok(&["mcp", "tools", "list", "--target", "tools", "--json"]),
    )
    .unwrap();
    let lookup = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "lookup_customer")
        .unwrap()
        .clone();
    assert_eq!(lookup["state"], "changed", "{listed}");
    assert!(
        lookup["listed_description"]
            .as_str()
            .unwrap()
            .contains("danger")
    );
    let accepted: Value = serde_json::from_str(
        &f.gw
            .cli_ok(&["mcp", "tools", "accept", "--target", "tools", "--json"]),
    )
    .unwrap();
    assert_eq!(accepted["accepted"], json!(["lookup_customer"]));
    std::thread::sleep(Duration::from_millis(1200));
    let after = f.run("legacy", steps);
    assert_eq!(
        after["steps"][1]["is_error"], false,
        "accepted without a restart: {after}"
    );
    let events = f.events();
    assert!(
        events
            .iter()
            .any(|e| e["detail"]["tools_changed"] == json!(["lookup_customer"])),
        "the change is recorded"
    );
}

fn post(f: &McpFixture, token: Option<&str>, body: &str, extra: &[&str]) -> (u16, String, String) {
    let mut args = vec![
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-H",
        "accept: application/json, text/event-stream",
        "--data-binary",
        body,
    ];
    args.extend_from_slice(extra);
    curl_with(&f.url(), token, &args)
}

#[test]
fn ambiguous_or_malformed_messages_are_refused_before_the_upstream() {
    let f = McpFixture::new(&[], "");
    // Listed once, so that `danger` is a known tool name.
    let listed = f.run("legacy", json!([{"op": "list_tools"}]));
    assert!(listed["steps"][0]["tools"].is_array(), "{listed}");
    let tok = Some(f.token.as_str());
    let cases: [(&str, &str); 7] = [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","name":"danger","arguments":{}}}"#,
            "twice",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"danger","name":"add"}}"#,
            "Name",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"danger"}}"#,
            "id",
        ),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"danger"}}]"#,
            "batch",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"danger"}"#,
            "JSON",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"admin/run","params":{}}"#,
            "admin/run",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"danger "}}"#,
            "danger ",
        ),
    ];
    for (body, says) in cases {
        let (code, _, answer) = post(&f, tok, body, &[]);
        assert!(code == 400 || code == 200, "{body}: {code} {answer}");
        assert!(
            answer.contains(says),
            "{body}: the answer says why: {answer}"
        );
        assert!(answer.contains("airlock"), "{answer}");
    }
    // The 2026 era's headers must match the body.
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"danger","arguments":{}}}"#;
    let (code, _, answer) = post(
        &f,
        tok,
        call,
        &[
            "-H",
            "mcp-method: tools/call",
            "-H",
            "mcp-name: add",
            "-H",
            "mcp-protocol-version: 2026-07-28",
        ],
    );
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("Mcp-Name"), "{answer}");
    assert!(!f.up.dir.join("danger.ran").exists());
    assert!(
        !f.up.calls().iter().any(|c| c.starts_with("danger")),
        "{:?}",
        f.up.calls()
    );

    // No token, a bad token: 401 with the protected-resource metadata's address.
    for token in [None, Some("alk_not-a-token")] {
        let (code, headers, body) = post(&f, token, call, &[]);
        assert_eq!(code, 401, "{token:?}: {headers} {body}");
        let lower = headers.to_ascii_lowercase();
        assert!(lower.contains("www-authenticate: bearer"), "{headers}");
        assert!(
            lower.contains("resource_metadata=\"https://127.0.0.1:"),
            "{headers}"
        );
    }
    let (code, _, doc) = curl_with(
        &format!(
            "https://127.0.0.1:{}/.well-known/oauth-protected-resource/tools",
            f.gw.http_port
        ),
        None,
        &[],
    );
    assert_eq!(code, 200, "{doc}");
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        doc["resource"],
        format!("https://127.0.0.1:{}/tools", f.gw.http_port)
    );
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
}

#[test]
fn another_agent_cannot_ride_a_session_by_its_id() {
    let f = McpFixture::new(&[], "");
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;
    let (code, headers, _) = post(&f, Some(&f.token), init, &[]);
    assert_eq!(code, 200);
    let sid = headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("mcp-session-id:")
                .map(|v| v.trim().to_owned())
        })
        .expect("the upstream's session id is passed on");
    let other = f.gw.token("mallory", &["ai-agents"]);
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let h = format!("mcp-session-id: {sid}");
    let (code, _, answer) = post(
        &f,
        Some(&other),
        list,
        &["-H", &h, "-H", "mcp-protocol-version: 2025-06-18"],
    );
    assert_eq!(code, 404, "{answer}");
    let (code, _, answer) = post(
        &f,
        Some(&f.token),
        list,
        &["-H", &h, "-H", "mcp-protocol-version: 2025-06-18"],
    );
    assert_eq!(code, 200, "the owner goes on: {answer}");
    assert!(answer.contains("lookup_customer"), "{answer}");
}

#[test]
fn the_upstream_dying_mid_call_is_an_error_and_the_gateway_goes_on() {
    let mut f = McpFixture::new(&[], "");
    let out = f.run(
        "legacy",
        json!([{"op": "list_tools"}, {"op": "call", "name": "die", "args": {}, "timeout": 20}]),
    );
    let call = &out["steps"][1];
    assert!(
        call.get("error").is_some() || call["is_error"] == true,
        "{out}"
    );
    assert!(!f.up.alive(), "the upstream died");
    // The gateway still answers, and says the upstream is gone.
    let (code, _, answer) = post(
        &f,
        Some(&f.token.clone()),
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#,
        &[],
    );
    assert_eq!(code, 502, "{answer}");
    assert!(answer.contains("tools"), "{answer}");
    let events = f.events();
    assert!(
        events.iter().any(|e| e["statement"] == "tools/call die"),
        "{events:#?}"
    );
}

#[test]
fn a_stdio_upstream_runs_per_session_with_only_its_own_environment() {
    let state = airlock_testkit::scratch_dir("mcp-stdio");
    let command: Vec<String> = airlock_testkit::mcp_stdio_command(&state)
        .into_iter()
        .map(|a| format!("{a:?}"))
        .collect();
    let gw = AirlockBuilder::new(bin())
        .http()
        .policy(Some(&format!(
            "{MCP_POLICY}\n@id(\"env\")\npermit(principal in Group::\"ai-agents\", action == Mcp::Action::\"call\", resource == Mcp::Tool::\"tools/env_value\");"
        )))
        .raw_target(&format!(
            "[[targets]]\nname = \"tools\"\nkind = \"mcp\"\ncommand = [{}]\nenv = {{ API_KEY = \"env:T_TOOLS_KEY\", MODE = \"read-only\" }}\n",
            command.join(", ")
        ))
        .env("T_TOOLS_KEY", "tools-key-5d1e9a7c")
        .env("AIRLOCK_LEAK_CHECK", "gateway-only")
        .start();
    let token = gw.token("crew", &["ai-agents"]);
    let url = format!("https://127.0.0.1:{}/tools", gw.http_port);
    let env = |name: &str| json!({"op": "call", "name": "env_value", "args": {"name": name}});
    for mode in ["legacy", "auto"] {
        let out = mcp_client(
            &url,
            &token,
            mode,
            &json!([
                {"op": "list_tools"},
                {"op": "call", "name": "add", "args": {"a": 2, "b": 40}},
                {"op": "call", "name": "danger", "args": {}},
                {"op": "call", "name": "lookup_customer", "args": {"id": 1}},
                env("MODE"),
                env("API_KEY"),
                env("AIRLOCK_LEAK_CHECK"),
                {"op": "call", "name": "die", "args": {}, "timeout": 20},
                {"op": "list_tools"},
                {"op": "call", "name": "add", "args": {"a": 1, "b": 1}}
            ]),
        );
        let s = out["steps"]
            .as_array()
            .unwrap_or_else(|| panic!("{mode}: {out}"));
        assert!(
            s[1]["text"].as_str().unwrap_or("").contains("42"),
            "{mode}: {out}"
        );
        assert!(
            s[2]["is_error"] == true || s[2].get("error").is_some(),
            "{mode}: {}",
            s[2]
        );
        assert!(
            raw_pii(&s[3]).is_empty() && s[3].to_string().contains("Lovelace"),
            "{mode}: {}",
            s[3]
        );
        assert_eq!(s[4]["text"], "read-only", "{mode}: {}", s[4]);
        let key = s[5].to_string();
        assert!(
            !key.contains("tools-key-5d1e9a7c"),
            "{mode}: the secret is scrubbed: {key}"
        );
        assert_eq!(
            s[6]["text"], "",
            "{mode}: Airlock's own environment is not passed: {}",
            s[6]
        );
        assert!(
            s[7].get("error").is_some() || s[7]["is_error"] == true,
            "{mode}: {}",
            s[7]
        );
        if mode == "auto" {
            assert!(
                s[9]["text"].as_str().unwrap_or("").contains('2'),
                "{mode}: a new process serves: {out}"
            );
        } else {
            // The session lived in the process: the client is told to start a new one.
            assert!(
                s[8].to_string().contains("initialize a new session") || s[8]["tools"].is_array(),
                "{mode}: {}",
                s[8]
            );
        }
    }
    assert!(!state.join("danger.ran").exists());
}

#[test]
fn an_older_sse_only_upstream_is_reached_with_the_sse_transport() {
    let f = McpFixture::new(&["--sse"], "");
    for mode in ["legacy", "auto"] {
        let out = f.run(mode, everyday_steps());
        // The SDK's SSE server also answers server/discover: auto mode gets 2026-07-28.
        let want = if mode == "legacy" {
            "2025-11-25"
        } else {
            "2026-07-28"
        };
        assert_eq!(out["protocol_version"], want, "{mode}: {out}");
        check_everyday(&out, &format!("{mode} against an SSE upstream"));
    }
    assert!(!f.up.dir.join("danger.ran").exists());
    assert!(f.up.calls().iter().any(|c| c == "add 2 40"));
}

#[test]
fn airlock_check_checks_mcp_targets() {
    let check = |target: &str| {
        let gw = AirlockBuilder::new(bin())
            .http()
            .policy(Some(MCP_POLICY))
            .raw_target(target)
            .write();
        let out = gw.cli(&["check"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = check(
        "[[targets]]\nname = \"tools\"\nkind = \"mcp\"\ncommand = [\"sh\", \"-c\", \"cat\"]\nenv = { MODE = \"x\" }\npin_tools = true\n",
    );
    assert_eq!(ok.0, Some(0), "{}", ok.1);
    let (code, err) = check(
        "[[targets]]\nname = \"tools\"\nkind = \"mcp\"\ncommand = [\"/nonexistent/mcp-server\"]\n",
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("/nonexistent/mcp-server") && err.contains("not found"),
        "{err}"
    );
    let (code, err) = check(
        "[[targets]]\nname = \"tools\"\nkind = \"mcp\"\ncommand = [\"sh\"]\nenv = { KEY = \"env:AIRLOCK_SURELY_UNSET_KEY\" }\n",
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("AIRLOCK_SURELY_UNSET_KEY"), "{err}");
    let (code, err) = check(
        "[[targets]]\nname = \"tools\"\nkind = \"mcp\"\nurl = \"http://127.0.0.1:1/mcp\"\ncommand = [\"sh\"]\n",
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("not both"), "{err}");
}

/// An agent's W3C trace context reaches the recording: from the `traceparent` header of
/// its POST, or from a message's `_meta.traceparent` (which wins over the header).
#[test]
fn an_mcp_agents_traceparent_is_recorded_on_its_messages() {
    let f = McpFixture::new(&["--stateless", "--json-response"], "");
    let tok = Some(f.token.as_str());
    let from_header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let from_meta = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (code, _, answer) = post(
        &f,
        tok,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        &["-H", &format!("traceparent: {from_header}")],
    );
    assert_eq!(code, 200, "{answer}");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"add","arguments":{{"a":1,"b":2}},"_meta":{{"traceparent":"{from_meta}"}}}}}}"#
    );
    let (code, _, answer) = post(
        &f,
        tok,
        &body,
        &["-H", &format!("traceparent: {from_header}")],
    );
    assert_eq!(code, 200, "{answer}");
    let events = f.events();
    let traced = |tp: &str, what: &str| {
        events.iter().any(|e| {
            e["detail"]["traceparent"] == tp && e["statement"].as_str().unwrap_or("").contains(what)
        })
    };
    assert!(traced(from_header, "tools/list"), "{events:?}");
    assert!(traced(from_meta, "add"), "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| e["detail"]["traceparent"] == from_header
                && e["statement"].as_str().unwrap_or("").contains("add")),
        "the message's own context wins: {events:?}"
    );
}
