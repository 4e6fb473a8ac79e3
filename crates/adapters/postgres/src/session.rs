//! One client connection: TLS negotiation, the startup packet, token authentication,
//! the upstream connection, then the relay until the end, and the session's last event.

use std::net::SocketAddr;
use std::sync::Arc;

use airlock_model::{EventKind, TargetKind};
use airlock_session::{ConnectRequest, EventDraft, Session};
use airlock_vault::Secret;
use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::Instrument;

use crate::AdapterState;
use crate::cancel::CancelEntry;
use crate::codec::{self, backend, frontend};
use crate::error::PostgresError;
use crate::reply::{self, Reply};
use crate::stream::BoxIo;
use crate::{relay, upstream};

/// First byte of a TLS handshake record: a client using PostgreSQL 17's direct TLS.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Longest password message accepted (room for an OIDC JWT).
const MAX_PASSWORD_MESSAGE: usize = 64 * 1024;

/// Startup parameters that are Airlock's to set, never passed to the target.
const RESERVED_PARAMS: &[&str] = &["user", "database", "replication"];

/// Handles one accepted connection to the end.
pub async fn handle(
    state: Arc<AdapterState>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("pg", client = %peer, session = tracing::field::Empty, principal = tracing::field::Empty);
    async move {
        let _ = tcp.set_nodelay(true);
        let limit = state.listener.handshake_timeout;
        let handshake = tokio::time::timeout(limit, handshake(&state, tcp, peer)).await;
        let ready = match handshake {
            Err(_) => {
                tracing::debug!("handshake timed out");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "handshake failed");
                return;
            }
            Ok(Ok(None)) => return,
            Ok(Ok(Some(ready))) => ready,
        };
        let Ready {
            session,
            client,
            client_buf,
            startup,
        } = ready;
        tracing::Span::current().record("session", session.id());
        tracing::Span::current().record("principal", session.principal().name.as_str());
        let upstream::Upstream {
            io,
            key,
            leftover,
            tls,
            params,
            ..
        } = startup.upstream;
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
        out.extend_from_slice(&startup.frames);
        let (pid, secret) = guard.key();
        backend::put_backend_key(&mut out, pid, secret);
        backend::put_ready(&mut out, b'I');
        if client.write_all(&out).await.is_err() || client.flush().await.is_err() {
            session
                .end(json!({ "reason": "client_closed", "upstream_tls": tls }))
                .await;
            return;
        }
        tracing::info!(target = %session.target().model.name, "session open");
        let end = relay::run(&session, client, client_buf, io, leftover, shutdown).await;
        drop(guard);
        tracing::info!(reason = %end.reason(), "session closed");
        session.end(json!({ "reason": end.reason() })).await;
    }
    .instrument(span)
    .await
}

struct Startup {
    upstream: upstream::Upstream,
    frames: BytesMut,
}

struct Ready {
    session: Arc<Session>,
    client: BoxIo,
    client_buf: BytesMut,
    startup: Startup,
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
    let len = i32::from_be_bytes(len);
    if !(8..=codec::MAX_STARTUP_LEN as i32).contains(&len) {
        return Err(codec::CodecError::BadLength {
            tag: 0,
            len: i64::from(len),
        }
        .into());
    }
    let mut body = vec![0u8; len as usize - 4];
    io.read_exact(&mut body).await?;
    Ok(body)
}

/// Everything before the relay. `Ok(None)` when the connection ended normally early (a
/// cancel request, a refused login that was answered).
async fn handshake(
    state: &AdapterState,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Result<Option<Ready>, PostgresError> {
    let mut first = [0u8; 1];
    let direct_tls = tcp.peek(&mut first).await? == 1 && first[0] == TLS_HANDSHAKE_RECORD;
    let mut io: BoxIo = Box::new(tcp);
    let mut tls = false;
    if direct_tls {
        io = Box::new(state.tls.accept(io).await?);
        tls = true;
    }
    let (minor, params) = loop {
        let body = read_startup_packet(&mut io).await?;
        match frontend::startup_packet(&body)? {
            frontend::StartupPacket::SslRequest if !tls => {
                io.write_all(b"S").await?;
                io.flush().await?;
                io = Box::new(state.tls.accept(io).await?);
                tls = true;
            }
            frontend::StartupPacket::GssEncRequest if !tls => {
                io.write_all(b"N").await?;
                io.flush().await?;
            }
            frontend::StartupPacket::SslRequest | frontend::StartupPacket::GssEncRequest => {
                send_fatal(
                    &mut io,
                    reply::protocol_violation("encryption requested twice"),
                )
                .await?;
                return Ok(None);
            }
            frontend::StartupPacket::Cancel { pid, secret } => {
                cancel(state, (pid, secret), peer).await;
                return Ok(None);
            }
            frontend::StartupPacket::Unsupported { code } => {
                send_fatal(&mut io, reply::unsupported_protocol(code)).await?;
                return Ok(None);
            }
            frontend::StartupPacket::Startup { minor, params } => break (minor, params),
        }
    };

    // Protocol options (`_pq_.*`) and minor versions above 3.0 are declined, as a 3.0
    // server does, so newer clients fall back instead of failing.
    let protocol_options: Vec<&str> = params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect();
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
    let plaintext_allowed = state.listener.allow_plaintext_loopback && peer.ip().is_loopback();
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
    let application_name = param("application_name").map(str::to_owned);

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

    let mut detail = serde_json::Map::new();
    detail.insert("client_user".into(), user.clone().into());
    detail.insert("application_name".into(), application_name.clone().into());
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
            send_fatal(&mut io, reply::connect_refused(&refusal)).await?;
            return Ok(None);
        }
    };

    let passthrough: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, _)| !RESERVED_PARAMS.contains(&k.as_str()) && !k.starts_with("_pq_."))
        .collect();
    match upstream::connect(session.target(), &passthrough).await {
        Ok(up) => {
            let frames = up.startup_frames.clone();
            Ok(Some(Ready {
                session,
                client: io,
                client_buf,
                startup: Startup {
                    upstream: up,
                    frames,
                },
            }))
        }
        Err(e) => {
            tracing::warn!(target = %target, error = %e, "could not connect to the target");
            let _ = session
                .record_later(vec![EventDraft::new(
                    EventKind::ConnectFailure,
                    json!({ "error": e.to_string() }),
                )])
                .await;
            session.end(json!({ "reason": "target_unavailable" })).await;
            send_fatal(&mut io, reply::upstream_failed(&target, &e)).await?;
            Ok(None)
        }
    }
}

async fn cancel(state: &AdapterState, key: (i32, i32), peer: SocketAddr) {
    let Some(entry) = state.cancels.lookup(key) else {
        tracing::debug!(client = %peer, "cancel request with an unknown key ignored");
        return;
    };
    let result = upstream::cancel(&entry.target.config, entry.upstream_key).await;
    if let Some(session) = entry.session.upgrade() {
        let detail = match &result {
            Ok(()) => json!({ "from": peer.to_string(), "forwarded": true }),
            Err(e) => {
                json!({ "from": peer.to_string(), "forwarded": false, "error": e.to_string() })
            }
        };
        let _ = session
            .record_later(vec![EventDraft::new(EventKind::Cancel, detail)])
            .await;
    }
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not forward a cancel request");
    }
}
