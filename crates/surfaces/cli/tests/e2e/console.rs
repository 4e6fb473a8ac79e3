//! The web console end to end: headless Chromium (Debian's, driven by playwright-core
//! from npm through `tests/clients/browser/console.mjs`) against `airlock serve`, a real
//! PostgreSQL, psql as the agent and the real OIDC provider of the identity tests.
//!
//! A DBA signs in with a token and through the provider, finds the agent's session by
//! filter and sees its replay with masked captured rows (no raw PII in anything the
//! browser fetched), approves a held DELETE that psql then completes, denies another
//! with a reason that psql prints; a statement carrying markup renders inert; forms
//! without the sign-in's CSRF token, or sent from another site, change nothing; a person
//! outside the approver group sees neither the session nor the request and cannot
//! decide it; sign-out ends the sign-in on the server. Screenshots go to
//! `$AIRLOCK_CONSOLE_SHOTS` when set (`docs/images/` is refreshed that way).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use airlock_testkit::{
    Airlock, AirlockBuilder, Idp, Postgres, free_port, scratch_dir, workspace_root,
};
use serde_json::Value;

use crate::postgres_policy::READ_ONLY;
use crate::{bin, pending_for, psql_bg};

const HOLD_DELETES: &str = "\n@id(\"delete-needs-dba\")\n@hold(\"dba\")\n@reason(\"deleting orders needs a DBA's approval\")\npermit(principal in Group::\"ai-agents\", action == Sql::Action::\"delete\", resource in Target::\"shop\");";
const PII: [&str; 6] = [
    "ada@example.com",
    "alan@example.org",
    "4111 1111 1111 1111",
    "5500 0000 0000 0004",
    "078-05-1120",
    "219-09-9999",
];

/// Where playwright-core is installed (`scripts/test` sets it), and Chromium.
pub(crate) fn browser() -> Option<(PathBuf, PathBuf)> {
    let dir = PathBuf::from(std::env::var("AIRLOCK_TEST_BROWSER").ok()?);
    let chrome = PathBuf::from(
        std::env::var("AIRLOCK_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    (dir.join("node_modules/playwright-core").is_dir() && chrome.exists()).then_some((dir, chrome))
}

/// Headless Chromium driven by `console.mjs`, one step per run.
pub(crate) struct Browser {
    pub(crate) dir: PathBuf,
    pub(crate) chrome: PathBuf,
    pub(crate) base: String,
    pub(crate) states: PathBuf,
    pub(crate) shots: PathBuf,
}

impl Browser {
    /// A browser on `base`, with `console.mjs` copied next to playwright-core in `dir`.
    pub(crate) fn new(dir: PathBuf, chrome: PathBuf, base: &str) -> Browser {
        std::fs::copy(
            workspace_root().join("tests/clients/browser/console.mjs"),
            dir.join("console.mjs"),
        )
        .unwrap();
        Browser {
            dir,
            chrome,
            base: base.to_owned(),
            states: scratch_dir("console-states"),
            shots: scratch_dir("console-shots"),
        }
    }

    /// Runs one step as `person` (their cookies kept between steps); returns its JSON.
    pub(crate) fn step(&self, person: &str, step: &str, args: &[&str]) -> Value {
        let out = Command::new("node")
            .arg(self.dir.join("console.mjs"))
            .arg(step)
            .args(args)
            .env("BASE", &self.base)
            .env("STATE", self.states.join(format!("{person}.json")))
            .env("SHOTS", &self.shots)
            .env("CHROME", &self.chrome)
            .stdin(Stdio::null())
            .output()
            .expect("run node");
        let line = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(line.trim().lines().last().unwrap_or(""))
            .unwrap_or_else(|_| {
                panic!(
                    "browser step {step} printed no JSON:\n{line}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert_eq!(
            v["ok"], true,
            "browser step {step} as {person} failed: {}",
            v["error"]
        );
        v
    }

    /// `person`'s sign-in cookie, as the browser keeps it.
    pub(crate) fn cookie(&self, person: &str) -> String {
        let state: Value = serde_json::from_str(
            &std::fs::read_to_string(self.states.join(format!("{person}.json"))).unwrap(),
        )
        .unwrap();
        state["cookies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "airlock_console")
            .map(|c| c["value"].as_str().unwrap().to_owned())
            .expect("a sign-in cookie")
    }
}

fn no_pii(what: &str, text: &str) {
    for p in PII {
        assert!(!text.contains(p), "raw PII `{p}` in {what}");
    }
}

fn approval(gw: &Airlock, id: &str) -> Value {
    serde_json::from_str(&gw.cli_ok(&["approvals", "show", id, "--json"])).unwrap()
}

/// A request with `cookie`, as curl: the status code. A form post when `form` is given.
fn status(base: &str, path: &str, cookie: &str, form: Option<&str>, headers: &[&str]) -> u16 {
    let mut c = Command::new("curl");
    c.args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"]);
    if !cookie.is_empty() {
        c.args(["-H", &format!("Cookie: airlock_console={cookie}")]);
    }
    for h in headers {
        c.args(["-H", h]);
    }
    if let Some(form) = form {
        c.args(["-X", "POST", "--data", form]);
    }
    let out = c.arg(format!("{base}{path}")).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn post(base: &str, path: &str, cookie: &str, form: &str, headers: &[&str]) -> u16 {
    status(base, path, cookie, Some(form), headers)
}

fn shots_dir() -> PathBuf {
    match std::env::var("AIRLOCK_CONSOLE_SHOTS") {
        Ok(d) => {
            let d = if Path::new(&d).is_absolute() {
                PathBuf::from(d)
            } else {
                workspace_root().join(d)
            };
            std::fs::create_dir_all(&d).unwrap();
            d
        }
        Err(_) => scratch_dir("console-shots"),
    }
}

#[test]
fn people_review_sessions_and_decide_requests_in_the_console() {
    let Some((dir, chrome)) = browser() else {
        eprintln!(
            "AIRLOCK_TEST_BROWSER (playwright-core) or Chromium missing (scripts/test installs both): the console's browser test is skipped"
        );
        return;
    };
    std::fs::copy(
        workspace_root().join("tests/clients/browser/console.mjs"),
        dir.join("console.mjs"),
    )
    .unwrap();
    let api_port = free_port();
    let base = format!("https://127.0.0.1:{api_port}");
    let idp = Idp::start_with_console("console", &format!("{base}/auth/callback"));
    let pg = Postgres::shared();
    let db = pg.create_database("console");
    let policy = format!("{READ_ONLY}{HOLD_DELETES}");
    let gw = AirlockBuilder::new(bin())
        .policy(Some(&policy))
        .target("shop", pg, &db)
        .target_extra("capture_rows = 5\nhold_timeout = \"2m\"")
        .env("CONSOLE_SECRET", "console-secret")
        .extra(&format!(
            "\n[identity]\n[[identity.oidc]]\nname = \"local\"\nissuer = \"{}\"\naudiences = [\"urn:airlock\"]\n\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n\n[console]\noidc_provider = \"local\"\nclient_id = \"console\"\nclient_secret = \"env:CONSOLE_SECRET\"\nredirect_url = \"{base}/auth/callback\"\nscopes = [\"groups\"]\n",
            idp.issuer()
        ))
        .start();
    airlock_testkit::wait_port(api_port, Duration::from_secs(10)).unwrap();
    let agent = gw.token("crew-analyst", &["ai-agents"]);
    let dana = gw.token("dana", &["dba"]);
    let mallory = gw.token("mallory", &["sales"]);
    let conn = gw.conn("shop", &agent);
    let b = Browser {
        dir,
        chrome,
        base: base.clone(),
        states: scratch_dir("console-states"),
        shots: shots_dir(),
    };

    // The agent reads customers (masked, captured) and sends a statement full of markup.
    let read = airlock_testkit::psql(&conn, &["select * from customers order by id"]);
    assert!(read.stdout.contains("Lovelace"), "{read:?}");
    let xss = "select '<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">' as x";
    airlock_testkit::psql(&conn, &[xss]);
    let sessions = gw.sessions();
    let mine: Vec<&Value> = sessions
        .iter()
        .filter(|s| s["principal"] == "crew-analyst")
        .collect();
    let (read_sid, xss_sid) = (
        mine[0]["id"].as_str().unwrap().to_owned(),
        mine[1]["id"].as_str().unwrap().to_owned(),
    );

    // A wrong token is refused; dana's signs in.
    let refused = b.step("nobody", "signin", &["alk_not-a-token"]);
    assert_eq!(refused["signedIn"], false);
    assert!(
        refused["text"].as_str().unwrap().contains("refused"),
        "{}",
        refused["text"]
    );
    assert_eq!(b.step("dana", "signin", &[&dana])["signedIn"], true);

    // Found by filter; the replay shows the statement, the masked captured rows, the
    // chain status; no raw PII in anything the browser fetched.
    let found = b.step(
        "dana",
        "find",
        &["crew-analyst", &read_sid, "masked something"],
    );
    assert_eq!(found["found"], true, "{}", found["list"]["text"]);
    let page = found["session"]["text"].as_str().unwrap();
    assert!(
        page.contains("select * from customers order by id"),
        "{page}"
    );
    assert!(
        page.contains("Lovelace") && page.contains("Turing"),
        "{page}"
    );
    assert!(page.contains("Captured rows"), "{page}");
    assert!(page.contains("intact"), "chain status: {page}");
    assert!(
        !found["list"]["text"].as_str().unwrap().contains(&xss_sid),
        "the masked filter lists only sessions that masked something"
    );
    no_pii(
        "the session page",
        found["session"]["html"].as_str().unwrap(),
    );
    no_pii(
        "what the browser fetched",
        found["fetched"].as_str().unwrap(),
    );

    // Markup in a statement is shown as text and never runs.
    let x = b.step(
        "dana",
        "open",
        &[&format!("/sessions/{xss_sid}"), "session-xss"],
    );
    let html = x["html"].as_str().unwrap();
    assert!(
        html.contains("&lt;script&gt;window.__xss=1&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        !html.contains("<script>window.__xss"),
        "unescaped markup: {html}"
    );
    assert!(
        x["text"]
            .as_str()
            .unwrap()
            .contains("<script>window.__xss=1</script>")
    );

    // A held DELETE, approved in the browser: psql completes it, once.
    let mut held = psql_bg(&conn, "DELETE FROM orders WHERE id = 7");
    let id = pending_for(&gw, "DELETE FROM orders WHERE id = 7");
    let decided = b.step(
        "dana",
        "decide",
        &["DELETE FROM orders WHERE id = 7", "approve"],
    );
    assert_eq!(decided["decided"], true, "{}", decided["text"]);
    assert!(
        decided["text"]
            .as_str()
            .unwrap()
            .contains("Approved request"),
        "{}",
        decided["text"]
    );
    let out = held.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "DELETE 1",
        "{out:?}"
    );
    assert_eq!(approval(&gw, &id)["decided_by"], "dana");
    let left = pg
        .sql_as(
            "app",
            "apppw",
            &db,
            "select count(*) from orders where id = 7",
        )
        .unwrap();
    assert_eq!(left.trim(), "0");

    // Another, denied with a reason the agent is told.
    held = psql_bg(&conn, "DELETE FROM orders WHERE id = 8");
    let denied_id = pending_for(&gw, "DELETE FROM orders WHERE id = 8");
    let empty = b.step(
        "dana",
        "decide",
        &["DELETE FROM orders WHERE id = 8", "deny", ""],
    );
    assert_eq!(
        approval(&gw, &denied_id)["status"],
        "pending",
        "an empty reason decides nothing: {}",
        empty["text"]
    );
    b.step(
        "dana",
        "decide",
        &[
            "DELETE FROM orders WHERE id = 8",
            "deny",
            "not during the audit",
        ],
    );
    let out = held.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not during the audit"),
        "{out:?}"
    );
    let a = approval(&gw, &denied_id);
    assert_eq!(
        (a["status"].as_str(), a["decided_by"].as_str()),
        (Some("denied"), Some("dana"))
    );

    // Forms without the sign-in's CSRF token, or from another site, change nothing.
    held = psql_bg(&conn, "DELETE FROM orders WHERE id = 9");
    let third = pending_for(&gw, "DELETE FROM orders WHERE id = 9");
    let cookie = b.cookie("dana");
    let approve = format!("/approvals/{third}/approve");
    assert_eq!(post(&base, &approve, &cookie, "csrf=forged", &[]), 403);
    assert_eq!(post(&base, &approve, "", "csrf=x", &[]), 403);
    let states = std::fs::read_to_string(b.states.join("dana.json")).unwrap();
    assert!(!states.contains(&dana), "the browser keeps no token");
    // The real token, from the page, but sent by another site.
    let queue = b.step("dana", "open", &["/approvals", ""]);
    let html = queue["html"].as_str().unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let cross = post(
        &base,
        &approve,
        &cookie,
        &format!("csrf={csrf}"),
        &["Sec-Fetch-Site: cross-site"],
    );
    assert_eq!(cross, 403);
    assert_eq!(approval(&gw, &third)["status"], "pending");

    // Someone outside the approver group: neither the session nor the request, and no
    // decision; the agent's own token sees its request but may not decide it.
    assert_eq!(b.step("mallory", "signin", &[&mallory])["signedIn"], true);
    let q = b.step("mallory", "open", &["/approvals", ""]);
    assert!(
        !q["text"]
            .as_str()
            .unwrap()
            .contains("DELETE FROM orders WHERE id = 9")
    );
    assert_eq!(
        b.step("mallory", "open", &[&format!("/sessions/{read_sid}"), ""])["status"],
        404
    );
    let m_cookie = b.cookie("mallory");
    let m_csrf = q["html"]
        .as_str()
        .unwrap()
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    assert_eq!(
        post(&base, &approve, &m_cookie, &format!("csrf={m_csrf}"), &[]),
        404
    );
    assert_eq!(b.step("agent", "signin", &[&agent])["signedIn"], true);
    let own = b.step("agent", "open", &["/approvals", ""]);
    let own_text = own["text"].as_str().unwrap();
    assert!(
        own_text.contains("DELETE FROM orders WHERE id = 9")
            && own_text.contains("you asked for it"),
        "{own_text}"
    );
    assert!(
        !own["html"]
            .as_str()
            .unwrap()
            .contains(&format!("/approvals/{third}/approve"))
    );
    assert_eq!(approval(&gw, &third)["status"], "pending");

    // Sign-in with the provider: dana's groups come from the ID token.
    let oidc = b.step("dana-oidc", "oidc", &["local", "dana"]);
    assert_eq!(oidc["signedIn"], true, "{}", oidc["text"]);
    assert!(oidc["text"].as_str().unwrap().contains("dana"));
    let via_oidc = b.step("dana-oidc", "open", &[&format!("/sessions/{read_sid}"), ""]);
    assert_eq!(via_oidc["status"], 200);

    // A live session's replay grows as it runs: the held agent gives up, and the page
    // shows the disconnect without a reload.
    let held_session = approval(&gw, &third)["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let live = std::thread::scope(|scope| {
        let watching = scope.spawn(|| {
            b.step(
                "dana-oidc",
                "live",
                &[&format!("/sessions/{held_session}"), "disconnected"],
            )
        });
        std::thread::sleep(Duration::from_secs(4));
        held.kill().ok();
        watching.join().unwrap()
    });
    assert_eq!(live["shown"], true, "{}", live["text"]);

    // Audit; then sign-out ends the sign-in on the server, whatever the browser keeps.
    let audit = b.step("dana", "open", &["/audit", "audit"]);
    assert!(
        audit["text"]
            .as_str()
            .unwrap()
            .contains("the chain is intact"),
        "{}",
        audit["text"]
    );
    b.step("dana", "open", &["/approvals", "approvals"]);
    b.step("dana", "signout", &[]);
    assert_eq!(status(&base, "/sessions", &cookie, None, &[]), 303);
    drop(idp);
}
