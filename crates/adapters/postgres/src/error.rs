//! The PostgreSQL adapter's errors.

use crate::codec::CodecError;

/// Why a PostgreSQL connection (client or upstream side) failed.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// Socket I/O failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A peer sent bytes that are not valid protocol.
    #[error("protocol violation: {0}")]
    Protocol(#[from] CodecError),
    /// The peer said something out of order.
    #[error("protocol violation: {0}")]
    Unexpected(String),
    /// TLS could not be set up.
    #[error("tls: {0}")]
    Tls(String),
    /// A statement's record could not be made durable, so its answer was withheld.
    #[error("the session recorder failed: {0}")]
    Recorder(#[from] airlock_session::RecorderError),
    /// The client took too long to finish the handshake.
    #[error("the client did not finish the startup handshake in time")]
    HandshakeTimeout,
    /// Connecting to the target failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// Why Airlock could not open a connection to a target.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection failed.
    #[error("could not connect to {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Connecting and authenticating took longer than the target's `connect_timeout`.
    #[error("connecting to {addr} timed out after {secs} s")]
    Timeout {
        /// host:port.
        addr: String,
        /// The limit.
        secs: u64,
    },
    /// The server does not do TLS and the target's sslmode requires it.
    #[error("the server at {addr} does not accept TLS, but the target's sslmode requires it")]
    TlsRefused {
        /// host:port.
        addr: String,
    },
    /// TLS to the server failed (certificate not trusted, handshake error).
    #[error("TLS with {addr} failed: {detail}")]
    Tls {
        /// host:port.
        addr: String,
        /// Why.
        detail: String,
    },
    /// The server refused the connection or the vaulted credential.
    #[error("the server refused the connection: {message} (SQLSTATE {code})")]
    Rejected {
        /// SQLSTATE the server sent.
        code: String,
        /// Its message.
        message: String,
    },
    /// The server asked for an authentication method Airlock does not implement.
    #[error("the server asked for an unsupported authentication method ({0})")]
    UnsupportedAuth(String),
    /// SCRAM verification of the server failed.
    #[error("SCRAM authentication with the server failed: {0}")]
    Scram(String),
    /// The server broke the protocol or closed the connection during startup.
    #[error("the server broke off the startup: {0}")]
    Protocol(String),
}

impl UpstreamError {
    /// What went wrong, for the agent: the kind of failure without internal addresses
    /// (the full error goes to the gateway's log and the session's events).
    pub fn agent_summary(&self) -> &'static str {
        match self {
            UpstreamError::Connect { .. } => "The target did not accept a connection.",
            UpstreamError::Timeout { .. } => "Connecting to the target timed out.",
            UpstreamError::TlsRefused { .. } => {
                "The target does not offer TLS, which its configuration requires."
            }
            UpstreamError::Tls { .. } => {
                "TLS with the target failed (its certificate may not be trusted)."
            }
            UpstreamError::Rejected { .. } => "The target refused the connection.",
            UpstreamError::UnsupportedAuth(_) => {
                "The target asked for an authentication method Airlock does not support."
            }
            UpstreamError::Scram(_) => "The target's SCRAM authentication could not be verified.",
            UpstreamError::Protocol(_) => "The target broke off the connection during startup.",
        }
    }
}
