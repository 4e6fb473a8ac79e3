//! The upstream side: one pooled hyper client per target (its CA bundle and connect
//! timeout), the upstream URL of a request, and the credential Airlock injects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_config::HttpAuthForm;
use airlock_session::Target;
use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::ResponseBody;
use crate::scrub::Scrubber;

/// The client type every target uses.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, ResponseBody>;

/// Where a target's upstream is.
#[derive(Debug, Clone)]
pub struct Base {
    /// `http` or `https`.
    pub scheme: String,
    /// `host:port` as written.
    pub authority: String,
    /// The base path without a trailing slash (`/api`, or empty).
    pub path: String,
}

impl Base {
    /// Splits a validated `url`.
    pub fn parse(url: &str) -> Result<Base, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("url `{url}` has no scheme"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (
                rest.get(..i).unwrap_or_default(),
                rest.get(i..).unwrap_or_default(),
            ),
            None => (rest, ""),
        };
        Ok(Base {
            scheme: scheme.to_ascii_lowercase(),
            authority: authority.to_owned(),
            path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The upstream URL for a normalised path and raw query.
    pub fn url(&self, path: &str, query: Option<&str>) -> String {
        let mut url = format!("{}://{}{}", self.scheme, self.authority, self.path);
        url.push_str(path);
        if let Some(q) = query {
            url.push('?');
            url.push_str(q);
        }
        url
    }

    /// The base as a prefix of absolute URLs (for rewriting redirects).
    pub fn prefix(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// The header Airlock adds for a target, and the scrubber for its credential.
pub struct Credential {
    /// Header name and value to inject (`None` when the target has no `auth`).
    pub header: Option<(HeaderName, HeaderValue)>,
    /// Finds the credential in responses.
    pub scrubber: Scrubber,
}

/// The injected header of `target` and the needles to scrub.
pub fn credential(target: &Target) -> Result<Credential, String> {
    if target.model.kind == airlock_model::TargetKind::Kubernetes {
        return kubernetes_credential(target);
    }
    // A stdio MCP server gets its secrets in its environment: those are scrubbed.
    if target.model.kind == airlock_model::TargetKind::Mcp && !target.config.command.is_empty() {
        let mut needles = Vec::new();
        for v in target.config.env.values() {
            if let airlock_config::EnvValue::Secret(r) = v {
                let secret = airlock_vault::resolve(r)
                    .map_err(|e| format!("target `{}`: {e}", target.model.name))?;
                needles.push(secret.expose().as_bytes().to_vec());
            }
        }
        return Ok(Credential {
            header: None,
            scrubber: Scrubber::new(needles),
        });
    }
    let Some(auth) = &target.config.auth else {
        return Ok(Credential {
            header: None,
            scrubber: Scrubber::new(Vec::new()),
        });
    };
    let secret = target.credential.expose();
    let mut needles = vec![secret.as_bytes().to_vec(), percent_encoded(secret)];
    let sensitive = |v: String| {
        HeaderValue::from_str(&v)
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| {
                format!(
                    "target `{}`: its credential cannot be sent in an HTTP header (control characters or non-ASCII)",
                    target.model.name
                )
            })
    };
    let header = match auth.form()? {
        HttpAuthForm::Bearer(_) => (
            hyper::header::AUTHORIZATION,
            sensitive(format!("Bearer {secret}"))?,
        ),
        HttpAuthForm::Header(name, _) => (
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("auth header `{name}` is not a header name"))?,
            sensitive(secret.to_owned())?,
        ),
        HttpAuthForm::Basic(user, _) => {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
            needles.push(encoded.clone().into_bytes());
            (
                hyper::header::AUTHORIZATION,
                sensitive(format!("Basic {encoded}"))?,
            )
        }
    };
    Ok(Credential {
        header: Some(header),
        scrubber: Scrubber::new(needles),
    })
}

/// A Kubernetes target's bearer token (a client certificate is presented in the TLS
/// handshake instead, see [`Clients`]).
fn kubernetes_credential(target: &Target) -> Result<Credential, String> {
    if target.config.token.is_none() {
        return Ok(Credential {
            header: None,
            scrubber: Scrubber::new(Vec::new()),
        });
    }
    let secret = target.credential.expose();
    let mut value = HeaderValue::from_str(&format!("Bearer {secret}")).map_err(|_| {
        format!(
            "target `{}`: its token cannot be sent in an HTTP header",
            target.model.name
        )
    })?;
    value.set_sensitive(true);
    Ok(Credential {
        header: Some((hyper::header::AUTHORIZATION, value)),
        scrubber: Scrubber::new(vec![secret.as_bytes().to_vec(), percent_encoded(secret)]),
    })
}

/// The credential as it would appear in a URL.
fn percent_encoded(secret: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(secret.len());
    for b in secret.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// The pooled clients, one per target configuration.
#[derive(Default)]
pub struct Clients {
    clients: Mutex<HashMap<String, (ClientKey, UpstreamClient)>>,
}

#[derive(PartialEq, Eq, Clone)]
struct ClientKey {
    ca_file: Option<std::path::PathBuf>,
    connect_timeout: Duration,
    insecure_skip_verify: bool,
    /// A digest of the client certificate and key, when the target presents one (so a
    /// rotated pair builds a new client; the pair itself is not kept in the key).
    client_identity: Option<[u8; 32]>,
}

impl Clients {
    /// The client for `target` (built on first use, rebuilt when its TLS settings change).
    pub fn for_target(&self, target: &Target) -> Result<UpstreamClient, String> {
        let identity = target.client_cert.as_ref().map(|cert| {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(cert.expose().as_bytes());
            h.update([0]);
            h.update(target.credential.expose().as_bytes());
            h.finalize().into()
        });
        let key = ClientKey {
            ca_file: target.config.ca_file.clone(),
            connect_timeout: target.config.connect_timeout,
            insecure_skip_verify: target.config.insecure_skip_verify,
            client_identity: identity,
        };
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| "the client cache is poisoned".to_owned())?;
        if let Some((k, c)) = clients.get(&target.model.name)
            && *k == key
        {
            return Ok(c.clone());
        }
        let client = build(&key, target)?;
        clients.insert(target.model.name.clone(), (key, client.clone()));
        Ok(client)
    }
}

fn build(key: &ClientKey, target: &Target) -> Result<UpstreamClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &key.ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if key.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify(provider)))
    } else {
        builder.with_root_certificates(roots)
    };
    let tls = match &target.client_cert {
        Some(cert) => {
            use rustls_pki_types::pem::PemObject;
            let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert.expose().as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client_cert: {e}"))?;
            let private = rustls_pki_types::PrivateKeyDer::from_pem_slice(
                target.credential.expose().as_bytes(),
            )
            .map_err(|e| format!("client_key: {e}"))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| format!("client_cert and client_key: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(key.connect_timeout));
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build(connector))
}

/// `insecure_skip_verify = true`: the upstream's certificate is not checked (an explicit
/// choice in the configuration; signatures of the handshake still are).
#[derive(Debug)]
struct SkipVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_base_path_and_query() {
        let b = Base::parse("http://127.0.0.1:18081/api/").unwrap();
        assert_eq!(
            b.url("/v1/x", Some("a=1")),
            "http://127.0.0.1:18081/api/v1/x?a=1"
        );
        assert_eq!(b.url("/", None), "http://127.0.0.1:18081/api/");
        let root = Base::parse("https://up.example").unwrap();
        assert_eq!(root.url("/v1", None), "https://up.example/v1");
        assert_eq!(percent_encoded("a b/c"), b"a%20b%2Fc");
    }
}
