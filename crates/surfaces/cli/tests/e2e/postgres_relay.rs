//! What a session relays: simple and extended protocol, COPY both ways, notices and
//! notifications, and how each statement is recorded.

use airlock_testkit::psql;

use crate::raw::{Raw, message};
use crate::{Fixture, events_of, py};

#[test]
fn psql_query_runs_and_every_statement_is_recorded_with_its_outcome() {
    let f = Fixture::new("relay_psql");
    let out = psql(
        &f.conn(),
        &[
            "select name from customers order by id",
            "select 1; select 2",
            "insert into orders(customer_id, total) values (1, 1), (2, 2)",
            "select 1/0",
        ],
    );
    assert!(out.stdout.contains("Ada Lovelace\nAlan Turing"), "{out:?}");
    assert!(out.stdout.contains("1\n2"), "{out:?}");
    assert!(out.stderr.contains("division by zero"), "{out:?}");

    let s = f.gw.last_session_of("agent", "shop");
    assert_eq!(s["principal"], "agent");
    assert!(s["client_addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(s["ended_at"].is_string(), "session ended: {s}");
    let queries: Vec<_> = events_of(&s, "query")
        .iter()
        .map(|e| e["statement"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        queries,
        [
            "select name from customers order by id",
            "select 1; select 2",
            "insert into orders(customer_id, total) values (1, 1), (2, 2)",
            "select 1/0"
        ]
    );
    assert!(
        events_of(&s, "query")
            .iter()
            .all(|e| e["decision"] == "allow")
    );
    let results = events_of(&s, "result");
    assert_eq!(results[0]["detail"]["tag"], "SELECT 2");
    assert_eq!(results[0]["detail"]["rows"], 2);
    assert_eq!(results.len(), 5, "one result per statement: {s}");
    assert_eq!(results[3]["detail"]["tag"], "INSERT 0 2");
    assert_eq!(
        results[3]["detail"]["rows"], 2,
        "rows changed come from the command tag"
    );
    assert_eq!(results[4]["detail"]["error"]["code"], "22012");
    let connect = &events_of(&s, "connect")[0];
    assert_eq!(connect["seq"], 1);
    assert_eq!(connect["detail"]["tls"], true);
    assert_eq!(connect["detail"]["application_name"], "psql");
    let last = s["events"].as_array().unwrap().last().unwrap();
    assert_eq!(last["kind"], "disconnect");
    assert_eq!(last["detail"]["reason"], "client_terminated");
    // Sequence numbers are dense and ordered.
    for (i, e) in s["events"].as_array().unwrap().iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1);
    }
}

#[test]
fn psycopg_extended_protocol_prepared_binary_and_errors() {
    let f = Fixture::new("relay_ext");
    let r = py("prepared", &f.conn());
    assert_eq!(r["counts"], serde_json::json!([50, 50, 50]));
    assert_eq!(r["binary_row"][1], "Alan Turing");
    assert_eq!(r["inserted"], 3);
    assert_eq!(r["error"], "22012");
    assert_eq!(r["after_error"], 42);

    let s = f.gw.last_session_of("agent", "shop");
    let parses = events_of(&s, "parse");
    assert!(
        parses
            .iter()
            .any(|e| e["statement"] == "select count(*) from orders where customer_id = $1"),
        "{s}"
    );
    let binds = events_of(&s, "bind");
    assert!(
        binds
            .iter()
            .any(|e| e["detail"]["params"] == serde_json::json!(["1"])),
        "a binary int parameter is recorded as its text: {binds:?}"
    );
    let executes = events_of(&s, "execute");
    assert!(
        executes
            .iter()
            .filter(|e| e["statement"] == "select count(*) from orders where customer_id = $1")
            .count()
            >= 3,
        "{s}"
    );
    assert!(executes.iter().all(|e| e["decision"] == "allow"));
}

#[test]
fn copy_out_and_copy_in_stream_through() {
    let f = Fixture::new("relay_copy");
    let r = py("copy", &f.conn());
    assert_eq!(
        r["copied_out"],
        serde_json::json!([["1", "Ada Lovelace"], ["2", "Alan Turing"]])
    );
    assert_eq!(r["orders_after_copy_in"], 5100);
    let out = psql(
        &f.conn(),
        &["\\copy (select id from orders where id <= 3 order by id) to stdout"],
    );
    assert_eq!(out.stdout, "1\n2\n3\n", "{out:?}");
    let s = f.gw.last_session_of("agent", "shop");
    assert!(
        events_of(&s, "result")
            .iter()
            .any(|e| e["detail"]["tag"] == "COPY 3" && e["detail"]["rows"] == 3),
        "{s}"
    );
}

#[test]
fn notices_and_notifications_reach_the_client() {
    let f = Fixture::new("relay_notify");
    let r = py("notify", &f.conn());
    assert_eq!(
        r["notifies"],
        serde_json::json!([["airlock_test", "hello"]])
    );
    assert_eq!(r["notices"], serde_json::json!(["notice from plpgsql"]));
}

#[test]
fn startup_parameters_are_passed_to_the_target() {
    let f = Fixture::new("relay_params");
    let conn = format!(
        "{} application_name=crew-7 options='-c search_path=pg_catalog'",
        f.conn()
    );
    let out = psql(&conn, &["show application_name", "show search_path"]);
    assert_eq!(out.stdout, "crew-7\npg_catalog\n", "{out:?}");
}

#[test]
fn cancel_request_cancels_only_that_query_and_is_recorded() {
    let f = Fixture::new("relay_cancel");
    let r = py("cancel", &f.conn());
    assert_eq!(r["sqlstate"], "57014", "{r}");
    assert_eq!(r["alive"], 1);
    assert_eq!(r["other_alive"], 2);
    let sessions = f.gw.sessions();
    let cancelled = sessions
        .iter()
        .map(|s| f.gw.session(s["id"].as_str().unwrap()))
        .filter(|s| !events_of(s, "cancel").is_empty())
        .collect::<Vec<_>>();
    assert_eq!(cancelled.len(), 1, "exactly one session saw a cancel");
    assert!(events_of(&cancelled[0], "cancel")[0]["detail"]["from"].is_string());
}

#[test]
fn a_cancel_with_an_unknown_key_does_nothing() {
    let f = Fixture::with("relay_badcancel", |b| {
        b.listener("allow_plaintext_loopback = true")
    });
    let mut victim = Raw::ready(f.gw.port, "shop", &f.token);
    let mut cancel = Raw::connect(f.gw.port);
    let mut req = 16i32.to_be_bytes().to_vec();
    req.extend_from_slice(&80877102i32.to_be_bytes());
    req.extend_from_slice(&1234i32.to_be_bytes());
    req.extend_from_slice(&5678i32.to_be_bytes());
    cancel.send(&req);
    assert!(cancel.closed());
    let msgs = victim.query("select pg_sleep(0.5), 'still here'");
    assert!(
        msgs.iter().any(|m| m.tag == b'D'),
        "query was not cancelled"
    );
}

#[test]
fn fast_path_function_call_is_refused_and_the_session_goes_on() {
    let f = Fixture::with("relay_fastpath", |b| {
        b.listener("allow_plaintext_loopback = true")
    });
    let mut r = Raw::ready(f.gw.port, "shop", &f.token);
    // FunctionCall of pg_terminate_backend's OID (2096) with one argument.
    let mut body = 2096i32.to_be_bytes().to_vec();
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.push(b'1');
    body.extend_from_slice(&0i16.to_be_bytes());
    r.send(&message(b'F', &body));
    let err = r.read().unwrap();
    assert_eq!(err.tag, b'E');
    assert_eq!(err.field(b'C').as_deref(), Some("0A000"));
    assert_eq!(r.read().unwrap().tag, b'Z');
    let msgs = r.query("select 'after'");
    assert!(msgs.iter().any(|m| m.tag == b'D'));
    let s = f.gw.last_session_of("agent", "shop");
    assert_eq!(events_of(&s, "refused").len(), 1);
}

#[test]
fn ctrl_c_in_psql_cancels_the_running_query() {
    let f = Fixture::new("relay_ctrlc");
    let child = std::process::Command::new("psql")
        .arg(f.conn())
        .args(["-X", "-At", "-c", "select pg_sleep(60) -- ctrl-c test"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the statement is running at the server before pressing Ctrl-C: this
    // one, in this test's database (other tests run pg_sleep(60) at the same time).
    let pg = airlock_testkit::Postgres::shared();
    let mut running = false;
    let probe = format!(
        "select count(*) from pg_stat_activity where query = 'select pg_sleep(60) -- ctrl-c test' and state = 'active' and datname = '{}'",
        f.db
    );
    for _ in 0..200 {
        let n = pg.superuser_sql("postgres", &probe).unwrap();
        if n == "1" {
            running = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(running, "the query never started");
    std::process::Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    let s = f.gw.last_session_of("agent", "shop");
    assert_eq!(
        events_of(&s, "result")[0]["detail"]["error"]["code"],
        "57014"
    );
    assert_eq!(events_of(&s, "cancel").len(), 1);
}
