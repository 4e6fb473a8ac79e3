//! MCP peers: the upstream MCP server of `tests/upstream/mcp_server.py` (the official
//! Python SDK 2.x; every call logged), and the scripted SDK clients (Python in both
//! protocol modes, and the TypeScript SDK from npm).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, python, scratch_dir, wait_port, workspace_root};

/// A running `mcp_server.py`, stopped when dropped.
pub struct McpServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its state folder (`calls.log`, `flip`, `danger.ran`).
    pub dir: PathBuf,
    child: Child,
}

impl McpServer {
    /// Starts the server with extra flags (`--stateless`, `--json-response`,
    /// `--bearer TOKEN`).
    pub fn start(flags: &[&str]) -> McpServer {
        let dir = scratch_dir("mcp-up");
        let port = free_port();
        let child = Command::new(python())
            .arg(workspace_root().join("tests/upstream/mcp_server.py"))
            .args(["--port", &port.to_string(), "--state"])
            .arg(&dir)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/upstream/mcp_server.py");
        wait_port(port, Duration::from_secs(30)).expect("the MCP server listens");
        McpServer { port, dir, child }
    }

    /// Its endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// The calls it ran, in order (`add 2 40`, `danger`...).
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Changes `lookup_customer`'s description (or, with `schema`, `add`'s schema) until
    /// [`McpServer::unflip`].
    pub fn flip(&self, schema: bool) {
        std::fs::write(
            self.dir.join(if schema { "flip_schema" } else { "flip" }),
            b"",
        )
        .unwrap();
    }

    /// Undoes [`McpServer::flip`].
    pub fn unflip(&self) {
        let _ = std::fs::remove_file(self.dir.join("flip"));
        let _ = std::fs::remove_file(self.dir.join("flip_schema"));
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command line that runs `mcp_server.py` over stdio (for a `command` target).
pub fn mcp_stdio_command(state: &std::path::Path) -> Vec<String> {
    vec![
        python().display().to_string(),
        workspace_root()
            .join("tests/upstream/mcp_server.py")
            .display()
            .to_string(),
        "--stdio".into(),
        "--state".into(),
        state.display().to_string(),
    ]
}

/// Runs the Python SDK client (`mode` "auto" or "legacy") through `steps`; its JSON.
pub fn mcp_client(
    url: &str,
    token: &str,
    mode: &str,
    steps: &serde_json::Value,
) -> serde_json::Value {
    let out = Command::new(python())
        .arg(workspace_root().join("tests/clients/python/mcp_client.py"))
        .args([url, token, mode, &steps.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run tests/clients/python/mcp_client.py");
    parse(&out, "python")
}

/// Runs `mcp_client` in the background (for a held call); collect it with
/// [`finish_client`].
pub fn spawn_mcp_client(url: &str, token: &str, mode: &str, steps: &serde_json::Value) -> Child {
    Command::new(python())
        .arg(workspace_root().join("tests/clients/python/mcp_client.py"))
        .args([url, token, mode, &steps.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tests/clients/python/mcp_client.py")
}

/// The JSON of a client started with [`spawn_mcp_client`].
pub fn finish_client(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("the MCP client ends");
    parse(&out, "python")
}

/// Whether the TypeScript SDK is installed (`AIRLOCK_TEST_NODE`, set by scripts/test).
pub fn node_sdk() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var("AIRLOCK_TEST_NODE").ok()?);
    dir.join("node_modules/@modelcontextprotocol/sdk")
        .exists()
        .then_some(dir)
}

/// Runs the TypeScript SDK client through `steps`; its JSON.
pub fn node_mcp_client(url: &str, token: &str, steps: &serde_json::Value) -> serde_json::Value {
    let out = Command::new("node")
        .arg(workspace_root().join("tests/clients/node/mcp_client.mjs"))
        .args([url, token, "auto", &steps.to_string()])
        .env("NODE_TLS_REJECT_UNAUTHORIZED", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run tests/clients/node/mcp_client.mjs");
    parse(&out, "node")
}

fn parse(out: &std::process::Output, which: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the {which} MCP client printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
