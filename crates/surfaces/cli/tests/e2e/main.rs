//! End-to-end tests: the built `airlock` binary between real clients (psql, psycopg, a
//! raw protocol client) and a real PostgreSQL server, all on loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod audit;
mod cli;
mod cli_kubeconfig;
mod cli_policy;
mod console;
mod crewai;
mod http_attacks;
mod http_holds;
mod http_masking;
mod http_proxy;
mod http_stream;
mod identity;
mod kubernetes;
mod masking_discover;
mod mcp_gateway;
mod mcp_own;
mod operations;
mod postgres_approvals;
mod postgres_auth;
mod postgres_failures;
mod postgres_faults;
mod postgres_malformed;
mod postgres_masking;
mod postgres_policy;
mod postgres_pool;
mod postgres_relay;
mod postgres_reload;
mod postgres_stream;
mod postgres_transparency;
mod postgres_upstream;
mod quickstart;
mod raw;
mod replicas;
mod secrets;
mod store_admin;
mod telemetry;

use std::process::{Command, Stdio};

use airlock_testkit::{Airlock, AirlockBuilder, Postgres};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_airlock")
}

/// A gateway with one target `shop` on a fresh copy of the sample database, and a token
/// for principal `agent` in group `ai-agents`.
pub struct Fixture {
    pub gw: Airlock,
    pub db: String,
    pub token: String,
}

impl Fixture {
    pub fn new(prefix: &str) -> Fixture {
        Self::with(prefix, |b| b)
    }

    pub fn with(prefix: &str, customize: impl FnOnce(AirlockBuilder) -> AirlockBuilder) -> Fixture {
        let pg = Postgres::shared();
        let db = pg.create_database(prefix);
        let gw = customize(AirlockBuilder::new(bin()).target("shop", pg, &db)).start();
        let token = gw.token("agent", &["ai-agents"]);
        Fixture { gw, db, token }
    }

    pub fn conn(&self) -> String {
        self.gw.conn("shop", &self.token)
    }
}

/// Runs a psycopg scenario from `tests/clients/python/pg_client.py`; returns its JSON.
pub fn py(scenario: &str, conn: &str) -> serde_json::Value {
    py_env(scenario, conn, &[])
}

/// [`py`] with extra environment variables for the scenario.
pub fn py_env(scenario: &str, conn: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let script = airlock_testkit::workspace_root().join("tests/clients/python/pg_client.py");
    let out = Command::new(airlock_testkit::python())
        .arg(script)
        .arg(scenario)
        .envs(env.iter().copied())
        .env("AIRLOCK_CONN", conn)
        .stdin(Stdio::null())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "scenario {scenario} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(out.stdout.trim_ascii()).expect("scenario prints JSON")
}

/// Runs an interactive psycopg scenario (`session_alive`, `second_statement`): it prints
/// "ready" after its first statement, then `between` runs, then it is told to go on.
/// Returns its JSON.
pub fn py_interactive(scenario: &str, conn: &str, between: impl FnOnce()) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Read, Write};
    let script = airlock_testkit::workspace_root().join("tests/clients/python/pg_client.py");
    let mut child = Command::new(airlock_testkit::python())
        .arg(script)
        .arg(scenario)
        .env("AIRLOCK_CONN", conn)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read ready");
    assert_eq!(line.trim(), "ready", "scenario {scenario} did not start");
    between();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("tell it to go on");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read result");
    assert!(
        child.wait().expect("wait").success(),
        "scenario {scenario} failed: {rest}"
    );
    serde_json::from_str(rest.trim()).expect("scenario prints JSON")
}

/// Waits for a client process started in the background: whether it succeeded, its
/// standard output and its standard error.
pub fn finish(child: std::process::Child) -> (bool, String, String) {
    let out = child.wait_with_output().expect("client output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The events of a session, by kind.
pub fn events_of<'a>(session: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    session["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// psql running one command in the background (`-X -At -v ON_ERROR_STOP=1`).
pub fn psql_bg(conn: &str, sql: &str) -> std::process::Child {
    Command::new("psql")
        .arg(conn)
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn psql")
}

/// The id of the pending approval request for `statement`, as `gw`'s CLI lists it
/// (waits up to 20 s for it to appear).
pub fn pending_for(gw: &airlock_testkit::Airlock, statement: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = gw.cli_ok(&["approvals", "list", "--status", "pending", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("approvals list --json");
        if let Some(a) = v["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["statement"].as_str() == Some(statement))
        {
            return a["id"].as_str().unwrap_or_default().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{statement}` never pending"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Polls `ok` every 100 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: std::time::Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if ok() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
