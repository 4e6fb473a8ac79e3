//! Airlock's own MCP server, at `https://<[http] listen>/mcp`: tools that reach the
//! agent's permitted targets, so an agent needs no psql, kubectl or API client.
//!
//! Each tool is a client of Airlock's own native path, never a second one: `sql_query`
//! speaks PostgreSQL to the PostgreSQL listener in-process (`pg`), `http_request` and
//! `kubernetes` send HTTP to this listener in-process (`local`). So every call meets the
//! same identity check, policy decision, hold, masking, pool and recording as the native
//! protocol, and needs no `Mcp::` permit of its own. The session it is recorded in is the
//! target's, opened with the agent's token.
//!
//! The server speaks both protocol eras (2025: `initialize`; 2026: `server/discover` with
//! per-request `_meta`) and is stateless: no `Mcp-Session-Id`, answers as JSON.

mod local;
mod pg;
mod tools;

use std::collections::HashMap;
use std::sync::Arc;

use airlock_engine::mcp::jsonrpc::{self, Body, Id, Message};
use airlock_engine::mcp::requests::{self, MethodClass};
use airlock_model::Principal;
use airlock_vault::Secret;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::reply;
use crate::AdapterState;
use crate::body::{ResponseBody, ResponseBodyExt};
use crate::conn::Conn;
use crate::handler;
use crate::problem::{self, Problem};

/// The protocol versions of the 2025 era this server answers `initialize` with.
const LEGACY_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The 2026 era's versions (`server/discover`).
const MODERN_VERSIONS: [&str; 1] = ["2026-07-28"];

/// What one agent connection keeps between calls: its PostgreSQL connections (per
/// target and token) and its in-process HTTP connection (per token).
/// A target's name and the digest of the token used on it.
type TargetToken = (String, [u8; 32]);

/// A connection kept between calls (`None` until opened, or after it broke).
type Kept<T> = Arc<tokio::sync::Mutex<Option<T>>>;

#[derive(Default)]
pub struct OwnClients {
    /// Who each token on this connection is, authenticated at its first request (as a
    /// session is) and re-checked for expiry and revocation at every later one.
    principals: std::sync::Mutex<HashMap<[u8; 32], Principal>>,
    pg: tokio::sync::Mutex<HashMap<TargetToken, Kept<pg::PgConn>>>,
    http: tokio::sync::Mutex<HashMap<[u8; 32], Kept<local::LocalHttp>>>,
}

/// One call's context.
pub struct Caller<'a> {
    pub state: &'a Arc<AdapterState>,
    pub conn: &'a Arc<Conn>,
    pub principal: Principal,
    pub token: String,
}

/// Serves one request to `/mcp`.
pub async fn serve(
    state: &Arc<AdapterState>,
    conn: &Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Problem> {
    let token = match handler::bearer(&req) {
        Ok(t) => t,
        Err(p) => return Err(handler::drain(req, p).await),
    };
    let principal = match principal_of(state, conn, &token).await {
        Ok(p) => p,
        Err(why) => return Err(handler::drain(req, problem::token_invalid(&why)).await),
    };
    tracing::Span::current().record("principal", principal.name.as_str());
    if req.method() != Method::POST {
        let p = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "airlock: Airlock's MCP server is stateless and answers POSTed messages only (no event stream, no session to delete)",
        );
        return Err(handler::drain(req, p).await);
    }
    let modern = req
        .headers()
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= "2026-01-01");
    let bytes = handler::read_limited(Some(req.into_body()), jsonrpc::MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            problem::bad_request("airlock: the request body could not be read, or is over 4 MiB")
        })?;
    let message = match jsonrpc::parse(&bytes) {
        Ok(Body::Single(m)) => m,
        Ok(Body::Batch(_)) => {
            return Ok(bad(
                reply::INVALID_REQUEST,
                "airlock: batches are not served; send one message per POST",
            ));
        }
        Err(e) => return Ok(bad(reply::PARSE_ERROR, &format!("airlock: {e}"))),
    };
    let (id, method, params) = match message {
        Message::Request { id, method, params } => (id, method, params),
        // Notifications and responses need no answer.
        Message::Notification { .. } | Message::Response { .. } => {
            let mut r = Response::new(ResponseBody::empty());
            *r.status_mut() = StatusCode::ACCEPTED;
            return Ok(r);
        }
    };
    let id = match id {
        Id::Number(n) => Value::from(n),
        Id::String(s) => Value::String(s),
    };
    let caller = Caller {
        state,
        conn,
        principal,
        token,
    };
    let answer = match method.as_str() {
        "initialize" => {
            let asked = params
                .as_ref()
                .and_then(|p| p.get("protocolVersion"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let version = if LEGACY_VERSIONS.contains(&asked) {
                asked
            } else {
                LEGACY_VERSIONS[0]
            };
            result(
                &id,
                json!({
                    "protocolVersion": version,
                    "capabilities": { "tools": { "listChanged": false } },
                    "serverInfo": server_info(),
                    "instructions": INSTRUCTIONS,
                }),
                false,
            )
        }
        "server/discover" => result(
            &id,
            json!({
                "supportedVersions": MODERN_VERSIONS,
                "capabilities": { "tools": { "listChanged": false } },
                "instructions": INSTRUCTIONS,
                "cacheScope": "private",
                "ttlMs": 0,
            }),
            true,
        ),
        "ping" => result(&id, json!({}), modern),
        "tools/list" => {
            let mut r = json!({ "tools": tools::list() });
            if modern && let Some(m) = r.as_object_mut() {
                m.insert("cacheScope".into(), "private".into());
                m.insert("ttlMs".into(), 0.into());
            }
            result(&id, r, modern)
        }
        "tools/call" => match requests::decided(MethodClass::Call, params.as_ref()) {
            Ok(call) => result(
                &id,
                tools::call(&caller, &call.name, &call.arguments).await,
                modern,
            ),
            Err(e) => reply::error(&id, reply::INVALID_REQUEST, &format!("airlock: {e}"), None),
        },
        other => reply::error(
            &id,
            reply::METHOD_NOT_FOUND,
            &format!(
                "airlock: Airlock's MCP server does not serve `{other}` (it serves initialize, server/discover, ping, tools/list and tools/call)"
            ),
            None,
        ),
    };
    Ok(reply::json_response(StatusCode::OK, &answer))
}

/// The principal of `token`: authenticated once per connection (a store lookup, or an
/// OIDC signature check), then only re-checked for expiry and revocation.
async fn principal_of(state: &AdapterState, conn: &Conn, token: &str) -> Result<Principal, String> {
    let key = crate::conn::token_digest(token);
    let known = conn
        .own
        .principals
        .lock()
        .ok()
        .and_then(|m| m.get(&key).cloned());
    let identity = state.gateway.identity();
    let grace = state.gateway.runtime().config.identity.expiry_grace;
    if let Some(p) = known {
        return match identity.still_valid(&p, grace) {
            Ok(()) => Ok(p),
            Err(e) => {
                if let Ok(mut m) = conn.own.principals.lock() {
                    m.remove(&key);
                }
                Err(no_longer(&p, e))
            }
        };
    }
    let p = identity
        .authenticate(&Secret::new(token.to_owned()))
        .await
        .map_err(|e| e.to_string())?;
    identity
        .still_valid(&p, grace)
        .map_err(|e| no_longer(&p, e))?;
    if let Ok(mut m) = conn.own.principals.lock() {
        m.insert(key, p.clone());
    }
    Ok(p)
}

fn no_longer(p: &Principal, e: airlock_identity::NoLongerValid) -> String {
    match e {
        airlock_identity::NoLongerValid::Expired(at) => {
            format!("the token expired at {at}; get a fresh one")
        }
        airlock_identity::NoLongerValid::Revoked => format!("token `{}` was revoked", p.name),
    }
}

const INSTRUCTIONS: &str = "Airlock reaches the targets you are permitted to use. Call list_targets first. Every call is decided by policy, may wait for a human's approval, is masked and recorded; a refusal says why and what you may do instead.";

fn server_info() -> Value {
    json!({ "name": "airlock", "version": env!("CARGO_PKG_VERSION") })
}

/// A result; for the 2026 era with `resultType` and the server's info in `_meta`.
fn result(id: &Value, mut result: Value, modern: bool) -> Value {
    if modern && let Some(m) = result.as_object_mut() {
        m.insert("resultType".into(), "complete".into());
        m.insert(
            "_meta".into(),
            json!({ "io.modelcontextprotocol/serverInfo": server_info() }),
        );
    }
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn bad(code: i64, why: &str) -> Response<ResponseBody> {
    reply::json_response(
        StatusCode::BAD_REQUEST,
        &reply::error(&Value::Null, code, why, None),
    )
}

/// Reads a whole small body (an in-process answer) up to `limit` bytes.
async fn collect_limited(body: Incoming, limit: usize) -> Result<bytes::Bytes, String> {
    http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string())
}
