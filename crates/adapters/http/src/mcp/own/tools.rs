//! The tools of Airlock's own MCP server: their schemas, and each call, answered as
//! text an LLM reads well plus `structuredContent` (rows and bodies as JSON). A refusal
//! or failure is a tool result with `isError` whose text starts with `airlock:` (or is
//! the target's own error) and says what to do.

use std::sync::Arc;

use airlock_engine::policy::NoCatalog;
use airlock_model::{Action, Decision, TargetKind};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::local::LocalHttp;
use super::pg::{PgConn, QueryError};
use super::{Caller, collect_limited};
use crate::conn;

/// The largest HTTP answer a tool returns.
const MAX_HTTP_BODY: usize = 1024 * 1024;
/// The longest text content (the structured content has everything).
const MAX_TEXT: usize = 32 * 1024;
/// HTTP methods the tools send.
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The tool list.
pub fn list() -> Value {
    let target =
        json!({ "type": "string", "description": "The target's name (see list_targets)." });
    json!([
        {
            "name": "list_targets",
            "description": "List the targets you may use through Airlock, their kind, and the tool that reaches each.",
            "inputSchema": { "type": "object", "properties": {}, "additionalProperties": false },
            "annotations": { "readOnlyHint": true }
        },
        {
            "name": "sql_query",
            "description": "Run one SQL statement on a PostgreSQL target. Use $1, $2... placeholders with params for values. Results may be masked; a statement may be refused by policy or wait for a human's approval.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "target": target,
                    "sql": { "type": "string", "description": "One SQL statement." },
                    "params": { "type": "array", "description": "Values for $1, $2...", "items": {} }
                },
                "required": ["target", "sql"],
                "additionalProperties": false
            }
        },
        http_tool(
            "http_request",
            "Send one HTTP request to an HTTP API target. The path is relative to the target's base URL. Airlock adds the API's credential; answers may be masked; a request may be refused or wait for approval.",
            ["Starts with /, e.g. /v1/invoices/7", "The query string without ?, e.g. status=open&limit=10", "A JSON value (sent as application/json) or a string (sent as text/plain)."],
        ),
        http_tool(
            "kubernetes",
            "Call the Kubernetes API of a kubernetes target, e.g. GET /api/v1/namespaces/default/pods. Secrets are masked; writes may be refused or wait for approval.",
            ["The API path, e.g. /apis/apps/v1/namespaces/default/deployments", "e.g. labelSelector=app%3Dweb", "The object to create, replace or patch (JSON)."],
        ),
        {
            "name": "approval_status",
            "description": "The status of an approval request (pending, approved, denied, expired, used) by its id, as a held call's answer names it. With wait_seconds, waits up to that long (at most 300) for a pending request to be decided.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "id": { "type": "string" },
                    "wait_seconds": { "type": "number", "description": "Wait this long for a decision (0 to 300)." }
                },
                "required": ["id"],
                "additionalProperties": false
            },
            "annotations": { "readOnlyHint": true }
        }
    ])
}

/// The schema of a tool that sends one HTTP request (`http_request`, `kubernetes`);
/// `hints` describe its path, query and body.
fn http_tool(name: &str, description: &str, hints: [&str; 3]) -> Value {
    let [path, query, body] = hints;
    json!({
        "name": name,
        "description": description,
        "inputSchema": {
            "type": "object",
            "properties": {
                "target": { "type": "string", "description": "The target's name (see list_targets)." },
                "method": { "type": "string", "enum": METHODS },
                "path": { "type": "string", "description": path },
                "query": { "type": "string", "description": query },
                "body": { "description": body }
            },
            "required": ["target", "method", "path"],
            "additionalProperties": false
        }
    })
}

/// A tool result.
fn answer(text: String, structured: Option<Value>, is_error: bool) -> Value {
    let text = if text.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!(
            "{}\n… (cut; structuredContent has everything)",
            &text[..cut]
        )
    } else {
        text
    };
    let mut r = json!({ "content": [{ "type": "text", "text": text }], "isError": is_error });
    if let (Some(s), Some(m)) = (structured, r.as_object_mut()) {
        m.insert("structuredContent".into(), s);
    }
    r
}

fn refusal(text: impl Into<String>) -> Value {
    answer(text.into(), None, true)
}

/// Calls one tool.
pub async fn call(caller: &Caller<'_>, name: &str, args: &Map<String, Value>) -> Value {
    let known: &[&str] = match name {
        "list_targets" => &[],
        "sql_query" => &["target", "sql", "params"],
        "http_request" | "kubernetes" => &["target", "method", "path", "query", "body"],
        "approval_status" => &["id", "wait_seconds"],
        _ => {
            return refusal(format!(
                "airlock: Airlock's MCP server has no tool `{name}` (it has list_targets, sql_query, http_request, kubernetes, approval_status)"
            ));
        }
    };
    if let Some(k) = args.keys().find(|k| !known.contains(&k.as_str())) {
        return refusal(format!(
            "airlock: `{name}` takes no argument `{k}` (it takes: {})",
            known.join(", ")
        ));
    }
    let result = match name {
        "list_targets" => Ok(list_targets(caller)),
        "sql_query" => sql_query(caller, args).await,
        "http_request" => http(caller, args, TargetKind::Http).await,
        "kubernetes" => http(caller, args, TargetKind::Kubernetes).await,
        _ => approval_status(caller, args).await,
    };
    result.unwrap_or_else(refusal)
}

fn text_arg<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match args.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(format!(
            "airlock: the argument `{key}` must be a non-empty string"
        )),
        None => Err(format!("airlock: the argument `{key}` is required")),
    }
}

/// The target `name` if it is of `kind`; else a refusal naming the right tool.
fn target_of(caller: &Caller<'_>, name: &str, kind: TargetKind) -> Result<(), String> {
    let runtime = caller.state.gateway.runtime();
    match runtime.target(name) {
        Some(t) if t.model.kind == kind => Ok(()),
        Some(t) => Err(format!(
            "airlock: `{name}` is a {} target; use {}",
            t.model.kind.as_str(),
            tool_for(t.model.kind)
        )),
        None => Err(format!(
            "airlock: there is no target `{name}`; list_targets shows the ones you may use"
        )),
    }
}

fn tool_for(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Postgres => "sql_query",
        TargetKind::Http => "http_request",
        TargetKind::Kubernetes => "kubernetes",
        TargetKind::Mcp => "an MCP client pointed at https://<airlock>/<target>",
    }
}

fn list_targets(caller: &Caller<'_>) -> Value {
    let runtime = caller.state.gateway.runtime();
    let mut targets = Vec::new();
    for t in runtime.targets() {
        let allowed = runtime.policy.as_ref().is_some_and(|p| {
            !matches!(
                p.decide(&caller.principal, &t.model, &Action::Connect, &NoCatalog)
                    .decision,
                Decision::Deny { .. }
            )
        });
        if allowed {
            targets.push(json!({ "name": t.model.name, "kind": t.model.kind.as_str(), "tool": tool_for(t.model.kind) }));
        }
    }
    let text = if targets.is_empty() {
        "No target is open to you; ask the operator for access.".to_owned()
    } else {
        targets
            .iter()
            .map(|t| {
                format!(
                    "{} ({}): use {}",
                    t["name"].as_str().unwrap_or(""),
                    t["kind"].as_str().unwrap_or(""),
                    t["tool"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    answer(text, Some(json!({ "targets": targets })), false)
}

async fn sql_query(caller: &Caller<'_>, args: &Map<String, Value>) -> Result<Value, String> {
    let target = text_arg(args, "target")?;
    let sql = text_arg(args, "sql")?;
    target_of(caller, target, TargetKind::Postgres)?;
    let params: Vec<Option<String>> = match args.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            })
            .collect(),
        Some(_) => return Err("airlock: `params` must be an array of values for $1, $2...".into()),
    };
    let Some(connector) = caller.state.sql.clone() else {
        return Err("airlock: this gateway has no [postgres] listener, so sql_query cannot reach PostgreSQL targets".into());
    };
    let key = (target.to_owned(), conn::token_digest(&caller.token));
    let cell = {
        let mut map = caller.conn.own.pg.lock().await;
        map.entry(key)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None)))
            .clone()
    };
    let mut slot = cell.lock().await;
    if slot.is_none() {
        let io = connector(caller.conn.peer);
        match PgConn::connect(io, target, &caller.token).await {
            Ok(c) => *slot = Some(c),
            Err(QueryError::Server(e)) => return Err(pg_error_text(&e)),
            Err(e) => return Err(format!("airlock: {e}")),
        }
    }
    let Some(pg) = slot.as_mut() else {
        return Err("airlock: no connection".into());
    };
    match pg.query(sql, &params).await {
        Ok(r) => {
            let mut text = format!(
                "{} ({} row{})",
                r.command,
                r.rows.len(),
                if r.rows.len() == 1 { "" } else { "s" }
            );
            if !r.columns.is_empty() {
                text.push('\n');
                text.push_str(&r.columns.join(" | "));
                for row in &r.rows {
                    text.push('\n');
                    let cells: Vec<String> = r
                        .columns
                        .iter()
                        .map(|c| match row.get(c) {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Null) | None => "NULL".into(),
                            Some(v) => v.to_string(),
                        })
                        .collect();
                    text.push_str(&cells.join(" | "));
                }
            }
            for n in &r.notices {
                text.push_str("\nnotice: ");
                text.push_str(n);
            }
            Ok(answer(
                text,
                Some(
                    json!({ "command": r.command, "columns": r.columns, "rows": r.rows, "notices": r.notices }),
                ),
                false,
            ))
        }
        Err(QueryError::Server(e)) => Ok(answer(
            pg_error_text(&e),
            Some(
                json!({ "error": { "code": e.code, "message": e.message, "detail": e.detail, "hint": e.hint } }),
            ),
            true,
        )),
        Err(e) => {
            *slot = None;
            Err(format!(
                "airlock: {e}; the statement's outcome is unknown, check before retrying a write"
            ))
        }
    }
}

fn pg_error_text(e: &super::pg::PgError) -> String {
    let mut text = e.message.clone();
    if let Some(d) = &e.detail {
        text.push_str("\ndetail: ");
        text.push_str(d);
    }
    if let Some(h) = &e.hint {
        text.push_str("\nhint: ");
        text.push_str(h);
    }
    if !e.code.is_empty() {
        text.push_str(&format!("\n(SQLSTATE {})", e.code));
    }
    text
}

async fn http(
    caller: &Caller<'_>,
    args: &Map<String, Value>,
    kind: TargetKind,
) -> Result<Value, String> {
    let target = text_arg(args, "target")?;
    let method = text_arg(args, "method")?.to_ascii_uppercase();
    let path = text_arg(args, "path")?;
    target_of(caller, target, kind)?;
    if !METHODS.contains(&method.as_str()) {
        return Err(format!(
            "airlock: method `{method}` is not one of {}",
            METHODS.join(", ")
        ));
    }
    if !path.starts_with('/') || path.contains(['?', '#']) {
        return Err("airlock: `path` starts with / and has no query or fragment (give the query in `query`)".into());
    }
    let query = match args.get("query") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(q)) => q.trim_start_matches('?').to_owned(),
        Some(_) => return Err("airlock: `query` must be a string such as a=1&b=2".into()),
    };
    let body = match args.get("body") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some((Bytes::from(s.clone()), "text/plain; charset=utf-8")),
        Some(v) => Some((Bytes::from(v.to_string()), "application/json")),
    };
    let mut uri = format!("/{target}{path}");
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(&query);
    }
    let method = hyper::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let key = conn::token_digest(&caller.token);
    let cell = {
        let mut map = caller.conn.own.http.lock().await;
        map.entry(key)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(None)))
            .clone()
    };
    let mut slot = cell.lock().await;
    if !slot.as_ref().is_some_and(LocalHttp::is_open) {
        *slot = Some(
            LocalHttp::open(caller.state, caller.conn.peer)
                .await
                .map_err(|e| format!("airlock: {e}"))?,
        );
    }
    let Some(local) = slot.as_mut() else {
        return Err("airlock: no connection".into());
    };
    let response = match local.send(method, &uri, &caller.token, body).await {
        Ok(r) => r,
        Err(e) => {
            *slot = None;
            return Err(format!(
                "airlock: the request failed ({e}); its outcome is unknown, check before retrying a write"
            ));
        }
    };
    let status = response.status();
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = collect_limited(response.into_body(), MAX_HTTP_BODY)
        .await
        .map_err(|e| format!("airlock: the answer could not be read in full ({e}); answers over {MAX_HTTP_BODY} bytes are not returned, ask for less"))?;
    let body: Value = if content_type.contains("json") {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    } else {
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    };
    let shown = match &body {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    let text = format!("HTTP {}\n{shown}", status);
    Ok(answer(
        text,
        Some(json!({ "status": status.as_u16(), "content_type": content_type, "body": body })),
        status.is_client_error() || status.is_server_error(),
    ))
}

async fn approval_status(caller: &Caller<'_>, args: &Map<String, Value>) -> Result<Value, String> {
    let id = text_arg(args, "id")?;
    let wait = match args.get("wait_seconds") {
        None | Some(Value::Null) => 0.0,
        Some(v) => v
            .as_f64()
            .filter(|w| (0.0..=300.0).contains(w))
            .ok_or("airlock: `wait_seconds` is a number from 0 to 300")?,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(wait);
    let a = loop {
        let found = caller
            .state
            .gateway
            .approvals()
            .get(id, &caller.principal)
            .await
            .map_err(|e| format!("airlock: the approval could not be read: {e}"))?;
        let Some(a) = found else {
            return Err(format!("airlock: no approval `{id}` that you may see"));
        };
        if a.status != airlock_model::ApprovalStatus::Pending
            || std::time::Instant::now() >= deadline
        {
            break a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let status = serde_json::to_value(a.status).unwrap_or(Value::Null);
    let text = format!(
        "approval {} is {}: {} on {}{}",
        a.id,
        status.as_str().unwrap_or("?"),
        a.statement,
        a.target,
        a.comment
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default()
    );
    Ok(answer(
        text,
        Some(json!({
            "id": a.id, "status": status, "statement": a.statement, "target": a.target,
            "reason": a.reason, "approver_group": a.approver_group, "decided_by": a.decided_by,
            "comment": a.comment, "created_at": a.created_at, "expires_at": a.expires_at,
        })),
        false,
    ))
}
