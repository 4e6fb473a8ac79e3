//! Operations surfaces of one gateway: `/metrics` counts what a real psql session did,
//! and `/healthz` and `/readyz` answer without a token (`/readyz` says why when the
//! gateway cannot serve); a gateway on a PostgreSQL store, and that store restarted
//! under it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock_testkit::{AirlockBuilder, Postgres, free_port, psql};

use crate::postgres_policy::READ_ONLY;
use crate::{bin, wait_until};

fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

/// The value of the sample `name{labels}` (labels as printed), or 0.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// DELETEs on `shop` wait for group `dba`; target `down` may be connected to.
const HOLDS_AND_DOWN: &str = "\n@id(\"delete-needs-dba\")\n@hold(\"dba\")\npermit(principal in Group::\"ai-agents\", action == Sql::Action::\"delete\", resource in Target::\"shop\");\n@id(\"connect-down\")\npermit(principal in Group::\"ai-agents\", action == Action::\"connect\", resource == Target::\"down\");\n";

/// Scrapes until `done` holds of the text (or 20 s pass); returns the last text.
fn scrape_until(url: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = get(url);
        if done(&text) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_move_with_the_traffic_and_probes_need_no_token() {
    let pg = Postgres::shared();
    let db = pg.create_database("ops");
    let api = free_port();
    let dead_port = free_port();
    let policy = format!("{READ_ONLY}{HOLDS_AND_DOWN}");
    let mut gw = AirlockBuilder::new(bin())
        .policy(Some(&policy))
        .target("shop", pg, &db)
        .target_extra("hold_timeout = \"60s\"")
        .raw_target(&format!(
            "[[targets]]\nname = \"down\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = {dead_port}\ndatabase = \"x\"\nuser = \"app\"\npassword = \"env:DOWN_PW\"\nsslmode = \"disable\"\nconnect_timeout = \"3s\"\n"
        ))
        .env("DOWN_PW", "x")
        .extra(&format!("\n[api]\nlisten = \"127.0.0.1:{api}\"\n"))
        .start();
    airlock_testkit::wait_port(api, Duration::from_secs(10)).unwrap();
    let base = format!("https://127.0.0.1:{api}");
    let metrics = format!("{base}/metrics");
    assert_eq!(get(&format!("{base}/healthz")), (200, "ok".into()));
    assert_eq!(get(&format!("{base}/readyz")).0, 200);
    let (code, before) = get(&metrics);
    assert_eq!(code, 200, "{before}");
    let token = gw.token("agent", &["ai-agents"]);
    let out = psql(
        &gw.conn("shop", &token),
        &[
            "select * from customers",
            "update orders set id = id where false",
        ],
    );
    assert!(out.stdout.contains("Lovelace"), "{out:?}");
    let after = scrape_until(&metrics, |t| {
        sample(
            t,
            r#"airlock_sessions_open{target="shop",protocol="postgres"}"#,
        ) == 0.0
    });
    let delta = |name: &str| sample(&after, name) - sample(&before, name);
    let sessions = r#"airlock_sessions_total{target="shop",protocol="postgres"}"#;
    assert_eq!(delta(sessions), 1.0, "{after}");
    let allowed = r#"airlock_decisions_total{target="shop",protocol="postgres",decision="allow"}"#;
    let denied = r#"airlock_decisions_total{target="shop",protocol="postgres",decision="deny"}"#;
    assert_eq!((delta(allowed), delta(denied)), (1.0, 1.0), "{after}");
    // One latency sample per statement decided: the SELECT forwarded, the UPDATE refused.
    let latency = r#"airlock_gateway_latency_seconds_count{target="shop",protocol="postgres"}"#;
    assert_eq!(delta(latency), 2.0, "{after}");
    let inf =
        r#"airlock_gateway_latency_seconds_bucket{le="+Inf",target="shop",protocol="postgres"}"#;
    assert_eq!(delta(inf), 2.0, "{after}");
    let to_target =
        r#"airlock_relayed_bytes_total{target="shop",protocol="postgres",direction="to_target"}"#;
    let to_client =
        r#"airlock_relayed_bytes_total{target="shop",protocol="postgres",direction="to_client"}"#;
    // The SELECT's text went up; its rows (with "Lovelace") came back.
    assert!(
        delta(to_target) >= "select * from customers".len() as f64,
        "{after}"
    );
    assert!(delta(to_client) > 100.0, "{after}");
    assert!(
        after.contains("airlock_masked_values_total{rule=\"default\""),
        "{after}"
    );
    // The recorder: its queue is shown, and the ingest thread's store writes are timed.
    assert!(
        sample(&after, "airlock_recorder_queue_capacity ") > 0.0,
        "{after}"
    );
    assert!(after.contains("\nairlock_recorder_queue_depth "), "{after}");
    let after = scrape_until(&metrics, |t| {
        sample(t, r#"airlock_store_write_seconds_count{op="apply"}"#) > 0.0
    });
    assert!(
        sample(&after, r#"airlock_store_write_seconds_count{op="apply"}"#) > 0.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, r#"airlock_store_write_errors_total{op="apply"}"#),
        0.0,
        "{after}"
    );

    // A held statement is pending while it waits, and its approval is timed.
    let pending = r#"airlock_holds_pending{target="shop",protocol="postgres"}"#;
    let approved = r#"airlock_approval_latency_seconds_count{target="shop",outcome="approved"}"#;
    let dba = gw.token("dana", &["dba"]);
    let held = Command::new("psql")
        .arg(gw.conn("shop", &token))
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1"])
        .args(["-c", "delete from orders where id = 7"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = scrape_until(&metrics, |t| sample(t, pending) == 1.0);
    assert_eq!(sample(&waiting, pending), 1.0, "{waiting}");
    assert_eq!(sample(&waiting, approved), 0.0, "{waiting}");
    let list = gw.cli_ok(&["approvals", "list", "--status", "pending", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let id = list["approvals"][0]["id"].as_str().unwrap().to_owned();
    let decided = gw.cli(&["approve", &id, "--token", &dba]);
    assert!(decided.status.success(), "{decided:?}");
    let (ok, stdout, stderr) = crate::finish(held);
    assert!(ok && stdout.trim() == "DELETE 1", "{stdout}{stderr}");
    let released = get(&metrics).1;
    assert_eq!(sample(&released, pending), 0.0, "{released}");
    assert_eq!(sample(&released, approved), 1.0, "{released}");
    let held_decisions =
        r#"airlock_decisions_total{target="shop",protocol="postgres",decision="hold"}"#;
    assert_eq!(sample(&released, held_decisions), 1.0, "{released}");

    // A target that is down: the failed connection is counted.
    let refused = psql(&gw.conn("down", &token), &["select 1"]);
    assert!(!refused.ok, "{refused:?}");
    let down = get(&metrics).1;
    assert_eq!(
        sample(
            &down,
            r#"airlock_upstream_connect_errors_total{target="down",protocol="postgres"}"#
        ),
        1.0,
        "{down}"
    );
    assert_eq!(
        sample(
            &down,
            r#"airlock_upstream_connect_errors_total{target="shop",protocol="postgres"}"#
        ),
        0.0,
        "{down}"
    );

    // Labels never carry a principal, a statement or a value.
    for leak in [
        "agent",
        "dana",
        "customers",
        "orders",
        "ada@example.com",
        &token,
        &dba,
    ] {
        assert!(!down.contains(leak), "`{leak}` in /metrics");
    }
    assert!(down.ends_with("# EOF\n"));
    // The admin listener's probes and console keep nothing alive at shutdown: the
    // recorder drains and syncs.
    gw.stop();
    assert!(
        gw.log()
            .contains("stopped; every record is in the journal and synced"),
        "{}",
        gw.log()
    );
}

/// HTTP requests move the same metrics: one latency sample per request, the bytes of
/// the body sent and of the answer, and a connection to an upstream that is down.
#[test]
fn http_requests_move_latency_bytes_and_connect_errors() {
    let up = airlock_testkit::HttpApi::start();
    let api = free_port();
    let dead_port = free_port();
    let gw = AirlockBuilder::new(bin())
        .http()
        .raw_target(&format!(
            "[[targets]]\nname = \"billing\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{}/api\"\nauth = {{ bearer = \"env:T_BEARER\" }}\n",
            up.port
        ))
        .raw_target(&format!(
            "[[targets]]\nname = \"gone\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{dead_port}/api\"\n"
        ))
        .env("T_BEARER", airlock_testkit::UP_BEARER)
        .extra(&format!("\n[api]\nlisten = \"127.0.0.1:{api}\"\n"))
        .start();
    airlock_testkit::wait_port(api, Duration::from_secs(10)).unwrap();
    let metrics = format!("https://127.0.0.1:{api}/metrics");
    let token = gw.token("agent", &["ai-agents"]);
    let curl = |args: &[&str], path: &str| {
        let out = Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(args)
            .arg(format!("https://127.0.0.1:{}{path}", gw.http_port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(&[], "/billing/v1/people"), "200");
    let body = "x".repeat(1000);
    let posted = curl(
        &["-H", "Content-Type: text/plain", "--data-binary", &body],
        "/billing/v1/upload",
    );
    assert_eq!(posted, "201");
    assert_eq!(curl(&[], "/gone/v1/people"), "502");
    let text = scrape_until(&metrics, |t| {
        sample(
            t,
            r#"airlock_upstream_connect_errors_total{target="gone",protocol="http"}"#,
        ) == 1.0
    });
    let latency = r#"airlock_gateway_latency_seconds_count{target="billing",protocol="http"}"#;
    assert_eq!(sample(&text, latency), 2.0, "{text}");
    let to_target =
        r#"airlock_relayed_bytes_total{target="billing",protocol="http",direction="to_target"}"#;
    let to_client =
        r#"airlock_relayed_bytes_total{target="billing",protocol="http",direction="to_client"}"#;
    assert_eq!(sample(&text, to_target), 1000.0, "{text}");
    assert!(sample(&text, to_client) > 100.0, "{text}");
    assert_eq!(
        sample(
            &text,
            r#"airlock_upstream_connect_errors_total{target="gone",protocol="http"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"airlock_upstream_connect_errors_total{target="billing",protocol="http"}"#
        ),
        0.0,
        "{text}"
    );
}

#[test]
fn readyz_says_why_a_gateway_cannot_serve() {
    let pg = Postgres::shared();
    let db = pg.create_database("ops_ready");
    let api = free_port();
    let _gw = AirlockBuilder::new(bin())
        .policy(None)
        .target("shop", pg, &db)
        .extra(&format!("\n[api]\nlisten = \"127.0.0.1:{api}\"\n"))
        .start();
    airlock_testkit::wait_port(api, Duration::from_secs(10)).unwrap();
    let (code, body) = get(&format!("https://127.0.0.1:{api}/readyz"));
    assert_eq!(code, 503);
    assert!(body.contains("no policy is loaded"), "{body}");
    assert_eq!(get(&format!("https://127.0.0.1:{api}/healthz")).0, 200);
}

/// The Kubernetes base builds with `kubectl kustomize`, runs two replicas probed on
/// `/healthz` and `/readyz` as a non-root user, and the real API server of the
/// Kubernetes tests accepts it in a server-side dry run (except kinds its version, 1.20,
/// does not serve: `policy/v1` PodDisruptionBudget arrived in 1.21).
#[test]
fn the_kubernetes_base_builds_and_the_api_server_accepts_it() {
    let root = airlock_testkit::workspace_root();
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(root.join("deploy/kubernetes"))
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "{out:?}");
    let manifests = String::from_utf8_lossy(&out.stdout).into_owned();
    let docs: Vec<serde_json::Value> = manifests
        .split("\n---\n")
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let spec = &deployment["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    for kind in [
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
    ] {
        assert!(docs.iter().any(|d| d["kind"] == kind), "no {kind}");
    }
    // The configuration and policies it mounts are valid.
    let config = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["data"]["airlock.toml"].is_string())
        .unwrap()["data"]["airlock.toml"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = airlock_testkit::scratch_dir("deploy-k8s");
    std::fs::write(dir.join("airlock.toml"), &config).unwrap();
    let policies = Command::new(bin())
        .arg("--config")
        .arg(dir.join("airlock.toml"))
        .args(["policy", "check", "--path"])
        .arg(root.join("deploy/kubernetes/policies"))
        .output()
        .unwrap();
    assert!(policies.status.success(), "{policies:?}");

    let Some(_) = airlock_testkit::kube_apiserver_bin() else {
        eprintln!(
            "no kube-apiserver (scripts/test builds one): the server-side dry run is skipped"
        );
        return;
    };
    let kube = airlock_testkit::Kube::shared();
    let served: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| d["apiVersion"] != "policy/v1")
        .collect();
    // The namespace must exist for a dry run of what is in it.
    let ns = kube.admin(&["create", "namespace", "airlock"]);
    assert!(
        ns.status.success() || String::from_utf8_lossy(&ns.stderr).contains("AlreadyExists"),
        "{ns:?}"
    );
    let manifest = served
        .iter()
        .filter(|d| d["kind"] != "Namespace")
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let out = airlock_testkit::kubectl(
        &kube.dir.join("admin.kubeconfig"),
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&manifest),
    );
    assert!(out.status.success(), "{out:?}");
    let applied = String::from_utf8_lossy(&out.stdout);
    assert!(
        applied.contains("deployment.apps/airlock") && applied.contains("(server dry run)"),
        "{applied}"
    );
}

/// `deploy/docker-compose.yml` is valid against the Compose specification's JSON schema
/// (check-jsonschema's vendored copy, installed by `scripts/test`), defines the quick
/// start's services, and builds Airlock from the Dockerfile, which runs as non-root.
#[test]
fn the_compose_quick_start_is_valid_compose() {
    let root = airlock_testkit::workspace_root();
    let compose = std::fs::read_to_string(root.join("deploy/docker-compose.yml")).unwrap();
    let doc: serde_json::Value = serde_yaml::from_str(&compose).unwrap();
    for service in ["airlock", "store", "shop", "idp", "agent"] {
        assert!(doc["services"][service].is_object(), "no service {service}");
    }
    assert_eq!(
        doc["services"]["airlock"]["build"]["dockerfile"],
        "Dockerfile"
    );
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("USER 10001"),
        "the image runs as non-root"
    );
    assert!(
        dockerfile.contains("cargo build --release --locked"),
        "built as CI builds it"
    );
    let Ok(checker) = std::env::var("AIRLOCK_TEST_CHECK_JSONSCHEMA") else {
        eprintln!(
            "AIRLOCK_TEST_CHECK_JSONSCHEMA not set (scripts/test sets it): the schema check is skipped"
        );
        return;
    };
    let check = |file: &std::path::Path| {
        Command::new(&checker)
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(file)
            .output()
            .unwrap()
    };
    let out = check(&root.join("deploy/docker-compose.yml"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The checker does refuse what is not Compose.
    let bad = airlock_testkit::scratch_dir("compose").join("bad.yml");
    std::fs::write(&bad, "services:\n  airlock:\n    ports: 5\n    bogus: 1\n").unwrap();
    assert!(!check(&bad).status.success());
}

/// With `log_format = "json"`, a session's log lines carry its session id, principal and
/// target (as the span's fields), and never the token.
#[test]
fn json_logs_name_the_session_principal_and_target() {
    let pg = Postgres::shared();
    let db = pg.create_database("ops_logs");
    let gw = AirlockBuilder::new(bin())
        .policy(Some(READ_ONLY))
        .server("log_format = \"json\"")
        .target("shop", pg, &db)
        .start();
    let token = gw.token("agent", &["ai-agents"]);
    let out = psql(&gw.conn("shop", &token), &["select 1"]);
    assert!(out.ok, "{out:?}");
    std::thread::sleep(Duration::from_millis(300));
    let log = gw.log();
    assert!(!log.contains(&token), "the token is in the log");
    let line: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "session open")
        .unwrap_or_else(|| panic!("no `session open` JSON line in:\n{log}"));
    let span = &line["span"];
    assert_eq!(span["principal"], "agent", "{line}");
    assert_eq!(span["target"], "shop", "{line}");
    assert!(
        span["session"].as_str().is_some_and(|s| s.len() == 36),
        "{line}"
    );
}

/// An agent's W3C `traceparent` (in `application_name` for PostgreSQL) is recorded on
/// its session, so the session can be joined to the agent run that caused it.
#[test]
fn an_agents_traceparent_is_recorded_with_its_session() {
    let pg = Postgres::shared();
    let db = pg.create_database("ops_trace");
    let gw = AirlockBuilder::new(bin())
        .policy(Some(READ_ONLY))
        .target("shop", pg, &db)
        .start();
    let token = gw.token("agent", &["ai-agents"]);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let conn = format!(
        "{} application_name='crew-run traceparent={tp}'",
        gw.conn("shop", &token)
    );
    let out = psql(&conn, &["select 1"]);
    assert!(out.ok, "{out:?}");
    let s = gw.last_session_of("agent", "shop");
    let connect = &s["events"][0];
    assert_eq!(connect["kind"], "connect");
    assert_eq!(connect["detail"]["traceparent"], tp, "{connect}");
}

/// The same for an HTTP agent: its `traceparent` header is recorded on the request.
#[test]
fn an_http_agents_traceparent_is_recorded_on_its_request() {
    let api = airlock_testkit::HttpApi::start();
    let gw = AirlockBuilder::new(bin())
        .http()
        .raw_target(&format!(
            "[[targets]]\nname = \"billing\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{}/api\"\nauth = {{ bearer = \"env:T_BEARER\" }}\n",
            api.port
        ))
        .env("T_BEARER", airlock_testkit::UP_BEARER)
        .start();
    let token = gw.token("agent", &["ai-agents"]);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-H", &format!("traceparent: {tp}")])
        .arg(format!(
            "https://127.0.0.1:{}/billing/v1/people",
            gw.http_port
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    std::thread::sleep(Duration::from_millis(300));
    let s = gw.last_session_of("agent", "billing");
    let request = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "request")
        .cloned()
        .unwrap();
    assert_eq!(request["detail"]["traceparent"], tp, "{request}");
}

/// `[store] url`: the gateway and its CLI on a PostgreSQL store. A token minted by the
/// CLI works, the session is recorded there and verifies (replicas: `replicas.rs`).
#[test]
fn a_gateway_records_into_a_postgresql_store() {
    let pg = Postgres::shared();
    let db = pg.create_database("ops_target");
    let store_db = format!("airlock_store_{:08x}", rand::random::<u32>());
    pg.superuser_sql("postgres", &format!("create database {store_db}"))
        .unwrap();
    let store = format!(
        "\n[store]\nurl = \"postgres://postgres@127.0.0.1:{}/{store_db}?sslmode=disable\"\npassword = \"env:AIRLOCK_STORE_PASSWORD\"\n",
        pg.port
    );
    let gw = AirlockBuilder::new(bin())
        .policy(Some(READ_ONLY))
        .target("shop", pg, &db)
        .env(
            "AIRLOCK_STORE_PASSWORD",
            airlock_testkit::SUPERUSER_PASSWORD,
        )
        .extra(&store)
        .start();
    let token = gw.token("agent", &["ai-agents"]);
    let out = psql(
        &gw.conn("shop", &token),
        &["select name from customers order by id"],
    );
    assert!(out.ok && out.stdout.contains("Lovelace"), "{out:?}");
    // In the PostgreSQL store, not in data_dir.
    let rows = pg
        .superuser_sql(
            &store_db,
            "select count(*) from sessions where principal = 'agent'",
        )
        .unwrap();
    assert_eq!(rows.trim(), "1");
    assert!(!gw.store_path().exists(), "no SQLite store is made");
    let s = gw.last_session_of("agent", "shop");
    assert!(s["events"].as_array().unwrap().len() >= 3, "{s}");
    let verify = gw.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

/// What a statement on a raw session got: answered, or refused with (SQLSTATE, message).
fn statement(r: &mut crate::raw::Raw, sql: &str) -> Result<(), (String, String)> {
    let answer = r.query(sql);
    if let Some(e) = answer.iter().find(|m| m.tag == b'E') {
        return Err((
            e.field(b'C').unwrap_or_default(),
            e.field(b'M').unwrap_or_default(),
        ));
    }
    if answer.iter().any(|m| m.tag == b'C') {
        Ok(())
    } else {
        Err((
            String::new(),
            "the connection closed without an answer".into(),
        ))
    }
}

/// The PostgreSQL store restarted (`pg_ctl stop -m immediate`, then started) under a
/// running gateway. While it is down, statements are refused (fail closed: they cannot
/// be recorded) with an error that says so, new sessions are refused, and `/readyz`
/// names the store; once it is back the gateway serves again by itself, still its
/// chain's one recording gateway, and the audit chain verifies.
#[test]
fn a_store_restart_is_survived_and_statements_fail_closed_while_it_is_down() {
    use crate::raw::Raw;
    let target = Postgres::shared();
    let db = target.create_database("ops_outage");
    // The store in a cluster of the test's own, which it stops and starts.
    let store_pg = Postgres::start(false).expect("start the store's cluster");
    store_pg
        .superuser_sql("postgres", "create database airlock_store")
        .unwrap();
    let api = free_port();
    let store_section = format!(
        "\n[store]\nurl = \"postgres://postgres@127.0.0.1:{}/airlock_store?sslmode=disable\"\npassword = \"env:AIRLOCK_STORE_PASSWORD\"\n",
        store_pg.port
    );
    let store = format!("{store_section}\n[api]\nlisten = \"127.0.0.1:{api}\"\n");
    let mut gw = AirlockBuilder::new(bin())
        .policy(Some(READ_ONLY))
        .target("shop", target, &db)
        .listener("allow_plaintext_loopback = true")
        .env(
            "AIRLOCK_STORE_PASSWORD",
            airlock_testkit::SUPERUSER_PASSWORD,
        )
        .extra(&store)
        .start();
    airlock_testkit::wait_port(api, Duration::from_secs(10)).unwrap();
    let readyz = format!("https://127.0.0.1:{api}/readyz");
    assert_eq!(get(&readyz).0, 200);
    let token = gw.token("agent", &["ai-agents"]);
    let count = "select count(*) from orders";
    let mut r = Raw::ready(gw.port, "shop", &token);
    for _ in 0..5 {
        statement(&mut r, count).unwrap();
    }

    store_pg.stop_immediate().unwrap();
    // The session goes on until the recorder finds it cannot store its records; then
    // its statements are refused and it ends.
    let started = Instant::now();
    let mut answered = 0;
    let (code, message) = loop {
        match statement(&mut r, count) {
            Ok(()) => answered += 1,
            Err(refused) => break refused,
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "statements were still answered 60 s into the outage ({answered} of them)"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "store down: {answered} statements answered, then refused after {:?}: {code} {message}",
        started.elapsed()
    );
    assert_eq!(code, "58000", "{message}");
    assert!(
        message.contains("Airlock cannot record this session"),
        "{message}"
    );
    assert!(r.closed(), "the session ends");
    // A new session is refused, and says why.
    let asked = Instant::now();
    let refused = psql(&gw.conn("shop", &token), &[count]);
    eprintln!(
        "a new session during the outage, refused after {:?}: {}",
        asked.elapsed(),
        refused.stderr.trim()
    );
    assert!(!refused.ok, "{refused:?}");
    assert!(
        refused.stderr.contains("Airlock cannot record")
            || refused.stderr.contains("its store is unavailable"),
        "{refused:?}"
    );
    let asked = Instant::now();
    let (code, body) = get(&readyz);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("store"), "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "/readyz took {:?} to answer",
        asked.elapsed()
    );
    assert!(
        !body.contains(airlock_testkit::SUPERUSER_PASSWORD),
        "{body}"
    );

    store_pg.restart().unwrap();
    let back = Instant::now();
    let served = wait_until(Duration::from_secs(30), || {
        let (mut r, reply) = Raw::login(gw.port, "shop", &token);
        reply.tag == b'R' && r.read_until(b'Z').is_some() && statement(&mut r, count).is_ok()
    });
    assert!(
        served,
        "the gateway did not serve again within 30 s of the store coming back; its log:\n{}",
        gw.log()
    );
    eprintln!(
        "serving again {:?} after the store came back",
        back.elapsed()
    );
    let out = psql(
        &gw.conn("shop", &token),
        &["select name from customers order by id"],
    );
    assert!(out.ok && out.stdout.contains("Lovelace"), "{out:?}");
    assert!(
        wait_until(Duration::from_secs(10), || get(&readyz).0 == 200),
        "/readyz: {:?}",
        get(&readyz)
    );
    // Still its chain's one recording gateway: another on the same chain (a copied
    // data_dir) is refused.
    let mut other = AirlockBuilder::new(bin())
        .target("shop", target, &db)
        .env(
            "AIRLOCK_STORE_PASSWORD",
            airlock_testkit::SUPERUSER_PASSWORD,
        )
        .extra(&store_section)
        .write();
    std::fs::create_dir_all(other.dir.join("data")).unwrap();
    std::fs::copy(
        gw.dir.join("data/recorder.chain"),
        other.dir.join("data/recorder.chain"),
    )
    .unwrap();
    assert!(
        other.start().is_err(),
        "a second writer on one chain started"
    );
    assert!(
        other.log().contains("another gateway records into chain"),
        "{}",
        other.log()
    );
    drop(other);
    let verify = gw.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
    gw.stop();
    let verify = gw.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
    let log = gw.log();
    assert!(
        !log.contains(airlock_testkit::SUPERUSER_PASSWORD),
        "the store's password in the log"
    );
}
