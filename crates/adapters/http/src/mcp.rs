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
mod forward;
mod hold;
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

pub use forward::SseTargets;
use forward::forward;
use hold::{Held, HeldCall, accepts_sse, hold, hold_with_progress, progress_token, settle};

/// The session header of the 2025 protocol era.
const SESSION_ID: &str = "mcp-session-id";
/// The protocol version header.
const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// The 2026 era's copies of the method and the name a request acts on.
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";
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
            if let Some(tp) = traceparent(req.headers()) {
                detail.insert("traceparent".into(), tp.into());
            }
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
    let span = tracing::Span::current();
    span.record("session", slot.session.id());
    span.record("principal", slot.session.principal().name.as_str());
    slot.outcome_recorded().await;
    state.mcp_pins.refresh(&route.target).await;
    let (parts, body) = req.into_parts();
    // The agent's trace context, on every event this request records (a message's own
    // `_meta.traceparent` takes precedence: see `post`).
    let header_trace = traceparent(&parts.headers);
    airlock_session::with_traceparent(header_trace, async move {
        match parts.method {
            // No body: recorded as what it is, then relayed.
            Method::GET | Method::DELETE => {
                let (shown, http) = if parts.method == Method::GET {
                    ("GET (server event stream)", "GET")
                } else {
                    ("DELETE (end session)", "DELETE")
                };
                record(&slot, shown, Some("allow"), json!({ "http": http })).await?;
                slot.session.metrics().forwarded(started, 1);
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
                if parts.method == Method::DELETE
                    && let Some(id) = &session_id
                {
                    state.mcp_sessions.remove(id, "mcp_session_deleted").await;
                }
                response
            }
            _ => post(state, conn, &slot, parts, body, started).await,
        }
    })
    .await
}

/// A valid W3C `traceparent` header, if the request has one.
fn traceparent(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(airlock_model::find_traceparent)
}

/// The `_meta.traceparent` an MCP message carries in its params (the OpenTelemetry
/// convention for MCP), if any message has a valid one.
fn meta_traceparent(messages: &[Message]) -> Option<String> {
    messages.iter().find_map(|m| {
        let params = match m {
            Message::Request { params, .. } | Message::Notification { params, .. } => params,
            Message::Response { .. } => return None,
        };
        params
            .as_ref()?
            .get("_meta")?
            .get("traceparent")?
            .as_str()
            .and_then(airlock_model::find_traceparent)
    })
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
            return refuse_body(slot, &bytes, reply::INVALID_REQUEST, why, started).await;
        }
        Err(e) => {
            let code = match e {
                jsonrpc::JsonRpcError::InvalidJson { .. }
                | jsonrpc::JsonRpcError::NotUtf8 { .. }
                | jsonrpc::JsonRpcError::TrailingData { .. } => reply::PARSE_ERROR,
                _ => reply::INVALID_REQUEST,
            };
            return refuse_body(slot, &bytes, code, &format!("airlock: {e}"), started).await;
        }
    };
    let trace = meta_traceparent(&messages);
    // A message's own trace context wins over the POST's header for the span too.
    if let Some(tp) = &trace {
        airlock_session::join_trace(tp);
    }
    airlock_session::with_traceparent(
        trace,
        relay_messages(state, conn, slot, parts, bytes, messages, modern, started),
    )
    .await
}

/// The messages of a posted body, each classified, decided and recorded, then sent.
#[allow(clippy::too_many_arguments)]
async fn relay_messages(
    state: &Arc<AdapterState>,
    conn: &Arc<Conn>,
    slot: &Arc<Slot>,
    parts: hyper::http::request::Parts,
    bytes: Bytes,
    messages: Vec<Message>,
    modern: bool,
    started: Instant,
) -> Result<Response<ResponseBody>, Problem> {
    if let [single] = messages.as_slice()
        && let Some(why) = header_mismatch(&parts.headers, single)
    {
        return refuse_body(slot, &bytes, reply::INVALID_REQUEST, &why, started).await;
    }
    let mut asked = HashMap::new();
    // A call in the body waited for approval: the wait is not Airlock's latency, so the
    // request is not sampled.
    let mut held = false;
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
            slot.session.metrics().forwarded(started, 1);
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
                        slot.session.metrics().forwarded(started, 1);
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
            Outcome::Held(None) => held = true,
            Outcome::Held(Some(answer)) => {
                return Ok(reply::json_response(StatusCode::OK, &answer));
            }
            Outcome::Answer(answer) => {
                slot.session.metrics().forwarded(started, 1);
                return Ok(reply::json_response(StatusCode::OK, &answer));
            }
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
    if !held {
        slot.session.metrics().forwarded(started, 1);
    }
    forward(state, conn, slot, &parts, bytes, asked, started).await
}

/// What becomes of a decided request.
enum Outcome {
    /// Allowed: send it.
    Send,
    /// Not sent: this is the answer.
    Answer(Value),
    /// Held, and settled: approved (`None`: send it), or not sent with this answer.
    Held(Option<Value>),
    /// Held, and the client asked for progress: the wait is answered as an event
    /// stream (see [`hold_with_progress`]).
    HoldWithProgress(Box<Held>),
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
            Ok(Outcome::Held(
                settle(slot, held, outcome, id, modern).await?,
            ))
        }
    }
}

fn what(kind: &str) -> &'static str {
    match kind {
        "call" => "tool call",
        "read" => "resource read",
        _ => "prompt request",
    }
}

/// A body refused before anything was decided: recorded, then answered 400.
async fn refuse_body(
    slot: &Arc<Slot>,
    bytes: &[u8],
    code: i64,
    why: &str,
    started: Instant,
) -> Result<Response<ResponseBody>, Problem> {
    let detail = json!({
        "reason": why,
        "body_bytes": bytes.len(),
        "body_sha256": hex::encode(Sha256::digest(bytes)),
    });
    record(slot, "malformed MCP message", Some("deny"), detail).await?;
    slot.session.metrics().forwarded(started, 1);
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
