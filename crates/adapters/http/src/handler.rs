//! One request through the gateway, in order: route, authenticate, inspect, decide,
//! (hold), record, forward with the target's credential, and stream the response back
//! through the credential scrub and the masking filters, recording its outcome.
//!
//! Nothing reaches the upstream before its decision allows it and its event is
//! recorded; a refused request gets an RFC 9457 problem (see `problem`), never the
//! upstream's answer.

use std::sync::Arc;
use std::time::Instant;

use airlock_engine::policy::{HTTP_METHODS, NoCatalog};
use airlock_model::{Action, Decision, EventKind, TargetKind, Verdict};
use airlock_session::{ConnectRefusal, EventDraft, HoldFailure, HoldOutcome, HoldTicket};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AdapterState;
use crate::body::{BodyError, FilteredBody, ResponseBody, ResponseBodyExt};
use crate::conn::{Conn, OpenError, Slot};
use crate::headers::{self, LocationRewrite, RequestFacts};
use crate::inspect;
use crate::k8s;
use crate::mask;
use crate::problem::{self, Problem};
use crate::route::{self, RouteError};

/// [`handle`] as a boxed future of a declared type, for Airlock's own MCP server, which
/// sends requests to this handler in-process: naming the type breaks the cycle of a
/// handler whose future contains itself.
pub(crate) fn handle_boxed(
    state: Arc<AdapterState>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<ResponseBody>> + Send>> {
    Box::pin(handle(state, conn, req))
}

/// Serves one request; every failure is an answer, never a dropped connection.
pub async fn handle(
    state: Arc<AdapterState>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    // Airlock's own answers to a Kubernetes target are `Status` objects (kubectl
    // prints their message); everything else gets RFC 9457 problems.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| state.local_addr.to_string());
    if req.uri().path().starts_with(crate::mcp::metadata::PREFIX) {
        let (status, doc) = crate::mcp::metadata::document(&state, &host, req.uri().path());
        return json_response(status, &doc);
    }
    if matches!(req.uri().path(), "/mcp" | "/mcp/") {
        let span = tracing::info_span!(
            "http",
            target = "mcp",
            protocol = "mcp",
            principal = tracing::field::Empty
        );
        let own = async {
            if let Some(tp) = req
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(airlock_model::find_traceparent)
            {
                airlock_session::join_trace(&tp);
            }
            crate::mcp::own::serve(&state, &conn, req).await
        };
        return match tracing::Instrument::instrument(own, span).await {
            Ok(r) => r,
            Err(problem) => {
                let mut response = problem.response();
                if problem.status == StatusCode::UNAUTHORIZED
                    && let Ok(v) = HeaderValue::from_str(&crate::mcp::metadata::challenge(
                        &host,
                        "mcp",
                        problem.kind == "token-invalid",
                    ))
                {
                    response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                response
            }
        };
    }
    let routed = route::route(req.uri().path())
        .ok()
        .and_then(|r| state.gateway.runtime().target(&r.target));
    let routed_name = routed.as_ref().map(|t| t.model.name.clone());
    let protocol = match routed.as_ref().map(|t| t.model.kind) {
        Some(TargetKind::Kubernetes) => "kubernetes",
        Some(TargetKind::Mcp) => "mcp",
        _ => "http",
    };
    let kubernetes = routed
        .as_ref()
        .is_some_and(|t| t.model.kind == TargetKind::Kubernetes);
    let mcp_target = routed
        .filter(|t| t.model.kind == TargetKind::Mcp)
        .map(|t| t.model.name.clone());
    // Every log line of the request names its session, principal and target (JSON logs
    // carry them as fields). They are also what Airlock's exported spans carry (see
    // `[telemetry]`): never a token, a body or a query.
    let span = tracing::info_span!(
        "http",
        target = mcp_target
            .as_deref()
            .or(routed_name.as_deref())
            .unwrap_or(""),
        protocol,
        session = tracing::field::Empty,
        principal = tracing::field::Empty
    );
    match tracing::Instrument::instrument(serve(&state, &conn, req), span).await {
        Ok(response) => response,
        Err(problem) if kubernetes => k8s::status(&problem),
        Err(problem) => {
            let mut response = problem.response();
            // An MCP client finds where to get a token from the challenge (RFC 9728).
            if let Some(target) = mcp_target
                && problem.status == StatusCode::UNAUTHORIZED
                && let Ok(v) = HeaderValue::from_str(&crate::mcp::metadata::challenge(
                    &host,
                    &target,
                    problem.kind == "token-invalid",
                ))
            {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            response
        }
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<ResponseBody> {
    let mut r = Response::new(<ResponseBody as crate::body::ResponseBodyExt>::full(
        Bytes::from(value.to_string()),
    ));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn serve(
    state: &Arc<AdapterState>,
    conn: &Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Problem> {
    let started = Instant::now();
    let raw_path = req.uri().path().to_owned();
    let routed = route::route(&raw_path).map_err(|e| match e {
        RouteError::NoTarget => problem::unknown_target(
            "",
            &state
                .gateway
                .runtime()
                .target_names(airlock_model::TargetKind::Http),
        ),
        RouteError::Reserved(name) => Problem::new(
            StatusCode::NOT_FOUND,
            "reserved-path",
            "Reserved path",
            format!("airlock: `/{name}` is reserved for Airlock itself and is not served here"),
        ),
        RouteError::BadName(_) | RouteError::Path(_) => problem::bad_path(&e.to_string()),
    });
    let route = match routed {
        Ok(r) => r,
        Err(p) => return Err(drain(req, p).await),
    };
    let token = match bearer(&req) {
        Ok(t) => t,
        Err(p) => return Err(drain(req, p).await),
    };
    // The agent run's W3C trace context, recorded on its events.
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(airlock_model::find_traceparent);
    // The request's span continues the agent's trace (when spans are exported).
    if let Some(tp) = &traceparent {
        airlock_session::join_trace(tp);
    }
    if state
        .gateway
        .runtime()
        .target(&route.target)
        .is_some_and(|t| t.model.kind == TargetKind::Mcp)
    {
        return crate::mcp::serve(state, conn, req, route, token).await;
    }
    let mut detail = serde_json::Map::new();
    detail.insert("tls".into(), true.into());
    detail.insert("http_version".into(), format!("{:?}", req.version()).into());
    if let Some(ua) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        detail.insert(
            "user_agent".into(),
            ua.chars().take(200).collect::<String>().into(),
        );
    }
    let slot = match conn.session(state, &route.target, &token, detail).await {
        Ok(s) => s,
        Err(e) => return Err(drain(req, refused_session(state, e)).await),
    };
    if let Some(why) = slot.session.credential_problem() {
        conn.drop_session(&slot, &why).await;
        return Err(drain(req, problem::token_invalid(&why)).await);
    }
    slot.count();
    let span = tracing::Span::current();
    span.record("session", slot.session.id());
    span.record("principal", slot.session.principal().name.as_str());
    let shown_raw = format!(
        "{} /{}{}{}",
        req.method().as_str().to_uppercase(),
        route.target,
        route.path.as_str(),
        req.uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    )
    .replace(&token, "[REDACTED:airlock-token]");
    let Prepared {
        query,
        upgrade,
        method,
        media_type,
        parts,
        mut body,
        mut buffered,
        fields,
    } = match prepare(state, &token, req, slot.session.target().model.kind).await {
        Ok(p) => p,
        Err(refusal) => {
            let detail = json!({ "path": route.path.as_str() });
            record_refusal(&slot, &shown_raw, None, detail, &refusal).await?;
            return Err(refusal);
        }
    };
    let listener = &state.listener;
    let kind = slot.session.target().model.kind;
    let (action, k8s_request) = if kind == TargetKind::Kubernetes {
        let inspected = k8s::refuse_impersonation(&parts.headers).and_then(|()| {
            k8s::inspect(
                &parts.method,
                route.path.as_str(),
                query.as_deref().unwrap_or(""),
                buffered.as_deref(),
            )
        });
        match inspected {
            Ok(r) => (Action::K8s(r.action.clone()), Some(r)),
            Err(refusal) => {
                let detail = json!({ "path": route.path.as_str() });
                record_refusal(&slot, &shown_raw, None, detail, &refusal).await?;
                return Err(refusal);
            }
        }
    } else {
        let a = inspect::action(
            &method,
            &route,
            query.as_deref().unwrap_or(""),
            &media_type,
            fields,
        );
        (Action::Http(a), None)
    };
    let shown = format!(
        "{} /{}{}{}",
        method.to_uppercase(),
        route.target,
        route.path.as_str(),
        query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    );
    let verdict = slot
        .session
        .decide(std::slice::from_ref(&action), &NoCatalog);
    slot.outcome_recorded().await;
    let mut request_detail = json!({
        "method": method,
        "path": route.path.as_str(),
        "query": query,
        "content_type": media_type,
        "body_fields": match &action {
            Action::Http(a) => a.body_fields.clone(),
            _ => Vec::new(),
        },
        "policies": verdict.policies,
        "policy_version": verdict.policy_version,
    });
    if let (Some(tp), Some(map)) = (&traceparent, request_detail.as_object_mut()) {
        map.insert("traceparent".into(), tp.clone().into());
    }
    if let (Some(r), Some(map)) = (&k8s_request, request_detail.as_object_mut()) {
        let a = &r.action;
        map.insert(
            "kubernetes".into(),
            json!({
                "verb": a.verb,
                "group": a.group,
                "version": r.info.api_version,
                "resource": a.resource,
                "subresource": a.subresource,
                "namespace": a.namespace,
                "name": a.name,
                "kind": a.kind,
                "command": a.command,
            }),
        );
        // kubectl names each invocation: its requests are grouped by it for a reader.
        if let Some(id) = parts
            .headers
            .get("kubectl-session")
            .and_then(|v| v.to_str().ok())
        {
            map.insert(
                "kubectl_session".into(),
                id.chars().take(64).collect::<String>().into(),
            );
        }
    }
    let mut approval_id = None;
    // Time spent waiting for an approval: not Airlock's latency.
    let mut held_for = std::time::Duration::ZERO;
    let metrics = slot.session.metrics();
    match &verdict.decision {
        Decision::Allow => {}
        Decision::Deny { reason } => {
            let refusal = denied(reason, &verdict);
            record_refusal(&slot, &shown, Some("deny"), request_detail, &refusal).await?;
            metrics.forwarded(started, 1);
            return Err(refusal);
        }
        Decision::Hold { .. } => {
            let bytes = match buffered.take() {
                Some(b) => b,
                None => read_limited(body.take(), listener.hold_body_bytes)
                    .await
                    .map_err(|over| {
                        if over {
                            Problem::new(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "body-too-large",
                                "Body too large to hold",
                                format!(
                                    "airlock: this request needs approval, and a held request's body may be at most {} bytes ([http] hold_body_bytes)",
                                    listener.hold_body_bytes
                                ),
                            )
                        } else {
                            problem::bad_request("airlock: the request body could not be read")
                        }
                    })?,
            };
            let hold_started = Instant::now();
            let outcome = hold(
                &slot,
                &shown,
                &method,
                &route,
                query.as_deref(),
                &media_type,
                &bytes,
                &verdict,
            )
            .await?;
            held_for = hold_started.elapsed();
            match outcome {
                HoldOutcome::Run { approval_id: id } => approval_id = Some(id),
                HoldOutcome::Refuse { message, hint } => {
                    let refusal = Problem::new(
                        StatusCode::FORBIDDEN,
                        "approval-refused",
                        "Not approved",
                        message,
                    )
                    .with("hint", hint)
                    .with("policies", verdict.policies.clone());
                    record_refusal(&slot, &shown, Some("hold"), request_detail, &refusal).await?;
                    metrics.added(started.elapsed().saturating_sub(held_for), 1);
                    return Err(refusal);
                }
                // Answered inside `hold`.
                HoldOutcome::Pending { approval_id, .. }
                | HoldOutcome::Canceled { approval_id } => {
                    return Err(Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "approval-pending",
                        "Waiting for approval",
                        format!("airlock: the wait for approval {approval_id} was canceled; the request was not sent"),
                    )
                    .with("approval_id", approval_id));
                }
            }
            buffered = Some(bytes);
        }
    }
    if let (Some(id), Some(map)) = (&approval_id, request_detail.as_object_mut()) {
        map.insert("approval_id".into(), id.clone().into());
    }
    let draft = EventDraft {
        kind: EventKind::Request,
        statement: Some(shown.clone()),
        decision: Some(if approval_id.is_some() {
            "hold"
        } else {
            "allow"
        }),
        detail: request_detail,
    };
    let not_recorded = |e: airlock_session::RecorderError| {
        tracing::error!(error = %e, "request not forwarded: recording failed");
        problem::not_recorded()
    };
    // A request that may change something is forwarded only once its record is durable.
    // A plain read (GET, HEAD, OPTIONS; not an upgrade) is forwarded while its record is
    // written, and its answer waits for it (`[audit] read_durability`), as PostgreSQL
    // reads do: so neither an effect nor an answer precedes its record.
    let read = matches!(method.as_str(), "get" | "head" | "options") && approval_id.is_none();
    let gate = if read {
        Some(
            slot.session
                .submit_read(vec![draft])
                .await
                .map_err(not_recorded)?,
        )
    } else {
        slot.session
            .record(vec![draft])
            .await
            .map_err(not_recorded)?;
        None
    };
    let upstream_body: ResponseBody = match (buffered, body) {
        (Some(bytes), _) => {
            metrics.relayed_to_target(bytes.len());
            ResponseBody::full(bytes)
        }
        (None, Some(b)) => {
            // Streamed: counted frame by frame as the upstream takes it.
            let to_target = metrics.to_target();
            b.map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    to_target.add(data.len());
                }
                frame
            })
            .map_err(|e| Box::new(AgentBodyError(e)) as BodyError)
            .boxed()
        }
        (None, None) => ResponseBody::empty(),
    };
    // Decided, recorded and about to be sent: what Airlock added to the request.
    metrics.added(started.elapsed().saturating_sub(held_for), 1);
    let response = forward(
        state,
        conn,
        &slot,
        Forwarded {
            parts,
            route,
            query,
            k8s: k8s_request,
        },
        &token,
        upstream_body,
        upgrade,
        started,
    )
    .await;
    if let Some(gate) = gate {
        gate.await.map_err(not_recorded)?;
    }
    response
}

/// Reads and discards what is left of a refused request's body (up to 1 MiB, for up to
/// 2 s) before the refusal is sent. A server that closes a connection with unread bytes
/// makes the kernel reset it, and the client may then lose the answer it was sent: the
/// agent would see a broken connection instead of the reason.
pub(crate) async fn drain(req: Request<Incoming>, refusal: Problem) -> Problem {
    let body = http_body_util::Limited::new(req.into_body(), 1 << 20);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), body.collect()).await;
    refusal
}

/// A request ready for its decision.
struct Prepared {
    query: Option<String>,
    /// An upgrade to relay: WebSocket, or for a Kubernetes target SPDY/3.1 (exec,
    /// attach, port-forward).
    upgrade: Option<Upgrade>,
    method: String,
    media_type: String,
    parts: hyper::http::request::Parts,
    body: Option<Incoming>,
    buffered: Option<Bytes>,
    fields: Vec<String>,
}

/// The checks before the decision: the token is not in the query, the method is one
/// policy can name, and a JSON body is read (up to the limit) for its field names.
async fn prepare(
    state: &AdapterState,
    token: &str,
    req: Request<Incoming>,
    kind: TargetKind,
) -> Result<Prepared, Problem> {
    let query = req.uri().query().map(str::to_owned);
    if let Some(q) = &query
        && headers::contains(q.as_bytes(), token.as_bytes())
    {
        return Err(problem::bad_request(
            "airlock: the query string carries your Airlock token; it was not forwarded. Send the token only in `Authorization: Bearer`.",
        ));
    }
    let upgrade = upgrade_of(&req, kind);
    let method = if upgrade == Some(Upgrade::WebSocket) && kind != TargetKind::Kubernetes {
        "websocket".to_owned()
    } else {
        req.method().as_str().to_ascii_lowercase()
    };
    if !HTTP_METHODS.contains(&method.as_str()) {
        return Err(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-unknown",
            "Method not supported",
            format!(
                "airlock: the method `{}` cannot be decided by policy, so it is not forwarded (known: {})",
                req.method(),
                HTTP_METHODS.join(", ")
            ),
        ));
    }
    let media_type = inspect::media_type(
        req.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let (parts, body) = req.into_parts();
    let limit = state.listener.inspect_body_bytes;
    let mut body = Some(body);
    let mut buffered = None;
    let mut fields = Vec::new();
    // A Kubernetes write is read too, JSON or YAML: its object's kind and labels.
    let k8s_write = kind == TargetKind::Kubernetes && k8s::wants_body(&parts.method);
    if inspect::is_json(&media_type) || k8s_write {
        let bytes = read_limited(body.take(), limit).await.map_err(|over| {
            if over {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "JSON body too large to inspect",
                    format!(
                        "airlock: JSON request bodies are decided on their field names and may be at most {limit} bytes here ([http] inspect_body_bytes); this one is larger, so it was not forwarded"
                    ),
                )
            } else {
                problem::bad_request("airlock: the request body could not be read (malformed or cut short)")
            }
        })?;
        // A body that says it is JSON and is not would be decided without its fields,
        // while a lenient upstream might still read some: refused (fail closed).
        if inspect::is_json(&media_type)
            && !bytes.iter().all(u8::is_ascii_whitespace)
            && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err()
        {
            return Err(problem::bad_request(
                "airlock: the request body is declared JSON (Content-Type) but is not valid JSON; it was not forwarded. Send valid JSON, or the body's real Content-Type.",
            ));
        }
        fields = inspect::body_fields(&bytes);
        buffered = Some(bytes);
    }
    Ok(Prepared {
        query,
        upgrade,
        method,
        media_type,
        parts,
        body,
        buffered,
        fields,
    })
}

/// The agent's token from `Authorization: Bearer`.
pub(crate) fn bearer(req: &Request<Incoming>) -> Result<String, Problem> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(problem::token_missing());
    };
    if values.next().is_some() {
        return Err(problem::token_invalid(
            "the request has more than one Authorization header",
        ));
    }
    let text = value
        .to_str()
        .map_err(|_| problem::token_invalid("the Authorization header is not ASCII"))?;
    let (scheme, token) = text.trim().split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(problem::token_invalid(
            "the Authorization header is not `Bearer <token>`",
        ));
    }
    Ok(token.trim().to_owned())
}

/// A protocol upgrade Airlock relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    /// `Upgrade: websocket` on a GET: text messages are recorded.
    WebSocket,
    /// `Upgrade: SPDY/3.1`, which kubectl uses for exec, attach and port-forward:
    /// relayed byte for byte (its frames are not read).
    Spdy,
}

impl Upgrade {
    fn header(self) -> HeaderValue {
        match self {
            Upgrade::WebSocket => HeaderValue::from_static("websocket"),
            Upgrade::Spdy => HeaderValue::from_static("SPDY/3.1"),
        }
    }
}

/// The upgrade a request asks for, if Airlock relays it for this kind of target.
fn upgrade_of(req: &Request<Incoming>, kind: TargetKind) -> Option<Upgrade> {
    let asked = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())?;
    if asked.eq_ignore_ascii_case("websocket") && req.method() == hyper::Method::GET {
        return Some(Upgrade::WebSocket);
    }
    (kind == TargetKind::Kubernetes && asked.eq_ignore_ascii_case("SPDY/3.1"))
        .then_some(Upgrade::Spdy)
}

pub(crate) fn refused_session(state: &AdapterState, e: OpenError) -> Problem {
    match e {
        OpenError::Refused(ConnectRefusal::Credential(e)) => problem::token_invalid(&e.to_string()),
        OpenError::Refused(ConnectRefusal::UnknownTarget { name, available }) => {
            problem::unknown_target(&name, &available)
        }
        OpenError::Refused(ConnectRefusal::Denied { reason }) => Problem::new(
            StatusCode::FORBIDDEN,
            "connect-denied",
            "Not permitted",
            format!("airlock: {reason}"),
        ),
        OpenError::Refused(ConnectRefusal::Recorder(e)) => {
            tracing::error!(error = %e, "session not opened: recording failed");
            problem::not_recorded()
        }
        OpenError::Unusable(why) => {
            tracing::error!(error = %why, "an HTTP target is unusable");
            let _ = state;
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "target-unusable",
                "Target misconfigured",
                "airlock: the target's configuration cannot be used; tell the operator (the gateway's log says why)",
            )
        }
    }
}

/// The 403 of a denial: the reason names the policy and what is permitted.
fn denied(reason: &str, verdict: &Verdict) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "policy-denied",
        "Forbidden by policy",
        format!("airlock: {reason}"),
    )
    .with("policies", verdict.policies.clone())
    .with("policy_version", verdict.policy_version.clone())
    .with(
        "hint",
        "The request was not sent. Stay within what policy permits (see detail), or ask the operator for access.",
    )
}

async fn record_refusal(
    slot: &Slot,
    shown: &str,
    decision: Option<&'static str>,
    mut detail: Value,
    refusal: &Problem,
) -> Result<(), Problem> {
    if let Some(map) = detail.as_object_mut() {
        map.insert("status".into(), refusal.status.as_u16().into());
        map.insert("reason".into(), refusal.detail.clone().into());
    }
    slot.session
        .record(vec![EventDraft {
            kind: EventKind::Request,
            statement: Some(shown.to_owned()),
            decision,
            detail,
        }])
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "refusal not recorded");
            problem::not_recorded()
        })?;
    Ok(())
}

/// Holds a request for approval: the agent's client sees nothing but a delay.
#[allow(clippy::too_many_arguments)]
async fn hold(
    slot: &Slot,
    shown: &str,
    method: &str,
    route: &route::Route,
    query: Option<&str>,
    media_type: &str,
    body: &[u8],
    verdict: &Verdict,
) -> Result<HoldOutcome, Problem> {
    let digest = request_digest(method, &route.target, route.path.as_str(), query, body);
    let preview_len = body.len().min(4096);
    let preview = String::from_utf8_lossy(body.get(..preview_len).unwrap_or(&[])).into_owned();
    let ticket = HoldTicket {
        statement: shown.to_owned(),
        params: json!({
            "content_type": media_type,
            "body_bytes": body.len(),
            "body_sha256": hex::encode(Sha256::digest(body)),
            "body": preview,
        }),
        digest,
        verdict: verdict.clone(),
    };
    // Nothing is sent to the agent while it waits: its client sees only a delay.
    let outcome = slot
        .session
        .hold_until_decided(ticket, |_, _| async {
            Ok::<(), std::convert::Infallible>(())
        })
        .await
        .map_err(|e| {
            let HoldFailure::Recorder(e) = e;
            tracing::error!(error = %e, "held request not sent: recording failed");
            problem::not_recorded()
        })?;
    if let HoldOutcome::Pending {
        approval_id,
        message,
        hint,
    } = outcome
    {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "approval-pending",
            "Waiting for approval",
            message,
        )
        .with("approval_id", approval_id)
        .with("hint", hint));
    }
    Ok(outcome)
}

/// What an approval of an HTTP request is bound to: method, target, path, query and
/// body, each length-prefixed so that no two requests share a digest.
fn request_digest(
    method: &str,
    target: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> String {
    let mut h = Sha256::new();
    h.update(b"airlock-http-request-v1\0");
    for part in [
        method.as_bytes(),
        target.as_bytes(),
        path.as_bytes(),
        query.unwrap_or("").as_bytes(),
        body,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update([u8::from(query.is_some())]);
    hex::encode(h.finalize())
}

/// Reads a body up to `limit` bytes. `Err(true)`: larger; `Err(false)`: it failed.
pub(crate) async fn read_limited(body: Option<Incoming>, limit: usize) -> Result<Bytes, bool> {
    let Some(body) = body else {
        return Ok(Bytes::new());
    };
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => Err(e
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()),
    }
}

/// What is forwarded: the agent's request head, where it goes, and for a Kubernetes
/// target how the API server reads it.
struct Forwarded {
    parts: hyper::http::request::Parts,
    route: route::Route,
    query: Option<String>,
    k8s: Option<k8s::K8sRequest>,
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &AdapterState,
    conn: &Conn,
    slot: &Arc<Slot>,
    forwarded: Forwarded,
    token: &str,
    body: ResponseBody,
    upgrade: Option<Upgrade>,
    started: Instant,
) -> Result<Response<ResponseBody>, Problem> {
    let Forwarded {
        parts,
        route,
        query,
        k8s: k8s_request,
    } = forwarded;
    let target_name = route.target.clone();
    let client = state
        .clients
        .for_target(slot.session.target())
        .map_err(|e| problem::upstream_failed(&target_name, e))?;
    let url = slot.base.url(route.path.as_str(), query.as_deref());
    let agent_host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()));
    let facts = RequestFacts {
        agent_token: token,
        client_ip: conn.peer.ip().to_string(),
        agent_host: agent_host.clone(),
        upgrade: upgrade.map(Upgrade::header),
    };
    let injected = slot.credential.header.as_ref().map(|(n, _)| n);
    let mut out_headers =
        headers::upstream_request(&parts.headers, &facts, &slot.base.authority, injected)
            .map_err(|e| problem::bad_request(format!("airlock: {e}")))?;
    if let Some((name, value)) = &slot.credential.header {
        out_headers.insert(name.clone(), value.clone());
    }
    if let Some(r) = &k8s_request {
        let target = slot.session.target();
        k8s::upstream_headers(
            &mut out_headers,
            r.info.is_resource_request,
            target.config.impersonate.then(|| slot.session.principal()),
        );
    }
    let mut upstream_req = Request::builder()
        .method(parts.method.clone())
        .uri(&url)
        .body(body)
        .map_err(|e| {
            problem::bad_request(format!(
                "airlock: the upstream request cannot be built: {e}"
            ))
        })?;
    *upstream_req.headers_mut() = out_headers;
    let head = parts.method == hyper::Method::HEAD;
    let agent_upgrade = upgrade.map(|_| hyper::upgrade::on(Request::from_parts(parts, ())));
    let response = match client.request(upstream_req).await {
        Ok(r) => r,
        Err(e) => {
            if e.is_connect() {
                slot.session.metrics().upstream_connect_failed();
            }
            let why = upstream_error(&e);
            if let Some(agent) = agent_body_error(&e) {
                // The agent's own body was malformed (a bad chunk, cut short): the
                // upstream saw this one request fail, never a second one.
                record_outcome_now(
                    slot,
                    json!({ "status": 400, "error": agent, "duration_ms": elapsed_ms(started) }),
                );
                return Err(problem::bad_request(format!(
                    "airlock: the request body could not be read ({agent}); the upstream saw the request fail"
                )));
            }
            record_outcome_now(
                slot,
                json!({ "status": 502, "error": why, "duration_ms": elapsed_ms(started) }),
            );
            return Err(problem::upstream_failed(&target_name, why));
        }
    };
    let through = format!(
        "https://{}/{}",
        agent_host.unwrap_or_else(|| state.local_addr.to_string()),
        target_name
    );
    let prefix = slot.base.prefix();
    let rewrite = LocationRewrite {
        upstream_base: &prefix,
        through_airlock: through,
    };
    if let Some(upgrade) = upgrade
        && response.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let (response, relay) = crate::websocket::relay(
            slot.clone(),
            response,
            agent_upgrade,
            &rewrite,
            match (upgrade, slot.session.target().model.kind) {
                (Upgrade::Spdy, _) => crate::websocket::Frames::None,
                (Upgrade::WebSocket, TargetKind::Kubernetes) => {
                    crate::websocket::Frames::KubernetesChannels
                }
                (Upgrade::WebSocket, _) => crate::websocket::Frames::Text,
            },
            started,
        )?;
        conn.upgraded(relay);
        return Ok(response);
    }
    let secrets = k8s_request
        .as_ref()
        .map(|r| (r.action.resource == "secrets", r.watch));
    respond(slot, response, &rewrite, head, secrets, started).await
}

/// The agent's request body failed while it streamed to the upstream.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AgentBodyError(hyper::Error);

/// The agent's body error in an upstream error's chain, if that is what failed.
fn agent_body_error(e: &hyper_util::client::legacy::Error) -> Option<String> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(agent) = s.downcast_ref::<AgentBodyError>() {
            return Some(agent.to_string());
        }
        source = s.source();
    }
    None
}

pub(crate) fn upstream_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Queues a request's outcome (the `result` event) in its session, in a task of its own
/// (a body ends inside a synchronous poll); the next request waits for it to be queued.
pub(crate) fn record_outcome_now(slot: &Arc<Slot>, detail: Value) {
    let s = slot.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = s
            .session
            .record_later(vec![EventDraft::new(EventKind::Result, detail)])
            .await
        {
            tracing::error!(error = %e, "an HTTP outcome could not be recorded");
        }
    });
    slot.outcome_recording(task);
}

/// The upstream's response for the agent: headers scrubbed, body filtered.
async fn respond(
    slot: &Arc<Slot>,
    response: Response<Incoming>,
    rewrite: &LocationRewrite<'_>,
    head: bool,
    // A Kubernetes response: whether it is about Secrets, and whether it is a watch.
    kubernetes: Option<(bool, bool)>,
    started: Instant,
) -> Result<Response<ResponseBody>, Problem> {
    let (parts, body) = response.into_parts();
    let exact = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // No body to filter: HEAD, 1xx, 204, 304, or an empty one.
    let bodyless = head
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED
        || exact == Some(0);
    let target = slot.session.target().model.name.clone();
    let content_type = inspect::media_type(
        parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let coding = crate::decode::coding(
        parts
            .headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let mut filters: Vec<Box<dyn crate::body::Filter>> = Vec::new();
    let decoded = match coding {
        crate::decode::Coding::Identity => false,
        crate::decode::Coding::Decode(d) => {
            filters.push(Box::new(crate::decode::DecodeFilter::new(d)));
            true
        }
        crate::decode::Coding::Unsupported(c) => {
            record_outcome_now(
                slot,
                json!({ "status": 502, "error": format!("content-encoding {c}"), "duration_ms": elapsed_ms(started) }),
            );
            return Err(problem::response_withheld(
                &target,
                format!(
                    "it is encoded with `{c}` although Airlock asked for identity, and such a body cannot be inspected"
                ),
            ));
        }
    };
    let masking = if bodyless {
        None
    } else {
        let watch = kubernetes.is_some_and(|(_, watch)| watch);
        mask::filter_for(slot.session.masker(), &content_type, watch)
    };
    if masking.is_none()
        && !bodyless
        && let Some(rule) = slot.session.masker().and_then(|m| m.withholds_unmaskable())
    {
        let why = format!(
            "its content type `{}` cannot be masked, and masking rule `{rule}` withholds what cannot be masked",
            if content_type.is_empty() {
                "(none)"
            } else {
                content_type.as_str()
            }
        );
        record_outcome_now(
            slot,
            json!({ "status": 502, "error": why, "withheld": true, "duration_ms": elapsed_ms(started) }),
        );
        return Err(problem::response_withheld(&target, why));
    }
    let masked = masking.is_some();
    if let Some(m) = masking {
        filters.push(m);
    }
    // Secrets are masked whatever the masking rules say, after them: their values
    // never reach an agent, and the object stays valid for kubectl (`data` values are
    // still Base64).
    if let Some((true, watch)) = kubernetes
        && !bodyless
    {
        if !inspect::is_json(&content_type) {
            // Airlock asked for JSON: a Secret in any other form cannot be masked.
            let why = format!(
                "a response about Secrets came as `{content_type}`, not JSON, and could not be masked"
            );
            record_outcome_now(
                slot,
                json!({ "status": 502, "error": why, "withheld": true, "duration_ms": elapsed_ms(started) }),
            );
            return Err(problem::response_withheld(&target, why));
        }
        filters.push(Box::new(k8s::secrets::SecretFilter::new(true, watch)));
    }
    let length_kept = filters.is_empty();
    let (headers, scrubbed_headers) = headers::agent_response(
        &parts.headers,
        &slot.credential.scrubber,
        rewrite,
        decoded,
        length_kept || bodyless,
        false,
    );
    let status = parts.status;
    let capture = slot.session.target().config.capture_bytes;
    let recorded = slot.clone();
    let on_end: crate::body::OnEnd = Box::new(move |outcome| {
        let s = recorded.clone();
        let masker = s.session.masker().cloned();
        let mut detail = json!({
            "status": status.as_u16(),
            "duration_ms": elapsed_ms(started),
            "content_type": content_type,
            "response_bytes": outcome.bytes_out,
            "upstream_bytes": outcome.bytes_in,
            "masked_body": masked,
            "credential_scrubbed": outcome.scrubbed + scrubbed_headers,
        });
        if let Some(map) = detail.as_object_mut() {
            if let Some(m) = &masker
                && !outcome.tally.is_empty()
            {
                map.insert("masked".into(), outcome.tally.to_json(m));
            }
            if capture > 0 {
                map.insert(
                    "capture".into(),
                    String::from_utf8_lossy(&outcome.capture)
                        .into_owned()
                        .into(),
                );
            }
            if let Some(e) = &outcome.error {
                map.insert("error".into(), e.clone().into());
            }
        }
        record_outcome_now(&s, detail);
    });
    let body = FilteredBody::new(
        body,
        filters,
        slot.credential.scrubber.stream(),
        capture,
        on_end,
    )
    .with_exact_length(exact.filter(|_| length_kept))
    .counting(slot.session.metrics().to_client());
    let mut headers = headers;
    // A small body that masking rewrites is read whole and sent with its new length:
    // one write instead of a chunked stream (and a clean 502 rather than a cut-off
    // response when it cannot be masked). Larger ones stream.
    let body = match exact {
        Some(n) if !length_kept && !bodyless && n <= SMALL_BODY => match body.collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                ResponseBody::full(bytes)
            }
            Err(e) => {
                return Err(problem::response_withheld(&target, e));
            }
        },
        _ => {
            // A stream may outlive the agent's credential: it ends when the credential
            // expires or is revoked, as the next request would be refused.
            let guard = slot.clone();
            body.with_watchdog(
                std::time::Duration::from_secs(1),
                Box::new(move || guard.session.credential_problem()),
            )
            .boxed()
        }
    };
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// Largest body (by its `Content-Length`) that is masked whole rather than streamed.
const SMALL_BODY: u64 = 256 * 1024;
