//! TLS for both legs: the listener's certificate (configured, or the gateway's
//! self-signed pair from `airlock-tls`, kept in `data_dir/tls/`) with PostgreSQL's ALPN,
//! and the client configuration per target `sslmode`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_config::{PostgresListenerConfig, SslMode, TargetConfig};
use airlock_tls::CertPaths;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::error::PostgresError;

/// ALPN protocol name of PostgreSQL 17's direct TLS.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

fn tls_err(context: &str, e: impl std::fmt::Display) -> PostgresError {
    PostgresError::Tls(format!("{context}: {e}"))
}

/// Paths of the certificate and key the listener serves: the configured ones, or the
/// gateway's generated pair in `data_dir/tls/` (shared with the admin API).
pub fn listener_cert_paths(
    listener: &PostgresListenerConfig,
    data_dir: &Path,
) -> (PathBuf, PathBuf) {
    let paths = cert_paths(listener, data_dir);
    (paths.cert, paths.key)
}

fn cert_paths(listener: &PostgresListenerConfig, data_dir: &Path) -> CertPaths {
    CertPaths::resolve(
        listener.tls_cert.as_deref(),
        listener.tls_key.as_deref(),
        data_dir,
    )
}

/// Builds the listener's TLS configuration (ALPN `postgresql`), generating the
/// self-signed certificate first if none is configured and none was generated before.
pub fn server_config(
    listener: &PostgresListenerConfig,
    data_dir: &Path,
) -> Result<Arc<ServerConfig>, PostgresError> {
    airlock_tls::server_config(&cert_paths(listener, data_dir), &[ALPN_POSTGRESQL])
        .map_err(|e| PostgresError::Tls(e.to_string()))
}

/// The client TLS configuration for a target's `sslmode`. `None` for `disable`.
pub fn client_config(target: &TargetConfig) -> Result<Option<Arc<ClientConfig>>, PostgresError> {
    let builder = ClientConfig::builder();
    let config = match target.sslmode {
        SslMode::Disable => return Ok(None),
        // libpq's prefer and require encrypt without verifying the server.
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification::new()))
            .with_no_client_auth(),
        SslMode::VerifyFull => {
            let path = target
                .ca_file
                .as_ref()
                .ok_or_else(|| tls_err("verify-full", "no ca_file configured"))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_err(&format!("reading {}", path.display()), e))?
            {
                let cert = cert.map_err(|e| tls_err(&format!("parsing {}", path.display()), e))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_err(&format!("adding a CA from {}", path.display()), e))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// The server name to present and verify for `host`.
pub fn server_name(host: &str) -> Result<ServerName<'static>, PostgresError> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| tls_err(&format!("`{host}` as a TLS server name"), e))
}

/// Accepts any server certificate: `sslmode = prefer/require` semantics, encryption
/// without authentication, as libpq does.
#[derive(Debug)]
struct NoVerification {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl NoVerification {
    fn new() -> Self {
        NoVerification {
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        }
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
