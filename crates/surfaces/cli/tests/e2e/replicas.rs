//! Several `airlock serve` replicas on one PostgreSQL store: each with its own
//! `data_dir` and its own event chain, sharing tokens, sessions, approvals,
//! revocations and the console's sign-ins, with one audit key.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use airlock_testkit::{Airlock, AirlockBuilder, Idp, Postgres, free_port, psql, scratch_dir};
use serde_json::Value;

use crate::console::{Browser, browser};
use crate::postgres_policy::READ_ONLY;
use crate::{bin, pending_for, psql_bg, py_interactive};

const HOLD_DELETES: &str = "\n@id(\"delete-needs-dba\")\n@hold(\"dba\")\npermit(principal in Group::\"ai-agents\", action == Sql::Action::\"delete\", resource in Target::\"shop\");";

/// A target database and a store database on the shared test cluster, and an audit
/// key file every replica names.
struct Deployment {
    target_db: String,
    store: String,
    key_file: std::path::PathBuf,
}

impl Deployment {
    fn new() -> Deployment {
        let pg = Postgres::shared();
        let target_db = pg.create_database("replicas_target");
        let store_db = format!("airlock_store_{:08x}", rand::random::<u32>());
        pg.superuser_sql("postgres", &format!("create database {store_db}"))
            .unwrap();
        let dir = scratch_dir("replicas");
        let key_file = dir.join("audit.key");
        std::fs::write(&key_file, hex_key(1)).unwrap();
        Deployment {
            target_db,
            store: format!(
                "\n[store]\nurl = \"postgres://postgres@127.0.0.1:{}/{store_db}?sslmode=disable\"\npassword = \"env:AIRLOCK_STORE_PASSWORD\"\n",
                pg.port
            ),
            key_file,
        }
    }

    /// A replica's configuration (its own data_dir, listeners and `[api]` port),
    /// with `key_file` as its audit key.
    fn replica_with_key(&self, key_file: &std::path::Path) -> (AirlockBuilder, u16) {
        let api = free_port();
        (self.replica_on(key_file, api), api)
    }

    /// A replica's configuration with its `[api]` on port `api`.
    fn replica_on(&self, key_file: &std::path::Path, api: u16) -> AirlockBuilder {
        let policy = format!("{READ_ONLY}{HOLD_DELETES}");
        AirlockBuilder::new(bin())
            .policy(Some(&policy))
            .target("shop", Postgres::shared(), &self.target_db)
            .target_extra("hold_timeout = \"60s\"")
            .env(
                "AIRLOCK_STORE_PASSWORD",
                airlock_testkit::SUPERUSER_PASSWORD,
            )
            .extra(&format!(
                "{}\n[audit]\nkey = \"file:{}\"\n\n[api]\nlisten = \"127.0.0.1:{api}\"\n",
                self.store,
                key_file.display()
            ))
    }

    /// A running replica and its `[api]` port.
    fn replica(&self) -> (Airlock, u16) {
        let (builder, api) = self.replica_with_key(&self.key_file);
        let gw = builder.start();
        airlock_testkit::wait_port(api, Duration::from_secs(10)).unwrap();
        (gw, api)
    }

    fn orders(&self) -> String {
        Postgres::shared()
            .sql_as(
                "app",
                "apppw",
                &self.target_db,
                "select count(*) from orders",
            )
            .unwrap()
    }
}

fn hex_key(byte: u8) -> String {
    format!("{byte:02x}").repeat(32)
}

/// POSTs to `gw`'s admin API with `token`; returns the HTTP status.
fn api_post(api: u16, path: &str, token: &str, body: &str) -> u16 {
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-H", "content-type: application/json", "-d", body])
        .arg(format!("https://127.0.0.1:{api}{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Waits for `child` to exit, at most `limit`; `None` if it is still running.
fn exited_within(child: &mut Child, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn stdout_of(child: Child) -> (String, String) {
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two replicas: a token minted through A works through B; B lists A's sessions; a
/// DELETE held on A is approved through B's API and runs on A's open connection; a
/// revocation through B reaches a new and an open session on A; `audit verify` sees
/// both replicas' chains intact. A replica with another audit key, or one whose
/// `data_dir` names a chain another replica extends, is refused at start.
#[test]
fn replicas_share_tokens_sessions_approvals_and_revocations() {
    let d = Deployment::new();
    let (a, _a_api) = d.replica();
    let (b, b_api) = d.replica();
    let agent = a.token("crew-analyst", &["ai-agents"]);
    let probe = a.token("probe", &["ai-agents"]);
    let dba = b.token("dana", &["dba"]);

    // A's token through B; a session through A in B's list.
    let out = psql(&b.conn("shop", &agent), &["select count(*) from orders"]);
    assert!(out.ok && out.stdout.trim() == "100", "{out:?}");
    let out = psql(&a.conn("shop", &probe), &["select count(*) from customers"]);
    assert!(out.ok, "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.sessions().iter().any(|s| s["principal"] == "probe") {
        assert!(Instant::now() < deadline, "B never lists A's session");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Held on A, approved through B's API: runs on A's open connection.
    let statement = "DELETE FROM orders WHERE id = 7";
    let mut held = psql_bg(&a.conn("shop", &agent), statement);
    let id = pending_for(&b, statement);
    assert!(
        held.try_wait().unwrap().is_none(),
        "the DELETE did not wait"
    );
    assert_eq!(d.orders(), "100", "ran before approval");
    let code = api_post(
        b_api,
        &format!("/api/approvals/{id}/approve"),
        &dba,
        r#"{"comment":"ok"}"#,
    );
    assert_eq!(code, 200);
    let released = exited_within(&mut held, Duration::from_secs(5));
    assert!(
        released.is_some(),
        "not released within 5 s of B's approval"
    );
    let (stdout, stderr) = stdout_of(held);
    assert!(stdout.contains("DELETE 1"), "{stdout} {stderr}");
    assert_eq!(d.orders(), "99");

    // Revoked through B: a new session on A is refused, an open one is ended.
    let seen = py_interactive("second_statement", &a.conn("shop", &probe), || {
        b.cli_ok(&["token", "revoke", "probe"]);
        let start = Instant::now();
        loop {
            let out = psql(&a.conn("shop", &probe), &["select 1"]);
            if !out.ok {
                assert!(
                    out.stderr.contains("revoked"),
                    "refused, but why: {}",
                    out.stderr
                );
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "A still accepts a token revoked through B 2 s later"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(1200));
    });
    assert!(seen["second"].is_null(), "{seen}");
    assert!(
        seen["message"].as_str().unwrap_or("").contains("revoked"),
        "{seen}"
    );

    // Every replica's chain verifies, from either replica.
    let report: Value = serde_json::from_str(&a.cli_ok(&["audit", "verify", "--json"])).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["chains"], 2, "{report}");
    let from_b: Value = serde_json::from_str(&b.cli_ok(&["audit", "verify", "--json"])).unwrap();
    assert_eq!(from_b["events"], report["events"]);

    // Another audit key: refused at start, with the reason.
    let other_key = d.key_file.with_file_name("other.key");
    std::fs::write(&other_key, hex_key(2)).unwrap();
    let mut wrong = d.replica_with_key(&other_key).0.write();
    assert!(wrong.start().is_err(), "a replica with another key started");
    assert!(
        wrong.log().contains("the audit key differs"),
        "{}",
        wrong.log()
    );
    // A data_dir copied from A names A's chain: refused while A records into it.
    let mut copy = d.replica_with_key(&d.key_file).0.write();
    std::fs::create_dir_all(copy.dir.join("data")).unwrap();
    std::fs::copy(
        a.dir.join("data/recorder.chain"),
        copy.dir.join("data/recorder.chain"),
    )
    .unwrap();
    assert!(copy.start().is_err(), "two replicas on one chain");
    assert!(
        copy.log().contains("another gateway records into chain"),
        "{}",
        copy.log()
    );
    for log in [a.log(), b.log(), wrong.log(), copy.log()] {
        assert!(!log.contains(airlock_testkit::SUPERUSER_PASSWORD));
        assert!(!log.contains(&hex_key(1)));
    }
}

/// Replica A dies (SIGKILL) while a DELETE waits on it: the agent's connection ends
/// with an error, the request stays decidable through B, and the agent's retry through
/// B runs it once. A's restart closes A's dangling session and none of B's.
#[test]
fn a_replica_dying_mid_hold_leaves_the_request_decidable_elsewhere() {
    let d = Deployment::new();
    let (mut a, _) = d.replica();
    let (b, _) = d.replica();
    let agent = a.token("crew-analyst", &["ai-agents"]);
    let dba = a.token("dana", &["dba"]);
    let statement = "DELETE FROM orders WHERE id = 9";
    let mut held = psql_bg(&a.conn("shop", &agent), statement);
    let id = pending_for(&b, statement);
    // A session open on B meanwhile, which A's restart must leave open.
    let mut open_on_b = psql_bg(&b.conn("shop", &agent), "select pg_sleep(20)");
    std::thread::sleep(Duration::from_millis(500));

    a.signal("KILL");
    assert!(
        exited_within(&mut held, Duration::from_secs(5)).is_some(),
        "the agent's connection outlived its replica"
    );
    let (stdout, stderr) = stdout_of(held);
    assert!(!stdout.contains("DELETE"), "{stdout}");
    assert!(
        stderr.contains("server closed the connection") || stderr.contains("connection to server"),
        "the agent is told its connection is gone: {stderr}"
    );
    assert_eq!(d.orders(), "100");

    // Decided through B; the retry through B runs it, once.
    b.cli_ok(&["approve", &id, "--token", &dba]);
    let out = psql(&b.conn("shop", &agent), &[statement]);
    assert!(out.ok && out.stdout.contains("DELETE 1"), "{out:?}");
    assert_eq!(d.orders(), "99");
    let requests = b.cli_ok(&["approvals", "list", "--status", "used", "--json"]);
    let v: Value = serde_json::from_str(&requests).unwrap();
    let mine: Vec<&Value> = v["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["statement"].as_str() == Some(statement))
        .collect();
    assert_eq!(mine.len(), 1, "the retry used the request: {mine:?}");
    assert_eq!(mine[0]["status"], "used", "{mine:?}");

    // A restarts on its data_dir: its dangling session is closed, B's open one is not.
    a.start().unwrap();
    let sessions = b.sessions();
    let on_a = sessions
        .iter()
        .find(|s| s["principal"] == "crew-analyst" && s["ended_at"].is_string())
        .cloned();
    assert!(on_a.is_some(), "A's session was closed: {sessions:?}");
    let open: Vec<&Value> = sessions
        .iter()
        .filter(|s| s["ended_at"].is_null())
        .collect();
    assert_eq!(open.len(), 1, "B's session stays open: {sessions:?}");
    let (out, err) = {
        assert!(exited_within(&mut open_on_b, Duration::from_secs(30)).is_some());
        stdout_of(open_on_b)
    };
    assert!(err.is_empty(), "{out} {err}");
    let report: Value = serde_json::from_str(&b.cli_ok(&["audit", "verify", "--json"])).unwrap();
    assert_eq!(report["ok"], true, "{report}");
}

/// curl through the cookie jar `jar` (read and written, as a browser keeps cookies: by
/// host, whatever the port), or with `cookie` as the sign-in cookie; a form post when
/// `form` is given. Returns the status, where it redirects to, and the body.
fn curl(
    url: &str,
    jar: Option<&Path>,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
) -> (u16, String, String) {
    let mut c = Command::new("curl");
    c.args(["-sk", "-w", "\n%{http_code} %{redirect_url}"]);
    if let Some(jar) = jar {
        c.arg("-b").arg(jar).arg("-c").arg(jar);
    }
    if let Some(cookie) = cookie {
        c.args(["-H", &format!("Cookie: airlock_console={cookie}")]);
    }
    for (k, v) in form.unwrap_or_default() {
        c.args(["--data-urlencode", &format!("{k}={v}")]);
    }
    let out = c.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap();
    let (code, location) = last.split_once(' ').unwrap();
    (code.parse().unwrap(), location.to_owned(), body.to_owned())
}

/// The first form's CSRF token on a console page.
fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token in {html}"))
        .to_owned()
}

/// The sign-in cookie in a curl cookie jar.
fn jar_cookie(jar: &Path) -> String {
    std::fs::read_to_string(jar)
        .unwrap()
        .lines()
        .find_map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            (fields.len() == 7 && fields[5] == "airlock_console").then(|| fields[6].to_owned())
        })
        .expect("a sign-in cookie in the jar")
}

/// The console through either replica, with no session affinity: signed in with a
/// token through A, the same cookie shows B's pages as signed in; a held DELETE is
/// approved through B with the CSRF token of a page A served; sign-out through B ends
/// the sign-in on A; a revocation through B ends a sign-in on A. With the browser
/// test's tools installed, an OIDC sign-in started on A completes on B (the provider
/// returns every browser to B's address, as it would to a load balancer's) and is
/// signed in on A.
#[test]
fn the_console_works_through_either_replica() {
    let d = Deployment::new();
    let (a_api, b_api) = (free_port(), free_port());
    let (a_base, b_base) = (
        format!("https://127.0.0.1:{a_api}"),
        format!("https://127.0.0.1:{b_api}"),
    );
    let tools = browser();
    if tools.is_none() {
        eprintln!(
            "AIRLOCK_TEST_BROWSER (playwright-core) or Chromium missing (scripts/test installs both): the OIDC sign-in across replicas is skipped"
        );
    }
    let idp = tools
        .as_ref()
        .map(|_| Idp::start_with_console("replicas", &format!("{b_base}/auth/callback")));
    let oidc = idp.as_ref().map_or(String::new(), |idp| {
        format!(
            "\n[identity]\n[[identity.oidc]]\nname = \"local\"\nissuer = \"{}\"\naudiences = [\"urn:airlock\"]\n\n[console]\noidc_provider = \"local\"\nclient_id = \"console\"\nclient_secret = \"env:CONSOLE_SECRET\"\nredirect_url = \"{b_base}/auth/callback\"\nscopes = [\"groups\"]\n",
            idp.issuer()
        )
    });
    let start = |api: u16| {
        let gw = d
            .replica_on(&d.key_file, api)
            .env("CONSOLE_SECRET", "console-secret")
            .extra(&oidc)
            .start();
        airlock_testkit::wait_port(api, Duration::from_secs(10)).unwrap();
        gw
    };
    let a = start(a_api);
    let b = start(b_api);
    let dana = a.token("dana", &["dba"]);
    let agent = a.token("crew-analyst", &["ai-agents"]);

    // Signed in through A: the form's binding cookie from GET /signin, then the token.
    let jar = scratch_dir("replicas-console").join("cookies");
    std::fs::write(&jar, "").unwrap();
    let (code, _, form) = curl(&format!("{a_base}/signin"), Some(&jar), None, None);
    assert_eq!(code, 200, "{form}");
    let (code, to, body) = curl(
        &format!("{a_base}/signin"),
        Some(&jar),
        None,
        Some(&[("token", &dana), ("csrf", &csrf_of(&form))]),
    );
    assert_eq!(code, 303, "{body}");
    assert!(to.ends_with("/sessions"), "{to}");
    let cookie = jar_cookie(&jar);

    // Through B, the same cookie: signed in as dana.
    let (code, _, page) = curl(&format!("{b_base}/sessions"), Some(&jar), None, None);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains(">dana</span>"), "{page}");

    // A DELETE held on A; the queue loaded from A, the approval posted through B.
    let statement = "DELETE FROM orders WHERE id = 5";
    let mut held = psql_bg(&a.conn("shop", &agent), statement);
    let id = pending_for(&a, statement);
    let (code, _, queue) = curl(&format!("{a_base}/approvals"), Some(&jar), None, None);
    assert_eq!(code, 200, "{queue}");
    assert!(queue.contains(statement), "{queue}");
    let csrf = csrf_of(&queue);
    let approve = format!("{b_base}/approvals/{id}/approve");
    let (code, _, _) = curl(&approve, Some(&jar), None, Some(&[("csrf", "forged")]));
    assert_eq!(code, 403, "B checks the CSRF token too");
    let (code, _, body) = curl(
        &approve,
        Some(&jar),
        None,
        Some(&[("csrf", &csrf), ("comment", "through B")]),
    );
    assert_eq!(code, 303, "{body}");
    assert!(
        exited_within(&mut held, Duration::from_secs(5)).is_some(),
        "not released by the approval through B"
    );
    let (stdout, stderr) = stdout_of(held);
    assert!(stdout.contains("DELETE 1"), "{stdout} {stderr}");

    // Signed out through B: A no longer takes the cookie.
    let (code, to, _) = curl(
        &format!("{b_base}/signout"),
        Some(&jar),
        None,
        Some(&[("csrf", &csrf)]),
    );
    assert_eq!(code, 303);
    assert!(to.ends_with("/signin?ended=signout"), "{to}");
    for base in [&a_base, &b_base] {
        let (code, to, _) = curl(&format!("{base}/sessions"), None, Some(&cookie), None);
        assert_eq!(code, 303, "{base} still takes a signed-out cookie");
        assert!(to.ends_with("/signin?ended=expired"), "{to}");
    }

    // Signed in through A again; the token revoked through B: A ends the sign-in.
    std::fs::write(&jar, "").unwrap();
    let (_, _, form) = curl(&format!("{a_base}/signin"), Some(&jar), None, None);
    let (code, _, _) = curl(
        &format!("{a_base}/signin"),
        Some(&jar),
        None,
        Some(&[("token", &dana), ("csrf", &csrf_of(&form))]),
    );
    assert_eq!(code, 303);
    let cookie = jar_cookie(&jar);
    b.cli_ok(&["token", "revoke", "dana"]);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (code, to, _) = curl(&format!("{a_base}/sessions"), None, Some(&cookie), None);
        if code == 303 {
            assert!(to.ends_with("/signin?ended=revoked"), "{to}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A still shows pages to a sign-in whose token B revoked"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Through the provider: started on A, completed on B, signed in on A too.
    if let Some((dir, chrome)) = tools {
        let via_a = Browser::new(dir, chrome, &a_base);
        let signed = via_a.step("erin", "oidc", &["local", "erin", &b_base]);
        assert_eq!(signed["signedIn"], true, "{}", signed["text"]);
        assert!(
            signed["url"].as_str().unwrap().starts_with(&b_base),
            "{}",
            signed["url"]
        );
        let (code, _, page) = curl(
            &format!("{a_base}/sessions"),
            None,
            Some(&via_a.cookie("erin")),
            None,
        );
        assert_eq!(code, 200, "{page}");
        assert!(page.contains(">erin</span>"), "{page}");
    }
    for log in [a.log(), b.log()] {
        assert!(!log.contains(&dana), "a token in a log");
        assert!(!log.contains(&cookie), "a sign-in cookie in a log");
    }
    drop(idp);
}
