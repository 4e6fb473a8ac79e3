//! The per-target pool of server connections: reused between sessions, reset so that
//! nothing of one agent's session reaches the next, retired on reload, replaced when the
//! server closed them, and off with `pool = false`.

use airlock_testkit::{Postgres, psql};

use crate::Fixture;

fn backend_pid(conn: &str) -> String {
    let out = psql(conn, &["select pg_backend_pid()"]);
    assert!(out.ok, "{}", out.stderr);
    out.stdout.trim().to_owned()
}

#[test]
fn a_finished_session_leaves_nothing_for_the_next_one_on_the_same_server_connection() {
    let f = Fixture::new("pool_reset");
    let conn = f.conn();
    let first = psql(
        &conn,
        &[
            "select pg_backend_pid()",
            "set search_path = pg_catalog",
            "set statement_timeout = '7s'",
            "prepare leftover as select 1",
            "listen agent_channel",
            "select pg_advisory_lock(4242)",
            "declare c cursor with hold for select 1",
        ],
    );
    assert!(first.ok, "{}", first.stderr);
    let pid = first.stdout.lines().next().unwrap().to_owned();
    let second = psql(
        &conn,
        &[
            "select pg_backend_pid()",
            "show search_path",
            "show statement_timeout",
            "select count(*) from pg_prepared_statements",
            "select count(*) from pg_listening_channels()",
            "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()",
            "select count(*) from pg_cursors",
        ],
    );
    assert!(second.ok, "{}", second.stderr);
    let lines: Vec<&str> = second.stdout.lines().collect();
    assert_eq!(lines[0], pid, "the server connection was reused");
    assert_eq!(lines[1], "\"$user\", public", "search_path reset");
    assert_eq!(lines[2], "0", "statement_timeout reset");
    assert_eq!(&lines[3..], ["0", "0", "0", "0"], "{lines:?}");
}

#[test]
fn a_session_that_made_temporary_objects_does_not_hand_its_connection_on() {
    // DISCARD ALL drops the tables but not the backend's temporary schema, which a
    // fresh connection does not have.
    let f = Fixture::new("pool_temp");
    let conn = f.conn();
    let first = psql(
        &conn,
        &[
            "select pg_backend_pid()",
            "create temp table scratch(a int)",
        ],
    );
    assert!(first.ok, "{}", first.stderr);
    let pid = first.stdout.lines().next().unwrap().to_owned();
    let second = psql(
        &conn,
        &["select pg_backend_pid()", "select pg_my_temp_schema()"],
    );
    assert!(second.ok, "{}", second.stderr);
    let lines: Vec<&str> = second.stdout.lines().collect();
    assert_ne!(lines[0], pid, "{lines:?}");
    assert_eq!(lines[1], "0", "{lines:?}");
    // The connection the second session leaves behind has no temporary schema: reused.
    assert_eq!(backend_pid(&conn), lines[0]);
}

#[test]
fn a_session_that_leaves_a_transaction_open_does_not_hand_its_connection_on() {
    let f = Fixture::with("pool_tx", |b| b.listener("allow_plaintext_loopback = true"));
    let conn = f.conn();
    let mut r = crate::raw::Raw::ready(f.gw.port, "shop", &f.token);
    let pid_msgs = r.query("select pg_backend_pid()");
    let pid = pid_msgs
        .iter()
        .find(|m| m.tag == b'D')
        .map(|m| String::from_utf8_lossy(&m.body[6..]).into_owned())
        .unwrap();
    r.query("begin");
    r.query("insert into orders(customer_id, total) values (1, 999999)");
    drop(r); // gone without COMMIT or Terminate
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_ne!(
        backend_pid(&conn),
        pid,
        "a connection left in a transaction is closed"
    );
    let rows = psql(&conn, &["select count(*) from orders where total = 999999"]);
    assert_eq!(
        rows.stdout.trim(),
        "0",
        "the open transaction was rolled back"
    );
}

#[test]
fn a_pooled_connection_the_server_closed_is_replaced_not_handed_out() {
    let f = Fixture::new("pool_dead");
    let conn = f.conn();
    let pid = backend_pid(&conn);
    Postgres::shared()
        .superuser_sql(&f.db, &format!("select pg_terminate_backend({pid})"))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let next = backend_pid(&conn);
    assert_ne!(next, pid);
    assert_eq!(backend_pid(&conn), next, "the new one is pooled in turn");
}

#[test]
fn pool_false_opens_a_server_connection_per_session() {
    let f = Fixture::with("pool_off", |b| b.target_extra("pool = false"));
    let conn = f.conn();
    assert_ne!(backend_pid(&conn), backend_pid(&conn));
}

#[test]
fn a_reload_retires_pooled_connections() {
    let f = Fixture::new("pool_reload");
    let conn = f.conn();
    let pid = backend_pid(&conn);
    assert_eq!(backend_pid(&conn), pid);
    f.gw.signal("HUP");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_ne!(
        backend_pid(&conn),
        pid,
        "connections made with the old configuration (and secret) are not reused"
    );
}

#[test]
fn a_session_that_leaves_extended_protocol_messages_unsynced_does_not_hand_its_connection_on() {
    use crate::raw::message;
    let f = Fixture::with("pool_unsynced", |b| {
        b.listener("allow_plaintext_loopback = true")
    });
    let conn = f.conn();
    let mut r = crate::raw::Raw::ready(f.gw.port, "shop", &f.token);
    let pid = r
        .query("select pg_backend_pid()")
        .iter()
        .find(|m| m.tag == b'D')
        .map(|m| String::from_utf8_lossy(&m.body[6..]).into_owned())
        .unwrap();
    // Parse, Bind, Execute of an INSERT, then Terminate without Sync: the server ran it
    // in an implicit transaction that must not be committed by anything that follows.
    let mut parse = b"\0insert into orders(customer_id, total) values (1, 777777)\0".to_vec();
    parse.extend_from_slice(&0i16.to_be_bytes());
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut execute = b"\0".to_vec();
    execute.extend_from_slice(&0i32.to_be_bytes());
    r.send(&message(b'P', &parse));
    r.send(&message(b'B', &bind));
    r.send(&message(b'E', &execute));
    r.send(&message(b'H', &[]));
    let answer = r.read_until(b'C');
    assert!(answer.is_some(), "the INSERT ran");
    r.send(&message(b'X', &[]));
    drop(r);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let rows = psql(&conn, &["select count(*) from orders where total = 777777"]);
    assert_eq!(
        rows.stdout.trim(),
        "0",
        "the unsynced INSERT was not committed"
    );
    assert_ne!(backend_pid(&conn), pid, "its connection was not reused");
}
