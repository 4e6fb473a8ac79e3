//! Just-in-time approval: a held statement waits on its live connection, an approver
//! decides, and exactly that statement runs once, or the agent is told why not, with the
//! transaction state consistent on both sides.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_testkit::{Airlock, AirlockBuilder, Postgres, psql};
use serde_json::Value;

use crate::postgres_policy::READ_ONLY;
use crate::{Fixture, bin, events_of, finish, psql_bg};

const HOLD_DELETES: &str = "\n@id(\"delete-needs-dba\")\n@hold(\"dba\")\n@reason(\"deleting orders needs a DBA's approval\")\npermit(principal in Group::\"ai-agents\", action == Sql::Action::\"delete\", resource in Target::\"shop\");";

fn policy() -> String {
    format!("{READ_ONLY}{HOLD_DELETES}")
}

fn orders(db: &str) -> String {
    Postgres::shared()
        .sql_as("app", "apppw", db, "select count(*) from orders")
        .unwrap()
}

/// A gateway whose DELETEs on `shop` wait for group `dba`, with `hold_timeout`.
fn fixture(
    prefix: &str,
    hold_timeout: &str,
    extra: impl FnOnce(AirlockBuilder) -> AirlockBuilder,
) -> Fixture {
    let p = policy();
    Fixture::with(prefix, |b| {
        extra(
            b.policy(Some(&p))
                .target_extra(&format!("hold_timeout = \"{hold_timeout}\"")),
        )
    })
}

fn approvals(gw: &Airlock, status: &str) -> Vec<Value> {
    let out = gw.cli_ok(&["approvals", "list", "--status", status, "--json"]);
    let v: Value = serde_json::from_str(&out).expect("approvals list --json");
    v["approvals"].as_array().cloned().unwrap_or_default()
}

/// Waits until exactly `n` requests are pending and returns the newest.
fn wait_pending(gw: &Airlock, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pending = approvals(gw, "pending");
        if pending.len() == n {
            return pending[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} pending, have {pending:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn decide(gw: &Airlock, verb: &str, id: &str, token: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![verb, id, "--token", token];
    args.extend_from_slice(extra);
    gw.cli(&args)
}

fn steps(session: &Value) -> Vec<String> {
    events_of(session, "approval")
        .iter()
        .map(|e| e["detail"]["step"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn approved_while_waiting_runs_once_on_the_same_connection() {
    let f = fixture("appr_ok", "60s", |b| b);
    let dba = f.gw.token("dana", &["dba"]);
    let held = psql_bg(&f.conn(), "delete from orders where id = 7");
    let request = wait_pending(&f.gw, 1);
    let id = request["id"].as_str().unwrap().to_owned();
    assert_eq!(request["principal"], "agent");
    assert_eq!(request["approver_group"], "dba");
    assert_eq!(request["statement"], "delete from orders where id = 7");
    assert!(
        request["reason"]
            .as_str()
            .unwrap()
            .contains("DBA's approval"),
        "{request}"
    );
    assert_eq!(orders(&f.db), "100", "ran before approval");

    let out = decide(&f.gw, "approve", &id, &dba, &["--comment", "looks right"]);
    assert!(out.status.success(), "{out:?}");
    let (ok, stdout, stderr) = finish(held);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "DELETE 1");
    assert!(
        stderr.contains(&format!("request {id}")),
        "the notice names the request: {stderr}"
    );
    assert!(
        stderr.contains("held for approval by group \"dba\""),
        "{stderr}"
    );
    assert_eq!(orders(&f.db), "99");

    let a = &approvals(&f.gw, "used")[0];
    assert_eq!(a["id"], id.as_str());
    assert_eq!(a["decided_by"], "dana");
    assert_eq!(a["comment"], "looks right");

    // Recorded in the session: held, requested, approved, used, then run.
    let s = f.gw.last_session_of("agent", "shop");
    assert_eq!(steps(&s), ["requested", "approved", "used"]);
    let queries = events_of(&s, "query");
    assert_eq!(queries[0]["decision"], "hold");
    assert_eq!(queries[1]["decision"], "allow");
    assert_eq!(queries[1]["detail"]["approval_id"], id.as_str());
    let approved = events_of(&s, "approval")[1];
    assert_eq!(approved["detail"]["decided_by"], "dana");
    assert_eq!(approved["detail"]["comment"], "looks right");
    assert!(
        events_of(&s, "result")
            .iter()
            .any(|r| r["detail"]["tag"] == "DELETE 1"),
        "{s}"
    );

    assert_eq!(approvals(&f.gw, "pending").len(), 0);
}

/// On a PostgreSQL store, the CLI (another process, as another replica would be)
/// decides, the store announces the decision, and the statement held on the gateway is
/// released and runs once.
#[test]
fn on_a_postgresql_store_another_process_s_decision_releases_the_hold() {
    let pg = Postgres::shared();
    let store_db = format!("airlock_store_{:08x}", rand::random::<u32>());
    pg.superuser_sql("postgres", &format!("create database {store_db}"))
        .unwrap();
    let store = format!(
        "\n[store]\nurl = \"postgres://postgres@127.0.0.1:{}/{store_db}?sslmode=disable\"\npassword = \"env:AIRLOCK_STORE_PASSWORD\"\n",
        pg.port
    );
    let f = fixture("appr_pg", "60s", |b| {
        b.env(
            "AIRLOCK_STORE_PASSWORD",
            airlock_testkit::SUPERUSER_PASSWORD,
        )
        .extra(&store)
    });
    let dba = f.gw.token("dana", &["dba"]);
    let held = psql_bg(&f.conn(), "delete from orders where id = 7");
    let id = wait_pending(&f.gw, 1)["id"].as_str().unwrap().to_owned();
    assert_eq!(orders(&f.db), "100", "ran before approval");
    let out = decide(&f.gw, "approve", &id, &dba, &[]);
    assert!(out.status.success(), "{out:?}");
    let decided = Instant::now();
    let (ok, stdout, stderr) = finish(held);
    eprintln!("released {:?} after the CLI decided", decided.elapsed());
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "DELETE 1");
    assert_eq!(orders(&f.db), "99");
    let s = f.gw.last_session_of("agent", "shop");
    assert_eq!(steps(&s), ["requested", "approved", "used"]);
}

#[test]
fn denial_is_an_error_with_the_reason_and_the_transaction_stays_consistent() {
    let f = fixture("appr_deny", "60s", |b| b);
    let dba = f.gw.token("dana", &["dba"]);
    let conn = f.conn();
    let runner = std::thread::spawn(move || {
        crate::py_env(
            "held",
            &conn,
            &[
                ("AIRLOCK_SQL", "delete from orders where id = %s"),
                ("AIRLOCK_PARAMS", "[7]"),
            ],
        )
    });
    let request = wait_pending(&f.gw, 1);
    let id = request["id"].as_str().unwrap().to_owned();
    assert_eq!(request["params"], serde_json::json!(["7"]));
    // A denial needs a reason.
    let out = decide(&f.gw, "deny", &id, &dba, &["--reason", " "]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a reason"),
        "{out:?}"
    );
    let out = decide(
        &f.gw,
        "deny",
        &id,
        &dba,
        &["--reason", "use soft delete: set cancelled = true"],
    );
    assert!(out.status.success(), "{out:?}");
    let r = runner.join().unwrap();
    assert_eq!(r["sqlstate"], "42501", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("denied by dana: use soft delete"),
        "{r}"
    );
    assert_eq!(r["status_after_error"], "INERROR", "{r}");
    assert_eq!(r["in_failed_tx"], "25P02", "{r}");
    assert_eq!(r["after"], 100);
    assert!(r["notices"][0].as_str().unwrap().contains(&id), "{r}");
    assert_eq!(orders(&f.db), "100");
    // Decided once: approving it now is a conflict.
    let out = decide(&f.gw, "approve", &id, &dba, &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already decided: denied by dana"),
        "{out:?}"
    );
    let s = f.gw.last_session_of("agent", "shop");
    assert_eq!(steps(&s), ["requested", "denied"]);
}

#[test]
fn timeout_then_approval_then_the_identical_retry_runs_once() {
    let f = fixture("appr_retry", "2s", |b| b);
    let dba = f.gw.token("dana", &["dba"]);
    let sql = "delete from orders where id = 9";
    let first = psql(&f.conn(), &[sql]);
    assert!(!first.ok);
    assert!(
        first
            .stderr
            .contains("still waiting for approval by group \"dba\" after 2s"),
        "{}",
        first.stderr
    );
    let request = wait_pending(&f.gw, 1);
    let id = request["id"].as_str().unwrap().to_owned();
    assert!(first.stderr.contains(&id), "{}", first.stderr);
    assert!(
        first
            .stderr
            .contains("send exactly the same statement again"),
        "{}",
        first.stderr
    );

    // Retried before anyone decides: the same request (no second one), waiting again.
    let second = psql(&f.conn(), &[sql]);
    assert!(
        second.stderr.contains("requested earlier"),
        "{}",
        second.stderr
    );
    assert_eq!(wait_pending(&f.gw, 1)["id"], id.as_str());

    assert!(decide(&f.gw, "approve", &id, &dba, &[]).status.success());
    // An altered statement does not ride on the approval.
    let altered = psql(&f.conn(), &["delete from orders where id = 10"]);
    assert!(!altered.ok, "{altered:?}");
    assert_eq!(orders(&f.db), "100");
    let altered_request = wait_pending(&f.gw, 1);
    assert_ne!(altered_request["id"], id.as_str());

    // The identical statement runs, once, without waiting.
    let t = Instant::now();
    let third = psql(&f.conn(), &[sql]);
    assert!(third.ok, "{third:?}");
    assert_eq!(third.stdout.trim(), "DELETE 1");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(orders(&f.db), "99");
    // Replaying it needs a new approval.
    let replay = psql(&f.conn(), &[sql]);
    assert!(!replay.ok);
    assert!(replay.stderr.contains("still waiting"), "{}", replay.stderr);
    assert_eq!(approvals(&f.gw, "pending").len(), 2);
    assert_eq!(approvals(&f.gw, "used")[0]["id"], id.as_str());
    let s = f.gw.last_session_of("agent", "shop");
    assert_eq!(steps(&s), ["requested", "timed_out"]);
}

#[test]
fn only_members_of_the_group_decide_and_never_their_own_request() {
    // The agent is also in group dba: it still cannot approve its own request.
    let p = policy();
    let pg = Postgres::shared();
    let db = pg.create_database("appr_self");
    let gw = AirlockBuilder::new(bin())
        .target("shop", pg, &db)
        .target_extra("hold_timeout = \"60s\"")
        .policy(Some(&p))
        .start();
    let agent = gw.token("agent", &["ai-agents", "dba"]);
    let outsider = gw.token("olga", &["ops"]);
    let held = psql_bg(&gw.conn("shop", &agent), "delete from orders where id = 7");
    let id = wait_pending(&gw, 1)["id"].as_str().unwrap().to_owned();
    let out = decide(&gw, "approve", &id, &agent, &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot decide its own request"),
        "{out:?}"
    );
    let out = decide(&gw, "approve", &id, &outsider, &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("must be decided by a member of group \"dba\""),
        "{out:?}"
    );
    let out = decide(&gw, "approve", &id, "alk_not-a-token", &[]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("alk_not-a-token"));
    assert_eq!(wait_pending(&gw, 1)["id"], id.as_str());
    assert_eq!(orders(&db), "100");
    // Settle it so the psql in the background finishes.
    let dba = gw.token("dana", &["dba"]);
    assert!(
        decide(&gw, "deny", &id, &dba, &["--reason", "no"])
            .status
            .success()
    );
    let (ok, _, stderr) = finish(held);
    assert!(!ok && stderr.contains("denied by dana: no"), "{stderr}");
}

#[test]
fn extended_protocol_approval_is_bound_to_the_parameters() {
    let f = fixture("appr_params", "60s", |b| b);
    let dba = f.gw.token("dana", &["dba"]);
    let conn = f.conn();
    let c2 = conn.clone();
    let runner = std::thread::spawn(move || {
        crate::py_env(
            "held",
            &c2,
            &[
                ("AIRLOCK_SQL", "delete from orders where id = %s"),
                ("AIRLOCK_PARAMS", "[11]"),
            ],
        )
    });
    let id = wait_pending(&f.gw, 1)["id"].as_str().unwrap().to_owned();
    assert!(decide(&f.gw, "approve", &id, &dba, &[]).status.success());
    let r = runner.join().unwrap();
    assert_eq!(r["rowcount"], 1, "{r}");
    assert_eq!(r["after"], 99);
    // The same text with another parameter is another statement: a new request.
    let c3 = conn.clone();
    let runner = std::thread::spawn(move || {
        crate::py_env(
            "held",
            &c3,
            &[
                ("AIRLOCK_SQL", "delete from orders where id = %s"),
                ("AIRLOCK_PARAMS", "[12]"),
                ("AIRLOCK_CANCEL_AFTER", "1.5"),
            ],
        )
    });
    let r = runner.join().unwrap();
    // Cancelled by the client: 57014, not run, the request stays open.
    assert_eq!(r["sqlstate"], "57014", "{r}");
    assert!(r["seconds"].as_f64().unwrap() < 30.0, "{r}");
    assert_eq!(r["after"], 99);
    let pending = approvals(&f.gw, "pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["params"], serde_json::json!(["12"]));
    let s = f.gw.last_session_of("agent", "shop");
    assert_eq!(steps(&s), ["requested", "canceled"]);
}

/// One request a receiver got: lower-cased header names with values, and the body.
type Received = (Vec<(String, String)>, Vec<u8>);

/// A webhook receiver on loopback: keeps each request's headers and body, answers 200.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut headers = Vec::new();
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
                let len = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                sink.lock().unwrap().push((headers, body));
                let mut stream = reader.into_inner();
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        });
        Receiver { port, got }
    }
}

#[test]
fn approvers_are_notified_by_a_signed_webhook() {
    let rx = Receiver::start();
    let hooks = format!(
        "\n[[approvals.webhooks]]\nname = \"dba-hook\"\nurl = \"http://127.0.0.1:{}/hook\"\nformat = \"json\"\nsecret = \"env:HOOK_KEY\"\ngroups = [\"dba\"]\n\n[[approvals.webhooks]]\nname = \"ops-hook\"\nurl = \"http://127.0.0.1:{}/ops\"\nformat = \"slack\"\ngroups = [\"ops\"]\n",
        rx.port, rx.port
    );
    let f = fixture("appr_hook", "60s", |b| {
        b.extra(&hooks).env("HOOK_KEY", "hook-signing-key")
    });
    let dba = f.gw.token("dana", &["dba"]);
    let held = psql_bg(&f.conn(), "delete from orders where id = 3");
    let id = wait_pending(&f.gw, 1)["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    while rx.got.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no webhook arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (headers, body) = rx.got.lock().unwrap()[0].clone();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let signature = header("x-airlock-signature");
    let now = airlock_model::Timestamp::now().unix();
    assert!(
        airlock_approvals::notify::verify_signature(
            b"hook-signing-key",
            &signature,
            &body,
            now,
            300
        ),
        "{signature}"
    );
    assert!(!airlock_approvals::notify::verify_signature(
        b"another-key",
        &signature,
        &body,
        now,
        300
    ));
    let payload: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(payload["event"], "approval.requested");
    assert_eq!(payload["approval"]["id"], id.as_str());
    assert_eq!(payload["approval"]["principal"], "agent");
    assert_eq!(
        payload["approval"]["statement"],
        "delete from orders where id = 3"
    );
    assert!(
        payload["commands"]["approve"]
            .as_str()
            .unwrap()
            .contains(&id)
    );
    assert!(decide(&f.gw, "approve", &id, &dba, &[]).status.success());
    let (ok, _, stderr) = finish(held);
    assert!(ok, "{stderr}");
    // Only the dba hook was called; the delivery is recorded in the session.
    assert_eq!(rx.got.lock().unwrap().len(), 1);
    let s = f.gw.last_session_of("agent", "shop");
    assert_eq!(steps(&s), ["requested", "notified", "approved", "used"]);
    let notified = events_of(&s, "approval")[1];
    assert_eq!(notified["detail"]["deliveries"][0]["webhook"], "dba-hook");
    assert_eq!(notified["detail"]["deliveries"][0]["delivered"], true);
    assert!(
        !f.gw.log().contains(&format!("127.0.0.1:{}/hook", rx.port)),
        "the webhook URL is not logged"
    );
}

#[test]
fn a_pending_request_survives_a_restart_and_the_retry_runs_once() {
    let mut f = fixture("appr_restart", "3s", |b| b);
    let dba = f.gw.token("dana", &["dba"]);
    let sql = "delete from orders where id = 5";
    let held = psql_bg(&f.conn(), sql);
    let id = wait_pending(&f.gw, 1)["id"].as_str().unwrap().to_owned();
    f.gw.stop();
    let (ok, _, stderr) = finish(held);
    assert!(!ok, "{stderr}");
    f.gw.start().unwrap();
    // Reconnected, retried before approval: the same request, still pending.
    let retry = psql(&f.conn(), &[sql]);
    assert!(!retry.ok);
    assert!(
        retry.stderr.contains("requested earlier") && retry.stderr.contains(&id),
        "{}",
        retry.stderr
    );
    assert_eq!(wait_pending(&f.gw, 1)["id"], id.as_str());
    // Approved while nobody waits; the retry runs once.
    assert!(decide(&f.gw, "approve", &id, &dba, &[]).status.success());
    let out = psql(&f.conn(), &[sql]);
    assert!(out.ok, "{out:?}");
    assert_eq!(out.stdout.trim(), "DELETE 1");
    assert_eq!(orders(&f.db), "99");
    assert_eq!(approvals(&f.gw, "used")[0]["id"], id.as_str());
}

#[test]
fn a_changed_policy_needs_a_new_approval() {
    let f = fixture("appr_policy", "2s", |b| b);
    let dba = f.gw.token("dana", &["dba"]);
    let sql = "delete from orders where id = 4";
    assert!(!psql(&f.conn(), &[sql]).ok);
    let id = wait_pending(&f.gw, 1)["id"].as_str().unwrap().to_owned();
    assert!(decide(&f.gw, "approve", &id, &dba, &[]).status.success());
    // A new policy version (one more rule) before the retry.
    f.gw.write_policy(&format!("{}\n@id(\"extra\")\npermit(principal in Group::\"ai-agents\", action == Sql::Action::\"select\", resource in Target::\"shop\");", policy()));
    f.gw.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    let out = psql(&f.conn(), &[sql]);
    assert!(
        !out.ok,
        "ran on an approval for another policy version: {out:?}"
    );
    assert!(out.stderr.contains("still waiting"), "{}", out.stderr);
    assert_eq!(orders(&f.db), "100");
    let pending = wait_pending(&f.gw, 1);
    assert_ne!(pending["id"], id.as_str());
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (body.to_owned(), code.to_owned())
}

/// The gateway's own audit session (protocol `airlock`), with its events.
fn audit_session(gw: &Airlock) -> Value {
    let s = gw
        .sessions()
        .into_iter()
        .find(|s| s["protocol"] == "airlock")
        .expect("an audit session");
    gw.session(s["id"].as_str().unwrap())
}

#[test]
fn decisions_through_the_api_and_expiry_reach_the_audit_chain() {
    let api_port = airlock_testkit::free_port();
    let api = format!(
        "\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\n[approvals]\nexpire_after = \"3s\"\n"
    );
    let f = fixture("appr_api", "60s", |b| b.extra(&api));
    airlock_testkit::wait_port(api_port, Duration::from_secs(10)).unwrap();
    let dba = f.gw.token("dana", &["dba"]);
    let base = format!("https://127.0.0.1:{api_port}/api/approvals");
    let held = psql_bg(&f.conn(), "delete from orders where id = 2");
    let id = wait_pending(&f.gw, 1)["id"].as_str().unwrap().to_owned();
    // The agent sees its own request but cannot decide it.
    let agent_auth = format!("Authorization: Bearer {}", f.token);
    let (body, code) = curl(&["-H", &agent_auth, &base]);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains(&id));
    let (_, code) = curl(&[
        "-X",
        "POST",
        "-H",
        &agent_auth,
        &format!("{base}/{id}/approve"),
    ]);
    assert_eq!(code, "403");
    let auth = format!("Authorization: Bearer {dba}");
    let (body, code) = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "content-type: application/json",
        "-d",
        "{\"comment\":\"ticket 42\"}",
        &format!("{base}/{id}/approve"),
    ]);
    assert_eq!(code, "200", "{body}");
    let (ok, stdout, stderr) = finish(held);
    assert!(ok && stdout.trim() == "DELETE 1", "{stderr}");

    // A request nobody decides expires; the sweeper records it.
    let conn = f.conn();
    let abandoned = psql_bg(&conn, "delete from orders where id = 3");
    let expiring = wait_pending(&f.gw, 1)["id"].as_str().unwrap().to_owned();
    let (ok, _, stderr) = finish(abandoned);
    assert!(!ok && stderr.contains("expired"), "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let audit = loop {
        let audit = audit_session(&f.gw);
        if steps(&audit).len() >= 2 {
            break audit;
        }
        assert!(Instant::now() < deadline, "no expiry in {audit}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(steps(&audit), ["approved", "expired"]);
    let approved = events_of(&audit, "approval")[0];
    assert_eq!(approved["detail"]["approval_id"], id.as_str());
    assert_eq!(approved["detail"]["decided_by"], "dana");
    assert_eq!(approved["detail"]["comment"], "ticket 42");
    assert_eq!(approved["detail"]["principal"], "agent");
    assert_eq!(
        events_of(&audit, "approval")[1]["detail"]["approval_id"],
        expiring.as_str()
    );
    assert_eq!(orders(&f.db), "99");
    // The chain, audit session included, verifies.
    f.gw.cli_ok(&["audit", "verify"]);
}
