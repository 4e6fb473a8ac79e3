//! Upstream MCP servers reached over a message channel rather than streamable HTTP,
//! one channel per session, relayed to and from the agent's streamable HTTP:
//!
//! - stdio (`command = [...]`): a process per session. It gets only the environment
//!   the target gives it (`env`, secret references resolved) plus `PATH`, never
//!   Airlock's own. Messages are written one JSON text per line.
//! - the older HTTP+SSE transport (2024-11-05), found when the target's `url` refuses a
//!   POST: a GET of the URL opens the event stream, whose first `endpoint` event names
//!   where messages are POSTed; answers come on the stream.
//!
//! Answers are matched to requests by id. Anything else the server says (logs,
//! progress, its own requests) is not relayed: the agent's HTTP exchange carries its
//! answer only. When the channel ends, the requests waiting on it fail with that news,
//! and the session's next request opens a new one.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use airlock_config::EnvValue;
use airlock_session::Target;
use hyper::header::{HeaderName, HeaderValue};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

use crate::body::{ResponseBody, ResponseBodyExt};

/// Longest line accepted from the process.
const MAX_LINE: usize = 16 * 1024 * 1024;

type Waiters = Arc<Mutex<Option<HashMap<String, oneshot::Sender<Value>>>>>;

/// Where messages are written.
enum Writer {
    /// A process's standard input.
    Stdin(tokio::sync::Mutex<ChildStdin>),
    /// POSTs to the endpoint an SSE stream named.
    Post {
        client: Box<crate::upstream::UpstreamClient>,
        endpoint: String,
        credential: Option<(HeaderName, HeaderValue)>,
    },
}

/// A running message channel to an MCP server.
pub struct Channel {
    writer: Writer,
    /// Requests waiting for their answer, by id (as JSON text); `None` once the
    /// process ended.
    waiting: Waiters,
    /// Why the process ended, once it did.
    ended: Arc<Mutex<Option<String>>>,
    /// The process (stdio) or the stream's reader (SSE), stopped when dropped.
    _keep: Keep,
}

enum Keep {
    Child(#[allow(dead_code)] Child),
    Task(tokio::task::AbortHandle),
}

impl Drop for Keep {
    fn drop(&mut self) {
        if let Keep::Task(t) = self {
            t.abort();
        }
    }
}

/// Why a message got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("the MCP server could not be reached: {0}")]
    Spawn(String),
    #[error("the MCP server's channel ended ({0}) before it answered")]
    Ended(String),
    #[error("sending to the MCP server failed: {0}")]
    Write(String),
}

impl Channel {
    /// Starts the target's command.
    pub fn spawn(target: &Target) -> Result<Channel, ChannelError> {
        let command = &target.config.command;
        let (program, args) = command
            .split_first()
            .ok_or_else(|| ChannelError::Spawn("no command".into()))?;
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
                        .map_err(|e| ChannelError::Spawn(format!("env {name}: {e}")))?;
                    cmd.env(name, secret.expose());
                }
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ChannelError::Spawn(format!("{program}: {e}")))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ChannelError::Spawn("no pipes".into()));
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
        Ok(Channel {
            writer: Writer::Stdin(tokio::sync::Mutex::new(stdin)),
            waiting,
            ended,
            _keep: Keep::Child(child),
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
    ) -> Result<Vec<Value>, ChannelError> {
        let mut receivers = Vec::new();
        {
            let mut w = self
                .waiting
                .lock()
                .map_err(|_| ChannelError::Ended("poisoned".into()))?;
            let Some(map) = w.as_mut() else {
                return Err(ChannelError::Ended(self.why()));
            };
            for id in ids {
                let (tx, rx) = oneshot::channel();
                map.insert(id.clone(), tx);
                receivers.push(rx);
            }
        }
        self.write(messages).await?;
        let mut answers = Vec::new();
        for rx in receivers {
            answers.push(rx.await.map_err(|_| ChannelError::Ended(self.why()))?);
        }
        Ok(answers)
    }

    async fn write(&self, messages: &[Value]) -> Result<(), ChannelError> {
        match &self.writer {
            Writer::Stdin(stdin) => {
                let mut stdin = stdin.lock().await;
                for m in messages {
                    let mut line = m.to_string();
                    line.push('\n');
                    stdin
                        .write_all(line.as_bytes())
                        .await
                        .map_err(|e| ChannelError::Write(e.to_string()))?;
                }
                stdin
                    .flush()
                    .await
                    .map_err(|e| ChannelError::Write(e.to_string()))
            }
            Writer::Post {
                client,
                endpoint,
                credential,
            } => {
                for m in messages {
                    let mut req = hyper::Request::builder()
                        .method(hyper::Method::POST)
                        .uri(endpoint.as_str())
                        .header(hyper::header::CONTENT_TYPE, "application/json")
                        .body(<ResponseBody as ResponseBodyExt>::full(bytes::Bytes::from(
                            m.to_string(),
                        )))
                        .map_err(|e| ChannelError::Write(e.to_string()))?;
                    if let Some((n, v)) = credential {
                        req.headers_mut().insert(n.clone(), v.clone());
                    }
                    let r = client
                        .request(req)
                        .await
                        .map_err(|e| ChannelError::Write(e.to_string()))?;
                    if !r.status().is_success() {
                        return Err(ChannelError::Write(format!(
                            "the endpoint answered HTTP {}",
                            r.status()
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// Opens the older HTTP+SSE transport at `url`: the stream, then its endpoint.
    pub async fn open_sse(
        client: crate::upstream::UpstreamClient,
        url: &str,
        credential: Option<(HeaderName, HeaderValue)>,
    ) -> Result<Channel, ChannelError> {
        let mut req = hyper::Request::builder()
            .method(hyper::Method::GET)
            .uri(url)
            .header(hyper::header::ACCEPT, "text/event-stream")
            .body(<ResponseBody as ResponseBodyExt>::empty())
            .map_err(|e| ChannelError::Spawn(e.to_string()))?;
        if let Some((n, v)) = &credential {
            req.headers_mut().insert(n.clone(), v.clone());
        }
        let response = client
            .request(req)
            .await
            .map_err(|e| ChannelError::Spawn(e.to_string()))?;
        let is_sse = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !response.status().is_success() || !is_sse {
            return Err(ChannelError::Spawn(format!(
                "neither streamable HTTP nor an SSE stream at the url (GET answered HTTP {})",
                response.status()
            )));
        }
        let mut events = SseEvents::new(response.into_body());
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
            .await
            .map_err(|_| {
                ChannelError::Spawn("the SSE stream named no endpoint within 10 s".into())
            })?;
        let endpoint = match first {
            Some((event, data)) if event == "endpoint" => resolve_endpoint(url, data.trim())
                .ok_or_else(|| {
                    ChannelError::Spawn(format!(
                        "the SSE endpoint `{}` is not on the server's origin",
                        data.trim()
                    ))
                })?,
            _ => {
                return Err(ChannelError::Spawn(
                    "the SSE stream did not start with an endpoint event".into(),
                ));
            }
        };
        let waiting: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let ended = Arc::new(Mutex::new(None));
        let task = {
            let waiting = waiting.clone();
            let ended = ended.clone();
            tokio::spawn(async move {
                while let Some((event, data)) = events.next().await {
                    if event == "message"
                        && let Ok(value) = serde_json::from_str::<Value>(&data)
                    {
                        dispatch(value, &waiting);
                    }
                }
                if let Ok(mut e) = ended.lock() {
                    *e = Some("the SSE stream ended".into());
                }
                if let Ok(mut w) = waiting.lock() {
                    w.take();
                }
            })
        };
        Ok(Channel {
            writer: Writer::Post {
                client: Box::new(client),
                endpoint,
                credential,
            },
            waiting,
            ended,
            _keep: Keep::Task(task.abort_handle()),
        })
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
        dispatch(value, waiting);
    }
}

/// Hands an answer (an id and no method) to its waiter.
fn dispatch(value: Value, waiting: &Waiters) {
    if value.get("method").is_some() {
        return;
    }
    let Some(key) = value.get("id").map(Value::to_string) else {
        return;
    };
    let waiter = waiting
        .lock()
        .ok()
        .and_then(|mut w| w.as_mut().and_then(|m| m.remove(&key)));
    if let Some(tx) = waiter {
        let _ = tx.send(value);
    }
}

/// The endpoint an SSE stream named, as an absolute URL on the stream's own origin
/// (an endpoint elsewhere is refused: messages go where the target is).
fn resolve_endpoint(url: &str, endpoint: &str) -> Option<String> {
    let base = crate::upstream::Base::parse(url).ok()?;
    let origin = format!("{}://{}", base.scheme, base.authority);
    if endpoint.starts_with('/') && !endpoint.starts_with("//") {
        return Some(format!("{origin}{endpoint}"));
    }
    endpoint
        .strip_prefix(&origin)
        .filter(|rest| rest.starts_with('/'))
        .map(|_| endpoint.to_owned())
}

/// Server-Sent Events read from a body: `(event, data)` pairs, in order.
struct SseEvents {
    body: hyper::body::Incoming,
    pending: Vec<u8>,
    queue: std::collections::VecDeque<(String, String)>,
    event: String,
    data: Option<String>,
}

impl SseEvents {
    fn new(body: hyper::body::Incoming) -> Self {
        SseEvents {
            body,
            pending: Vec::new(),
            queue: std::collections::VecDeque::new(),
            event: String::new(),
            data: None,
        }
    }

    async fn next(&mut self) -> Option<(String, String)> {
        use http_body_util::BodyExt;
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            let frame = self.body.frame().await?.ok()?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            self.pending.extend_from_slice(&chunk);
            if self.pending.len() > MAX_LINE {
                return None;
            }
            while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8_lossy(&line).into_owned();
                if line.is_empty() {
                    if let Some(data) = self.data.take() {
                        let event = std::mem::take(&mut self.event);
                        self.queue.push_back((
                            if event.is_empty() {
                                "message".into()
                            } else {
                                event
                            },
                            data,
                        ));
                    }
                    self.event.clear();
                } else if let Some(v) = line.strip_prefix("data:") {
                    let v = v.strip_prefix(' ').unwrap_or(v);
                    match &mut self.data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(v);
                        }
                        None => self.data = Some(v.to_owned()),
                    }
                } else if let Some(v) = line.strip_prefix("event:") {
                    self.event = v.trim().to_owned();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_endpoint;

    #[test]
    fn an_sse_endpoint_stays_on_the_servers_origin() {
        let url = "http://127.0.0.1:8000/sse";
        assert_eq!(
            resolve_endpoint(url, "/messages/?session_id=1").as_deref(),
            Some("http://127.0.0.1:8000/messages/?session_id=1")
        );
        assert_eq!(
            resolve_endpoint(url, "http://127.0.0.1:8000/m").as_deref(),
            Some("http://127.0.0.1:8000/m")
        );
        assert_eq!(resolve_endpoint(url, "http://evil.example/m"), None);
        assert_eq!(resolve_endpoint(url, "//evil.example/m"), None);
        assert_eq!(
            resolve_endpoint(url, "http://127.0.0.1:8000@evil.example/m"),
            None
        );
    }
}
