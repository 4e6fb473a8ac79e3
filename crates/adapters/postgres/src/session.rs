//! One client connection: TLS negotiation, the startup packet, token authentication,
//! the upstream connection, then the relay until the end, and the session's last event.

use std::net::SocketAddr;
use std::sync::Arc;

use airlock_model::{EventKind, TargetKind};
use airlock_session::{ConnectRequest, EventDraft, Session, Target};
use airlock_vault::Secret;
use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::Instrument;

use crate::AdapterState;
use crate::cancel::CancelEntry;
use crate::codec::{self, backend, frontend, startup};
use crate::error::PostgresError;
use crate::error::UpstreamError;
use crate::pool;
use crate::reply::{self, Reply};
use crate::stream::BoxIo;
use crate::{relay, upstream};

/// First byte of a TLS handshake record: a client using PostgreSQL 17's direct TLS.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Longest password message accepted (room for an OIDC JWT).
const MAX_PASSWORD_MESSAGE: usize = 64 * 1024;

/// Startup parameters that are Airlock's to set, never passed to the target.
const RESERVED_PARAMS: &[&str] = &["user", "database", "replication"];

/// Where a connection comes from.
pub enum Origin {
    /// An accepted TCP connection.
    Tcp(TcpStream),
    /// An in-process connection of Airlock's own MCP server (`sql_query`): no network,
    /// so no TLS; the agent's token still authenticates it like any other.
    Local(BoxIo),
}

/// Handles one accepted connection to the end.
pub async fn handle(
    state: Arc<AdapterState>,
    origin: Origin,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    // Its fields are what Airlock's exported spans carry (see `[telemetry]`): never a
    // token, statement or parameter.
    let span = tracing::info_span!("pg", client = %peer, protocol = "postgresql", session = tracing::field::Empty, principal = tracing::field::Empty, target = tracing::field::Empty);
    async move {
        if let Origin::Tcp(tcp) = &origin {
            let _ = tcp.set_nodelay(true);
        }
        // Only the client's part of the handshake is bounded here; connecting to the
        // target has its own `connect_timeout`, and its failure is answered and recorded.
        let limit = state.listener.handshake_timeout;
        let hello = match tokio::time::timeout(limit, client_handshake(&state, origin, peer)).await
        {
            Err(_) => {
                tracing::debug!("handshake timed out");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "handshake failed");
                return;
            }
            Ok(Ok(None)) => return,
            Ok(Ok(Some(hello))) => hello,
        };
        // The target asked for, also when the connection is refused.
        tracing::Span::current().record("target", hello.target.as_str());
        let Some(ready) = open(&state, hello, peer).await else {
            return;
        };
        let Ready {
            session,
            client,
            client_buf,
            upstream,
            params: startup_params,
        } = ready;
        tracing::Span::current().record("session", session.id());
        tracing::Span::current().record("principal", session.principal().name.as_str());
        let upstream::Upstream {
            mut io,
            key,
            mut leftover,
            tls,
            params,
            startup_frames,
        } = upstream;
        let catalog = match state.catalogs.fresh(&session.target().model.name) {
            Some(c) => c,
            None => match crate::catalog::load(&mut io, &mut leftover).await {
                Ok(c) => {
                    let c = Arc::new(c);
                    tracing::debug!(functions = c.len(), "loaded the target's function catalog");
                    state
                        .catalogs
                        .store(&session.target().model.name, c.clone());
                    c
                }
                Err(e) => {
                    // Without the catalog every function is "unknown": calls are denied
                    // unless a policy permits unknown functions (fail closed).
                    tracing::warn!(error = %e, "could not load the target's function catalog");
                    Arc::new(crate::catalog::PgCatalog::default())
                }
            },
        };
        let standard_conforming_strings = params
            .iter()
            .find(|(k, _)| k == "standard_conforming_strings")
            .is_none_or(|(_, v)| v == "on");
        let server_version = params
            .iter()
            .find(|(k, _)| k == "server_version")
            .map(|(_, v)| v.as_str())
            .unwrap_or("?");
        tracing::debug!(
            server_version,
            upstream_tls = tls,
            "connected to the target"
        );
        let guard = state.cancels.register(CancelEntry {
            target: session.target().clone(),
            upstream_key: key,
            session: Arc::downgrade(&session),
        });
        let mut client = client;
        let mut out = BytesMut::new();
        backend::put_auth_ok(&mut out);
        out.extend_from_slice(&startup_frames);
        let (pid, secret) = guard.key();
        backend::put_backend_key(&mut out, pid, secret);
        backend::put_ready(&mut out, b'I');
        if client.write_all(&out).await.is_err() || client.flush().await.is_err() {
            session.end(json!({ "reason": "client_closed" })).await;
            return;
        }
        tracing::info!(target = %session.target().model.name, "session open");
        let pooled = session.target().config.pool;
        let context = relay::RelayContext {
            classifier: &state.classifier,
            catalog: catalog.as_ref(),
            tables: &state.tables,
            standard_conforming_strings,
            keep_upstream: pooled,
        };
        let (end, kept) = relay::run(
            context, &session, client, client_buf, io, leftover, shutdown,
        )
        .await;
        drop(guard);
        tracing::info!(reason = %end.reason(), "session closed");
        let mut detail = json!({ "reason": end.reason() });
        if end.is_error() {
            detail["error"] = true.into();
        }
        session.end(detail).await;
        if let Some((io, leftover)) = kept {
            let mut upstream = upstream::Upstream {
                io,
                key,
                startup_frames: BytesMut::new(),
                params,
                tls,
                leftover,
            };
            match upstream::reset(&mut upstream).await {
                Ok(()) => state.pool.put(session.target(), &startup_params, upstream),
                Err(e) => tracing::debug!(error = %e, "server connection not reusable; closed"),
            }
        }
    }
    .instrument(span)
    .await
}

/// A client that finished its part of the handshake: what it asked for and the token
/// it presented.
struct Hello {
    io: BoxIo,
    tls: bool,
    direct_tls: bool,
    params: Vec<(String, String)>,
    target: String,
    token: Secret,
    /// Bytes the client sent after its password (normally none).
    client_buf: BytesMut,
}

struct Ready {
    session: Arc<Session>,
    client: BoxIo,
    client_buf: BytesMut,
    upstream: upstream::Upstream,
    /// The startup parameters passed to the server (the pool's key).
    params: Vec<(String, String)>,
}

async fn send_fatal(io: &mut BoxIo, r: Reply) -> Result<(), PostgresError> {
    let mut out = BytesMut::new();
    r.encode(&mut out);
    io.write_all(&out).await?;
    io.flush().await?;
    Ok(())
}

/// Reads one untyped startup-phase packet (length, then body), exactly, so that no byte
/// after it is consumed before a TLS upgrade.
async fn read_startup_packet(io: &mut BoxIo) -> Result<Vec<u8>, PostgresError> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let mut body = vec![0u8; startup::body_len(len)?];
    io.read_exact(&mut body).await?;
    Ok(body)
}

/// TLS, the startup packet and the password. `Ok(None)` when the connection ended
/// normally early (a cancel request, a refusal that was answered).
async fn client_handshake(
    state: &AdapterState,
    origin: Origin,
    peer: SocketAddr,
) -> Result<Option<Hello>, PostgresError> {
    let (mut io, direct_tls, local): (BoxIo, bool, bool) = match origin {
        Origin::Tcp(tcp) => {
            let mut first = [0u8; 1];
            let direct_tls = tcp.peek(&mut first).await? == 1 && first[0] == TLS_HANDSHAKE_RECORD;
            (Box::new(tcp), direct_tls, false)
        }
        Origin::Local(io) => (io, false, true),
    };
    let mut tls = false;
    if direct_tls {
        let stream = state.tls.accept(io).await?;
        // PostgreSQL 17 requires the "postgresql" ALPN protocol on direct TLS, so that a
        // TLS connection meant for another protocol cannot be replayed here.
        if stream.get_ref().1.alpn_protocol() != Some(crate::tls::ALPN_POSTGRESQL) {
            tracing::debug!("direct TLS without the postgresql ALPN protocol refused");
            return Ok(None);
        }
        io = Box::new(stream);
        tls = true;
    }
    let mut negotiation = startup::Negotiation::new(tls);
    let (minor, params) = loop {
        let body = read_startup_packet(&mut io).await?;
        match negotiation.step(&body)? {
            startup::Step::UpgradeToTls => {
                io.write_all(b"S").await?;
                io.flush().await?;
                io = Box::new(state.tls.accept(io).await?);
                tls = true;
            }
            startup::Step::DeclineGssEncryption => {
                io.write_all(b"N").await?;
                io.flush().await?;
            }
            startup::Step::Violation(what) => {
                send_fatal(&mut io, reply::protocol_violation(what)).await?;
                return Ok(None);
            }
            startup::Step::Cancel { pid, secret } => {
                cancel(state, (pid, secret), peer).await;
                return Ok(None);
            }
            startup::Step::Unsupported { code } => {
                send_fatal(&mut io, reply::unsupported_protocol(code)).await?;
                return Ok(None);
            }
            startup::Step::Startup { minor, params } => break (minor, params),
        }
    };

    // Protocol options (`_pq_.*`) and minor versions above 3.0 are declined, as a 3.0
    // server does, so newer clients fall back instead of failing.
    let protocol_options = startup::protocol_options(&params);
    if minor > 0 || !protocol_options.is_empty() {
        let mut out = BytesMut::new();
        backend::put_negotiate_version(&mut out, 0, &protocol_options);
        io.write_all(&out).await?;
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let plaintext_allowed =
        local || (state.listener.allow_plaintext_loopback && peer.ip().is_loopback());
    if !tls && !plaintext_allowed {
        send_fatal(&mut io, reply::tls_required()).await?;
        return Ok(None);
    }
    let Some(user) = param("user").map(str::to_owned) else {
        send_fatal(&mut io, reply::missing_user()).await?;
        return Ok(None);
    };
    if let Some(r) = param("replication")
        && !matches!(
            r.to_ascii_lowercase().as_str(),
            "false" | "off" | "no" | "0"
        )
    {
        send_fatal(&mut io, reply::replication_refused()).await?;
        return Ok(None);
    }
    let target = param("database").unwrap_or(&user).to_owned();

    // Ask for the token as a cleartext password: safe because the channel is TLS.
    let mut out = BytesMut::new();
    backend::put_auth_cleartext(&mut out);
    io.write_all(&out).await?;
    io.flush().await?;
    let mut client_buf = BytesMut::with_capacity(8192);
    let token = loop {
        if let Some(h) = codec::header(&client_buf)? {
            if h.tag != b'p' {
                send_fatal(
                    &mut io,
                    reply::protocol_violation("expected a password message"),
                )
                .await?;
                return Ok(None);
            }
            if h.frame_len > MAX_PASSWORD_MESSAGE {
                send_fatal(
                    &mut io,
                    reply::protocol_violation("password message too long"),
                )
                .await?;
                return Ok(None);
            }
            if client_buf.len() >= h.frame_len {
                let frame = client_buf.split_to(h.frame_len);
                let token = frontend::password(frame.get(5..).unwrap_or(&[]))?;
                break Secret::new(token.to_owned());
            }
        }
        // A client without a password closes here (libpq then prompts and reconnects):
        // not an authentication attempt, so nothing is recorded.
        if io.read_buf(&mut client_buf).await? == 0 {
            return Ok(None);
        }
    };
    Ok(Some(Hello {
        io,
        tls,
        direct_tls,
        params,
        target,
        token,
        client_buf,
    }))
}

/// Authenticates the token, opens the session and connects to the target. Every
/// failure is answered to the client and recorded; `None` then.
async fn open(state: &AdapterState, hello: Hello, peer: SocketAddr) -> Option<Ready> {
    let Hello {
        mut io,
        tls,
        direct_tls,
        params,
        target,
        token,
        client_buf,
    } = hello;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_owned())
    };
    let mut detail = serde_json::Map::new();
    detail.insert("client_user".into(), param("user").into());
    detail.insert("application_name".into(), param("application_name").into());
    // The agent run's W3C trace context, where a PostgreSQL client can put one: in
    // `application_name` (`crew-run traceparent=00-…`) or `options`.
    if let Some(tp) = ["application_name", "options"]
        .iter()
        .filter_map(|p| param(p))
        .find_map(|v| airlock_model::find_traceparent(&v))
    {
        // The session's span continues the agent's trace (when spans are exported).
        airlock_session::join_trace(&tp);
        detail.insert("traceparent".into(), tp.into());
    }
    detail.insert("tls".into(), tls.into());
    detail.insert("direct_tls".into(), direct_tls.into());
    let request = ConnectRequest {
        kind: TargetKind::Postgres,
        target: target.clone(),
        credential: token,
        client_addr: peer,
        detail,
    };
    let session = match state.gateway.open_session(request).await {
        Ok(s) => Arc::new(s),
        Err(refusal) => {
            tracing::info!(target = %target, reason = %refusal, "connection refused");
            let _ = send_fatal(&mut io, reply::connect_refused(&refusal)).await;
            return None;
        }
    };
    let passthrough: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, _)| !RESERVED_PARAMS.contains(&k.as_str()) && !k.starts_with("_pq_."))
        .collect();
    // Every startup parameter is a setting the server applies (`role`, `search_path`,
    // and `options=-c name=value`): each is decided like a SQL SET before connecting.
    if let Err(reason) = startup_settings_allowed(&session, &passthrough) {
        let draft = EventDraft::new(
            EventKind::Refused,
            json!({ "message": "startup parameters", "reason": reason }),
        );
        let _ = session.record_later(vec![draft]).await;
        session
            .end(json!({ "reason": "refused_startup_parameters" }))
            .await;
        let r = Reply {
            severity: "FATAL",
            code: "42501",
            message: format!("airlock: {reason}"),
            detail: None,
            hint: Some("Connect without that startup parameter (or `options` setting), or ask the operator to permit it.".into()),
            position: None,
        };
        let _ = send_fatal(&mut io, r).await;
        return None;
    }
    if let Some(upstream) = checkout(state, session.target(), &passthrough).await {
        return Some(Ready {
            session,
            client: io,
            client_buf,
            upstream,
            params: passthrough,
        });
    }
    match connect(state, session.target(), &passthrough).await {
        Ok(upstream) => Some(Ready {
            session,
            client: io,
            client_buf,
            upstream,
            params: passthrough,
        }),
        Err(e) => {
            tracing::warn!(target = %target, error = %e, "could not connect to the target");
            session.metrics().upstream_connect_failed();
            let _ = session
                .record_later(vec![EventDraft::new(
                    EventKind::ConnectFailure,
                    json!({ "error": e.to_string() }),
                )])
                .await;
            session
                .end(json!({ "reason": "target_unavailable", "error": true }))
                .await;
            let _ = send_fatal(&mut io, reply::upstream_failed(&target, &e)).await;
            None
        }
    }
}

/// How long setting `application_name` on a pooled connection may take before another
/// connection is opened instead.
const CHECKOUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A pooled connection for a session with startup parameters `params`, its
/// `application_name` set to the client's (the pool does not match on it, see
/// [`pool`](crate::pool)), with the `ParameterStatus` frames the client is to get.
async fn checkout(
    state: &AdapterState,
    target: &Arc<Target>,
    params: &[(String, String)],
) -> Option<upstream::Upstream> {
    let mut upstream = state.pool.take(target, params)?;
    tracing::debug!("reusing a pooled server connection");
    let wanted = params
        .iter()
        .find(|(k, _)| k == pool::SET_AFTER_CHECKOUT)
        .map_or("", |(_, v)| v.as_str());
    let current = upstream
        .params
        .iter()
        .find(|(k, _)| k == pool::SET_AFTER_CHECKOUT)
        .map_or("", |(_, v)| v.as_str());
    let mut reported = current.to_owned();
    if wanted != current {
        // Session-level: the `DISCARD ALL` before the connection goes back restores the
        // value it was opened with, which `params` keeps.
        let set = upstream::set_parameter(&mut upstream, pool::SET_AFTER_CHECKOUT, wanted);
        match tokio::time::timeout(CHECKOUT_TIMEOUT, set).await {
            Ok(Ok(value)) => reported = value,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "pooled server connection not usable; closed");
                return None;
            }
            Err(_) => {
                tracing::debug!("pooled server connection did not answer SET; closed");
                return None;
            }
        }
    }
    upstream.startup_frames = upstream.status_frames((pool::SET_AFTER_CHECKOUT, &reported));
    Some(upstream)
}

/// Opens a server connection for a session: first closes the target's oldest idle
/// connection (the session's parameters matched none), and when the server still has
/// no slot left (`53300 too many clients`), closes every idle connection to it and
/// tries once more.
async fn connect(
    state: &AdapterState,
    target: &Arc<Target>,
    params: &[(String, String)],
) -> Result<upstream::Upstream, UpstreamError> {
    state.pool.make_room(target);
    match upstream::connect(target, params).await {
        Err(UpstreamError::Rejected { code, .. })
            if code == "53300"
                && state
                    .pool
                    .close_idle_to(&target.config.host, target.config.port)
                    > 0 =>
        {
            tracing::info!(
                "the target had no connection slot left; closed Airlock's idle connections to it and retried"
            );
            upstream::connect(target, params).await
        }
        other => other,
    }
}

/// Decides the startup parameters as `set` actions. `options` may only carry
/// `-c name=value` (or `--name=value`) settings; anything else in it is refused.
fn startup_settings_allowed(session: &Session, params: &[(String, String)]) -> Result<(), String> {
    let mut settings: Vec<String> = Vec::new();
    for (name, value) in params {
        if name == "options" {
            let mut words = split_options(value).into_iter();
            while let Some(w) = words.next() {
                let setting = if w == "-c" {
                    words.next().unwrap_or_default()
                } else if let Some(rest) = w.strip_prefix("-c").or_else(|| w.strip_prefix("--")) {
                    rest.to_owned()
                } else {
                    return Err(format!(
                        "the startup `options` may only set parameters (-c name=value), not `{w}`"
                    ));
                };
                let var = setting
                    .split('=')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_lowercase()
                    .replace('-', "_");
                settings.push(var);
            }
        } else {
            settings.push(name.to_lowercase());
        }
    }
    let actions: Vec<airlock_model::Action> = settings
        .into_iter()
        .map(|variable| {
            airlock_model::Action::Sql(airlock_model::SqlAction {
                kind: "set".into(),
                object: airlock_model::SqlObject::Target,
                flags: airlock_model::SqlFlags {
                    statement: "set".into(),
                    variable,
                    ..Default::default()
                },
            })
        })
        .collect();
    match session
        .decide(&actions, &airlock_engine::policy::NoCatalog)
        .decision
    {
        airlock_model::Decision::Allow => Ok(()),
        airlock_model::Decision::Deny { reason } | airlock_model::Decision::Hold { reason, .. } => {
            Err(format!("a startup parameter is not permitted: {reason}"))
        }
    }
}

/// Splits a startup `options` value the way the server does: on spaces, with `\`
/// escaping the next character.
fn split_options(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

async fn cancel(state: &AdapterState, key: (i32, i32), peer: SocketAddr) {
    let Some(entry) = state.cancels.lookup(key) else {
        tracing::debug!(client = %peer, "cancel request with an unknown key ignored");
        return;
    };
    // Recorded before it is forwarded, like every other action. A cancel only stops a
    // query, so it is forwarded even if the session ended meanwhile.
    if let Some(session) = entry.session.upgrade() {
        let draft = EventDraft::new(EventKind::Cancel, json!({ "from": peer.to_string() }));
        if let Err(e) = session.record(vec![draft]).await {
            tracing::debug!(error = %e, "cancel not recorded");
        }
        // A statement waiting for approval is not at the server: stop the wait.
        session.cancel_hold();
    }
    if let Err(e) = upstream::cancel(&entry.target.config, entry.upstream_key).await {
        tracing::warn!(error = %e, "could not forward a cancel request");
    }
}
