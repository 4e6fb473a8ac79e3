//! The startup phase before authentication: packet lengths, and what to answer each
//! startup-phase packet (encryption requests, cancel requests, the startup message).
//! The adapter does the I/O (and the TLS upgrade); the decisions are here so that they
//! are tested and fuzzed without a socket.
#![deny(clippy::indexing_slicing)]

use super::CodecError;
use super::MAX_STARTUP_LEN;
use super::frontend::{self, StartupPacket};

/// The body length of a startup-phase packet from its 4-byte length prefix: at least a
/// code (8 bytes in all), at most [`MAX_STARTUP_LEN`], as PostgreSQL checks.
pub fn body_len(prefix: [u8; 4]) -> Result<usize, CodecError> {
    let len = i32::from_be_bytes(prefix);
    match usize::try_from(len) {
        Ok(n) if (8..=MAX_STARTUP_LEN).contains(&n) => Ok(n - 4),
        _ => Err(CodecError::BadLength {
            tag: 0,
            len: i64::from(len),
        }),
    }
}

/// What to do with one startup-phase packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Answer `S` and upgrade the connection to TLS, then read the next packet.
    UpgradeToTls,
    /// Answer `N` (no GSSAPI encryption), then read the next packet.
    DeclineGssEncryption,
    /// Forward a cancel request for this key; the connection then ends.
    Cancel {
        /// Process id the client was given.
        pid: i32,
        /// Secret key it was given.
        secret: i32,
    },
    /// The startup message: authenticate next. `declined` lists the protocol options
    /// (`_pq_.*`) not recognised; with `minor > 0` or any of them, answer
    /// `NegotiateProtocolVersion` (3.0) before going on.
    Startup {
        /// Minor protocol version the client asked for.
        minor: u16,
        /// Parameters in order (protocol options included).
        params: Vec<(String, String)>,
    },
    /// Refuse with a protocol violation (FATAL) and end.
    Violation(&'static str),
    /// Refuse: a protocol version Airlock does not speak.
    Unsupported {
        /// The version code the client sent.
        code: i32,
    },
}

/// The startup phase of one connection: remembers whether it is encrypted already.
#[derive(Debug, Default)]
pub struct Negotiation {
    tls: bool,
}

impl Negotiation {
    /// A connection that starts in plaintext, or already in TLS (`direct`: the client
    /// opened with a TLS handshake, PostgreSQL 17's `sslnegotiation=direct`).
    pub fn new(direct_tls: bool) -> Self {
        Negotiation { tls: direct_tls }
    }

    /// Whether the connection is encrypted (after [`Step::UpgradeToTls`]).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// What to do with the packet `body` (after its length prefix).
    pub fn step(&mut self, body: &[u8]) -> Result<Step, CodecError> {
        Ok(match frontend::startup_packet(body)? {
            // Once in TLS, another encryption request is a client out of step.
            StartupPacket::SslRequest | StartupPacket::GssEncRequest if self.tls => {
                Step::Violation("encryption requested twice")
            }
            StartupPacket::SslRequest => {
                self.tls = true;
                Step::UpgradeToTls
            }
            StartupPacket::GssEncRequest => Step::DeclineGssEncryption,
            StartupPacket::Cancel { pid, secret } => Step::Cancel { pid, secret },
            StartupPacket::Unsupported { code } => Step::Unsupported { code },
            StartupPacket::Startup { minor, params } => Step::Startup { minor, params },
        })
    }
}

/// The protocol options (`_pq_.*`) among startup parameters, which Airlock declines as
/// a 3.0 server does.
pub fn protocol_options(params: &[(String, String)]) -> Vec<&str> {
    params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, rest: &[u8]) -> Vec<u8> {
        let mut b = code.to_be_bytes().to_vec();
        b.extend_from_slice(rest);
        b
    }

    #[test]
    fn lengths_are_bounded_like_the_servers() {
        assert_eq!(body_len(8i32.to_be_bytes()).unwrap(), 4);
        assert!(body_len(7i32.to_be_bytes()).is_err());
        assert!(body_len((-1i32).to_be_bytes()).is_err());
        assert!(body_len(((MAX_STARTUP_LEN + 1) as i32).to_be_bytes()).is_err());
    }

    #[test]
    fn tls_once_gss_declined_then_startup() {
        let mut n = Negotiation::new(false);
        let gss = packet(frontend::GSSENC_REQUEST, &[]);
        let ssl = packet(frontend::SSL_REQUEST, &[]);
        assert_eq!(n.step(&gss).unwrap(), Step::DeclineGssEncryption);
        assert_eq!(n.step(&ssl).unwrap(), Step::UpgradeToTls);
        assert!(n.tls());
        assert_eq!(
            n.step(&ssl).unwrap(),
            Step::Violation("encryption requested twice")
        );
        let startup = packet(frontend::PROTOCOL_3_0 + 2, b"user\0a\0_pq_.x\0y\0\0");
        let Step::Startup { minor, params } = n.step(&startup).unwrap() else {
            panic!("not a startup")
        };
        assert_eq!(minor, 2);
        assert_eq!(protocol_options(&params), ["_pq_.x"]);
        let mut direct = Negotiation::new(true);
        assert!(matches!(direct.step(&gss).unwrap(), Step::Violation(_)));
    }
}
