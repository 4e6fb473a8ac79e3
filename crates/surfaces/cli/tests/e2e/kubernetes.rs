//! Kubernetes through Airlock with kubectl, unchanged but for its kubeconfig, against a
//! real kube-apiserver on etcd (`airlock_testkit::Kube`): reads, decisions as the API
//! server routes them, `delete namespace` refused with kubectl's own Forbidden, writes
//! in kube-system refused, impersonation refused, Secret values masked but still valid,
//! and a held `delete deployment` approved and completed in the same kubectl.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock_testkit::{Airlock, AirlockBuilder, Kube, kubectl};
use base64::Engine;
use serde_json::Value;

use crate::{bin, finish};

const POLICY: &str = r#"
@id("k8s-connect")
permit(principal in Group::"ai-agents", action == Action::"connect", resource == Target::"cluster");
@id("k8s-discover")
permit(principal in Group::"ai-agents", action == K8s::Action::"discover", resource == Target::"cluster");
@id("k8s-read")
permit(principal in Group::"ai-agents", action in K8s::Action::"read", resource in Target::"cluster");
@id("k8s-sandbox-writes")
permit(principal in Group::"ai-agents", action in K8s::Action::"write", resource in K8s::Namespace::"cluster/sandbox");
@id("no-namespace-deletes")
@reason("namespaces are deleted by people")
forbid(principal, action == K8s::Action::"delete", resource is K8s::Resource) when { resource.resource == "namespaces" };
@id("kube-system-read-only")
forbid(principal, action in K8s::Action::"write", resource in K8s::Namespace::"cluster/kube-system");
@id("no-destructive-exec")
@reason("agents do not delete files in pods")
forbid(principal, action in [K8s::Action::"get", K8s::Action::"create"], resource is K8s::Resource)
  when { resource.subresource == "exec" && context.command like "*rm *" };
@id("prod-deployment-delete-needs-dba")
@hold("dba")
permit(principal in Group::"ai-agents", action == K8s::Action::"delete", resource is K8s::Resource in K8s::Namespace::"cluster/prod") when { resource.resource == "deployments" };
"#;

struct Cluster {
    gw: Airlock,
    kube: &'static Kube,
    kubeconfig: PathBuf,
    token: String,
}

impl Cluster {
    fn new() -> Cluster {
        let kube = Kube::shared();
        Self::with_credential(&format!(
            "token = \"file:{}\"",
            kube.airlock_token_file.display()
        ))
    }

    /// A gateway whose target `cluster` presents `credential` (TOML lines).
    fn with_credential(credential: &str) -> Cluster {
        let kube = Kube::shared();
        let gw = AirlockBuilder::new(bin())
            .http()
            .policy(Some(POLICY))
            .raw_target(&format!(
                "[[targets]]\nname = \"cluster\"\nkind = \"kubernetes\"\nurl = \"https://127.0.0.1:{}\"\nca_file = \"{}\"\n{credential}\n",
                kube.port,
                kube.ca_file.display(),
            ))
            .start();
        let token = gw.token("crew-k8s", &["ai-agents"]);
        let kubeconfig = gw.dir.join("agent.kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: airlock, cluster: {{server: \"https://127.0.0.1:{}/cluster\", certificate-authority: \"{}\"}}}}]\nusers: [{{name: agent, user: {{token: \"{token}\"}}}}]\ncontexts: [{{name: airlock, context: {{cluster: airlock, user: agent}}}}]\ncurrent-context: airlock\n",
                gw.http_port,
                gw.dir.join("data/tls/server.crt").display()
            ),
        )
        .unwrap();
        Cluster {
            gw,
            kube,
            kubeconfig,
            token,
        }
    }

    /// kubectl as the agent, through Airlock: (success, stdout, stderr).
    fn agent(&self, args: &[&str]) -> (bool, String, String) {
        let out = kubectl(&self.kubeconfig, args, None);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn admin_ok(&self, args: &[&str]) -> String {
        let out = self.kube.admin(args);
        assert!(out.status.success(), "admin kubectl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A fresh namespace (tests share the API server).
    fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{:08x}", rand_suffix());
        self.admin_ok(&["create", "namespace", &name]);
        name
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

fn ensure_namespace(c: &Cluster, name: &str) {
    let _ = c.kube.admin(&["create", "namespace", name]);
}

#[test]
fn kubectl_reads_and_sandbox_writes_pass_and_guardrails_refuse_legibly() {
    let c = Cluster::new();
    ensure_namespace(&c, "sandbox");
    let (ok, out, err) = c.agent(&["get", "namespaces", "-o", "name"]);
    assert!(ok, "{err}");
    assert!(out.contains("namespace/kube-system"), "{out}");
    let cm = format!("cm-{:08x}", rand_suffix());
    let (ok, _, err) = c.agent(&[
        "create",
        "configmap",
        &cm,
        "-n",
        "sandbox",
        "--from-literal=k=v",
    ]);
    assert!(ok, "a write in sandbox is permitted: {err}");
    c.admin_ok(&["get", "configmap", &cm, "-n", "sandbox"]);

    let victim = c.namespace("victim");
    let (ok, _, err) = c.agent(&["delete", "namespace", &victim]);
    assert!(!ok);
    assert!(err.contains("Error from server (Forbidden)"), "{err}");
    assert!(
        err.contains("no-namespace-deletes") && err.contains("namespaces are deleted by people"),
        "{err}"
    );
    c.admin_ok(&["get", "namespace", &victim]);

    let (ok, _, err) = c.agent(&[
        "create",
        "configmap",
        "x",
        "-n",
        "kube-system",
        "--from-literal=a=b",
    ]);
    assert!(!ok && err.contains("kube-system-read-only"), "{err}");
    // Spelled with escapes, the same namespace: read passes, write refused.
    let url = format!(
        "https://127.0.0.1:{}/cluster/api/v1/namespaces/kube%2Dsystem/configmaps",
        c.gw.http_port
    );
    let (code, _, body) = crate::http_proxy::curl_with(&url, Some(&c.token), &[]);
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = crate::http_proxy::curl_with(
        &url,
        Some(&c.token),
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"sneaky"}}"#,
        ],
    );
    assert_eq!(code, 403, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Forbidden");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("kube-system-read-only")
    );
    let (ok, _, err) = c.agent(&["--as", "admin", "get", "pods", "-n", "sandbox"]);
    assert!(!ok && err.contains("impersonate"), "{err}");

    let s = c.gw.last_session_of("crew-k8s", "cluster");
    assert_eq!(s["protocol"], "kubernetes");
    let requests = crate::events_of(&s, "request");
    assert!(
        requests
            .iter()
            .all(|r| !r.to_string().contains(&c.kube.airlock_token))
    );
    assert!(!c.gw.log().contains(&c.kube.airlock_token));
}

#[test]
fn secret_values_are_masked_in_get_list_yaml_and_last_applied() {
    let c = Cluster::new();
    let ns = c.namespace("secrets");
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {ns}\ntype: Opaque\nstringData:\n  password: hunter2-original\n  user: ada\n"
    );
    let out = c.kube.admin_apply(&manifest);
    assert!(out.status.success(), "{out:?}");
    let masked = base64::engine::general_purpose::STANDARD.encode("[REDACTED]");
    let (ok, json, err) = c.agent(&["get", "secret", "db", "-n", &ns, "-o", "json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["data"]["password"], masked.as_str());
    assert_eq!(v["data"]["user"], masked.as_str());
    let applied = v["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap();
    assert!(!applied.contains("hunter2"), "{applied}");
    let (ok, yaml, _) = c.agent(&["get", "secrets", "-n", &ns, "-o", "yaml"]);
    assert!(ok);
    let original = base64::engine::general_purpose::STANDARD.encode("hunter2-original");
    assert!(
        !yaml.contains(&original) && !yaml.contains("hunter2"),
        "{yaml}"
    );
    let (ok, table, _) = c.agent(&["get", "secrets", "-n", &ns]);
    assert!(ok && table.contains("db"), "{table}");
    // The detectors run over other objects: a ConfigMap's e-mail, and a Table.
    c.admin_ok(&[
        "create",
        "configmap",
        "contacts",
        "-n",
        &ns,
        "--from-literal=owner=ada@example.com",
    ]);
    let (ok, cm, _) = c.agent(&["get", "configmap", "contacts", "-n", &ns, "-o", "json"]);
    assert!(ok);
    assert!(
        !cm.contains("ada@example.com") && cm.contains("[REDACTED:email]"),
        "{cm}"
    );
    // Directly, the secret is intact: only the agent's view is masked.
    let direct = c.admin_ok(&["get", "secret", "db", "-n", &ns, "-o", "json"]);
    assert!(direct.contains(&original));
}

#[test]
fn a_held_delete_deployment_completes_in_the_same_kubectl_once_approved() {
    let c = Cluster::new();
    ensure_namespace(&c, "prod");
    let name = format!("web-{:08x}", rand_suffix());
    c.admin_ok(&["create", "deployment", &name, "-n", "prod", "--image=nginx"]);
    let dba = c.gw.token("dana", &["dba"]);
    let held = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["delete", "deployment", &name, "-n", "prod"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pending = loop {
        let out =
            c.gw.cli_ok(&["approvals", "list", "--status", "pending", "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap();
        if let Some(a) = v["approvals"].as_array().and_then(|a| a.first()).cloned() {
            break a;
        }
        assert!(Instant::now() < deadline, "no pending approval");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        pending["statement"].as_str().unwrap().contains(&name),
        "{pending}"
    );
    c.admin_ok(&["get", "deployment", &name, "-n", "prod"]);
    let out =
        c.gw.cli(&["approve", pending["id"].as_str().unwrap(), "--token", &dba]);
    assert!(out.status.success(), "{out:?}");
    let (ok, stdout, stderr) = finish(held);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("deleted"), "{stdout}");
    let gone = c.kube.admin(&["get", "deployment", &name, "-n", "prod"]);
    assert!(!gone.status.success(), "the deployment is deleted");
}

#[test]
fn exec_is_decided_with_its_command_and_upgrades_reach_the_api_server() {
    let c = Cluster::new();
    ensure_namespace(&c, "sandbox");
    let pod = format!("p-{:08x}", rand_suffix());
    // No controller manager runs here to create namespaces' default service account
    // and its token: the pod mounts none.
    let _ = c
        .kube
        .admin(&["create", "serviceaccount", "default", "-n", "sandbox"]);
    let out = c.kube.admin_apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: sandbox}}\nspec:\n  automountServiceAccountToken: false\n  containers: [{{name: c, image: busybox}}]\n"
    ));
    assert!(out.status.success(), "{out:?}");
    let (ok, _, err) = c.agent(&["exec", &pod, "-n", "sandbox", "--", "rm", "-rf", "/data"]);
    assert!(!ok);
    assert!(err.contains("no-destructive-exec"), "{err}");
    // A harmless command is permitted and reaches the API server, which cannot run it
    // (no kubelet here): its own error comes back.
    let (ok, _, err) = c.agent(&["exec", &pod, "-n", "sandbox", "--", "ls", "/"]);
    assert!(!ok);
    assert!(
        !err.contains("airlock"),
        "refused by Airlock, not by the API server: {err}"
    );
    let sessions = crate::http_proxy::sessions_of(&c.gw, "crew-k8s", "cluster");
    let recorded = serde_json::to_string(&sessions).unwrap();
    assert!(recorded.contains("\"command\":\"ls /\""), "{recorded}");
    assert!(
        recorded.contains("\"command\":\"rm -rf /data\""),
        "{recorded}"
    );
}

/// Reads a child's standard output in the background into a shared buffer.
fn collect_stdout(child: &mut std::process::Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    use std::io::Read;
    let buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut out = child.stdout.take().unwrap();
    let sink = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = out.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

fn wait_for(buf: &std::sync::Mutex<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = buf.lock().unwrap().clone();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "{needle} never came: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_watch_streams_masked_events_and_protobuf_is_answered_as_masked_json() {
    let c = Cluster::new();
    let ns = c.namespace("watch");
    let secret = |name: &str, value: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\nstringData: {{token: {value}}}\n"
        )
    };
    assert!(
        c.kube
            .admin_apply(&secret("first", "first-original-value"))
            .status
            .success()
    );
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["get", "secrets", "-n", &ns, "--watch", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = collect_stdout(&mut watch);
    wait_for(&seen, "\"first\"");
    // An event after the watch started arrives while the stream stays open.
    assert!(
        c.kube
            .admin_apply(&secret("second", "second-original-value"))
            .status
            .success()
    );
    let text = wait_for(&seen, "\"second\"");
    assert!(
        watch.try_wait().unwrap().is_none(),
        "the watch is still open"
    );
    let _ = watch.kill();
    let _ = watch.wait();
    for original in ["first-original-value", "second-original-value"] {
        let b64 = base64::engine::general_purpose::STANDARD.encode(original);
        assert!(!text.contains(original) && !text.contains(&b64), "{text}");
    }

    // YAML asked for: JSON comes back, masked (YAML would pass the Secret masking by).
    let url_yaml = format!(
        "https://127.0.0.1:{}/cluster/api/v1/namespaces/{ns}/secrets/first",
        c.gw.http_port
    );
    let (code, _, body) = crate::http_proxy::curl_with(
        &url_yaml,
        Some(&c.token),
        &["-H", "Accept: application/yaml"],
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        !body.contains(&base64::engine::general_purpose::STANDARD.encode("first-original-value")),
        "{body}"
    );
    assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
    // Protobuf asked for: JSON comes back, masked.
    let url = format!(
        "https://127.0.0.1:{}/cluster/api/v1/namespaces/{ns}/secrets/first",
        c.gw.http_port
    );
    let (code, hdrs, body) = crate::http_proxy::curl_with(
        &url,
        Some(&c.token),
        &["-H", "Accept: application/vnd.kubernetes.protobuf"],
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        hdrs.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{hdrs}"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"]["token"],
        base64::engine::general_purpose::STANDARD
            .encode("[REDACTED]")
            .as_str()
    );
}

/// curl watching a collection through the gateway, in the background.
fn curl_watch(gw: &Airlock, token: &str, path: &str) -> std::process::Child {
    Command::new("curl")
        .args(["-skN", "--http1.1", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("https://127.0.0.1:{}/cluster{path}", gw.http_port))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_watch_ends_when_the_token_expires() {
    let c = Cluster::new();
    let ns = c.namespace("expiry");
    let out = c.gw.cli_ok(&[
        "token",
        "create",
        "--name",
        "short-lived",
        "--group",
        "ai-agents",
        "--ttl",
        "4s",
    ]);
    let token = out.lines().last().unwrap().trim().to_owned();
    let mut watch = curl_watch(
        &c.gw,
        &token,
        &format!("/api/v1/namespaces/{ns}/configmaps?watch=true"),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        watch.try_wait().unwrap().is_none(),
        "the watch is open while the token holds"
    );
    let status = wait_exit(&mut watch, Duration::from_secs(20))
        .expect("the watch ends after the token expires");
    assert!(!status.success(), "cut short, not a clean end");
    let s = c.gw.last_session_of("short-lived", "cluster");
    let results = crate::events_of(&s, "result");
    let error = results.last().unwrap()["detail"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("expired"), "{s}");
    // And the next request is refused.
    let url = format!(
        "https://127.0.0.1:{}/cluster/api/v1/namespaces/{ns}/configmaps",
        c.gw.http_port
    );
    let (code, _, _) = crate::http_proxy::curl_with(&url, Some(&token), &[]);
    assert_eq!(code, 401);
}

#[test]
fn the_api_server_going_away_mid_watch_ends_the_watch_and_is_recorded() {
    let mut kube = Kube::start().expect("a second API server");
    let gw = AirlockBuilder::new(bin())
        .http()
        .policy(Some(POLICY))
        .raw_target(&format!(
            "[[targets]]\nname = \"cluster\"\nkind = \"kubernetes\"\nurl = \"https://127.0.0.1:{}\"\nca_file = \"{}\"\ntoken = \"file:{}\"\nconnect_timeout = \"2s\"\n",
            kube.port,
            kube.ca_file.display(),
            kube.airlock_token_file.display()
        ))
        .start();
    let token = gw.token("crew-k8s", &["ai-agents"]);
    let mut watch = curl_watch(&gw, &token, "/api/v1/configmaps?watch=true");
    std::thread::sleep(Duration::from_secs(1));
    assert!(watch.try_wait().unwrap().is_none());
    kube.stop();
    let status =
        wait_exit(&mut watch, Duration::from_secs(20)).expect("the watch ends with the API server");
    assert!(!status.success());
    let s = gw.last_session_of("crew-k8s", "cluster");
    let results = crate::events_of(&s, "result");
    assert!(
        results.last().unwrap()["detail"]["error"].is_string(),
        "{s}"
    );
    // The next request: a clear 502 Status, and the gateway is fine.
    let url = format!(
        "https://127.0.0.1:{}/cluster/api/v1/configmaps",
        gw.http_port
    );
    let (code, _, body) = crate::http_proxy::curl_with(&url, Some(&token), &[]);
    assert_eq!(code, 502, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["kind"], "Status");
}

#[test]
fn the_python_kubernetes_client_works_through_airlock() {
    let c = Cluster::new();
    let ns = c.namespace("py");
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: {ns}}}\nstringData: {{password: py-original-secret}}\n"
    );
    assert!(c.kube.admin_apply(&manifest).status.success());
    let r = crate::http_proxy::http_client(
        "kubernetes",
        c.kubeconfig.to_str().unwrap(),
        &[("SECRET", "creds"), ("NS", ns.as_str())],
    );
    assert!(
        r["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == ns.as_str()),
        "{r}"
    );
    assert_eq!(
        r["data"]["password"],
        base64::engine::general_purpose::STANDARD
            .encode("[REDACTED]")
            .as_str()
    );
    assert_eq!(r["refused"]["status"], 403, "{r}");
    assert_eq!(r["refused"]["body"]["reason"], "Forbidden");
    c.admin_ok(&["get", "namespace", &ns]);
}

#[test]
fn a_client_certificate_and_impersonation_reach_the_api_server() {
    let kube = Kube::shared();
    // Airlock authenticates with a client certificate instead of a token.
    let c = Cluster::with_credential(&format!(
        "client_cert = \"file:{}\"\nclient_key = \"file:{}\"",
        kube.airlock_client_cert.display(),
        kube.airlock_client_key.display()
    ));
    let (ok, out, err) = c.agent(&["get", "namespaces", "-o", "name"]);
    assert!(ok, "{err}");
    assert!(out.contains("namespace/default"));

    // With impersonation the API server authorizes the agent itself: RBAC refuses it
    // until the agent's group is bound to a role.
    let c = Cluster::with_credential(&format!(
        "token = \"file:{}\"\nimpersonate = true",
        kube.airlock_token_file.display()
    ));
    let ns = c.namespace("imp");
    let (ok, _, err) = c.agent(&["get", "configmaps", "-n", &ns]);
    assert!(!ok);
    assert!(
        err.contains("crew-k8s") && !err.contains("airlock:"),
        "the API server refused the agent: {err}"
    );
    // (No controller manager here fills the aggregated `view` role: a role of our own.)
    c.admin_ok(&[
        "create",
        "role",
        "read-configmaps",
        "-n",
        &ns,
        "--verb=get,list",
        "--resource=configmaps",
    ]);
    c.admin_ok(&[
        "create",
        "rolebinding",
        "agents-read",
        "-n",
        &ns,
        "--role=read-configmaps",
        "--group=ai-agents",
    ]);
    // RBAC takes a moment to see the new binding.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ok, _, err) = c.agent(&["get", "configmaps", "-n", &ns]);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "{err}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn apply_and_patch_through_airlock() {
    let c = Cluster::new();
    ensure_namespace(&c, "sandbox");
    let name = format!("applied-{:08x}", rand_suffix());
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: sandbox, labels: {{team: crew}}}}\ndata: {{k: v1}}\n"
    );
    let file = c.gw.dir.join("cm.yaml");
    std::fs::write(&file, &manifest).unwrap();
    let (ok, _, err) = c.agent(&["apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    std::fs::write(&file, manifest.replace("v1}", "v2}")).unwrap();
    let (ok, _, err) = c.agent(&["apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, _, err) = c.agent(&[
        "patch",
        "configmap",
        &name,
        "-n",
        "sandbox",
        "-p",
        r#"{"data":{"k":"v3"}}"#,
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        c.admin_ok(&[
            "get",
            "configmap",
            &name,
            "-n",
            "sandbox",
            "-o",
            "jsonpath={.data.k}"
        ]),
        "v3"
    );
    // A write's object kind and labels were decided on.
    let sessions = crate::http_proxy::sessions_of(&c.gw, "crew-k8s", "cluster");
    let recorded = serde_json::to_string(&sessions).unwrap();
    assert!(recorded.contains("\"kind\":\"ConfigMap\""), "{recorded}");
}

#[test]
fn airlocks_own_mcp_server_reaches_the_cluster_through_the_same_path() {
    let c = Cluster::new();
    let ns = c.namespace("mcp");
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {ns}\ntype: Opaque\nstringData:\n  password: mcp-original-secret\n"
    );
    assert!(c.kube.admin_apply(&manifest).status.success());
    let url = format!("https://127.0.0.1:{}/mcp", c.gw.http_port);
    let k8s = |method: &str, path: String| serde_json::json!({"op": "call", "name": "kubernetes", "args": {"target": "cluster", "method": method, "path": path}});
    let out = airlock_testkit::mcp_client(
        &url,
        &c.token,
        "auto",
        &serde_json::json!([
            k8s("GET", format!("/api/v1/namespaces/{ns}/secrets/db")),
            k8s("DELETE", format!("/api/v1/namespaces/{ns}")),
            {"op": "call", "name": "http_request", "args": {"target": "cluster", "method": "GET", "path": "/api"}}
        ]),
    );
    let s = out["steps"].as_array().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(s[0]["is_error"], false, "{out}");
    assert_eq!(s[0]["structured"]["body"]["kind"], "Secret");
    let original = base64::engine::general_purpose::STANDARD.encode("mcp-original-secret");
    assert!(
        !s[0].to_string().contains(&original),
        "the Secret is masked: {}",
        s[0]
    );
    assert_eq!(s[1]["is_error"], true, "{}", s[1]);
    assert!(
        s[1]["text"]
            .as_str()
            .unwrap()
            .contains("namespaces are deleted by people"),
        "{}",
        s[1]
    );
    assert_eq!(
        s[2]["is_error"], true,
        "a kubernetes target is reached with the kubernetes tool: {}",
        s[2]
    );
    let (ok, _, _) = c.agent(&["get", "namespace", &ns]);
    assert!(ok, "the namespace is still there");
}
