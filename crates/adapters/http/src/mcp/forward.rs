//! Sending a decided MCP exchange to the upstream and its answer back: streamable HTTP
//! (JSON or an event stream, through the transformer), or a message channel (stdio, the
//! older HTTP+SSE transport), and the record of each answer.

use super::*;

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

/// Request headers passed to the upstream as the agent sent them.
pub(super) const FORWARDED: [&str; 6] = [
    SESSION_ID,
    PROTOCOL_VERSION,
    METHOD_HEADER,
    NAME_HEADER,
    "last-event-id",
    "user-agent",
];
/// Response headers passed to the agent.
pub(super) const RETURNED: [&str; 4] =
    [SESSION_ID, PROTOCOL_VERSION, "cache-control", "retry-after"];
/// The largest JSON answer read whole from an upstream (SSE streams are read per event).
pub(super) const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Sends the agent's request (its body unchanged) to the upstream and returns its
/// answer through the transformer.
pub(super) async fn forward(
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
    let metrics = slot.session.metrics();
    metrics.relayed_to_target(body.len());
    let response = match client.request(upstream_req).await {
        Ok(r) => r,
        Err(e) => {
            if e.is_connect() {
                metrics.upstream_connect_failed();
            }
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
        adopt_session(state, conn, slot, parts, &id).await;
    }
    respond(state, slot, response, asked, started).await
}

/// The upstream's answer for the agent.
pub(super) async fn respond(
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
    let to_client = slot.session.metrics().to_client();
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
        .counting(to_client)
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
        FilteredBody::new(inner, Vec::new(), scrub, 0, on_end)
            .counting(to_client)
            .boxed()
    } else {
        // Errors and empty acknowledgements (202): passed, with the credential scrubbed.
        FilteredBody::new(body, Vec::new(), scrub, 0, on_end)
            .counting(to_client)
            .boxed()
    };
    let mut out = Response::new(out_body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// Records the outcome of an exchange once its answer has been sent: status, bytes,
/// and what the transformer did (masked, hidden, changed tools, errors).
pub(super) fn outcome_recorder(
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
pub(super) fn body_initializes(body: &[u8]) -> bool {
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
pub(super) async fn forward_channel(
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
                    slot.session.metrics().upstream_connect_failed();
                    tracing::warn!(target = %target.model.name, error = %e, "an MCP server's channel did not open");
                    problem::upstream_failed(&target.model.name, e)
                })?);
                *running = Some(s.clone());
                s
            }
        }
    };
    slot.session.metrics().relayed_to_target(body.len());
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
    .counting(slot.session.metrics().to_client())
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
            adopt_session(state, conn, slot, parts, &id).await;
            response
                .headers_mut()
                .insert(HeaderName::from_static(SESSION_ID), v);
        }
    }
    Ok(response)
}

/// Makes `slot` the session of MCP session `id` (2025 era): it leaves the connection
/// (later requests reach it over any connection) and belongs to the request's token.
async fn adopt_session(
    state: &AdapterState,
    conn: &Conn,
    slot: &Arc<Slot>,
    parts: &hyper::http::request::Parts,
    id: &str,
) {
    conn.detach(slot).await;
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim().to_owned()))
        .unwrap_or_default();
    state
        .mcp_sessions
        .register(id, &slot.session.target().model.name, &token, slot.clone());
}
