//! `airlock kubeconfig`: a kubeconfig that points an agent's kubectl at a Kubernetes
//! target through the gateway's HTTPS listener. It trusts exactly the listener's
//! certificate and authenticates with the agent's own token: inline, as a `tokenFile`
//! kubectl reads, or through `airlock kubeconfig credential`, an exec credential plugin.
//!
//! The target's own credential (what the gateway presents to the API server) is never
//! resolved, read or printed: the configuration is only parsed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_config::{Config, HttpListenerConfig, TargetKindConfig};
use airlock_tls::CertPaths;
use anyhow::{Context, bail};
use serde::Serialize;

use crate::cli::KubeconfigArgs;
use crate::context::{ensure_data_dir, load_config};

/// The exec credential API version the generated kubeconfig asks for.
const EXEC_API_VERSION: &str = "client.authentication.k8s.io/v1beta1";
/// The versions `credential` answers in, when kubectl says which it wants.
const EXEC_API_VERSIONS: [&str; 2] = [EXEC_API_VERSION, "client.authentication.k8s.io/v1"];
/// The names the gateway's generated certificate is valid for (see `airlock_tls`).
const GENERATED_CERT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// `airlock kubeconfig --target NAME ...`: prints the kubeconfig to standard output.
pub fn print(config_path: &Path, args: KubeconfigArgs) -> anyhow::Result<ExitCode> {
    let Some(target) = args.target else {
        bail!("--target is required");
    };
    let config = load_config(config_path)?;
    let http = kubernetes_listener(&config, config_path, &target)?;
    let base = match &args.server {
        Some(url) => Base::parse(url)?,
        None => Base::from_listen(http.listen),
    };

    // The listener's certificate, generated as `serve` would if it does not exist yet.
    let paths = CertPaths::resolve(
        http.tls_cert.as_deref(),
        http.tls_key.as_deref(),
        &config.server.data_dir,
    );
    if paths.generated {
        ensure_data_dir(&config)?;
    }
    paths
        .ensure()
        .context("cannot generate the [http] listener's certificate")?;
    let pem = std::fs::read(&paths.cert).with_context(|| {
        format!(
            "cannot read the [http] listener's certificate {}",
            paths.cert.display()
        )
    })?;
    if !pem
        .windows(CERT_MARKER.len())
        .any(|w| w == CERT_MARKER.as_bytes())
    {
        bail!("{} holds no PEM certificate", paths.cert.display());
    }
    // The generated certificate names only the loopback host: an agent that reaches the
    // gateway by another name checks it as `localhost` (against this very certificate).
    let tls_server_name = (paths.generated && !GENERATED_CERT_NAMES.contains(&base.host.as_str()))
        .then(|| "localhost".to_owned());

    let user = if let Some(token) = args.token {
        if token.trim().is_empty() {
            bail!("--token is empty");
        }
        User {
            token: Some(token),
            ..User::default()
        }
    } else {
        let token_file = args
            .token_file
            .as_deref()
            .map(absolute_token_file)
            .transpose()?;
        if args.exec {
            User {
                exec: Some(ExecConfig::new(token_file.as_deref())?),
                ..User::default()
            }
        } else if let Some(path) = token_file {
            User {
                token_file: Some(path),
                ..User::default()
            }
        } else {
            bail!("give one of --token-file, --token or --exec");
        }
    };

    let name = args.name.unwrap_or_else(|| target.clone());
    if name.trim().is_empty() {
        bail!("--name is empty");
    }
    let kubeconfig = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![NamedCluster {
            name: name.clone(),
            cluster: Cluster {
                server: format!("{}/{target}", base.url),
                certificate_authority_data: base64(&pem),
                tls_server_name,
            },
        }],
        users: vec![NamedUser {
            name: name.clone(),
            user,
        }],
        contexts: vec![NamedContext {
            name: name.clone(),
            context: KubeContext {
                cluster: name.clone(),
                user: name.clone(),
            },
        }],
        current_context: name,
    };
    print!(
        "{}",
        serde_yaml::to_string(&kubeconfig).context("cannot write the kubeconfig")?
    );
    Ok(ExitCode::SUCCESS)
}

/// `airlock kubeconfig credential [--token-file F]`: kubectl's exec credential plugin.
/// Prints an `ExecCredential` with the agent's token (from the file, else from
/// `AIRLOCK_TOKEN`), in the API version kubectl asks for.
pub fn credential(token_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let token = match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            let token = text.trim().to_owned();
            if token.is_empty() {
                bail!("the token file {} is empty", path.display());
            }
            token
        }
        None => match std::env::var("AIRLOCK_TOKEN") {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => bail!("no token: give --token-file FILE, or set AIRLOCK_TOKEN"),
        },
    };
    // kubectl says which version it expects in KUBERNETES_EXEC_INFO; answer in it.
    let api_version = std::env::var("KUBERNETES_EXEC_INFO")
        .ok()
        .and_then(|info| serde_json::from_str::<serde_json::Value>(&info).ok())
        .and_then(|info| {
            let v = info.get("apiVersion")?.as_str()?;
            EXEC_API_VERSIONS.into_iter().find(|known| *known == v)
        })
        .unwrap_or(EXEC_API_VERSION);
    let credential = serde_json::json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "status": { "token": token },
    });
    println!("{}", serde_json::to_string(&credential)?);
    Ok(ExitCode::SUCCESS)
}

const CERT_MARKER: &str = "-----BEGIN CERTIFICATE-----";

/// The `[http]` listener serving `target`, once `target` is known to be a
/// `kind = "kubernetes"` target.
fn kubernetes_listener<'a>(
    config: &'a Config,
    config_path: &Path,
    target: &str,
) -> anyhow::Result<&'a HttpListenerConfig> {
    let file = config_path.display();
    let Some(t) = config.targets.iter().find(|t| t.name.get_ref() == target) else {
        let kubernetes = config
            .targets
            .iter()
            .filter(|t| t.kind == TargetKindConfig::Kubernetes)
            .map(|t| format!("`{}`", t.name.get_ref()))
            .collect::<Vec<_>>();
        if kubernetes.is_empty() {
            bail!("{file} has no target `{target}` (and no kind = \"kubernetes\" target)");
        }
        bail!(
            "{file} has no target `{target}`; its kubernetes targets: {}",
            kubernetes.join(", ")
        );
    };
    if t.kind != TargetKindConfig::Kubernetes {
        let kind = match t.kind {
            TargetKindConfig::Postgres => "postgres",
            TargetKindConfig::Http => "http",
            TargetKindConfig::Kubernetes => "kubernetes",
            TargetKindConfig::Mcp => "mcp",
        };
        bail!("target `{target}` is kind = \"{kind}\", not kind = \"kubernetes\"");
    }
    config.http.as_ref().with_context(|| {
        format!("{file} has no [http] section: kubernetes targets are served on its HTTPS listener")
    })
}

/// Where agents reach the `[http]` listener: `https://host[:port][/path]`, no trailing `/`.
#[derive(Debug, PartialEq, Eq)]
struct Base {
    url: String,
    /// The host, lower case, without IPv6 brackets.
    host: String,
}

impl Base {
    /// `https://<listen>`, with an unspecified address (`0.0.0.0`, `::`) as loopback.
    fn from_listen(listen: SocketAddr) -> Base {
        let ip = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Base {
            url: format!("https://{}", SocketAddr::new(ip, listen.port())),
            host: ip.to_string(),
        }
    }

    /// `--server`: an `https://` URL with a host, an optional port and path, and nothing
    /// else (no user, query or fragment).
    fn parse(url: &str) -> anyhow::Result<Base> {
        let invalid = || {
            anyhow::anyhow!(
                "--server `{url}` is not a base URL https://HOST[:PORT][/PATH] (the [http] listener speaks HTTPS only)"
            )
        };
        let rest = url.strip_prefix("https://").ok_or_else(invalid)?;
        let rest = rest.trim_end_matches('/');
        if rest
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '@' | '\\'))
        {
            return Err(invalid());
        }
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(invalid)?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(invalid());
            }
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(invalid)?)),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return Err(invalid());
        }
        Ok(Base {
            url: format!("https://{rest}"),
            host: host.to_ascii_lowercase(),
        })
    }
}

/// `--token-file` as an absolute path (kubectl resolves a relative one against its own
/// working directory). A file that is not there yet is only warned about: it may be
/// mounted later.
fn absolute_token_file(path: &Path) -> anyhow::Result<PathBuf> {
    let absolute = std::path::absolute(path)
        .with_context(|| format!("cannot make {} absolute", path.display()))?;
    if !absolute.is_file() {
        eprintln!(
            "airlock: warning: the token file {} does not exist (yet); kubectl fails until it does",
            absolute.display()
        );
    }
    Ok(absolute)
}

/// A kubeconfig (`apiVersion: v1`, `kind: Config`) with one cluster, user and context.
#[derive(Debug, Serialize)]
struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: Vec<NamedCluster>,
    users: Vec<NamedUser>,
    contexts: Vec<NamedContext>,
    #[serde(rename = "current-context")]
    current_context: String,
}

#[derive(Debug, Serialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority_data: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_server_name: Option<String>,
}

#[derive(Debug, Serialize)]
struct NamedUser {
    name: String,
    user: User,
}

/// Exactly one of the fields is set.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct User {
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec: Option<ExecConfig>,
}

/// kubectl's exec credential plugin: this binary's `kubeconfig credential`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecConfig {
    api_version: &'static str,
    command: PathBuf,
    args: Vec<String>,
    interactive_mode: &'static str,
    provide_cluster_info: bool,
    install_hint: String,
}

impl ExecConfig {
    /// Runs the running `airlock` binary (by absolute path), reading `token_file`, or
    /// `AIRLOCK_TOKEN` from kubectl's environment without one.
    fn new(token_file: Option<&Path>) -> anyhow::Result<ExecConfig> {
        let command = std::env::current_exe().context("cannot find the airlock binary's path")?;
        let mut args = vec!["kubeconfig".to_owned(), "credential".to_owned()];
        if let Some(path) = token_file {
            let path = path
                .to_str()
                .with_context(|| format!("the token file path {} is not UTF-8", path.display()))?;
            args.extend(["--token-file".to_owned(), path.to_owned()]);
        }
        let install_hint = format!(
            "kubectl runs {} kubeconfig credential to get the agent's Airlock token; \
             install airlock there, or generate the kubeconfig again",
            command.display()
        );
        Ok(ExecConfig {
            api_version: EXEC_API_VERSION,
            command,
            args,
            interactive_mode: "Never",
            provide_cluster_info: false,
            install_hint,
        })
    }
}

#[derive(Debug, Serialize)]
struct NamedContext {
    name: String,
    context: KubeContext,
}

#[derive(Debug, Serialize)]
struct KubeContext {
    cluster: String,
    user: String,
}

/// Standard base64 with padding (RFC 4648, section 4), as kubeconfig `*-data` fields are.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn listen_addresses_become_urls() {
        let cases = [
            ("127.0.0.1:8443", "https://127.0.0.1:8443", "127.0.0.1"),
            ("0.0.0.0:8443", "https://127.0.0.1:8443", "127.0.0.1"),
            ("[::]:8443", "https://[::1]:8443", "::1"),
            ("10.1.2.3:443", "https://10.1.2.3:443", "10.1.2.3"),
        ];
        for (listen, url, host) in cases {
            let base = Base::from_listen(listen.parse().unwrap());
            assert_eq!(base.url, url);
            assert_eq!(base.host, host);
        }
    }

    #[test]
    fn server_urls_are_checked() {
        let ok = [
            (
                "https://airlock.internal",
                "https://airlock.internal",
                "airlock.internal",
            ),
            ("https://GW:8443/", "https://GW:8443", "gw"),
            ("https://[::1]:8443", "https://[::1]:8443", "::1"),
            ("https://gw/k8s//", "https://gw/k8s", "gw"),
        ];
        for (given, url, host) in ok {
            let base = Base::parse(given).unwrap();
            assert_eq!(
                (base.url.as_str(), base.host.as_str()),
                (url, host),
                "{given}"
            );
        }
        for bad in [
            "http://gw",
            "gw:8443",
            "https://",
            "https://:8443",
            "https://gw:port",
            "https://gw:99999",
            "https://user@gw",
            "https://gw/?q",
            "https://gw/#x",
            "https://[::1",
            "https://[gw]:1",
            "https://g w",
        ] {
            assert!(Base::parse(bad).is_err(), "{bad}");
        }
    }
}
