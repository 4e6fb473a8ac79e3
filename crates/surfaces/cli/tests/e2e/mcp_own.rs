//! Airlock's own MCP server at `/mcp`, with the official Python SDK in both eras and
//! the TypeScript SDK: `list_targets`, `sql_query` through the PostgreSQL relay (masked,
//! denied, held then approved, recorded in the target's session like psql's statements),
//! `http_request` through the HTTP path (credential added and scrubbed), and
//! `approval_status`.

use std::time::{Duration, Instant};

use airlock_testkit::{
    AirlockBuilder, HttpApi, Postgres, UP_BEARER, finish_client, mcp_client, node_mcp_client,
    node_sdk, spawn_mcp_client,
};
use serde_json::{Value, json};

use crate::bin;
use crate::postgres_policy::READ_ONLY;

const OWN_POLICY: &str = r#"
@id("connect-billing")
permit(principal in Group::"ai-agents", action == Action::"connect", resource == Target::"billing");
@id("delete-needs-dba")
@hold("dba")
permit(principal in Group::"ai-agents", action == Sql::Action::"delete", resource in Target::"shop");
@id("http-read")
permit(principal in Group::"ai-agents", action in Http::Action::"read", resource);
"#;

struct Own {
    gw: airlock_testkit::Airlock,
    db: String,
    api: HttpApi,
    token: String,
}

impl Own {
    fn new(extra: &str) -> Own {
        let pg = Postgres::shared();
        let db = pg.create_database("mcpown");
        let api = HttpApi::start();
        let gw = AirlockBuilder::new(bin())
            .http()
            .policy(Some(&format!("{READ_ONLY}{OWN_POLICY}")))
            .target("shop", pg, &db)
            .target_extra(extra)
            .raw_target(&format!(
                "[[targets]]\nname = \"billing\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{}/api\"\nauth = {{ bearer = \"env:T_BEARER\" }}\n",
                api.port
            ))
            .env("T_BEARER", UP_BEARER)
            .start();
        let token = gw.token("crew", &["ai-agents"]);
        Own { gw, db, api, token }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/mcp", self.gw.http_port)
    }

    fn customers(&self) -> String {
        Postgres::shared()
            .sql_as("app", "apppw", &self.db, "select count(*) from customers")
            .unwrap()
    }
}

fn sql(sql: &str) -> Value {
    json!({"op": "call", "name": "sql_query", "args": {"target": "shop", "sql": sql}})
}

fn steps() -> Value {
    json!([
        {"op": "list_tools"},
        {"op": "call", "name": "list_targets", "args": {}},
        sql("select id, name, email, card from customers order by id"),
        {"op": "call", "name": "sql_query", "args": {"target": "shop", "sql": "select name from customers where id = $1", "params": [2]}},
        sql("drop table customers"),
        {"op": "call", "name": "http_request", "args": {"target": "billing", "method": "GET", "path": "/v1/echo"}},
        {"op": "call", "name": "sql_query", "args": {"target": "billing", "sql": "select 1"}},
        {"op": "call", "name": "sql_query", "args": {"target": "shop", "sql": "select 1", "extra": true}}
    ])
}

fn check(out: &Value, who: &str) {
    let s = out["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: {out}"));
    let tools: Vec<&str> = s[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "list_targets",
            "sql_query",
            "http_request",
            "kubernetes",
            "approval_status"
        ],
        "{who}"
    );
    let targets = s[1]["structured"]["targets"].to_string();
    assert!(
        targets.contains("\"shop\"") && targets.contains("\"billing\""),
        "{who}: {}",
        s[1]
    );
    let rows = &s[2]["structured"]["rows"];
    assert_eq!(s[2]["is_error"], false, "{who}: {}", s[2]);
    assert_eq!(rows[0]["id"], 1, "{who}: typed rows: {rows}");
    assert_eq!(rows[0]["name"], "Ada Lovelace");
    let text = s[2].to_string();
    assert!(
        !text.contains("ada@example.com") && !text.contains("4111 1111 1111 1111"),
        "{who}: masked: {text}"
    );
    assert!(
        s[2]["text"].as_str().unwrap().contains("SELECT 2"),
        "{who}: {}",
        s[2]
    );
    assert_eq!(
        s[3]["structured"]["rows"][0]["name"], "Alan Turing",
        "{who}: params: {}",
        s[3]
    );
    assert_eq!(s[4]["is_error"], true, "{who}: {}", s[4]);
    assert!(
        s[4]["text"].as_str().unwrap().contains("airlock"),
        "{who}: {}",
        s[4]
    );
    let http = &s[5];
    assert_eq!(http["structured"]["status"], 200, "{who}: {http}");
    assert!(
        !http.to_string().contains(UP_BEARER),
        "{who}: the credential is scrubbed: {http}"
    );
    assert_eq!(s[6]["is_error"], true, "{who}: {}", s[6]);
    assert!(
        s[6]["text"].as_str().unwrap().contains("http_request"),
        "{who}: names the right tool: {}",
        s[6]
    );
    assert_eq!(s[7]["is_error"], true, "{who}: {}", s[7]);
}

#[test]
fn own_tools_reach_targets_through_the_native_paths() {
    let f = Own::new("");
    let auto = mcp_client(&f.url(), &f.token, "auto", &steps());
    assert_eq!(auto["protocol_version"], "2026-07-28", "{auto}");
    check(&auto, "python auto");
    let legacy = mcp_client(&f.url(), &f.token, "legacy", &steps());
    check(&legacy, "python legacy");
    if node_sdk().is_some() {
        check(&node_mcp_client(&f.url(), &f.token, &steps()), "typescript");
    }
    assert_eq!(f.customers(), "2", "nothing dropped");
    assert!(
        !f.api.raw_log().contains(&f.token),
        "the agent's token never reaches the API"
    );
    // Recorded in the targets' own sessions, as psql's and curl's would be.
    let sessions = f.gw.sessions();
    let shop = sessions
        .iter()
        .find(|s| s["principal"] == "crew" && s["target"] == "shop")
        .expect("a shop session");
    let detail = f.gw.session(shop["id"].as_str().unwrap());
    let events = detail["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["statement"] == "drop table customers"),
        "{events:#?}"
    );
    assert!(
        sessions
            .iter()
            .any(|s| s["principal"] == "crew" && s["target"] == "billing")
    );
    // Without a token: 401, with the metadata's address.
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-X",
            "POST",
            "-d",
            "{}",
        ])
        .arg(f.url())
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.contains(" 401"), "{head}");
    assert!(head.contains("resource_metadata="), "{head}");
}

fn first_pending(gw: &airlock_testkit::Airlock) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = serde_json::from_str(&gw.cli_ok(&[
            "approvals",
            "list",
            "--status",
            "pending",
            "--json",
        ]))
        .unwrap();
        if let Some(a) = v["approvals"].as_array().and_then(|a| a.first()) {
            return a.clone();
        }
        assert!(Instant::now() < deadline, "no pending approval");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_held_statement_waits_and_its_approval_is_visible_to_the_agent() {
    let f = Own::new("hold_timeout = \"60s\"");
    let dba = f.gw.token("dana", &["dba"]);
    let client = spawn_mcp_client(
        &f.url(),
        &f.token,
        "auto",
        &json!([sql("delete from customers where id = 2")]),
    );
    let id = first_pending(&f.gw)["id"].as_str().unwrap().to_owned();
    assert_eq!(f.customers(), "2", "not run before approval");
    let status = mcp_client(
        &f.url(),
        &f.token,
        "legacy",
        &json!([{"op": "call", "name": "approval_status", "args": {"id": id}}]),
    );
    assert_eq!(
        status["steps"][0]["structured"]["status"], "pending",
        "{status}"
    );
    let out = f.gw.cli(&["approve", &id, "--token", &dba]);
    assert!(out.status.success(), "{out:?}");
    let done = finish_client(client);
    let step = &done["steps"][0];
    assert_eq!(step["is_error"], false, "{done}");
    assert!(
        step["text"].as_str().unwrap().contains("DELETE 1"),
        "{step}"
    );
    assert_eq!(f.customers(), "1", "ran once");
}

#[test]
fn a_held_statement_past_the_hold_timeout_names_its_approval() {
    let f = Own::new("hold_timeout = \"1s\"");
    let out = mcp_client(
        &f.url(),
        &f.token,
        "auto",
        &json!([sql("delete from customers where id = 1")]),
    );
    let step = &out["steps"][0];
    assert_eq!(step["is_error"], true, "{out}");
    let pending = first_pending(&f.gw)["id"].as_str().unwrap().to_owned();
    assert!(step["text"].as_str().unwrap().contains(&pending), "{step}");
    assert_eq!(f.customers(), "2");
}
