//! The API crate's error: why the listener could not start. Request-level failures are
//! answers, not errors (see `reply.rs`).

use std::net::SocketAddr;

/// The admin API could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server certificate could not be generated or loaded.
    #[error("[api] TLS: {0}")]
    Tls(#[from] airlock_tls::TlsError),
    /// The listening socket could not be opened.
    #[error("[api] could not listen on {addr}: {source}")]
    Bind {
        /// The configured `listen` address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}
