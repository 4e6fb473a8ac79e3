//! `airlock kubeconfig`: the kubeconfig it prints (server, the listener's certificate,
//! the agent's token inline, by file or through the exec plugin), the `credential`
//! plugin itself, the errors that name what is missing, and, with kubectl on PATH,
//! kubectl accepting the file and reaching a running gateway with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use airlock_testkit::{Airlock, AirlockBuilder};
use base64::Engine;
use serde_json::{Value, json};

use crate::bin;

/// The target's own credential: it must never appear in anything printed.
const CLUSTER_SECRET: &str = "cluster-credential-never-printed";

/// A configuration with an `[http]` listener, a kubernetes target `cluster` and a
/// postgres target `shop` (written, not started).
fn gateway() -> Airlock {
    builder().write()
}

fn builder() -> AirlockBuilder {
    AirlockBuilder::new(bin())
        .http()
        .raw_target("[[targets]]\nname = \"cluster\"\nkind = \"kubernetes\"\nurl = \"https://127.0.0.1:1\"\ntoken = \"env:AIRLOCK_TEST_K8S_TOKEN\"\n")
        .env("AIRLOCK_TEST_K8S_TOKEN", CLUSTER_SECRET)
        .raw_target("[[targets]]\nname = \"shop\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\ndatabase = \"shop\"\nuser = \"app\"\npassword = \"env:AIRLOCK_TEST_SHOP_PW\"\n")
        .env("AIRLOCK_TEST_SHOP_PW", CLUSTER_SECRET)
}

/// Runs `airlock ARGS --config <gw's>` in the gateway's folder (so that relative paths
/// are relative to it).
fn airlock(gw: &Airlock, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(gw.config_path())
        .current_dir(&gw.dir)
        .env("AIRLOCK_TEST_K8S_TOKEN", CLUSTER_SECRET)
        .env("AIRLOCK_TEST_SHOP_PW", CLUSTER_SECRET)
        .env_remove("AIRLOCK_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run airlock")
}

/// `airlock kubeconfig ARGS`, which must succeed: the YAML text and its parsed value.
fn kubeconfig(gw: &Airlock, args: &[&str]) -> (String, Value) {
    let mut all = vec!["kubeconfig"];
    all.extend_from_slice(args);
    let out = airlock(gw, &all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "airlock {all:?}: {stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    for printed in [text.as_str(), &stderr] {
        assert!(!printed.contains(CLUSTER_SECRET), "{printed}");
        assert!(!printed.contains("insecure-skip-tls-verify"), "{printed}");
    }
    let value: Value = serde_yaml::from_str(&text).expect("the kubeconfig is YAML");
    (text, value)
}

/// `airlock kubeconfig ARGS`, which must fail with exit code 2: its standard error.
fn kubeconfig_err(gw: &Airlock, args: &[&str]) -> String {
    let mut all = vec!["kubeconfig"];
    all.extend_from_slice(args);
    let out = airlock(gw, &all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "airlock {all:?}: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    assert!(!stderr.contains(CLUSTER_SECRET), "{stderr}");
    stderr
}

/// The one cluster, user and context of `kc`, all named `name`, and checked to be wired
/// together; returns (cluster, user).
fn only_entries(kc: &Value, name: &str) -> (Value, Value) {
    assert_eq!(kc["apiVersion"], "v1");
    assert_eq!(kc["kind"], "Config");
    assert_eq!(kc["current-context"], name);
    for list in ["clusters", "users", "contexts"] {
        assert_eq!(kc[list].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(kc[list][0]["name"], name, "{list}");
    }
    assert_eq!(
        kc["contexts"][0]["context"],
        json!({"cluster": name, "user": name})
    );
    (
        kc["clusters"][0]["cluster"].clone(),
        kc["users"][0]["user"].clone(),
    )
}

fn ca_data(cluster: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(cluster["certificate-authority-data"].as_str().unwrap())
        .unwrap()
}

/// kubectl, when it is installed.
fn kubectl_bin() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
}

fn kubectl(kubectl: &Path, gw: &Airlock, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(gw.dir.join("kube-cache"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("AIRLOCK_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl")
}

#[test]
fn token_file_kubeconfig_trusts_the_generated_certificate_and_kubectl_accepts_it() {
    let gw = gateway();
    let cert = gw.dir.join("data/tls/server.crt");
    assert!(!cert.exists());
    std::fs::write(gw.dir.join("agent.token"), "alk_agent_token_not_copied\n").unwrap();

    // A relative --token-file is made absolute (kubectl runs elsewhere).
    let (text, kc) = kubeconfig(&gw, &["--target", "cluster", "--token-file", "agent.token"]);
    let (cluster, user) = only_entries(&kc, "cluster");
    assert_eq!(
        cluster["server"],
        format!("https://127.0.0.1:{}/cluster", gw.http_port)
    );
    // The certificate `serve` would generate, generated now, and exactly it trusted.
    let pem = std::fs::read(&cert).expect("the listener's certificate was generated");
    assert_eq!(ca_data(&cluster), pem);
    assert!(gw.dir.join("data/tls/server.key").exists());
    assert!(cluster.get("tls-server-name").is_none(), "{text}");
    let token_file = gw.dir.join("agent.token");
    assert_eq!(user, json!({ "tokenFile": token_file.to_str().unwrap() }));
    assert!(Path::new(user["tokenFile"].as_str().unwrap()).is_absolute());
    assert!(!text.contains("alk_agent_token_not_copied"), "{text}");

    // Generated once: a second run trusts the same certificate.
    let (_, again) = kubeconfig(&gw, &["--token-file", "agent.token", "--target", "cluster"]);
    assert_eq!(ca_data(&again["clusters"][0]["cluster"]), pem);

    // An absolute path stays as it is; a missing file is only warned about.
    let missing = gw.dir.join("not-yet-mounted.token");
    let out = airlock(
        &gw,
        &[
            "kubeconfig",
            "--target",
            "cluster",
            "--token-file",
            missing.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let kc: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(
        kc["users"][0]["user"]["tokenFile"],
        missing.to_str().unwrap()
    );

    let Some(kubectl_path) = kubectl_bin() else {
        eprintln!("kubectl is not installed; not checking that kubectl accepts the file");
        return;
    };
    let file = gw.dir.join("agent.kubeconfig");
    std::fs::write(&file, &text).unwrap();
    let out = kubectl(
        &kubectl_path,
        &gw,
        &file,
        &["config", "view", "--raw", "-o", "json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["current-context"], "cluster");
    assert_eq!(seen["clusters"][0]["cluster"]["server"], cluster["server"]);
    assert_eq!(
        seen["clusters"][0]["cluster"]["certificate-authority-data"],
        cluster["certificate-authority-data"]
    );
    assert_eq!(seen["users"][0]["user"]["tokenFile"], user["tokenFile"]);
}

#[test]
fn inline_token_name_and_server_override() {
    let gw = gateway();
    let (text, kc) = kubeconfig(
        &gw,
        &[
            "--target",
            "cluster",
            "--token",
            "alk_inline",
            "--name",
            "agent-ctx",
            "--server",
            "https://airlock.internal:8443/",
        ],
    );
    let (cluster, user) = only_entries(&kc, "agent-ctx");
    assert_eq!(cluster["server"], "https://airlock.internal:8443/cluster");
    assert_eq!(user, json!({ "token": "alk_inline" }));
    // The generated certificate names only the loopback host; the pinned certificate is
    // checked under the name it has.
    assert_eq!(cluster["tls-server-name"], "localhost", "{text}");
    assert_eq!(
        ca_data(&cluster),
        std::fs::read(gw.dir.join("data/tls/server.crt")).unwrap()
    );

    // A loopback name needs no override.
    let port = gw.http_port.to_string();
    let (_, kc) = kubeconfig(
        &gw,
        &[
            "--target",
            "cluster",
            "--token",
            "t",
            "--server",
            &format!("https://localhost:{port}"),
        ],
    );
    assert_eq!(
        kc["clusters"][0]["cluster"],
        json!({
            "server": format!("https://localhost:{port}/cluster"),
            "certificate-authority-data": kc["clusters"][0]["cluster"]["certificate-authority-data"],
        })
    );

    for bad in [
        "http://airlock.internal",
        "airlock.internal:8443",
        "https://u@gw",
    ] {
        let err = kubeconfig_err(
            &gw,
            &["--target", "cluster", "--token", "t", "--server", bad],
        );
        assert!(err.contains("--server"), "{bad}: {err}");
    }
}

#[test]
fn a_configured_listener_certificate_is_the_one_trusted() {
    let gw = gateway();
    // Any valid pair will do: the gateway's generated one, copied and configured.
    kubeconfig(&gw, &["--target", "cluster", "--token", "t"]);
    let pem = std::fs::read(gw.dir.join("data/tls/server.crt")).unwrap();
    std::fs::write(gw.dir.join("listener.crt"), &pem).unwrap();
    std::fs::copy(
        gw.dir.join("data/tls/server.key"),
        gw.dir.join("listener.key"),
    )
    .unwrap();
    std::fs::remove_dir_all(gw.dir.join("data/tls")).unwrap();
    let path = gw.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let listen = format!("listen = \"127.0.0.1:{}\"\n", gw.http_port);
    assert!(text.contains(&listen));
    std::fs::write(
        &path,
        text.replacen(
            &listen,
            &format!("{listen}tls_cert = \"listener.crt\"\ntls_key = \"listener.key\"\n"),
            1,
        ),
    )
    .unwrap();

    let (_, kc) = kubeconfig(
        &gw,
        &[
            "--target",
            "cluster",
            "--token",
            "t",
            "--server",
            "https://gw.example",
        ],
    );
    let cluster = &kc["clusters"][0]["cluster"];
    assert_eq!(ca_data(cluster), pem);
    // A configured certificate is the operator's: its names are not second-guessed.
    assert!(cluster.get("tls-server-name").is_none());
    assert!(
        !gw.dir.join("data/tls/server.crt").exists(),
        "nothing generated when a certificate is configured"
    );

    std::fs::write(gw.dir.join("listener.crt"), "not a certificate\n").unwrap();
    let err = kubeconfig_err(&gw, &["--target", "cluster", "--token", "t"]);
    assert!(err.contains("listener.crt"), "{err}");
}

#[test]
fn exec_plugin_runs_this_binary_and_prints_an_exec_credential() {
    let gw = gateway();
    std::fs::write(gw.dir.join("agent.token"), "alk_from_file\n").unwrap();
    let token_file = gw.dir.join("agent.token");
    let token_file = token_file.to_str().unwrap();
    let (text, kc) = kubeconfig(
        &gw,
        &[
            "--target",
            "cluster",
            "--exec",
            "--token-file",
            "agent.token",
        ],
    );
    assert!(!text.contains("alk_from_file"), "{text}");
    let (_, user) = only_entries(&kc, "cluster");
    let exec = &user["exec"];
    assert_eq!(user.as_object().unwrap().len(), 1, "only exec: {user}");
    assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1beta1");
    assert_eq!(exec["interactiveMode"], "Never");
    assert_eq!(exec["provideClusterInfo"], false);
    let command = PathBuf::from(exec["command"].as_str().unwrap());
    assert!(command.is_absolute(), "{command:?}");
    assert_eq!(
        command.canonicalize().unwrap(),
        Path::new(bin()).canonicalize().unwrap()
    );
    assert_eq!(
        exec["args"],
        json!(["kubeconfig", "credential", "--token-file", token_file])
    );

    // The plugin as kubectl runs it: the command and args, from anywhere.
    let args: Vec<String> = exec["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let run = |info: Option<&str>, env_token: Option<&str>, args: &[String]| {
        let mut cmd = Command::new(&command);
        cmd.args(args)
            .current_dir(std::env::temp_dir())
            .env_remove("AIRLOCK_TOKEN")
            .env_remove("KUBERNETES_EXEC_INFO")
            .env_remove("AIRLOCK_CONFIG")
            .stdin(Stdio::null());
        if let Some(info) = info {
            cmd.env("KUBERNETES_EXEC_INFO", info);
        }
        if let Some(t) = env_token {
            cmd.env("AIRLOCK_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let out = run(
        Some(
            r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}"#,
        ),
        None,
        &args,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let credential: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        credential,
        json!({
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "kind": "ExecCredential",
            "status": {"token": "alk_from_file"},
        })
    );
    // Answered in the version kubectl asks for.
    let out = run(
        Some(
            r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#,
        ),
        None,
        &args,
    );
    let credential: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1");

    // Without --token-file, the plugin reads AIRLOCK_TOKEN from kubectl's environment.
    let (_, kc) = kubeconfig(&gw, &["--target", "cluster", "--exec"]);
    let exec = &kc["users"][0]["user"]["exec"];
    assert_eq!(exec["args"], json!(["kubeconfig", "credential"]));
    let bare = ["kubeconfig".to_owned(), "credential".to_owned()];
    let out = run(None, Some("alk_from_env"), &bare);
    let credential: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(credential["status"], json!({"token": "alk_from_env"}));
    assert_eq!(credential["kind"], "ExecCredential");

    // No token, an empty file, a missing file: errors, nothing on stdout.
    std::fs::write(gw.dir.join("empty.token"), "\n").unwrap();
    let empty = gw.dir.join("empty.token");
    let missing = gw.dir.join("missing.token");
    for (args, needle) in [
        (bare.to_vec(), "AIRLOCK_TOKEN"),
        (
            [
                &bare[..],
                &["--token-file".into(), empty.display().to_string()],
            ]
            .concat(),
            "is empty",
        ),
        (
            [
                &bare[..],
                &["--token-file".into(), missing.display().to_string()],
            ]
            .concat(),
            "cannot read the token file",
        ),
    ] {
        let out = run(None, None, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn errors_name_what_is_missing() {
    let gw = gateway();
    let err = kubeconfig_err(&gw, &["--target", "nope", "--token", "t"]);
    assert!(err.contains("no target `nope`"), "{err}");
    assert!(
        err.contains("`cluster`"),
        "lists the kubernetes targets: {err}"
    );
    assert!(!err.contains("`shop`"), "{err}");

    let err = kubeconfig_err(&gw, &["--target", "shop", "--token", "t"]);
    assert!(
        err.contains("target `shop` is kind = \"postgres\""),
        "{err}"
    );
    assert!(err.contains("kind = \"kubernetes\""), "{err}");

    // Exactly one way to give the agent's token.
    let err = kubeconfig_err(&gw, &["--target", "cluster"]);
    assert!(err.contains("--token-file"), "{err}");
    let err = kubeconfig_err(&gw, &["--target", "cluster", "--token", "t", "--exec"]);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = kubeconfig_err(&gw, &["--token", "t"]);
    assert!(err.contains("--target"), "{err}");

    // Without [http] there is nothing to serve a kubernetes target on.
    let no_http = AirlockBuilder::new(bin())
        .raw_target("[[targets]]\nname = \"cluster\"\nkind = \"kubernetes\"\nurl = \"https://127.0.0.1:1\"\ntoken = \"env:AIRLOCK_TEST_K8S_TOKEN\"\n")
        .write();
    let err = kubeconfig_err(&no_http, &["--target", "cluster", "--token", "t"]);
    assert!(err.contains("[http]"), "{err}");
    assert!(!no_http.dir.join("data/tls").exists());

    // No kubernetes target at all.
    let pg_only = AirlockBuilder::new(bin())
        .raw_target("[[targets]]\nname = \"shop\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\ndatabase = \"shop\"\nuser = \"app\"\npassword = \"env:AIRLOCK_TEST_SHOP_PW\"\n")
        .write();
    let err = kubeconfig_err(&pg_only, &["--target", "cluster", "--token", "t"]);
    assert!(err.contains("no kind = \"kubernetes\" target"), "{err}");
}

/// kubectl with each generated kubeconfig against a running gateway: TLS is verified
/// against the pinned certificate, and the agent's token (inline, by file, or from the
/// exec plugin) is accepted; a wrong token is refused as 401. The gateway has no policy,
/// so an authenticated request is refused without reaching the cluster.
#[test]
fn kubectl_reaches_a_running_gateway_with_the_generated_kubeconfig() {
    let Some(kubectl_path) = kubectl_bin() else {
        eprintln!("kubectl is not installed; skipping");
        return;
    };
    let gw = builder().policy(None).start();
    let token = gw.token("k8s-agent", &["ai-agents"]);
    std::fs::write(gw.dir.join("agent.token"), format!("{token}\n")).unwrap();
    std::fs::write(gw.dir.join("wrong.token"), "alk_not_a_real_token\n").unwrap();

    let cases = [
        (vec!["--token-file", "agent.token"], true),
        (vec!["--exec", "--token-file", "agent.token"], true),
        (vec!["--token", token.as_str()], true),
        (vec!["--token-file", "wrong.token"], false),
        (vec!["--exec", "--token-file", "wrong.token"], false),
    ];
    for (i, (args, good)) in cases.into_iter().enumerate() {
        let mut all = vec!["--target", "cluster"];
        all.extend(args.iter().copied());
        let (text, _) = kubeconfig(&gw, &all);
        let file = gw.dir.join(format!("kubeconfig-{i}"));
        std::fs::write(&file, text).unwrap();
        let out = kubectl(
            &kubectl_path,
            &gw,
            &file,
            &["get", "--raw", "/api/v1/namespaces"],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: no policy permits it");
        assert!(
            !err.contains("x509") && !err.contains("certificate"),
            "{args:?}: TLS is verified: {err}"
        );
        let unauthorized = err.contains("Unauthorized") || err.contains("provide credentials");
        if good {
            // An answer of the gateway's other than 401: kubectl got through.
            assert!(
                err.contains("Error from server") && !unauthorized,
                "{args:?}: authenticated: {err}"
            );
        } else {
            assert!(unauthorized, "{args:?}: refused as 401: {err}");
        }
    }
    assert!(!gw.log().contains(CLUSTER_SECRET));
}
