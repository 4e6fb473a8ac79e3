//! TLS for both legs: the listener's certificate (configured, or self-signed and kept in
//! `data_dir/tls/` on first start) and the client configuration per target `sslmode`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_config::{PostgresListenerConfig, SslMode, TargetConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::error::PostgresError;

/// ALPN protocol name of PostgreSQL 17's direct TLS.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

fn tls_err(context: &str, e: impl std::fmt::Display) -> PostgresError {
    PostgresError::Tls(format!("{context}: {e}"))
}

/// Paths of the certificate and key the listener serves: the configured ones, or the
/// generated pair in `data_dir/tls/`.
pub fn listener_cert_paths(
    listener: &PostgresListenerConfig,
    data_dir: &Path,
) -> (PathBuf, PathBuf) {
    match (&listener.tls_cert, &listener.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => (
            data_dir.join("tls/server.crt"),
            data_dir.join("tls/server.key"),
        ),
    }
}

/// Builds the listener's TLS configuration, generating a self-signed certificate first
/// if none is configured and none was generated before.
pub fn server_config(
    listener: &PostgresListenerConfig,
    data_dir: &Path,
) -> Result<Arc<ServerConfig>, PostgresError> {
    let (cert_path, key_path) = listener_cert_paths(listener, data_dir);
    if listener.tls_cert.is_none() && !cert_path.exists() {
        generate_self_signed(&cert_path, &key_path)?;
    }
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| tls_err(&format!("reading {}", cert_path.display()), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&format!("parsing {}", cert_path.display()), e))?;
    if certs.is_empty() {
        return Err(tls_err(
            &cert_path.display().to_string(),
            "no certificate in the file",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| tls_err(&format!("reading the key {}", key_path.display()), e))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("certificate and key do not fit together", e))?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Arc::new(config))
}

fn generate_self_signed(cert_path: &Path, key_path: &Path) -> Result<(), PostgresError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| tls_err("generating a self-signed certificate", e))?;
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_private(key_path, certified.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, certified.cert.pem())?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok(())
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), PostgresError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    Ok(())
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
