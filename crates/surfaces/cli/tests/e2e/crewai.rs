//! The CrewAI crew of `examples/crewai` end to end: a real crew (crewai 1.15.30 in its
//! own venv, a scripted LLM) whose agent takes an OIDC client-credentials token from the
//! real IdP, uses Airlock's own MCP server and an HTTP target, reads masked customer
//! data, has a DELETE held and approved by a human over the admin API, and has a DROP
//! denied, which it reports. The recording is checked afterwards.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock_testkit::{AirlockBuilder, HttpApi, Idp, Postgres, UP_BEARER, workspace_root};
use serde_json::Value;

use crate::bin;

fn crew_python() -> Option<String> {
    std::env::var("AIRLOCK_TEST_CREWAI_PYTHON").ok()
}

#[test]
fn a_crewai_crew_works_through_airlock_and_its_run_is_recorded() {
    let Some(python) = crew_python() else {
        eprintln!(
            "AIRLOCK_TEST_CREWAI_PYTHON not set (scripts/test sets it): the CrewAI crew is skipped"
        );
        return;
    };
    let idp = Idp::start("crew");
    let pg = Postgres::shared();
    let db = pg.create_database("crewai");
    let api = HttpApi::start();
    let api_port = airlock_testkit::free_port();
    let policy =
        std::fs::read_to_string(workspace_root().join("examples/crewai/policies/crew.cedar"))
            .unwrap();
    let gw = AirlockBuilder::new(bin())
        .http()
        .policy(Some(&policy))
        .target("shop", pg, &db)
        .raw_target(&format!(
            "[[targets]]\nname = \"billing\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{}/api\"\nauth = {{ bearer = \"env:T_BEARER\" }}\n",
            api.port
        ))
        .env("T_BEARER", UP_BEARER)
        .extra(&format!(
            "\n[identity]\n[[identity.oidc]]\nname = \"local\"\nissuer = \"{}\"\naudiences = [\"urn:airlock\"]\nprincipal_claim = \"client_id\"\ngroups_claim = \"groups\"\n\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n",
            idp.issuer()
        ))
        .start();
    airlock_testkit::wait_port(api_port, Duration::from_secs(10)).unwrap();
    let dba = gw.token("dana", &["dba"]);
    let mut crew = Command::new(&python)
        .arg(workspace_root().join("examples/crewai/crew.py"))
        .env(
            "AIRLOCK_MCP_URL",
            format!("https://127.0.0.1:{}/mcp", gw.http_port),
        )
        .env("OIDC_ISSUER", idp.issuer())
        .env("OIDC_CLIENT_ID", "agent-1")
        .env("OIDC_CLIENT_SECRET", "agent-1-secret")
        .env("AIRLOCK_CREW_LLM", "scripted")
        .env("HTTP_PATH", "/v1/people")
        .env("DELETE_SQL", "DELETE FROM customers WHERE id = 2")
        .env_remove("OPENAI_API_KEY")
        .env_remove("CREWAI_MODEL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The human: approves the held DELETE over the admin API once it is pending.
    let deadline = Instant::now() + Duration::from_secs(180);
    let approved = loop {
        let out = Command::new("curl")
            .args(["-sk", "-H", &format!("Authorization: Bearer {dba}")])
            .arg(format!(
                "https://127.0.0.1:{api_port}/api/approvals?status=pending"
            ))
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(a) = v["approvals"].as_array().and_then(|a| a.first()) {
            let id = a["id"].as_str().unwrap().to_owned();
            assert!(a["statement"].as_str().unwrap().contains("DELETE"), "{a}");
            assert_eq!(
                pg.sql_as("app", "apppw", &db, "select count(*) from customers")
                    .unwrap(),
                "2"
            );
            let out = Command::new("curl")
                .args([
                    "-sk",
                    "-X",
                    "POST",
                    "-H",
                    &format!("Authorization: Bearer {dba}"),
                ])
                .args([
                    "-H",
                    "content-type: application/json",
                    "-d",
                    r#"{"comment":"ok for the demo"}"#,
                ])
                .arg(format!(
                    "https://127.0.0.1:{api_port}/api/approvals/{id}/approve"
                ))
                .output()
                .unwrap();
            assert!(out.status.success());
            break id;
        }
        if let Ok(Some(status)) = crew.try_wait() {
            panic!("the crew ended ({status}) before anything was held");
        }
        assert!(Instant::now() < deadline, "nothing was held");
        std::thread::sleep(Duration::from_millis(500));
    };
    let out = crew.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the crew failed:\n{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("CREW_RESULT "))
        .unwrap_or_else(|| panic!("no CREW_RESULT:\n{stdout}\n{stderr}"));
    let result: Value = serde_json::from_str(line).unwrap();
    assert_eq!(result["ok"], true, "{result:#}");
    assert_eq!(result["identity"], "oidc");
    let text = result.to_string();
    assert!(
        !text.contains("ada@example.com") && !text.contains("alan@example.org"),
        "the crew saw no raw e-mail: {text}"
    );
    assert!(
        text.contains("Ada Lovelace"),
        "it read the customers: {text}"
    );
    let answer = result["final_answer"].as_str().unwrap_or("");
    assert!(
        answer.contains("airlock") || answer.to_lowercase().contains("denied"),
        "it reports the denial: {answer}"
    );
    assert_eq!(
        pg.sql_as("app", "apppw", &db, "select count(*) from customers")
            .unwrap(),
        "1",
        "the approved DELETE ran once; nothing was dropped"
    );

    // The recording: the agent's statements in its session of `shop`, in order.
    let session = gw.last_session_of("agent-1", "shop");
    let detail = gw.session(session["id"].as_str().unwrap());
    let events = detail["events"].as_array().unwrap();
    let statement = |needle: &str| {
        events
            .iter()
            .find(|e| {
                e["statement"]
                    .as_str()
                    .is_some_and(|s| s.to_uppercase().contains(needle))
            })
            .unwrap_or_else(|| panic!("{needle} recorded: {events:#?}"))
            .clone()
    };
    assert_eq!(statement("SELECT ID, NAME, EMAIL")["decision"], "allow");
    assert_eq!(statement("DELETE FROM CUSTOMERS")["decision"], "hold");
    assert_eq!(statement("DROP TABLE")["decision"], "deny");
    assert!(
        events
            .iter()
            .any(|e| e["detail"]["approval_id"] == approved.as_str()),
        "the approval is in the record"
    );
    let billing = gw.last_session_of("agent-1", "billing");
    assert_eq!(billing["principal"], "agent-1");
    let verify = gw.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
}
