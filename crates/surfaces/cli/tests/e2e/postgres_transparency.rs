//! Transparency: what a client sees through Airlock is what the server would have shown
//! it. Statements the grammar rejects are never forwarded, yet psql and psycopg get the
//! server's message, SQLSTATE and position, and the transaction state the server leaves.
//! Server connections kept for reuse are bounded per target and never make the server
//! refuse a session.

use std::io::Write;
use std::process::{Command, Stdio};

use airlock_testkit::{APP_PASSWORD, Postgres, psql};

use crate::{Fixture, events_of, py};

/// Runs `script` through psql from standard input (no ON_ERROR_STOP): its output and
/// errors, with the SQLSTATE of each error echoed.
fn psql_script(conn: &str, script: &str) -> (String, String) {
    let mut child = Command::new("psql")
        .arg(conn)
        .args(["-X", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Statements the grammar rejects, each followed by its SQLSTATE: an error inside the
/// text, at its end, past multi-byte text, on a later line, in a later statement of the
/// same string, a grammar rule's own errors (another SQLSTATE among them), and inside a
/// transaction block (which the error aborts). Then, each ending its input as psql can
/// only send them at the end, an unterminated literal and comment.
const REJECTED: [&str; 4] = [
    r#"
selec 1;
\echo :LAST_ERROR_SQLSTATE
select 1 +;
\echo :LAST_ERROR_SQLSTATE
select 1 +
\echo :LAST_ERROR_SQLSTATE
;
select 'ünïcode', 2 3;
\echo :LAST_ERROR_SQLSTATE
select 1,
  2
  from;
\echo :LAST_ERROR_SQLSTATE
select unique (select 1);
\echo :LAST_ERROR_SQLSTATE
select 1 \; select 2 2 \; select 3;
\echo :LAST_ERROR_SQLSTATE
select 1 from orders order by 1 order by 1;
\echo :LAST_ERROR_SQLSTATE
begin;
select count(*) > 0 from orders;
select from where;
select 1;
\echo :LAST_ERROR_SQLSTATE
rollback;
select 'after' as still;
"#,
    "select 1;\nselect 'open\n  and on",
    "select 1 /* never closed",
    "select 1 +\n  ",
];

#[test]
fn syntax_errors_read_exactly_as_the_servers() {
    let f = Fixture::new("tr_syntax");
    let direct = Postgres::shared().conn("app", APP_PASSWORD, &f.db);
    let mut all_errors = String::new();
    for script in REJECTED {
        let (want_out, want_err) = psql_script(&direct, script);
        let (got_out, got_err) = psql_script(&f.conn(), script);
        assert_eq!(got_err, want_err, "{script}");
        assert_eq!(got_out, want_out, "{script}");
        all_errors.push_str(&got_err);
        all_errors.push_str(&got_out);
    }
    // The server's own words: the script exercises what it should.
    for expected in [
        "syntax error at end of input",
        "unterminated quoted string",
        "unterminated /* comment",
        "current transaction is aborted",
        "LINE 3:   from;",
        "42601",
        "0A000",
        "25P02",
    ] {
        assert!(all_errors.contains(expected), "{expected}: {all_errors}");
    }
    // Refused and recorded, never forwarded.
    let s = f.gw.last_session_of("agent", "shop");
    let refused: Vec<_> = events_of(&s, "query")
        .into_iter()
        .filter(|q| q["decision"] == "deny")
        .collect();
    assert!(!refused.is_empty(), "{s}");
    assert!(
        refused.iter().all(|q| q["detail"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("could not be parsed")),
        "{refused:?}"
    );
}

#[test]
fn syntax_errors_in_the_extended_protocol_match_the_server_too() {
    let f = Fixture::new("tr_syntax_ext");
    let direct = Postgres::shared().conn("app", APP_PASSWORD, &f.db);
    let want = py("syntax_errors", &direct);
    let got = py("syntax_errors", &f.conn());
    assert_eq!(got, want);
    let first = &got[0];
    assert_eq!(first["sqlstate"], "42601", "{got}");
    assert_eq!(first["after"], "25P02", "{got}");
    assert_eq!(first["status"], "INERROR", "{got}");
}

#[test]
fn a_statement_that_does_not_parse_is_never_run_even_when_its_start_would() {
    let f = Fixture::new("tr_never_run");
    // The first statement parses, the string as a whole does not: nothing of it runs.
    let out = psql(&f.conn(), &["delete from orders; select ) from orders"]);
    assert!(
        !out.ok && out.stderr.contains("syntax error at or near \")\""),
        "{out:?}"
    );
    let count = Postgres::shared()
        .sql_as("app", APP_PASSWORD, &f.db, "select count(*) from orders")
        .unwrap();
    assert_eq!(count, "100");
}

fn backend_pid(conn: &str) -> String {
    let out = psql(conn, &["select pg_backend_pid()"]);
    assert!(out.ok, "{}", out.stderr);
    out.stdout.trim().to_owned()
}

#[test]
fn sessions_with_their_own_application_name_share_pooled_connections() {
    let f = Fixture::new("tr_appname");
    let first = backend_pid(&format!("{} application_name=run-1", f.conn()));
    for n in 2..6 {
        let conn = format!("{} application_name=run-{n}", f.conn());
        let out = psql(&conn, &["select pg_backend_pid()", "show application_name"]);
        assert!(out.ok, "{}", out.stderr);
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines, [first.as_str(), &format!("run-{n}")], "{out:?}");
    }
    // A client without one gets the server's default, not the last client's.
    let out = psql(&f.conn(), &["show application_name"]);
    assert_eq!(out.stdout.trim(), "psql");
    let out = psql(
        &format!("{} application_name=''", f.conn()),
        &["show application_name"],
    );
    assert_eq!(out.stdout.trim(), "", "{out:?}");
}

#[test]
fn idle_connections_never_make_the_server_refuse_a_session() {
    // A role the server lets hold three connections: sessions with distinct startup
    // parameters would each leave one idle connection behind if the pool kept them per
    // set of parameters.
    let pg = Postgres::shared();
    let role = pg.create_role("tr_limited", "limitedpw");
    pg.superuser_sql("postgres", &format!("alter role {role} connection limit 3"))
        .unwrap();
    let db = pg.create_database("tr_limit");
    let gw = airlock_testkit::AirlockBuilder::new(crate::bin())
        .raw_target(&format!(
            "[[targets]]\nname = \"shop\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{db}\"\nuser = \"{role}\"\npassword = \"env:LIMITED_PW\"\nsslmode = \"disable\"\npool_size = 16\n",
            pg.port
        ))
        .env("LIMITED_PW", "limitedpw")
        .start();
    let token = gw.token("agent", &["ai-agents"]);
    let conn = gw.conn("shop", &token);
    for style in ["ISO", "SQL", "Postgres", "German", "ISO,DMY", "SQL,YMD"] {
        let out = psql(
            &format!("{conn} options='-c datestyle={style}'"),
            &["show datestyle", "select count(*) from orders"],
        );
        assert!(out.ok, "{style}: {}", out.stderr);
    }
    // Still room for three sessions at once.
    let mut open: Vec<_> = (0..3)
        .map(|_| {
            Command::new("psql")
                .arg(&conn)
                .args(["-X", "-At", "-c", "select pg_sleep(1.5)"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in open.drain(..) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
