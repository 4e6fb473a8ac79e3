//! The gateway's server certificate, shared by every TLS listener (PostgreSQL, the admin
//! API): the configured PEM files, or a self-signed pair generated once into
//! `data_dir/tls/` and reused on later starts.
//!
//! Invariants: a generated key is readable by its owner only (0600); each generated file
//! is written to a temporary name and renamed into place, key first, so a reader that
//! finds `server.crt` also finds the whole key that belongs to it; two listeners of one
//! process starting together generate one pair, not two halves of different pairs.
//! Protocol details (ALPN names, client configurations) stay with the listeners.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the generated certificate lives, relative to the data directory.
pub const GENERATED_CERT: &str = "tls/server.crt";
/// Where the generated certificate's key lives, relative to the data directory.
pub const GENERATED_KEY: &str = "tls/server.key";

/// The names the generated certificate is valid for: the loopback host in its forms.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Serialises generation within the process, so that listeners starting at once do not
/// interleave their writes.
static GENERATING: Mutex<()> = Mutex::new(());

/// Why the server certificate could not be generated or loaded. Messages name the file
/// and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read, written or renamed.
    #[error("could not {action} {}: {source}", .path.display())]
    Io {
        /// What was being done (`read`, `write`, `create the directory of`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The self-signed certificate could not be generated.
    #[error("could not generate a self-signed certificate: {0}")]
    Generate(String),
    /// The certificate file is not a PEM certificate chain.
    #[error("{} is not a PEM certificate chain: {detail}", .path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The certificate file holds no certificate.
    #[error("{} holds no PEM certificate", .path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no usable PEM private key.
    #[error("{} is not a PEM private key: {detail}", .path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// The key is not the certificate's, or TLS refused them.
    #[error("the certificate {} and the key {} do not fit together: {detail}", .cert.display(), .key.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What TLS said.
        detail: String,
    },
}

/// The certificate and key a listener serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Whether this is the gateway's generated pair (created when missing) rather than
    /// configured files (which must exist).
    pub generated: bool,
}

impl CertPaths {
    /// The configured pair when both files are given, else the generated pair in
    /// `data_dir` (configuration validation refuses one without the other).
    pub fn resolve(cert: Option<&Path>, key: Option<&Path>, data_dir: &Path) -> Self {
        match (cert, key) {
            (Some(cert), Some(key)) => CertPaths {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                generated: false,
            },
            _ => CertPaths::generated(data_dir),
        }
    }

    /// The generated pair's paths in `data_dir`.
    pub fn generated(data_dir: &Path) -> Self {
        CertPaths {
            cert: data_dir.join(GENERATED_CERT),
            key: data_dir.join(GENERATED_KEY),
            generated: true,
        }
    }

    /// For the generated pair, generates it unless it exists; `Ok(true)` when it was
    /// generated now. Configured files are left alone (`Ok(false)`).
    pub fn ensure(&self) -> Result<bool, TlsError> {
        if !self.generated {
            return Ok(false);
        }
        let _guard = GENERATING.lock().unwrap_or_else(PoisonError::into_inner);
        if self.cert.exists() {
            return Ok(false);
        }
        generate_self_signed(&self.cert, &self.key)?;
        Ok(true)
    }

    /// Reads the certificate chain and the key.
    pub fn load(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| pem_error(e, &self.cert, true))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(e, &self.cert, true))?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                path: self.cert.clone(),
            });
        }
        let key =
            PrivateKeyDer::from_pem_file(&self.key).map_err(|e| pem_error(e, &self.key, false))?;
        Ok((certs, key))
    }
}

/// A server configuration for `paths` (generated first if it is the generated pair and
/// missing) offering the `alpn` protocols, on the aws-lc-rs provider with its default
/// protocol versions and no client authentication.
pub fn server_config(paths: &CertPaths, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    paths.ensure()?;
    let (certs, key) = paths.load()?;
    let mismatch = |e: rustls::Error| TlsError::Mismatch {
        cert: paths.cert.clone(),
        key: paths.key.clone(),
        detail: e.to_string(),
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(mismatch)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(mismatch)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Generates a self-signed certificate for the loopback names and writes it to
/// `cert_path` and its key to `key_path` (0600), creating their directories. Existing
/// files are replaced.
pub fn generate_self_signed(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let names = SELF_SIGNED_NAMES
        .iter()
        .map(|n| (*n).to_owned())
        .collect::<Vec<_>>();
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    for path in [key_path, cert_path] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
                action: "create the directory of",
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    // Key first: the certificate's presence is what tells readers the pair is complete.
    write_private(key_path, certified.signing_key.serialize_pem().as_bytes())?;
    write_atomically(cert_path, certified.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok(())
}

/// Writes a file readable by its owner only (0600), through a temporary file renamed
/// into place.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_atomically(path, contents, 0o600)
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io {
            action,
            path,
            source,
        }
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(
        ".{file_name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", path)(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("write", path)(e)
    })
}

fn pem_error(e: rustls::pki_types::pem::Error, path: &Path, cert: bool) -> TlsError {
    match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        },
        rustls::pki_types::pem::Error::NoItemsFound if cert => TlsError::NoCertificate {
            path: path.to_path_buf(),
        },
        other if cert => TlsError::Certificate {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
        other => TlsError::Key {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
