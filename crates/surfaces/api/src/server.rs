//! The API's listener: accepts TCP connections, completes TLS (with a deadline) unless
//! TLS is off, and serves the router over HTTP/1.1 or h2 on each connection.
//!
//! A connection whose handshake fails or stalls is dropped on its own; nothing one
//! client does stops the accept loop. On shutdown the loop stops accepting, open
//! connections finish their requests in flight for a short while, and are then cut.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use airlock_config::ApiConfig;
use airlock_tls::CertPaths;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::{ApiError, ApiState, router};

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP/1 client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long requests in flight may take to finish once shutdown is asked for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to pause after a failed accept (out of file descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// ALPN protocols offered, preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A bound admin API listener; [`ApiServer::run`] serves it.
pub struct ApiServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
}

impl ApiServer {
    /// Prepares TLS when `config.tls` (the configured `tls_cert`/`tls_key`, else the
    /// gateway's self-signed pair in `data_dir/tls/`, generated if missing) and binds
    /// `config.listen`. Plain HTTP when `config.tls` is false; configuration validation
    /// allows that on loopback addresses only.
    pub async fn bind(
        config: &ApiConfig,
        data_dir: &Path,
        state: ApiState,
    ) -> Result<ApiServer, ApiError> {
        let tls = if config.tls {
            let paths = CertPaths::resolve(
                config.tls_cert.as_deref(),
                config.tls_key.as_deref(),
                data_dir,
            );
            Some(TlsAcceptor::from(airlock_tls::server_config(
                &paths, &ALPN,
            )?))
        } else {
            None
        };
        let bind_error = |source| ApiError::Bind {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(ApiServer {
            listener,
            local_addr,
            tls,
            app: router(state),
        })
    }

    /// The address actually bound (the port is the system's choice when `listen` said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether connections are served over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` becomes true (or its sender is dropped): then stops
    /// accepting, gives requests in flight a few seconds to finish, and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let ApiServer {
            listener,
            local_addr,
            tls,
            app,
        } = self;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::debug!(addr = %local_addr, scheme, "admin API listening");
        let mut connections = JoinSet::new();
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        connections.spawn(connection(
                            tcp,
                            peer,
                            tls.clone(),
                            app.clone(),
                            shutdown.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin API: accepting a connection failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        let open = connections.len();
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!(
                connections = connections.len(),
                "admin API: closing connections still open after shutdown"
            );
            connections.shutdown().await;
        }
        tracing::info!(addr = %local_addr, drained = open, "admin API stopped");
    }
}

/// One client connection: TLS (if on), then HTTP until the client leaves or shutdown.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    shutdown: watch::Receiver<bool>,
) {
    // Answers are small; do not hold them back for coalescing.
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = tls else {
        return serve(tcp, peer, app, shutdown).await;
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => serve(stream, peer, app, shutdown).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "admin API: TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "admin API: TLS handshake timed out"),
    }
}

/// Serves HTTP/1.1 or h2 (whichever the client speaks) on `io`.
async fn serve<I>(io: I, peer: SocketAddr, app: Router, mut shutdown: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "admin API: connection ended with an error");
            }
            return;
        }
        () = shutdown_asked(&mut shutdown) => {}
    }
    // Finish what is in flight, take nothing new.
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "admin API: connection ended with an error");
    }
}

/// Resolves once shutdown is asked for (or can no longer be asked for).
async fn shutdown_asked(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
