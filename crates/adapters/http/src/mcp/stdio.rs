//! MCP servers spoken to over stdio (`command = [...]`): one process per session, its
//! messages relayed to and from the agent's streamable HTTP.
//!
//! The process gets only the environment the target gives it (`env`, secret references
//! resolved) plus `PATH`, never Airlock's own. Messages are written one JSON text per
//! line; answers are matched to requests by id. Anything else the process says (logs,
//! progress, its own requests) is not relayed: the agent's HTTP exchange carries its
//! answer only. When the process exits, the requests waiting on it fail with that news,
//! and the session's next request starts a new one.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use airlock_config::EnvValue;
use airlock_session::Target;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

/// Longest line accepted from the process.
const MAX_LINE: usize = 16 * 1024 * 1024;

type Waiters = Arc<Mutex<Option<HashMap<String, oneshot::Sender<Value>>>>>;

/// A running stdio MCP server.
pub struct StdioServer {
    stdin: tokio::sync::Mutex<ChildStdin>,
    /// Requests waiting for their answer, by id (as JSON text); `None` once the
    /// process ended.
    waiting: Waiters,
    /// Why the process ended, once it did.
    ended: Arc<Mutex<Option<String>>>,
    _child: Child,
}

/// Why a message got no answer.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("the MCP server process could not be started: {0}")]
    Spawn(String),
    #[error("the MCP server process ended ({0}) before answering")]
    Ended(String),
    #[error("writing to the MCP server process failed: {0}")]
    Write(String),
}

impl StdioServer {
    /// Starts the target's command.
    pub fn spawn(target: &Target) -> Result<StdioServer, StdioError> {
        let command = &target.config.command;
        let (program, args) = command
            .split_first()
            .ok_or_else(|| StdioError::Spawn("no command".into()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        for (name, value) in &target.config.env {
            match value {
                EnvValue::Plain(v) => {
                    cmd.env(name, v);
                }
                EnvValue::Secret(r) => {
                    let secret = airlock_vault::resolve(r)
                        .map_err(|e| StdioError::Spawn(format!("env {name}: {e}")))?;
                    cmd.env(name, secret.expose());
                }
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| StdioError::Spawn(format!("{program}: {e}")))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(StdioError::Spawn("no pipes".into()));
        };
        let waiting: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let ended = Arc::new(Mutex::new(None));
        let name = target.model.name.clone();
        {
            let waiting = waiting.clone();
            let ended = ended.clone();
            tokio::spawn(async move {
                let why = read_answers(stdout, &waiting).await;
                tracing::info!(target = %name, why = %why, "an MCP stdio server ended");
                if let Ok(mut e) = ended.lock() {
                    *e = Some(why);
                }
                // Dropping the senders wakes every waiter with the news.
                if let Ok(mut w) = waiting.lock() {
                    w.take();
                }
            });
        }
        let name = target.model.name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // Its log may hold what it was given: debug level, cut short.
                tracing::debug!(target = %name, line = %line.chars().take(200).collect::<String>(), "MCP stdio server stderr");
            }
        });
        Ok(StdioServer {
            stdin: tokio::sync::Mutex::new(stdin),
            waiting,
            ended,
            _child: child,
        })
    }

    /// Whether the process has ended.
    pub fn is_ended(&self) -> bool {
        self.ended.lock().map(|e| e.is_some()).unwrap_or(true)
    }

    /// Sends `messages` (one body: a message or a batch of notifications and
    /// responses) and waits for the answers to its requests (ids as JSON text).
    pub async fn exchange(
        &self,
        messages: &[Value],
        ids: &[String],
    ) -> Result<Vec<Value>, StdioError> {
        let mut receivers = Vec::new();
        {
            let mut w = self
                .waiting
                .lock()
                .map_err(|_| StdioError::Ended("poisoned".into()))?;
            let Some(map) = w.as_mut() else {
                return Err(StdioError::Ended(self.why()));
            };
            for id in ids {
                let (tx, rx) = oneshot::channel();
                map.insert(id.clone(), tx);
                receivers.push(rx);
            }
        }
        {
            let mut stdin = self.stdin.lock().await;
            for m in messages {
                let mut line = m.to_string();
                line.push('\n');
                stdin
                    .write_all(line.as_bytes())
                    .await
                    .map_err(|e| StdioError::Write(e.to_string()))?;
            }
            stdin
                .flush()
                .await
                .map_err(|e| StdioError::Write(e.to_string()))?;
        }
        let mut answers = Vec::new();
        for rx in receivers {
            answers.push(rx.await.map_err(|_| StdioError::Ended(self.why()))?);
        }
        Ok(answers)
    }

    fn why(&self) -> String {
        self.ended
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| "it exited".into())
    }
}

/// Reads the process's messages and hands each answer to its waiter; returns why the
/// stream ended.
async fn read_answers(stdout: tokio::process::ChildStdout, waiting: &Waiters) -> String {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) => return "it closed its output".into(),
            Ok(n) if n > MAX_LINE => return format!("it wrote a line over {MAX_LINE} bytes"),
            Ok(_) => {}
            Err(e) => return format!("reading its output failed: {e}"),
        }
        let Ok(value) = serde_json::from_slice::<Value>(&line) else {
            tracing::debug!("an MCP stdio server wrote a line that is not JSON");
            continue;
        };
        // An answer: it has an id and no method.
        if value.get("method").is_none()
            && let Some(id) = value.get("id")
        {
            let key = id.to_string();
            let waiter = waiting
                .lock()
                .ok()
                .and_then(|mut w| w.as_mut().and_then(|m| m.remove(&key)));
            if let Some(tx) = waiter {
                let _ = tx.send(value);
            }
        }
    }
}
