//! Connecting to a target with the vaulted credential: TLS per `sslmode`, the startup
//! message carrying the client's parameters, and SCRAM-SHA-256, MD5 or cleartext
//! authentication. Also sends cancel requests on a client's behalf.

use std::time::Duration;

use airlock_config::{SslMode, TargetConfig};
use airlock_session::Target;
use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::codec::{self, Reader, backend, put_message};
use crate::error::UpstreamError;
use crate::stream::BoxIo;
use crate::tls;

/// An authenticated connection to a target, ready for queries.
pub struct Upstream {
    /// The connection.
    pub io: BoxIo,
    /// The server's cancel key.
    pub key: (i32, i32),
    /// `ParameterStatus` and `NoticeResponse` frames the server sent during startup, to be
    /// relayed to the client as they are.
    pub startup_frames: BytesMut,
    /// Parameters the server reported (name, value).
    pub params: Vec<(String, String)>,
    /// Whether the connection is encrypted.
    pub tls: bool,
    /// Bytes already read past `ReadyForQuery` (normally none).
    pub leftover: BytesMut,
}

fn addr(t: &TargetConfig) -> String {
    format!("{}:{}", t.host, t.port)
}

/// Opens and authenticates a connection to `target`, passing on `client_params`
/// (everything the client sent except `user` and `database`).
pub async fn connect(
    target: &Target,
    client_params: &[(String, String)],
) -> Result<Upstream, UpstreamError> {
    let limit = target.config.connect_timeout;
    match tokio::time::timeout(limit, connect_inner(target, client_params)).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout {
            addr: addr(&target.config),
            secs: limit.as_secs(),
        }),
    }
}

/// Opens TCP and negotiates TLS as `sslmode` says.
async fn open(t: &TargetConfig) -> Result<(BoxIo, bool), UpstreamError> {
    let address = addr(t);
    let tcp = TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: address.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let tls_config = tls::client_config(t).map_err(|e| UpstreamError::Tls {
        addr: address.clone(),
        detail: e.to_string(),
    })?;
    let Some(tls_config) = tls_config else {
        return Ok((Box::new(tcp), false));
    };
    let mut tcp = tcp;
    let mut req = BytesMut::new();
    frontend::ssl_request(&mut req);
    let io_err = |source| UpstreamError::Connect {
        addr: address.clone(),
        source,
    };
    tcp.write_all(&req).await.map_err(io_err)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(io_err)?;
    match answer[0] {
        b'S' => {
            let name = tls::server_name(&t.host).map_err(|e| UpstreamError::Tls {
                addr: address.clone(),
                detail: e.to_string(),
            })?;
            let connector = tokio_rustls::TlsConnector::from(tls_config);
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| UpstreamError::Tls {
                    addr: address.clone(),
                    detail: e.to_string(),
                })?;
            Ok((Box::new(stream), true))
        }
        b'N' if t.sslmode == SslMode::Prefer => Ok((Box::new(tcp), false)),
        b'N' => Err(UpstreamError::TlsRefused { addr: address }),
        other => Err(UpstreamError::Protocol(format!(
            "unexpected answer {other:#04x} to SSLRequest"
        ))),
    }
}

async fn connect_inner(
    target: &Target,
    client_params: &[(String, String)],
) -> Result<Upstream, UpstreamError> {
    let t = &target.config;
    let (mut io, tls) = open(t).await?;
    let mut params: Vec<(&str, &str)> =
        vec![("user", t.user.as_str()), ("database", t.database.as_str())];
    params.extend(client_params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut out = BytesMut::new();
    frontend::startup_message(params.iter().copied(), &mut out)
        .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    send(&mut io, &mut out).await?;

    let mut buf = BytesMut::with_capacity(8192);
    let mut scram: Option<ScramSha256> = None;
    let mut startup_frames = BytesMut::new();
    let mut server_params = Vec::new();
    let mut key = None;
    loop {
        let (tag, body, raw) = read_frame(&mut io, &mut buf).await?;
        match tag {
            b'R' => {
                let (code, rest) = backend::authentication(&body).map_err(proto)?;
                match code {
                    0 => {}
                    3 => {
                        frontend::password_message(target.credential.expose().as_bytes(), &mut out)
                            .map_err(proto)?;
                        send(&mut io, &mut out).await?;
                    }
                    5 => {
                        let salt: [u8; 4] = rest
                            .get(..4)
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| UpstreamError::Protocol("short MD5 salt".into()))?;
                        let hash = postgres_protocol::authentication::md5_hash(
                            t.user.as_bytes(),
                            target.credential.expose().as_bytes(),
                            salt,
                        );
                        frontend::password_message(hash.as_bytes(), &mut out).map_err(proto)?;
                        send(&mut io, &mut out).await?;
                    }
                    10 => {
                        let mechanisms = backend::sasl_mechanisms(rest).map_err(proto)?;
                        if !mechanisms.contains(&SCRAM_SHA_256) {
                            return Err(UpstreamError::UnsupportedAuth(format!(
                                "SASL {}",
                                mechanisms.join(", ")
                            )));
                        }
                        // Channel binding is not offered ("n"), so a server listing
                        // SCRAM-SHA-256-PLUS still accepts plain SCRAM-SHA-256.
                        let s = ScramSha256::new(
                            target.credential.expose().as_bytes(),
                            ChannelBinding::unsupported(),
                        );
                        frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)
                            .map_err(proto)?;
                        send(&mut io, &mut out).await?;
                        scram = Some(s);
                    }
                    11 => {
                        let s = scram.as_mut().ok_or_else(|| {
                            UpstreamError::Protocol("SASLContinue without SASL".into())
                        })?;
                        s.update(rest)
                            .map_err(|e| UpstreamError::Scram(e.to_string()))?;
                        frontend::sasl_response(s.message(), &mut out).map_err(proto)?;
                        send(&mut io, &mut out).await?;
                    }
                    12 => {
                        let mut s = scram.take().ok_or_else(|| {
                            UpstreamError::Protocol("SASLFinal without SASL".into())
                        })?;
                        s.finish(rest)
                            .map_err(|e| UpstreamError::Scram(e.to_string()))?;
                    }
                    other => return Err(UpstreamError::UnsupportedAuth(format!("code {other}"))),
                }
            }
            b'S' => {
                let (name, value) = backend::parameter_status(&body).map_err(proto)?;
                server_params.push((name.to_owned(), value.to_owned()));
                startup_frames.extend_from_slice(&raw);
            }
            b'N' => startup_frames.extend_from_slice(&raw),
            b'K' => key = Some(backend::backend_key_data(&body).map_err(proto)?),
            b'v' => {} // NegotiateProtocolVersion: Airlock asked for 3.0 without options.
            b'E' => {
                let f = backend::error_fields(&body).map_err(proto)?;
                return Err(UpstreamError::Rejected {
                    code: f.code,
                    message: f.message,
                });
            }
            b'Z' => {
                backend::ready_for_query(&body).map_err(proto)?;
                return Ok(Upstream {
                    io,
                    key: key.unwrap_or((0, 0)),
                    startup_frames,
                    params: server_params,
                    tls,
                    leftover: buf,
                });
            }
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected message '{}' during startup",
                    char::from(other)
                )));
            }
        }
    }
}

fn proto(e: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Protocol(e.to_string())
}

async fn send(io: &mut BoxIo, out: &mut BytesMut) -> Result<(), UpstreamError> {
    io.write_all(out).await.map_err(proto)?;
    io.flush().await.map_err(proto)?;
    out.clear();
    Ok(())
}

/// Reads one whole typed frame: tag, body, and the raw frame.
async fn read_frame(
    io: &mut BoxIo,
    buf: &mut BytesMut,
) -> Result<(u8, Bytes, Bytes), UpstreamError> {
    loop {
        if let Some(h) = codec::header(buf).map_err(proto)? {
            if h.frame_len > codec::MAX_INSPECTED_BACKEND {
                return Err(UpstreamError::Protocol("oversized startup message".into()));
            }
            if buf.len() >= h.frame_len {
                let raw = buf.split_to(h.frame_len).freeze();
                let body = raw.slice(5..);
                return Ok((h.tag, body, raw));
            }
        }
        if io.read_buf(buf).await.map_err(proto)? == 0 {
            return Err(UpstreamError::Protocol(
                "the server closed the connection".into(),
            ));
        }
    }
}

/// Asks the target to cancel the query of backend `key`. Errors are only logged by the
/// caller: PostgreSQL never answers a cancel request either way.
pub async fn cancel(target: &TargetConfig, key: (i32, i32)) -> Result<(), UpstreamError> {
    let work = async {
        let (mut io, _) = open(target).await?;
        let mut out = BytesMut::new();
        frontend::cancel_request(key.0, key.1, &mut out);
        send(&mut io, &mut out).await?;
        // Wait for the server to close, so the cancel has been read before we return.
        let mut sink = [0u8; 64];
        let _ = io.read(&mut sink).await;
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .unwrap_or_else(|_| {
            Err(UpstreamError::Timeout {
                addr: addr(target),
                secs: 10,
            })
        })
}

/// How long resetting a connection for reuse may take before it is closed instead.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);

/// Makes a connection a finished session leaves behind fit for another session:
/// `DISCARD ALL` (settings, role, prepared statements, cursors, temporary tables,
/// LISTENs, advisory locks, cached plans). Everything the server sends until its
/// ReadyForQuery is read and dropped; new parameter values update `up.params`.
/// Any error, a transaction left open or a timeout means the connection must be closed.
pub async fn reset(up: &mut Upstream) -> Result<(), UpstreamError> {
    match tokio::time::timeout(RESET_TIMEOUT, reset_inner(up)).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Protocol("DISCARD ALL timed out".into())),
    }
}

/// The query that follows `DISCARD ALL` in the same write: whether the session left the
/// server process a temporary schema. `DISCARD ALL` drops temporary tables but not the
/// schema, and a backend that has one behaves differently from a fresh one (a
/// transaction that touches it cannot be prepared; `pg_my_temp_schema()` names it), so
/// such a connection is closed rather than handed to another session.
const TEMP_SCHEMA_CHECK: &str = "SELECT pg_catalog.pg_my_temp_schema()::pg_catalog.int8";

async fn reset_inner(up: &mut Upstream) -> Result<(), UpstreamError> {
    let mut out = BytesMut::new();
    frontend::query("DISCARD ALL", &mut out).map_err(proto)?;
    // Pipelined: one round trip for both. DISCARD ALL cannot share a query string
    // (an implicit transaction block) with another statement.
    frontend::query(TEMP_SCHEMA_CHECK, &mut out).map_err(proto)?;
    send(&mut up.io, &mut out).await?;
    let mut discarded = false;
    let mut temp_schema: Option<bool> = None;
    let mut ready = 0;
    loop {
        let (tag, body, _) = read_frame(&mut up.io, &mut up.leftover).await?;
        match tag {
            b'C' if ready == 0 => {
                discarded = backend::command_complete(&body).map_err(proto)? == "DISCARD ALL"
            }
            b'D' => {
                temp_schema = Some(backend::first_text_value(&body).map_err(proto)? != Some("0"))
            }
            b'E' => {
                let f = backend::error_fields(&body).map_err(proto)?;
                return Err(UpstreamError::Protocol(format!(
                    "resetting the connection failed: {} ({})",
                    f.message, f.code
                )));
            }
            b'S' => {
                let (name, value) = backend::parameter_status(&body).map_err(proto)?;
                match up.params.iter_mut().find(|(n, _)| n == name) {
                    Some(p) => p.1 = value.to_owned(),
                    None => up.params.push((name.to_owned(), value.to_owned())),
                }
            }
            b'Z' => {
                let status = backend::ready_for_query(&body).map_err(proto)?;
                ready += 1;
                if !discarded || status != b'I' {
                    return Err(UpstreamError::Protocol(
                        "the connection was not idle after DISCARD ALL".into(),
                    ));
                }
                if ready < 2 {
                    continue;
                }
                if !up.leftover.is_empty() {
                    return Err(UpstreamError::Protocol(
                        "the server sent more than the reset asked for".into(),
                    ));
                }
                return match temp_schema {
                    Some(false) => Ok(()),
                    Some(true) => Err(UpstreamError::Protocol(
                        "the session left a temporary schema".into(),
                    )),
                    None => Err(UpstreamError::Protocol(
                        "the temporary schema check returned nothing".into(),
                    )),
                };
            }
            // Notices and notifications that were still on their way, the check's
            // row description and completion.
            _ => {}
        }
    }
}

/// Runs `SET name = value` (`value` quoted here) on an idle connection and returns the
/// value as the server reports it back (it may clean or truncate it). Session-level:
/// [`reset`] restores the value the connection was opened with.
pub async fn set_parameter(
    up: &mut Upstream,
    name: &str,
    value: &str,
) -> Result<String, UpstreamError> {
    let mut literal = String::with_capacity(value.len() + 3);
    // An escape string reads the same whatever the server's standard_conforming_strings.
    literal.push_str("E'");
    for c in value.chars() {
        match c {
            '\\' => literal.push_str("\\\\"),
            '\'' => literal.push_str("''"),
            c => literal.push(c),
        }
    }
    literal.push('\'');
    let mut out = BytesMut::new();
    frontend::query(&format!("SET {name} = {literal}"), &mut out).map_err(proto)?;
    send(&mut up.io, &mut out).await?;
    let mut reported = None;
    let mut failed = None;
    loop {
        let (tag, body, _) = read_frame(&mut up.io, &mut up.leftover).await?;
        match tag {
            b'E' => failed = Some(backend::error_fields(&body).map_err(proto)?),
            b'S' => {
                let (n, v) = backend::parameter_status(&body).map_err(proto)?;
                if n == name {
                    reported = Some(v.to_owned());
                }
            }
            b'Z' => {
                let status = backend::ready_for_query(&body).map_err(proto)?;
                return match failed {
                    Some(f) => Err(UpstreamError::Protocol(format!(
                        "SET {name} failed: {} ({})",
                        f.message, f.code
                    ))),
                    None if status != b'I' || !up.leftover.is_empty() => {
                        Err(UpstreamError::Protocol(format!(
                            "the connection was not idle after SET {name}"
                        )))
                    }
                    // Unchanged values are not reported again.
                    None => Ok(reported.unwrap_or_else(|| value.to_owned())),
                };
            }
            _ => {}
        }
    }
}

impl Upstream {
    /// The `ParameterStatus` frames a client is sent at startup, from the server's
    /// current values (a reused connection's startup notices are long gone).
    /// `set` is a (name, value) that the session set after checkout and is reported
    /// as that value.
    pub fn status_frames(&self, set: (&str, &str)) -> BytesMut {
        let mut out = BytesMut::new();
        for (name, value) in &self.params {
            let value = if name == set.0 { set.1 } else { value };
            let mut body = Vec::with_capacity(name.len() + value.len() + 2);
            body.extend_from_slice(name.as_bytes());
            body.push(0);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
            codec::put_message(&mut out, b'S', &body);
        }
        out
    }
}

/// Runs `sql` as a simple query on an idle connection and returns its rows as text,
/// reading up to ReadyForQuery.
pub async fn simple_query(
    io: &mut BoxIo,
    buf: &mut BytesMut,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, UpstreamError> {
    let proto =
        |e: &dyn std::fmt::Display| UpstreamError::Protocol(format!("querying the catalog: {e}"));
    let mut out = BytesMut::new();
    let mut q = sql.as_bytes().to_vec();
    q.push(0);
    put_message(&mut out, b'Q', &q);
    io.write_all(&out).await.map_err(|e| proto(&e))?;
    io.flush().await.map_err(|e| proto(&e))?;
    let mut rows = Vec::new();
    let mut failed = None;
    loop {
        let complete = match codec::header(buf).map_err(|e| proto(&e))? {
            Some(h) if buf.len() >= h.frame_len => Some(h),
            _ => None,
        };
        let Some(h) = complete else {
            if io.read_buf(buf).await.map_err(|e| proto(&e))? == 0 {
                return Err(proto(&"the server closed the connection"));
            }
            continue;
        };
        let frame = buf.split_to(h.frame_len);
        let body = frame.get(5..).unwrap_or(&[]);
        match h.tag {
            b'D' => {
                let mut r = Reader::new("DataRow", body);
                let n = r.i16().map_err(|e| proto(&e))?;
                let mut row = Vec::new();
                for _ in 0..n {
                    let len = r.i32().map_err(|e| proto(&e))?;
                    row.push(if len < 0 {
                        None
                    } else {
                        let v = r.bytes(len as usize).map_err(|e| proto(&e))?;
                        Some(String::from_utf8_lossy(v).into_owned())
                    });
                }
                rows.push(row);
            }
            b'E' => {
                failed = Some(
                    backend::error_fields(body)
                        .map(|f| f.message)
                        .unwrap_or_default(),
                )
            }
            b'Z' => {
                return match failed {
                    None => Ok(rows),
                    Some(m) => Err(proto(&m)),
                };
            }
            _ => {}
        }
    }
}
