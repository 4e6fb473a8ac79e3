//! The HTTP adapter: the HTTPS listener agents reach HTTP targets through, at
//! `https://<listen>/<target>/<path>`, with their own Airlock or OIDC token.
//!
//! Each request runs the same sequence as a PostgreSQL statement, through the same
//! `airlock-session` calls: route and normalise (`route`, the engine's `http::path`),
//! authenticate (`conn`: one session per agent connection and target), decide and hold
//! (`handler`), record, forward with the target's credential (`upstream`, `headers`),
//! and stream the answer back through decoding (`decode`), the credential scrub
//! (`scrub`) and masking (`mask`, `sse`). Upgrades to WebSocket are relayed by
//! `websocket`. Airlock's own answers are RFC 9457 problems (`problem`).
//!
//! The adapter holds no policy, masking rule or recording format of its own: those are
//! the engine's and the session's. Kubernetes and MCP are flavours of this adapter:
//! they add an inspect step, not a second listener.

mod body;
mod conn;
mod decode;
mod handler;
mod headers;
mod inspect;
mod k8s;
mod mask;
mod mcp;
mod problem;
mod route;
mod scrub;
mod sse;
mod upstream;
mod websocket;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use airlock_config::HttpListenerConfig;
use airlock_session::Gateway;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] airlock_tls::TlsError),
    /// The socket could not be bound.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Whether an HTTP target's settings can be used: its URL, its credential as a header
/// value, its CA bundle (for `airlock check`; the listener checks the same when a
/// session opens).
pub fn check_target(target: &airlock_session::Target) -> Result<(), String> {
    if target.model.kind == airlock_model::TargetKind::Mcp && target.config.url.is_none() {
        let program = target.config.command.first().ok_or("no command")?;
        let found = if program.contains('/') {
            Path::new(program).is_file()
        } else {
            std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
        };
        if !found {
            return Err(format!(
                "its command `{program}` is not found (give a path, or a program on PATH)"
            ));
        }
        // Its secret environment values resolve (they are scrubbed from answers).
        upstream::credential(target)?;
        return Ok(());
    }
    let url = target.config.url.as_deref().ok_or("no url")?;
    upstream::Base::parse(url)?;
    upstream::credential(target)?;
    upstream::Clients::default().for_target(target)?;
    Ok(())
}

/// What every connection of the listener shares.
pub(crate) struct AdapterState {
    gateway: Arc<Gateway>,
    listener: HttpListenerConfig,
    clients: upstream::Clients,
    local_addr: SocketAddr,
    /// MCP sessions (2025 era), which outlive connections.
    mcp_sessions: mcp::sessions::McpSessions,
    /// Pinned MCP tool fingerprints, shared by every session.
    mcp_pins: Arc<mcp::pins::ToolPins>,
    /// MCP targets found to speak the older HTTP+SSE transport.
    mcp_sse_targets: mcp::SseTargets,
    /// In-process connections to the PostgreSQL listener, for `sql_query`.
    sql: Option<SqlConnector>,
}

/// Opens an in-process connection to the PostgreSQL listener, recorded as coming from
/// the given address (see `airlock_postgres::LocalConnector`).
pub type SqlConnector = Arc<dyn Fn(SocketAddr) -> tokio::io::DuplexStream + Send + Sync>;

/// A bound HTTPS listener.
pub struct HttpAdapter {
    listener: TcpListener,
    tls: TlsAcceptor,
    state: Arc<AdapterState>,
}

impl HttpAdapter {
    /// Binds the listener and prepares TLS (the configured certificate, or the
    /// gateway's generated one in `data_dir`).
    pub async fn bind(
        config: &HttpListenerConfig,
        data_dir: &Path,
        gateway: Arc<Gateway>,
    ) -> Result<Self, HttpError> {
        let paths = airlock_tls::CertPaths::resolve(
            config.tls_cert.as_deref(),
            config.tls_key.as_deref(),
            data_dir,
        );
        let tls = TlsAcceptor::from(airlock_tls::server_config(&paths, &[b"h2", b"http/1.1"])?);
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        Ok(HttpAdapter {
            listener,
            tls,
            state: Arc::new(AdapterState {
                gateway,
                listener: config.clone(),
                clients: upstream::Clients::default(),
                local_addr,
                mcp_sessions: mcp::sessions::McpSessions::default(),
                mcp_pins: Arc::default(),
                sql: None,
                mcp_sse_targets: mcp::SseTargets::default(),
            }),
        })
    }

    /// The address actually bound.
    /// Keeps pinned MCP tools in `store` (shared by replicas and the CLI); without it
    /// pins last as long as the process.
    pub fn with_tool_store(mut self, store: Arc<dyn airlock_store::Store>) -> Self {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.mcp_pins = Arc::new(mcp::pins::ToolPins::with_store(store));
        }
        self
    }

    /// Lets Airlock's MCP server (`sql_query`) reach PostgreSQL targets through the
    /// PostgreSQL listener.
    pub fn with_sql(mut self, connector: SqlConnector) -> Self {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.sql = Some(connector);
        }
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.state.local_addr
    }

    /// Accepts connections until `shutdown` turns true, then lets open requests finish
    /// (up to a few seconds) and records every session's end.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        let mut sweep = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = sweep.tick() => self.state.mcp_sessions.sweep(mcp::sessions::IDLE).await,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        tasks.spawn(connection(self.state.clone(), self.tls.clone(), tcp, peer, shutdown.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            }
        }
        while tasks.join_next().await.is_some() {}
        self.state.mcp_sessions.close_all("gateway_shutdown").await;
    }
}

/// How long open requests may take to finish once the gateway stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn connection(
    state: Arc<AdapterState>,
    tls: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let handshake = state.listener.handshake_timeout;
    let stream = match tokio::time::timeout(handshake, tls.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let conn = Arc::new(conn::Conn::new(peer));
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req| {
            let state = state.clone();
            let conn = conn.clone();
            async move { Ok::<_, std::convert::Infallible>(handler::handle(state, conn, req).await) }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(serving);
    let reason = tokio::select! {
        result = serving.as_mut() => match result {
            Ok(()) => "the agent closed the connection".to_owned(),
            Err(e) => format!("the connection ended: {e}"),
        },
        _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            serving.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, serving.as_mut()).await;
            conn.abort_upgrades();
            "the gateway is shutting down".to_owned()
        }
    };
    conn.close(&reason).await;
}
