//! MCP targets (`kind = "mcp"`): the Model Context Protocol over streamable HTTP, served
//! at `https://<[http] listen>/<target>` and relayed to the upstream MCP server.
//!
//! Every message an agent posts is parsed strictly (`airlock_engine::mcp::jsonrpc`)
//! before anything is decided. Tool calls, resource reads and prompts are decided by
//! policy (`Mcp::Action::"call"` on `Mcp::Tool::"<target>/<tool>"`...), held for
//! approval, or refused with an answer the model can read; the handshake, listings and
//! notifications pass with the permission to connect. The upstream's answers come back
//! through `transform`: listings filtered to what the agent may use, results masked.
//! The bytes forwarded are the bytes decided on: a body is only forwarded once it parsed
//! without ambiguity, and never re-encoded.
//!
//! Both protocol eras pass through unchanged, so a client negotiates through Airlock
//! the version it would negotiate directly: the 2025 era's `initialize` and
//! `Mcp-Session-Id` (see `sessions`), and the 2026 era's `server/discover` with
//! per-request `_meta` and the `Mcp-Method`/`Mcp-Name` headers (checked against the
//! body, so a router in front of the upstream cannot be told something else).

pub mod channel;
pub mod metadata;
pub mod own;
pub mod pins;
mod reply;
pub mod sessions;
mod transform;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use airlock_engine::mcp::jsonrpc::{self, Body, Id, Message};
use airlock_engine::mcp::requests::{self, Decided, MethodClass};
use airlock_engine::policy::NoCatalog;
use airlock_model::{Action, Decision, EventKind, Verdict};
use airlock_session::{EventDraft, HoldFailure, HoldOutcome, HoldTicket};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AdapterState;
use crate::body::{FilteredBody, ResponseBody, ResponseBodyExt};
use crate::conn::{Conn, Slot};
use crate::handler;
use crate::problem::{self, Problem};
use crate::route::Route;
use sessions::Lookup;
use transform::{SseMessages, Transformer};

/// The MCP targets found to speak the older HTTP+SSE transport (found once per run).
#[derive(Default)]
pub struct SseTargets(std::sync::Mutex<std::collections::HashSet<String>>);

impl SseTargets {
    fn contains(&self, target: &str) -> bool {
        self.0.lock().is_ok_and(|s| s.contains(target))
    }

    fn insert(&self, target: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(target.to_owned());
        }
    }
}

/// The session header of the 2025 protocol era.
const SESSION_ID: &str = "mcp-session-id";
/// The protocol version header.
const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// The 2026 era's copies of the method and the name a request acts on.
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";
/// Request headers passed to the upstream as the agent sent them.
const FORWARDED: [&str; 6] = [
    SESSION_ID,
    PROTOCOL_VERSION,
    METHOD_HEADER,
    NAME_HEADER,
    "last-event-id",
    "user-agent",
];
/// Response headers passed to the agent.
const RETURNED: [&str; 4] = [SESSION_ID, PROTOCOL_VERSION, "cache-control", "retry-after"];
/// The largest JSON answer read whole from an upstream (SSE streams are read per event).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Serves one request for an MCP target.
pub async fn serve(
    state: &Arc<AdapterState>,
    conn: &Arc<Conn>,
    req: Request<Incoming>,
    route: Route,
    token: String,
) -> Result<Response<ResponseBody>, Problem> {
    let started = Instant::now();
    if !matches!(route.path.as_str(), "" | "/") {
        let p = Problem::new(
            StatusCode::NOT_FOUND,
            "not-mcp-endpoint",
            "Not the MCP endpoint",
            format!(
                "airlock: `{}` is an MCP target; its one endpoint is `/{}` (point the MCP client at https://<airlock>/{})",
                route.target, route.target, route.target
            ),
        );
        return Err(handler::drain(req, p).await);
    }
    if !matches!(*req.method(), Method::POST | Method::GET | Method::DELETE) {
        let p = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "airlock: an MCP endpoint takes POST (messages), GET (the server's event stream) and DELETE (end the session)",
        );
        return Err(handler::drain(req, p).await);
    }
    let session_id = header_text(req.headers(), SESSION_ID);
    let slot = match &session_id {
        Some(id) => match state.mcp_sessions.find(id, &route.target, &token) {
            Lookup::Found(slot) => slot,
            Lookup::Unknown => {
                let _ = handler::drain(req, problem::bad_request("")).await;
                return Ok(reply::json_response(
                    StatusCode::NOT_FOUND,
                    &reply::error(
                        &Value::Null,
                        reply::INVALID_REQUEST,
                        "airlock: no MCP session of yours has this Mcp-Session-Id (it ended, or was never opened through Airlock); initialize a new session",
                        None,
                    ),
                ));
            }
        },
        None => {
            let mut detail = serde_json::Map::new();
            detail.insert("tls".into(), true.into());
            detail.insert("protocol".into(), "mcp".into());
            match conn.session(state, &route.target, &token, detail).await {
                Ok(s) => s,
                Err(e) => return Err(handler::drain(req, handler::refused_session(state, e)).await),
            }
        }
    };
    if let Some(why) = slot.session.credential_problem() {
        conn.drop_session(&slot, &why).await;
        return Err(handler::drain(req, problem::token_invalid(&why)).await);
    }
    slot.count();
    slot.outcome_recorded().await;
    state.mcp_pins.refresh(&route.target).await;
    let (parts, body) = req.into_parts();
    match parts.method {
        Method::GET => {
            record(
                &slot,
                "GET (server event stream)",
                Some("allow"),
                json!({ "http": "GET" }),
            )
            .await?;
            forward(
                state,
                conn,
                &slot,
                &parts,
                Bytes::new(),
                HashMap::new(),
                started,
            )
            .await
        }
        Method::DELETE => {
            record(
                &slot,
                "DELETE (end session)",
                Some("allow"),
                json!({ "http": "DELETE" }),
            )
            .await?;
            let response = forward(
                state,
                conn,
                &slot,
                &parts,
                Bytes::new(),
                HashMap::new(),
                started,
            )
            .await;
            if let Some(id) = &session_id {
                state.mcp_sessions.remove(id, "mcp_session_deleted").await;
            }
            response
        }
        _ => post(state, conn, &slot, parts, body, started).await,
    }
}

/// A posted body: one message, or a batch of notifications or responses.
async fn post(
    state: &Arc<AdapterState>,
    conn: &Arc<Conn>,
    slot: &Arc<Slot>,
    parts: hyper::http::request::Parts,
    body: Incoming,
    started: Instant,
) -> Result<Response<ResponseBody>, Problem> {
    let bytes = handler::read_limited(Some(body), jsonrpc::MAX_BODY_BYTES)
        .await
        .map_err(|over| {
            if over {
                problem::bad_request(format!(
                    "airlock: an MCP message may be at most {} bytes",
                    jsonrpc::MAX_BODY_BYTES
                ))
            } else {
                problem::bad_request("airlock: the request body could not be read")
            }
        })?;
    let modern =
        header_text(&parts.headers, PROTOCOL_VERSION).is_some_and(|v| v.as_str() >= "2026-01-01");
    let messages = match jsonrpc::parse(&bytes) {
        Ok(Body::Single(m)) => vec![m],
        Ok(Body::Batch(ms)) if ms.iter().all(|m| !matches!(m, Message::Request { .. })) => ms,
        Ok(Body::Batch(_)) => {
            let why = "airlock: a batch of requests is not served (JSON-RPC batching left MCP in 2025-06-18); send each request in a POST of its own";
            return refuse_body(slot, &bytes, reply::INVALID_REQUEST, why).await;
        }
        Err(e) => {
            let code = match e {
                jsonrpc::JsonRpcError::InvalidJson { .. }
                | jsonrpc::JsonRpcError::NotUtf8 { .. }
                | jsonrpc::JsonRpcError::TrailingData { .. } => reply::PARSE_ERROR,
                _ => reply::INVALID_REQUEST,
            };
            return refuse_body(slot, &bytes, code, &format!("airlock: {e}")).await;
        }
    };
    if let [single] = messages.as_slice()
        && let Some(why) = header_mismatch(&parts.headers, single)
    {
        return refuse_body(slot, &bytes, reply::INVALID_REQUEST, &why).await;
    }
    let mut asked = HashMap::new();
    for message in &messages {
        let (id, method, params) = match message {
            Message::Request { id, method, params } => (Some(id), method, params.as_ref()),
            Message::Notification { method, params } => (None, method, params.as_ref()),
            Message::Response { id, result, error } => {
                let detail = json!({ "response_to": id_value(id), "error": error.is_some(), "result": result.is_some() });
                record(slot, "response to a server request", Some("allow"), detail).await?;
                continue;
            }
        };
        let id_json = id.map(id_value).unwrap_or(Value::Null);
        let Some(class) = requests::classify(method) else {
            let why = format!(
                "airlock: the MCP method `{method}` is not one Airlock knows, so it cannot tell what it would do and does not send it (known: {})",
                requests::known_methods().join(", ")
            );
            record(
                slot,
                method,
                Some("deny"),
                json!({ "method": method, "reason": why }),
            )
            .await?;
            let status = if id.is_some() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            return Ok(reply::json_response(
                status,
                &reply::error(&id_json, reply::METHOD_NOT_FOUND, &why, None),
            ));
        };
        if let Some(id) = id {
            asked.insert(id_value(id).to_string(), method.clone());
        }
        let decided = match class {
            MethodClass::Call | MethodClass::Read | MethodClass::Prompt => {
                match requests::decided(class, params) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        let why = format!("airlock: {e}");
                        record(
                            slot,
                            method,
                            Some("deny"),
                            json!({ "method": method, "reason": why }),
                        )
                        .await?;
                        return Ok(reply::json_response(
                            StatusCode::OK,
                            &reply::error(&id_json, reply::INVALID_REQUEST, &why, None),
                        ));
                    }
                }
            }
            MethodClass::List(_) | MethodClass::Pass => None,
        };
        let Some(decided) = decided else {
            record(slot, method, Some("allow"), json!({ "method": method })).await?;
            continue;
        };
        let progress =
            progress_token(params).filter(|_| messages.len() == 1 && accepts_sse(&parts.headers));
        match decide(
            state,
            slot,
            method,
            &decided,
            &id_json,
            modern,
            progress.is_some(),
        )
        .await?
        {
            Outcome::Send => {}
            Outcome::Answer(answer) => return Ok(reply::json_response(StatusCode::OK, &answer)),
            Outcome::HoldWithProgress(held) => {
                let held = HeldCall {
                    held: *held,
                    token: progress.unwrap_or(Value::Null),
                    id: id_json,
                    modern,
                };
                return Ok(hold_with_progress(
                    state, conn, slot, parts, bytes, asked, held, started,
                ));
            }
        }
    }
    forward(state, conn, slot, &parts, bytes, asked, started).await
}

/// What becomes of a decided request.
enum Outcome {
    /// Allowed (or approved): send it.
    Send,
    /// Not sent: this is the answer.
    Answer(Value),
    /// Held, and the client asked for progress: the wait is answered as an event
    /// stream (see [`hold_with_progress`]).
    HoldWithProgress(Box<Held>),
}

/// A held request, before its wait.
struct Held {
    shown: String,
    decided: Decided,
    verdict: Verdict,
    detail: Value,
}

/// A held request whose client gets progress notifications while it waits.
struct HeldCall {
    held: Held,
    /// The client's `_meta.progressToken`.
    token: Value,
    /// The request's id.
    id: Value,
    modern: bool,
}

/// The `_meta.progressToken` a request carries, if any.
fn progress_token(params: Option<&Value>) -> Option<Value> {
    params?
        .get("_meta")?
        .get("progressToken")
        .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
        .cloned()
}

/// Whether the agent accepts an event stream as the answer to its POST.
fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// Decides one tool call, read or prompt.
async fn decide(
    state: &AdapterState,
    slot: &Arc<Slot>,
    method: &str,
    decided: &Decided,
    id: &Value,
    modern: bool,
    progress: bool,
) -> Result<Outcome, Problem> {
    let target = slot.session.target();
    let shown = format!("{method} {}", decided.name);
    let mut detail = json!({
        "method": method,
        "name": decided.name,
        "arguments": Value::Object(decided.arguments.clone()),
    });
    let refuse = |text: String, data: Value| {
        if decided.kind == "call" {
            reply::tool_error(id, &text, data, modern)
        } else {
            reply::error(id, reply::DENIED, &text, Some(data))
        }
    };
    // A call names a tool exactly as the upstream listed it: no trimming, case folding
    // or look-alikes, so the tool decided on is the tool that runs.
    let listed = state.mcp_pins.state(&target.model.name, &decided.name);
    if decided.kind == "call" && listed.is_none() {
        let why = format!(
            "airlock: `{}` is not a tool the MCP server listed through Airlock; list the tools (tools/list) and call one by its exact name",
            decided.name
        );
        put(&mut detail, "reason", why.clone().into());
        record(slot, &shown, Some("deny"), detail).await?;
        return Ok(Outcome::Answer(refuse(
            why.clone(),
            json!({ "reason": why }),
        )));
    }
    // A tool whose description or schema changed since it was pinned runs only once an
    // operator accepted the change.
    if decided.kind == "call" && target.config.pin_tools && listed == Some(false) {
        let why = format!(
            "airlock: the tool `{}` changed upstream (its description or schema differs from the one pinned) and is blocked until an operator accepts the change (`airlock mcp tools accept --target {}`)",
            decided.name, target.model.name
        );
        put(&mut detail, "reason", why.clone().into());
        put(&mut detail, "pin", "changed".into());
        record(slot, &shown, Some("deny"), detail).await?;
        return Ok(Outcome::Answer(refuse(
            why.clone(),
            json!({ "reason": why }),
        )));
    }
    let action = Action::Mcp(decided.action());
    let verdict = slot
        .session
        .decide(std::slice::from_ref(&action), &NoCatalog);
    put(&mut detail, "policies", json!(verdict.policies));
    put(
        &mut detail,
        "policy_version",
        verdict.policy_version.clone().into(),
    );
    match &verdict.decision {
        Decision::Allow => {
            record(slot, &shown, Some("allow"), detail).await?;
            Ok(Outcome::Send)
        }
        Decision::Deny { reason } => {
            let text = format!(
                "airlock: {reason}. The {} was not sent; stay within what policy permits, or ask the operator for access.",
                what(decided.kind)
            );
            put(&mut detail, "reason", reason.clone().into());
            record(slot, &shown, Some("deny"), detail).await?;
            Ok(Outcome::Answer(refuse(
                text,
                json!({ "reason": reason, "policies": verdict.policies, "policy_version": verdict.policy_version }),
            )))
        }
        Decision::Hold { .. } if progress => Ok(Outcome::HoldWithProgress(Box::new(Held {
            shown,
            decided: decided.clone(),
            verdict,
            detail,
        }))),
        Decision::Hold { .. } => {
            let outcome = hold(slot, &shown, decided, &verdict, |_| async {}).await?;
            let held = Held {
                shown,
                decided: decided.clone(),
                verdict,
                detail,
            };
            Ok(match settle(slot, held, outcome, id, modern).await? {
                Some(answer) => Outcome::Answer(answer),
                None => Outcome::Send,
            })
        }
    }
}

/// What a hold's outcome means for the request: `None` to send it (recorded as
/// approved), or the answer the agent gets instead.
async fn settle(
    slot: &Arc<Slot>,
    held: Held,
    outcome: HoldOutcome,
    id: &Value,
    modern: bool,
) -> Result<Option<Value>, Problem> {
    let Held {
        shown,
        decided,
        verdict,
        mut detail,
    } = held;
    let refuse = |text: String, data: Value| {
        if decided.kind == "call" {
            reply::tool_error(id, &text, data, modern)
        } else {
            reply::error(id, reply::DENIED, &text, Some(data))
        }
    };
    match outcome {
        HoldOutcome::Run { approval_id } => {
            put(&mut detail, "approval_id", approval_id.into());
            record(slot, &shown, Some("hold"), detail).await?;
            Ok(None)
        }
        HoldOutcome::Refuse { message, hint } => {
            put(&mut detail, "reason", message.clone().into());
            record(slot, &shown, Some("hold"), detail).await?;
            Ok(Some(refuse(
                format!("{message} {hint}"),
                json!({ "reason": message, "hint": hint, "policies": verdict.policies }),
            )))
        }
        HoldOutcome::Pending {
            approval_id,
            message,
            hint,
        } => {
            let text = format!("{message} {hint} (approval id {approval_id})");
            let data = json!({ "approval_id": approval_id, "status": "pending", "hint": hint });
            Ok(Some(if decided.kind == "call" {
                reply::tool_error(id, &text, data, modern)
            } else {
                reply::error(id, reply::PENDING, &text, Some(data))
            }))
        }
        HoldOutcome::Canceled { approval_id } => {
            let text = format!(
                "airlock: the wait for approval {approval_id} was canceled; the {} was not sent",
                what(decided.kind)
            );
            Ok(Some(reply::error(
                id,
                reply::PENDING,
                &text,
                Some(json!({ "approval_id": approval_id })),
            )))
        }
    }
}

/// Answers a held request as an event stream: `notifications/progress` while it waits
/// (the client asked for progress with `_meta.progressToken`), then the upstream's
/// answer once approved, or Airlock's answer if not.
#[allow(clippy::too_many_arguments)]
fn hold_with_progress(
    state: &Arc<AdapterState>,
    conn: &Arc<Conn>,
    slot: &Arc<Slot>,
    parts: hyper::http::request::Parts,
    bytes: Bytes,
    asked: HashMap<String, String>,
    call: HeldCall,
    started: Instant,
) -> Response<ResponseBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let (state, conn, slot) = (state.clone(), conn.clone(), slot.clone());
    tokio::spawn(async move {
        let HeldCall {
            held,
            token,
            id,
            modern,
        } = call;
        let waiting_for: Arc<std::sync::Mutex<String>> = Arc::default();
        let progress = move |n: u64, text: &str| {
            event(&json!({
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": { "progressToken": token, "progress": n, "message": text },
            }))
        };
        let outcome = {
            let announce = {
                let (tx, waiting_for, progress) =
                    (tx.clone(), waiting_for.clone(), progress.clone());
                move |text: String| {
                    if let Ok(mut w) = waiting_for.lock() {
                        w.clone_from(&text);
                    }
                    let first = progress(0, &text);
                    async move {
                        let _ = tx.send(first).await;
                    }
                }
            };
            let wait = hold(&slot, &held.shown, &held.decided, &held.verdict, announce);
            tokio::pin!(wait);
            let mut ticks = tokio::time::interval(std::time::Duration::from_secs(5));
            ticks.tick().await;
            let mut n = 0;
            loop {
                tokio::select! {
                    outcome = &mut wait => break outcome,
                    _ = ticks.tick() => {
                        n += 1;
                        let text = waiting_for.lock().map(|w| w.clone()).unwrap_or_default();
                        if tx.send(progress(n, &text)).await.is_err() {
                            // The agent went away; the request stays open for a retry.
                            return;
                        }
                    }
                }
            }
        };
        let settled = match outcome {
            Ok(o) => settle(&slot, held, o, &id, modern).await,
            Err(p) => Err(p),
        };
        match settled {
            Ok(Some(answer)) => {
                let _ = tx.send(event(&answer)).await;
            }
            Err(p) => {
                let answer = reply::error(&id, reply::DENIED, &p.detail, None);
                let _ = tx.send(event(&answer)).await;
            }
            Ok(None) => {
                let response = forward(&state, &conn, &slot, &parts, bytes, asked, started).await;
                pipe_as_events(response, &tx, &id).await;
            }
        }
    });
    let mut r = Response::new(crate::body::ChannelBody(rx).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// One message as an SSE event.
fn event(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

/// Sends the upstream's (already filtered) answer on as events: an event stream as it
/// is, a JSON answer as one event.
async fn pipe_as_events(
    response: Result<Response<ResponseBody>, Problem>,
    tx: &tokio::sync::mpsc::Sender<Bytes>,
    id: &Value,
) {
    let response = match response {
        Ok(r) => r,
        Err(p) => {
            let _ = tx
                .send(event(&reply::error(id, reply::UPSTREAM, &p.detail, None)))
                .await;
            return;
        }
    };
    let sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut body = response.into_body();
    if sse {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data()
                && tx.send(data).await.is_err()
            {
                return;
            }
        }
        return;
    }
    let answer = match body.collect().await {
        Ok(c) => serde_json::from_slice::<Value>(&c.to_bytes()).ok(),
        Err(_) => None,
    };
    let answer = answer.unwrap_or_else(|| {
        reply::error(
            id,
            reply::UPSTREAM,
            "airlock: the upstream's answer broke off or was not JSON",
            None,
        )
    });
    let _ = tx.send(event(&answer)).await;
}

fn what(kind: &str) -> &'static str {
    match kind {
        "call" => "tool call",
        "read" => "resource read",
        _ => "prompt request",
    }
}

/// Holds a decided request until a human decides; `announce` is told what it waits
/// for once the wait begins (for a progress notification).
async fn hold<F, Fut>(
    slot: &Arc<Slot>,
    shown: &str,
    decided: &Decided,
    verdict: &Verdict,
    announce: F,
) -> Result<HoldOutcome, Problem>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let arguments = Value::Object(decided.arguments.clone());
    let ticket = HoldTicket {
        statement: shown.to_owned(),
        params: json!({ "arguments": arguments }),
        digest: call_digest(&slot.session.target().model.name, decided),
        verdict: verdict.clone(),
    };
    slot.session
        .hold_until_decided(ticket, |waiting, timeout| {
            let text = format!(
                "waiting for approval {} by a member of `{}` (up to {} s)",
                waiting.approval.id,
                waiting.approval.approver_group,
                timeout.as_secs()
            );
            async move {
                announce(text).await;
                Ok::<(), std::convert::Infallible>(())
            }
        })
        .await
        .map_err(|e| {
            let HoldFailure::Recorder(e) = e;
            tracing::error!(error = %e, "held MCP request not sent: recording failed");
            problem::not_recorded()
        })
}

/// What an approval of an MCP request is bound to: target, kind, name and arguments
/// (as sent: the same JSON in another key order is another request).
fn call_digest(target: &str, d: &Decided) -> String {
    let mut h = Sha256::new();
    h.update(b"airlock-mcp-request-v1\0");
    let arguments = Value::Object(d.arguments.clone()).to_string();
    for part in [
        target.as_bytes(),
        d.kind.as_bytes(),
        d.name.as_bytes(),
        arguments.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// A body refused before anything was decided: recorded, then answered 400.
async fn refuse_body(
    slot: &Arc<Slot>,
    bytes: &[u8],
    code: i64,
    why: &str,
) -> Result<Response<ResponseBody>, Problem> {
    let detail = json!({
        "reason": why,
        "body_bytes": bytes.len(),
        "body_sha256": hex::encode(Sha256::digest(bytes)),
    });
    record(slot, "malformed MCP message", Some("deny"), detail).await?;
    Ok(reply::json_response(
        StatusCode::BAD_REQUEST,
        &reply::error(&Value::Null, code, why, None),
    ))
}

/// The 2026 era's `Mcp-Method` and `Mcp-Name` headers must say what the body says.
fn header_mismatch(headers: &HeaderMap, message: &Message) -> Option<String> {
    let header_method = header_text(headers, METHOD_HEADER);
    let method = message.method();
    if let Some(h) = &header_method
        && Some(h.as_str()) != method
    {
        return Some(format!(
            "airlock: the Mcp-Method header says `{h}` but the body's method is `{}`; send the same method in both",
            method.unwrap_or("(none: a response)")
        ));
    }
    let header_name = header_text(headers, NAME_HEADER)?;
    let params = match message {
        Message::Request { params, .. } | Message::Notification { params, .. } => params.as_ref(),
        Message::Response { .. } => None,
    };
    let key = if method == Some("resources/read") {
        "uri"
    } else {
        "name"
    };
    let named = params.and_then(|p| p.get(key)).and_then(Value::as_str);
    (named != Some(header_name.as_str())).then(|| {
        format!(
            "airlock: the Mcp-Name header says `{header_name}` but the body names `{}`; send the same name in both",
            named.unwrap_or("nothing")
        )
    })
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn id_value(id: &Id) -> Value {
    match id {
        Id::Number(n) => Value::from(*n),
        Id::String(s) => Value::String(s.clone()),
    }
}

fn put(detail: &mut Value, key: &str, value: Value) {
    if let Some(map) = detail.as_object_mut() {
        map.insert(key.into(), value);
    }
}

/// Records one event of the exchange, durably, before anything is sent upstream.
async fn record(
    slot: &Arc<Slot>,
    shown: &str,
    decision: Option<&'static str>,
    detail: Value,
) -> Result<(), Problem> {
    slot.session
        .record(vec![EventDraft {
            kind: EventKind::Request,
            statement: Some(shown.to_owned()),
            decision,
            detail,
        }])
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::error!(error = %e, "MCP request not sent: recording failed");
            problem::not_recorded()
        })
}

/// Sends the agent's request (its body unchanged) to the upstream and returns its
/// answer through the transformer.
async fn forward(
    state: &AdapterState,
    conn: &Conn,
    slot: &Arc<Slot>,
    parts: &hyper::http::request::Parts,
    body: Bytes,
    asked: HashMap<String, String>,
    started: Instant,
) -> Result<Response<ResponseBody>, Problem> {
    let target = slot.session.target();
    let name = target.model.name.clone();
    if target.config.url.is_none() || state.mcp_sse_targets.contains(&name) {
        return forward_channel(state, conn, slot, parts, body, asked, started).await;
    }
    let initialize = parts.method == Method::POST && body_initializes(&body);
    let client = state
        .clients
        .for_target(target)
        .map_err(|e| problem::upstream_failed(&name, e))?;
    let url = target
        .config
        .url
        .clone()
        .ok_or_else(|| problem::upstream_failed(&name, "the target has no url"))?;
    let mut headers = HeaderMap::new();
    for h in FORWARDED {
        for v in parts.headers.get_all(h) {
            headers.append(HeaderName::from_static(h), v.clone());
        }
    }
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    if parts.method == Method::POST {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Ok(host) = HeaderValue::from_str(&slot.base.authority) {
        headers.insert(header::HOST, host);
    }
    if let Some((n, v)) = &slot.credential.header {
        headers.insert(n.clone(), v.clone());
    }
    let mut upstream_req = Request::builder()
        .method(parts.method.clone())
        .uri(&url)
        .body(ResponseBody::full(body.clone()))
        .map_err(|e| problem::upstream_failed(&name, e))?;
    *upstream_req.headers_mut() = headers;
    let response = match client.request(upstream_req).await {
        Ok(r) => r,
        Err(e) => {
            let why = handler::upstream_error(&e);
            handler::record_outcome_now(
                slot,
                json!({ "status": 502, "error": why, "duration_ms": handler::elapsed_ms(started) }),
            );
            return Err(problem::upstream_failed(&name, why));
        }
    };
    // An upstream of the older HTTP+SSE transport refuses the POST of a handshake: the
    // spec's way to find it is a GET of the same URL that opens its event stream.
    if initialize
        && matches!(
            response.status(),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::BAD_REQUEST
        )
    {
        let client = state
            .clients
            .for_target(target)
            .map_err(|e| problem::upstream_failed(&name, e))?;
        if let Ok(channel) =
            channel::Channel::open_sse(client, &url, slot.credential.header.clone()).await
        {
            tracing::info!(target = %name, "the MCP server speaks the older HTTP+SSE transport");
            state.mcp_sse_targets.insert(&name);
            *slot.channel.lock().await = Some(Arc::new(channel));
            return forward_channel(state, conn, slot, parts, body, asked, started).await;
        }
    }
    // The upstream opened a session (2025 era): it outlives this connection.
    if header_text(&parts.headers, SESSION_ID).is_none()
        && let Some(id) = header_text(response.headers(), SESSION_ID)
    {
        conn.detach(slot).await;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim().to_owned()))
            .unwrap_or_default();
        state
            .mcp_sessions
            .register(&id, &name, &token, slot.clone());
    }
    respond(state, slot, response, asked, started).await
}

/// The upstream's answer for the agent.
async fn respond(
    state: &AdapterState,
    slot: &Arc<Slot>,
    response: Response<Incoming>,
    asked: HashMap<String, String>,
    started: Instant,
) -> Result<Response<ResponseBody>, Problem> {
    let (parts, body) = response.into_parts();
    let name = slot.session.target().model.name.clone();
    let content_type = crate::inspect::media_type(
        parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let mut headers = HeaderMap::new();
    for h in RETURNED {
        if let Some(v) = parts.headers.get(h) {
            headers.insert(HeaderName::from_static(h), v.clone());
        }
    }
    if let Some(v) = parts.headers.get(header::CONTENT_TYPE) {
        headers.insert(header::CONTENT_TYPE, v.clone());
    }
    let transformer = Transformer::new(slot.clone(), state.mcp_pins.clone(), asked);
    let status = parts.status;
    let on_end = outcome_recorder(slot, &transformer, status, started);
    let scrub = slot.credential.scrubber.stream();
    let is_sse = content_type == "text/event-stream";
    let is_json = crate::inspect::is_json(&content_type);
    let out_body = if is_sse {
        FilteredBody::new(
            body,
            vec![Box::new(SseMessages::new(transformer))],
            scrub,
            0,
            on_end,
        )
        .boxed()
    } else if is_json {
        let limited = http_body_util::Limited::new(body, MAX_ANSWER);
        let bytes = limited
            .collect()
            .await
            .map_err(|e| problem::upstream_failed(&name, e))?
            .to_bytes();
        let text = match serde_json::from_slice::<Value>(&bytes) {
            Ok(mut v) => {
                transformer.body(&mut v);
                Bytes::from(v.to_string())
            }
            Err(_) if bytes.iter().all(u8::is_ascii_whitespace) => bytes,
            Err(_) => {
                return Err(problem::response_withheld(
                    &name,
                    "the upstream said it answered JSON, and its answer is not JSON",
                ));
            }
        };
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
        let inner = http_body_util::Full::new(text).map_err(|never| match never {});
        FilteredBody::new(inner, Vec::new(), scrub, 0, on_end).boxed()
    } else {
        // Errors and empty acknowledgements (202): passed, with the credential scrubbed.
        FilteredBody::new(body, Vec::new(), scrub, 0, on_end).boxed()
    };
    let mut out = Response::new(out_body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// Records the outcome of an exchange once its answer has been sent: status, bytes,
/// and what the transformer did (masked, hidden, changed tools, errors).
fn outcome_recorder(
    slot: &Arc<Slot>,
    transformer: &Transformer,
    status: StatusCode,
    started: Instant,
) -> crate::body::OnEnd {
    let summary = transformer.summary.clone();
    let outcome_slot = slot.clone();
    Box::new(move |outcome| {
        let mut detail = json!({
            "status": status.as_u16(),
            "duration_ms": handler::elapsed_ms(started),
            "response_bytes": outcome.bytes_out,
            "upstream_bytes": outcome.bytes_in,
        });
        if let (Ok(s), Some(map)) = (summary.lock(), detail.as_object_mut()) {
            if let Some(m) = outcome_slot.session.masker()
                && !s.tally.is_empty()
            {
                map.insert("masked".into(), s.tally.to_json(m));
            }
            if !s.hidden.is_empty() {
                map.insert("hidden".into(), json!(s.hidden));
            }
            if !s.changed.is_empty() {
                map.insert("tools_changed".into(), json!(s.changed));
            }
            if s.tool_error {
                map.insert("tool_error".into(), true.into());
            }
            if !s.errors.is_empty() {
                map.insert("errors".into(), json!(s.errors));
            }
            if let Some(w) = &s.withheld {
                map.insert("withheld".into(), w.clone().into());
            }
            map.insert("messages".into(), s.messages.into());
        }
        if let (Some(e), Some(map)) = (&outcome.error, detail.as_object_mut()) {
            map.insert("error".into(), e.clone().into());
        }
        handler::record_outcome_now(&outcome_slot, detail);
    })
}

/// Whether a body is a handshake (`initialize` or `server/discover`).
fn body_initializes(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    matches!(
        v.get("method").and_then(Value::as_str),
        Some("initialize" | "server/discover")
    )
}

/// [`forward`] for an MCP server reached over a message channel (stdio, or the older
/// HTTP+SSE transport): the session's channel (opened on its first message) gets the
/// messages, and their answers come back as one JSON body.
async fn forward_channel(
    state: &AdapterState,
    conn: &Conn,
    slot: &Arc<Slot>,
    parts: &hyper::http::request::Parts,
    body: Bytes,
    asked: HashMap<String, String>,
    started: Instant,
) -> Result<Response<ResponseBody>, Problem> {
    let target = slot.session.target().clone();
    let session_id = header_text(&parts.headers, SESSION_ID);
    match parts.method {
        Method::POST => {}
        Method::DELETE => {
            let mut r = Response::new(ResponseBody::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            return Ok(r);
        }
        _ => {
            return Err(Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "airlock: this MCP target's server runs over stdio; it has no event stream to GET (answers come with each POST)",
            ));
        }
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|_| problem::bad_request("airlock: the body is not JSON"))?;
    let messages = match value {
        Value::Array(items) => items,
        one => vec![one],
    };
    let ids: Vec<String> = messages
        .iter()
        .filter(|m| m.get("method").is_some())
        .filter_map(|m| m.get("id").map(Value::to_string))
        .collect();
    let initialize = messages
        .iter()
        .any(|m| m.get("method").and_then(Value::as_str) == Some("initialize"));
    let server = {
        let mut running = slot.channel.lock().await;
        match running.as_ref() {
            Some(s) if !s.is_ended() => s.clone(),
            // A 2025-era session lived in the process that ended: the client must start
            // a new one (the spec's answer to an unknown session is 404).
            Some(_) if !initialize && let Some(id) = &session_id => {
                drop(running);
                state
                    .mcp_sessions
                    .remove(id, "mcp_server_process_ended")
                    .await;
                return Ok(reply::json_response(
                    StatusCode::NOT_FOUND,
                    &reply::error(
                        &Value::Null,
                        reply::INVALID_REQUEST,
                        "airlock: this session's MCP server process ended; initialize a new session",
                        None,
                    ),
                ));
            }
            _ => {
                let opened = match &target.config.url {
                    None => channel::Channel::spawn(&target),
                    Some(url) => {
                        let client = state
                            .clients
                            .for_target(&target)
                            .map_err(|e| problem::upstream_failed(&target.model.name, e))?;
                        channel::Channel::open_sse(client, url, slot.credential.header.clone())
                            .await
                    }
                };
                let s = Arc::new(opened.map_err(|e| {
                    tracing::warn!(target = %target.model.name, error = %e, "an MCP server's channel did not open");
                    problem::upstream_failed(&target.model.name, e)
                })?);
                *running = Some(s.clone());
                s
            }
        }
    };
    let answers = match server.exchange(&messages, &ids).await {
        Ok(a) => a,
        Err(e) => {
            handler::record_outcome_now(
                slot,
                json!({ "status": 502, "error": e.to_string(), "duration_ms": handler::elapsed_ms(started) }),
            );
            let id = messages
                .first()
                .and_then(|m| m.get("id"))
                .cloned()
                .unwrap_or(Value::Null);
            return Ok(reply::json_response(
                StatusCode::OK,
                &reply::error(
                    &id,
                    reply::UPSTREAM,
                    &format!("airlock: {e}; the request's outcome is unknown"),
                    None,
                ),
            ));
        }
    };
    if ids.is_empty() {
        let mut r = Response::new(ResponseBody::empty());
        *r.status_mut() = StatusCode::ACCEPTED;
        return Ok(r);
    }
    let mut answer = match <[Value; 1]>::try_from(answers) {
        Ok([one]) => one,
        Err(many) => Value::Array(many),
    };
    let transformer = Transformer::new(slot.clone(), state.mcp_pins.clone(), asked);
    transformer.body(&mut answer);
    let bytes = Bytes::from(answer.to_string());
    let on_end = outcome_recorder(slot, &transformer, StatusCode::OK, started);
    let inner = http_body_util::Full::new(bytes).map_err(|never| match never {});
    let out_body = FilteredBody::new(
        inner,
        Vec::new(),
        slot.credential.scrubber.stream(),
        0,
        on_end,
    )
    .boxed();
    let mut response = Response::new(out_body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // The 2025 era's session: the process is this session's, reached by its id.
    if initialize && session_id.is_none() {
        let id = format!("{:032x}", rand::random::<u128>());
        if let Ok(v) = HeaderValue::from_str(&id) {
            conn.detach(slot).await;
            let token = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim().to_owned()))
                .unwrap_or_default();
            state
                .mcp_sessions
                .register(&id, &target.model.name, &token, slot.clone());
            response
                .headers_mut()
                .insert(HeaderName::from_static(SESSION_ID), v);
        }
    }
    Ok(response)
}
