//! Holding a decided MCP request for a human's approval: the wait (with progress
//! notifications when the client asked for them), what its outcome means for the
//! request, and what an approval is bound to.

use super::*;

/// A held request, before its wait.
pub(super) struct Held {
    pub(super) shown: String,
    pub(super) decided: Decided,
    pub(super) verdict: Verdict,
    pub(super) detail: Value,
}

/// A held request whose client gets progress notifications while it waits.
pub(super) struct HeldCall {
    pub(super) held: Held,
    /// The client's `_meta.progressToken`.
    pub(super) token: Value,
    /// The request's id.
    pub(super) id: Value,
    pub(super) modern: bool,
}

/// The `_meta.progressToken` a request carries, if any.
pub(super) fn progress_token(params: Option<&Value>) -> Option<Value> {
    params?
        .get("_meta")?
        .get("progressToken")
        .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
        .cloned()
}

/// Whether the agent accepts an event stream as the answer to its POST.
pub(super) fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// What a hold's outcome means for the request: `None` to send it (recorded as
/// approved), or the answer the agent gets instead.
pub(super) async fn settle(
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
pub(super) fn hold_with_progress(
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
pub(super) fn event(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

/// Sends the upstream's (already filtered) answer on as events: an event stream as it
/// is, a JSON answer as one event.
pub(super) async fn pipe_as_events(
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

/// Holds a decided request until a human decides; `announce` is told what it waits
/// for once the wait begins (for a progress notification).
pub(super) async fn hold<F, Fut>(
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
pub(super) fn call_digest(target: &str, d: &Decided) -> String {
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
