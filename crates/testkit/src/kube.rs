//! A real Kubernetes API server for the end-to-end tests: `kube-apiserver` (built from
//! Debian's `kubernetes` source package by `scripts/kube-apiserver`, cached outside the
//! clone) on Debian's `etcd`, with a test CA that signs its serving certificate, RBAC
//! and a static token file: an admin token for fixtures, and the token Airlock itself
//! presents (group `airlock`, bound to `cluster-admin`). No kubelet runs: the API (CRUD,
//! RBAC, watch, admission) is real, pods never start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{free_port, scratch_dir};

/// A CA, the API server's serving certificate (127.0.0.1, localhost) and a client
/// certificate for Airlock (`CN=airlock-gw-cert`, `O=airlock`), signed by it (PEM).
struct Certificates {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn certificates() -> anyhow::Result<Certificates> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "airlock test cluster CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate()?;
    let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?
        .signed_by(&server_key, &issuer)?;
    let client_key = KeyPair::generate()?;
    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, "airlock-gw-cert");
    client_params
        .distinguished_name
        .push(DnType::OrganizationName, "airlock");
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &issuer)?;
    Ok(Certificates {
        ca: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    })
}

/// The kube-apiserver binary: `AIRLOCK_TEST_KUBE_APISERVER`, else the cache that
/// `scripts/kube-apiserver` (and the acceptance check) fill.
pub fn kube_apiserver_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("AIRLOCK_TEST_KUBE_APISERVER") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    for root in ["/var/tmp/airlock-kube", "/var/tmp/airlock-acc-k8s"] {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for e in entries.flatten() {
            let bin = e.path().join("kube-apiserver");
            if bin.exists() {
                return Some(bin);
            }
        }
    }
    None
}

/// A running API server and its etcd.
pub struct Kube {
    /// The API server's HTTPS port on 127.0.0.1.
    pub port: u16,
    /// Its folder (certificates, tokens, the admin kubeconfig).
    pub dir: PathBuf,
    /// The CA that signs its serving certificate.
    pub ca_file: PathBuf,
    /// The file holding the token Airlock presents.
    pub airlock_token_file: PathBuf,
    /// The token Airlock presents (to check it never reaches an agent).
    pub airlock_token: String,
    /// A client certificate (PEM file) the API server accepts as Airlock (group
    /// `airlock`), for targets that present one instead of the token.
    pub airlock_client_cert: PathBuf,
    /// The key of [`airlock_client_cert`](Self::airlock_client_cert).
    pub airlock_client_key: PathBuf,
    admin_kubeconfig: PathBuf,
    etcd: Child,
    apiserver: Child,
}

impl Kube {
    /// The API server shared by this test binary (started on first use).
    pub fn shared() -> &'static Kube {
        static SHARED: OnceLock<Kube> = OnceLock::new();
        SHARED.get_or_init(|| Kube::start().expect("start kube-apiserver and etcd"))
    }

    /// Starts etcd and the API server on free ports.
    pub fn start() -> anyhow::Result<Kube> {
        let apiserver_bin = kube_apiserver_bin().ok_or_else(|| {
            anyhow::anyhow!(
                "no kube-apiserver binary: run scripts/kube-apiserver (scripts/test does)"
            )
        })?;
        let dir = scratch_dir("kube");
        let certs = certificates()?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, text)?;
            Ok(p)
        };
        let ca_file = write("ca.crt", &certs.ca)?;
        let cert_file = write("apiserver.crt", &certs.server_cert)?;
        let key_file = write("apiserver.key", &certs.server_key)?;
        let airlock_client_cert = write("airlock-client.crt", &certs.client_cert)?;
        let airlock_client_key = write("airlock-client.key", &certs.client_key)?;
        let sa = rcgen::KeyPair::generate()?;
        let sa_key = write("sa.key", &sa.serialize_pem())?;
        let sa_pub = write("sa.pub", &sa.public_key_pem())?;
        let admin_token = format!("adm-{:032x}", rand::random::<u128>());
        let airlock_token = format!("gw-{:032x}", rand::random::<u128>());
        write(
            "tokens.csv",
            &format!(
                "{admin_token},admin,1,\"system:masters\"\n{airlock_token},airlock-gw,2,airlock\n"
            ),
        )?;
        let airlock_token_file = write("airlock-token", &airlock_token)?;
        let (etcd_port, peer_port, port) = (free_port(), free_port(), free_port());
        let log = |name: &str| std::fs::File::create(dir.join(name));
        let etcd = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(dir.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!("--initial-cluster=t=http://127.0.0.1:{peer_port}"))
            .stdin(Stdio::null())
            .stdout(log("etcd.log")?)
            .stderr(log("etcd.err")?)
            .spawn()?;
        crate::wait_port(etcd_port, Duration::from_secs(20))?;
        let apiserver = Command::new(apiserver_bin)
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={port}"))
            .arg("--insecure-port=0")
            .arg(format!("--tls-cert-file={}", cert_file.display()))
            .arg(format!("--tls-private-key-file={}", key_file.display()))
            .arg(format!(
                "--token-auth-file={}",
                dir.join("tokens.csv").display()
            ))
            .arg(format!("--client-ca-file={}", ca_file.display()))
            .args([
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/24",
            ])
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!("--service-account-key-file={}", sa_pub.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key.display()
            ))
            .stdin(Stdio::null())
            .stdout(log("apiserver.log")?)
            .stderr(log("apiserver.err")?)
            .spawn()?;
        spawn_watchdog(apiserver.id(), etcd.id(), &dir);
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(
            &admin_kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: k, cluster: {{server: \"https://127.0.0.1:{port}\", certificate-authority: \"{}\"}}}}]\nusers: [{{name: admin, user: {{token: \"{admin_token}\"}}}}]\ncontexts: [{{name: k, context: {{cluster: k, user: admin}}}}]\ncurrent-context: k\n",
                ca_file.display()
            ),
        )?;
        let kube = Kube {
            port,
            dir,
            ca_file,
            airlock_token_file,
            airlock_token,
            airlock_client_cert,
            airlock_client_key,
            admin_kubeconfig,
            etcd,
            apiserver,
        };
        kube.wait_ready()?;
        let bind = kube.admin(&[
            "create",
            "clusterrolebinding",
            "airlock-gw",
            "--clusterrole=cluster-admin",
            "--group=airlock",
        ]);
        anyhow::ensure!(bind.status.success(), "RBAC for Airlock: {bind:?}");
        Ok(kube)
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if self.admin(&["get", "--raw", "/readyz"]).status.success() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        anyhow::bail!(
            "kube-apiserver not ready after 60 s: {}",
            std::fs::read_to_string(self.dir.join("apiserver.err"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// kubectl as the cluster's admin, directly (for fixtures and checks).
    pub fn admin(&self, args: &[&str]) -> Output {
        kubectl(&self.admin_kubeconfig, args, None)
    }

    /// kubectl as the cluster's admin with `stdin` (a manifest for `apply -f -`).
    pub fn admin_apply(&self, manifest: &str) -> Output {
        kubectl(
            &self.admin_kubeconfig,
            &["apply", "-f", "-"],
            Some(manifest),
        )
    }
}

/// Runs kubectl with `kubeconfig`.
pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", "60s"])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        let _ = input.write_all(text.as_bytes());
    }
    child.wait_with_output().expect("kubectl output")
}

impl Kube {
    /// Stops the API server, then etcd (the API server first: with etcd gone it hangs
    /// in its graceful shutdown).
    pub fn stop(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

impl Drop for Kube {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops the API server, then etcd, when this test process exits (the shared one lives
/// in a static and is never dropped).
fn spawn_watchdog(apiserver: u32, etcd: u32, dir: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; kill -9 {apiserver} 2>/dev/null; sleep 0.2; kill -9 {etcd} 2>/dev/null; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
