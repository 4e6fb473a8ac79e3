//! The Compose quick start (deploy/docker-compose.yml) run as processes on loopback by
//! `deploy/compose/run-as-processes.py`, since no container engine runs here: the
//! example agent takes a token from the IdP, reads masked customers through Airlock
//! (whose store is the compose file's PostgreSQL), and its DELETE waits until a DBA
//! approves it with the CLI.
//!
//! The airlock binary is `AIRLOCK_QUICKSTART_BIN` when set (scripts/test builds it the
//! way the Dockerfile does: `cargo build --release --locked --bin airlock`), else the
//! test build.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bin;

/// The runner, stopped (SIGTERM: it stops every service) when dropped.
struct QuickStart {
    runner: Child,
    work: PathBuf,
}

impl Drop for QuickStart {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.runner.id().to_string())
            .status();
        let _ = self.runner.wait();
    }
}

impl QuickStart {
    fn log(&self, service: &str) -> String {
        std::fs::read_to_string(self.work.join(format!("logs/{service}.log"))).unwrap_or_default()
    }
}

fn wait_for(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_compose_quick_start_runs_as_processes() {
    let root = airlock_testkit::workspace_root();
    let airlock = std::env::var("AIRLOCK_QUICKSTART_BIN").unwrap_or_else(|_| bin().to_owned());
    let python = airlock_testkit::python();
    let venv = python.parent().and_then(|b| b.parent()).unwrap().to_owned();
    let work = airlock_testkit::scratch_dir("quickstart");
    let runner = Command::new(&python)
        .arg(root.join("deploy/compose/run-as-processes.py"))
        .arg("--compose")
        .arg(root.join("deploy/docker-compose.yml"))
        .arg("--airlock")
        .arg(&airlock)
        .arg("--python-venv")
        .arg(&venv)
        .arg("--workdir")
        .arg(&work)
        .env_remove("AIRLOCK_STORE_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("runner.log")).unwrap())
        .spawn()
        .expect("run deploy/compose/run-as-processes.py");
    let mut qs = QuickStart { runner, work };
    let state_file = qs.work.join("state.json");
    wait_for(Duration::from_secs(240), "the services are up", || {
        if let Ok(Some(status)) = qs.runner.try_wait() {
            panic!(
                "the runner stopped ({status}): {}",
                std::fs::read_to_string(qs.work.join("runner.log")).unwrap_or_default()
            );
        }
        state_file.exists()
    });
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    let config = state["airlock_config"].as_str().unwrap().to_owned();
    let env: Vec<(String, String)> = state["airlock_env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let cli = |args: &[&str]| {
        let out = Command::new(&airlock)
            .args(args)
            .arg("--config")
            .arg(&config)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(out.status.success(), "airlock {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // The agent reads customers through Airlock: their PII masked.
    wait_for(Duration::from_secs(120), "the agent asks to delete", || {
        qs.log("agent").contains("asking to delete order 7")
    });
    let agent = qs.log("agent");
    assert!(agent.contains("Ada Lovelace"), "{agent}");
    for raw in ["ada@example.com", "4111 1111 1111 1111", "alan@example.org"] {
        assert!(
            !agent.contains(raw),
            "raw PII `{raw}` reached the agent: {agent}"
        );
    }

    // Its DELETE waits for a DBA, who approves it with the CLI; then it runs.
    let dba = cli(&["token", "create", "--name", "dana", "--group", "dba"]);
    let dba = dba.lines().last().unwrap().trim().to_owned();
    let mut id = String::new();
    wait_for(Duration::from_secs(30), "the DELETE is pending", || {
        let list: Value = serde_json::from_str(&cli(&[
            "approvals",
            "list",
            "--status",
            "pending",
            "--json",
        ]))
        .unwrap();
        if let Some(a) = list["approvals"].as_array().and_then(|a| a.first()) {
            assert_eq!(a["principal"], "agent-1", "{a}");
            id = a["id"].as_str().unwrap().to_owned();
        }
        !id.is_empty()
    });
    assert!(!qs.log("agent").contains("DELETE 1"), "ran before approval");
    cli(&["approve", &id, "--token", &dba]);
    wait_for(Duration::from_secs(20), "the approved DELETE runs", || {
        qs.log("agent").contains("DELETE 1")
    });

    // Recorded in the compose file's PostgreSQL store, and the chain verifies.
    let verify: Value = serde_json::from_str(&cli(&["audit", "verify", "--json"])).unwrap();
    assert_eq!(verify["ok"], true, "{verify}");
    let sessions: Value = serde_json::from_str(&cli(&["sessions", "list", "--json"])).unwrap();
    assert!(
        sessions
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["principal"] == "agent-1"),
        "{sessions}"
    );
    assert!(
        !qs.work.join("volumes/airlock-data/airlock.db").exists(),
        "no SQLite store: the compose file's PostgreSQL is the store"
    );
    let log = qs.log("airlock");
    assert!(log.contains("recording into a new chain"), "{log}");
}
