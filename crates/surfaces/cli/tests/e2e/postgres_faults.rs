//! Faults with real peers: the target killed (`pg_ctl stop -m immediate`) mid-query,
//! mid-COPY and mid-transaction, then restarted; the store's disk full or its file
//! read-only while sessions run; `airlock serve` killed (SIGKILL) during a burst of
//! writes and during a held statement; a client that stops reading a large result.
//!
//! The target-kill tests run a PostgreSQL cluster of their own each (never the shared
//! one, which other tests use at the same time).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use airlock_testkit::{APP_PASSWORD, Airlock, AirlockBuilder, Postgres, psql};
use serde_json::Value;

use crate::raw::{Msg, Raw, message};
use crate::{Fixture, bin, events_of, finish, wait_until};

// === helpers ===

/// A gateway in front of a PostgreSQL cluster of the test's own, which the test may
/// kill and restart. Plaintext is allowed on loopback, for the raw client.
struct Dedicated {
    // Dropped in this order: the gateway first, then the cluster.
    gw: Airlock,
    pg: Postgres,
    db: String,
    token: String,
}

impl Dedicated {
    fn new(prefix: &str) -> Dedicated {
        let pg = Postgres::start(false).expect("start a PostgreSQL cluster");
        let db = pg.create_database(prefix);
        let gw = AirlockBuilder::new(bin())
            .target("shop", &pg, &db)
            .listener("allow_plaintext_loopback = true")
            .start();
        let token = gw.token("agent", &["ai-agents"]);
        Dedicated { gw, pg, db, token }
    }

    fn conn(&self) -> String {
        self.gw.conn("shop", &self.token)
    }

    /// A raw protocol session, logged in and ready.
    fn raw(&self) -> Raw {
        Raw::ready(self.gw.port, "shop", &self.token)
    }

    /// SQL run directly on the target (not through Airlock), as the superuser.
    fn direct(&self, sql: &str) -> String {
        self.pg.superuser_sql(&self.db, sql).expect("direct SQL")
    }

    /// Server connections to the test's database, other than the one asking.
    fn server_connections(&self, state: &str) -> usize {
        self.direct(&format!(
            "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and state like '{state}'"
        ))
        .parse()
        .unwrap()
    }

    /// Waits (up to 20 s) until a statement containing `needle` runs on the server.
    fn wait_running(&self, needle: &str) {
        let running = wait_until(Duration::from_secs(20), || {
            self.direct(&format!(
                "select count(*) from pg_stat_activity where pid <> pg_backend_pid() and state = 'active' and query like '%{needle}%'"
            )) == "1"
        });
        assert!(running, "`{needle}` never ran on the server");
    }
}

/// What a raw client received until the gateway closed the connection: rows
/// (`DataRow`/`CopyData`) counted, other messages kept.
#[derive(Debug, Default)]
struct Received {
    rows: usize,
    /// Tag, SQLSTATE and message of every other message.
    messages: Vec<(char, Option<String>, Option<String>)>,
}

impl Received {
    fn take(&mut self, m: &Msg) {
        if m.tag == b'D' || m.tag == b'd' {
            self.rows += 1;
        } else {
            self.messages
                .push((char::from(m.tag), m.field(b'C'), m.field(b'M')));
        }
    }

    fn has(&self, tag: char) -> bool {
        self.messages.iter().any(|(t, _, _)| *t == tag)
    }

    /// The session ended with `08006` naming the target, its last message.
    fn assert_target_lost(&self) {
        let last = self.messages.last();
        assert!(
            matches!(last, Some(('E', Some(code), Some(msg)))
                if code == "08006" && msg.contains("target \"shop\"")),
            "expected 08006 naming the target as the last message: {self:?}"
        );
    }
}

/// Reads until the gateway closes the connection (or says nothing for 20 s).
fn drain(r: &mut Raw, got: &mut Received) {
    while let Some(m) = r.read() {
        got.take(&m);
    }
}

/// Reads until `rows` rows arrived (or something else ends the wait); returns them.
fn read_rows(r: &mut Raw, rows: usize) -> Received {
    let mut got = Received::default();
    while got.rows < rows {
        let m = r.read().expect("rows keep coming");
        got.take(&m);
        assert!(!got.has('E') && !got.has('Z'), "{got:?}");
    }
    got
}

/// A first statement on a fresh session answers with its row.
fn first_statement_works(d: &Dedicated) {
    let mut r = d.raw();
    let answer = r.query("select 'first-after-restart'");
    assert!(
        answer.iter().any(|m| m.tag == b'D') && !answer.iter().any(|m| m.tag == b'E'),
        "{:?}",
        answer
            .iter()
            .map(|m| (char::from(m.tag), m.field(b'M')))
            .collect::<Vec<_>>()
    );
}

/// Sessions whose recorded statements contain `needle`, with their events, newest
/// first; waits (up to 10 s) until at least one is listed as ended.
fn sessions_with(gw: &Airlock, needle: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<Value> = gw
            .sessions()
            .iter()
            .rev()
            .map(|s| gw.session(s["id"].as_str().unwrap()))
            .filter(|s| {
                s["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["statement"].as_str().is_some_and(|t| t.contains(needle)))
            })
            .collect();
        if found.iter().any(|s| s["ended_at"].is_string()) || Instant::now() >= deadline {
            assert!(!found.is_empty(), "no session recorded `{needle}`");
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every statement text recorded in the store, over all sessions.
fn recorded_statements(gw: &Airlock) -> HashSet<String> {
    let mut all = HashSet::new();
    for s in gw.sessions() {
        let full = gw.session(s["id"].as_str().unwrap());
        for e in full["events"].as_array().unwrap() {
            if let Some(t) = e["statement"].as_str() {
                all.insert(t.to_owned());
            }
        }
    }
    all
}

fn assert_audit_verifies(gw: &Airlock) {
    let out = gw.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// psql with `VERBOSITY=verbose` (errors carry their SQLSTATE) running `sql`, in the
/// background.
fn psql_bg(conn: &str, sql: &str) -> Child {
    Command::new("psql")
        .arg(conn)
        .args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
        ])
        .args(["-c", sql])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn psql")
}

// === 1. The target killed and restarted ===

/// A query running when the target is killed: the agent gets `08006` naming the target,
/// the session records its end; while the target is down sessions get `08001`; once it
/// is back, the server connections pooled before the kill (dead now) are never handed
/// out: each new session's first statement works.
#[test]
fn target_killed_mid_query_gives_08006_and_no_dead_pooled_connection_is_handed_out() {
    let d = Dedicated::new("kill_query");
    // Four sessions at once, ended cleanly: their server connections are pooled.
    let mut warm: Vec<Raw> = (0..4).map(|_| d.raw()).collect();
    for r in &mut warm {
        assert!(r.query("select 1").iter().any(|m| m.tag == b'C'));
    }
    for mut r in warm {
        r.send(&message(b'X', &[]));
    }
    assert!(
        wait_until(Duration::from_secs(10), || d.server_connections("idle")
            == 4),
        "the finished sessions' connections stay open"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        d.server_connections("idle"),
        4,
        "the finished sessions' connections are pooled"
    );

    let victim = psql_bg(&d.conn(), "select pg_sleep(60) /* victim */");
    d.wait_running("victim");
    d.pg.stop_immediate().unwrap();
    let (ok, _, stderr) = finish(victim);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("08006") && stderr.contains("the connection to target \"shop\" was lost"),
        "{stderr}"
    );

    // Down: new sessions are told the target cannot be reached.
    let down = psql(&d.conn(), &["select 1"]);
    assert!(
        !down.ok && down.stderr.contains("could not connect to target \"shop\""),
        "{down:?}"
    );

    d.pg.restart().unwrap();
    // The first sessions after the restart come with the pooled connections' startup
    // parameters (raw clients, like the four above): each works on its first statement.
    for _ in 0..4 {
        first_statement_works(&d);
    }
    let log = d.gw.log();
    assert!(
        log.contains("dropped a pooled server connection that was closed"),
        "the dead pooled connections were found and dropped: {log}"
    );
    let out = psql(&d.conn(), &["select count(*) from orders"]);
    assert!(out.ok && out.stdout.trim() == "100", "{out:?}");

    let s = &sessions_with(&d.gw, "victim")[0];
    assert_eq!(
        events_of(s, "disconnect")[0]["detail"]["reason"],
        "target_closed",
        "{s}"
    );
    assert!(s["ended_at"].is_string(), "{s}");
    assert_audit_verifies(&d.gw);
}

/// A large result streaming when the target is killed: the rows already relayed, then
/// `08006`, and no command tag.
#[test]
fn target_killed_while_a_large_result_streams_gives_08006() {
    let d = Dedicated::new("kill_stream");
    let mut r = d.raw();
    r.send(&message(
        b'Q',
        b"select g, repeat('x', 200) from generate_series(1, 20000000) g\0",
    ));
    let mut got = read_rows(&mut r, 2000);
    d.pg.stop_immediate().unwrap();
    drain(&mut r, &mut got);
    assert!(got.rows >= 2000);
    assert!(!got.has('C'), "the SELECT did not complete: {got:?}");
    got.assert_target_lost();

    d.pg.restart().unwrap();
    first_statement_works(&d);
    let s = &sessions_with(&d.gw, "generate_series(1, 20000000)")[0];
    assert_eq!(
        events_of(s, "disconnect")[0]["detail"]["reason"],
        "target_closed",
        "{s}"
    );
    assert_audit_verifies(&d.gw);
}

/// `COPY TO STDOUT` streaming when the target is killed: `08006` after the data.
#[test]
fn target_killed_during_copy_to_stdout_gives_08006() {
    let d = Dedicated::new("kill_copy_out");
    let mut r = d.raw();
    r.send(&message(
        b'Q',
        b"copy (select g, repeat('y', 200) from generate_series(1, 20000000) g) to stdout\0",
    ));
    let mut got = read_rows(&mut r, 2000);
    assert!(got.has('H'), "CopyOutResponse first: {got:?}");
    d.pg.stop_immediate().unwrap();
    drain(&mut r, &mut got);
    assert!(
        !got.has('c') && !got.has('C'),
        "the COPY did not end: {got:?}"
    );
    got.assert_target_lost();

    d.pg.restart().unwrap();
    first_statement_works(&d);
    let s = &sessions_with(&d.gw, "repeat('y', 200)")[0];
    assert_eq!(
        events_of(s, "disconnect")[0]["detail"]["reason"],
        "target_closed",
        "{s}"
    );
}

/// `COPY FROM STDIN` in progress (the client still sending rows) when the target is
/// killed: `08006`, and none of the rows is in the table after the restart.
#[test]
fn target_killed_during_copy_from_stdin_gives_08006_and_loads_nothing() {
    let d = Dedicated::new("kill_copy_in");
    let mut r = d.raw();
    r.send(&message(
        b'Q',
        b"copy orders(customer_id, total) from stdin /* copy-in-victim */\0",
    ));
    let ready = r.read().expect("CopyInResponse");
    assert_eq!(ready.tag, b'G', "{:?}", ready.field(b'M'));
    // The client streams rows without pause, in a thread of its own, until the
    // connection breaks.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut s = r.s.try_clone().unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut rows = String::new();
                for _ in 0..100 {
                    rows.push_str(&format!("1\t{}\n", 900_000 + n));
                    n += 1;
                }
                if s.write_all(&message(b'd', rows.as_bytes())).is_err() {
                    break;
                }
            }
            n
        })
    };
    d.wait_running("copy-in-victim");
    std::thread::sleep(Duration::from_millis(300));
    d.pg.stop_immediate().unwrap();
    let mut got = Received::default();
    drain(&mut r, &mut got);
    stop.store(true, Ordering::Relaxed);
    let sent = writer.join().unwrap();
    assert!(sent > 100, "rows were streaming: {sent}");
    got.assert_target_lost();

    d.pg.restart().unwrap();
    first_statement_works(&d);
    assert_eq!(
        d.direct("select count(*) from orders"),
        "100",
        "the interrupted COPY loaded nothing"
    );
    let s = &sessions_with(&d.gw, "copy-in-victim")[0];
    assert_eq!(
        events_of(s, "disconnect")[0]["detail"]["reason"],
        "target_closed",
        "{s}"
    );
}

/// A transaction open (BEGIN; INSERT) when the target is killed: the idle client is
/// told at once (`08006`), the insert is recorded, and after the restart it is not in
/// the table.
#[test]
fn target_killed_mid_transaction_tells_the_idle_client_and_commits_nothing() {
    let d = Dedicated::new("kill_tx");
    let mut r = d.raw();
    let begin = r.query("begin");
    assert!(begin.iter().any(|m| m.tag == b'Z' && m.body == b"T"));
    let insert = r.query("insert into orders(customer_id, total) values (1, 777001)");
    assert!(
        insert
            .iter()
            .any(|m| m.tag == b'C' && m.body.starts_with(b"INSERT 0 1")),
        "{insert:?}"
    );
    assert_eq!(d.server_connections("idle in transaction"), 1);
    d.pg.stop_immediate().unwrap();
    // Nothing sent: the gateway speaks first, then closes.
    let mut got = Received::default();
    drain(&mut r, &mut got);
    got.assert_target_lost();

    d.pg.restart().unwrap();
    first_statement_works(&d);
    assert_eq!(
        d.direct("select count(*) from orders where total = 777001"),
        "0",
        "the open transaction did not commit"
    );
    let s = &sessions_with(&d.gw, "values (1, 777001)")[0];
    assert_eq!(
        events_of(s, "query")
            .iter()
            .filter(|e| e["statement"]
                .as_str()
                .is_some_and(|t| t.contains("777001")))
            .count(),
        1,
        "{s}"
    );
    assert_eq!(
        events_of(s, "disconnect")[0]["detail"]["reason"],
        "target_closed",
        "{s}"
    );
    assert_audit_verifies(&d.gw);
}

// === 2. The store's disk full, or its file read-only ===

/// A tmpfs mounted on a folder for as long as it lives; unmounted lazily, since the
/// gateway may still hold files in it.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `None` where mounting is not possible (not root, no tmpfs).
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs {
            dir: dir.to_owned(),
        })
    }

    /// Fills it: a ballast file as large as the free space allows. Returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("ballast");
        let mut f = std::fs::File::create(&path).unwrap();
        for chunk in [64 * 1024, 512] {
            let zeros = vec![0u8; chunk];
            while f.write_all(&zeros).is_ok() {}
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Makes files immutable (`chattr +i`; root cannot write them either) while it lives.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    /// `None` where the file system has no immutable flag.
    fn set(files: Vec<PathBuf>) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .args(&files)
            .status()
            .is_ok_and(|s| s.success());
        let guard = Immutable(files);
        ok.then_some(guard)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

/// What a raw client's statement got: answered, refused with (SQLSTATE, message), or
/// the connection closed without a word.
#[derive(Debug)]
enum Outcome {
    Answered,
    Refused(String, String),
    Closed,
}

fn insert_total(r: &mut Raw, total: u64) -> Outcome {
    let answer = r.query(&format!(
        "insert into orders(customer_id, total) values (1, {total})"
    ));
    if let Some(e) = answer.iter().find(|m| m.tag == b'E') {
        return Outcome::Refused(
            e.field(b'C').unwrap_or_default(),
            e.field(b'M').unwrap_or_default(),
        );
    }
    if answer.iter().any(|m| m.tag == b'C') {
        Outcome::Answered
    } else {
        Outcome::Closed
    }
}

fn insert_text(total: u64) -> String {
    format!("insert into orders(customer_id, total) values (1, {total})")
}

/// Inserts one row after another on `r` until one is refused; returns the refusal
/// and the refused statement's value. Every answered value is pushed to `answered`.
fn insert_until_refused(
    r: &mut Raw,
    next: &mut u64,
    answered: &mut Vec<u64>,
) -> (String, String, u64) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let v = *next;
        *next += 1;
        match insert_total(r, v) {
            Outcome::Answered => answered.push(v),
            Outcome::Refused(code, msg) => return (code, msg, v),
            Outcome::Closed => panic!("closed without an error after {v}"),
        }
        assert!(
            Instant::now() < deadline,
            "statements were still answered after 180 s ({} of them)",
            answered.len()
        );
    }
}

/// The shared shape of the two store-failure tests: statements are answered, then
/// `break_store` breaks the store (dropping what it returns repairs it). A statement
/// is then refused with `58000` and the session ends (fail closed); the refused
/// statement either never reached the server, or it did because only its result could
/// not be recorded, and then it is recorded; new sessions are refused. Once repaired,
/// the gateway is expected to serve again by itself (asserted last). After a restart
/// every statement that ran is in the log and `audit verify` passes.
fn store_failure(
    prefix: &str,
    gw: &mut Airlock,
    break_store: impl FnOnce() -> Box<dyn std::any::Any>,
    db: &str,
) {
    let pg = Postgres::shared();
    gw.start().unwrap();
    let token = gw.token("agent", &["ai-agents"]);
    let mut r = Raw::ready(gw.port, "shop", &token);
    let mut answered = Vec::new();
    let mut next = 5_000_000u64;
    for _ in 0..20 {
        assert!(matches!(insert_total(&mut r, next), Outcome::Answered));
        answered.push(next);
        next += 1;
    }

    let broken = break_store();
    let (code, msg, refused) = insert_until_refused(&mut r, &mut next, &mut answered);
    assert_eq!(code, "58000", "{prefix}: {msg}");
    assert!(
        msg.contains("Airlock cannot record this session"),
        "{prefix}: {msg}"
    );
    assert!(r.closed(), "the session ends");
    // Either the refused statement never reached the server, or it did (its record was
    // durable; what failed was recording its result) and is among the recorded ones,
    // checked after the restart below.
    let on_server = || -> Vec<u64> {
        pg.superuser_sql(
            db,
            "select total from orders where total >= 5000000 and total < 6000000 order by total",
        )
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
    };
    let ran = on_server();
    let refused_ran = ran.contains(&refused);
    eprintln!(
        "{prefix}: {} statements answered, then refused: {msg} (the refused one ran: {refused_ran})",
        answered.len()
    );
    assert_eq!(
        ran.len(),
        answered.len() + usize::from(refused_ran),
        "{prefix}: every answered statement ran, nothing else but perhaps the refused one"
    );
    let refused_session = psql(&gw.conn("shop", &token), &["select 1"]);
    assert!(
        !refused_session.ok && refused_session.stderr.contains("record"),
        "new sessions are refused while the store is broken: {refused_session:?}"
    );

    // Repaired: the gateway should serve again without a restart.
    drop(broken);
    let recovered = wait_until(Duration::from_secs(30), || {
        psql(&gw.conn("shop", &token), &["select 1"]).ok
    });
    if recovered {
        let mut r = Raw::ready(gw.port, "shop", &token);
        for _ in 0..5 {
            assert!(matches!(insert_total(&mut r, next), Outcome::Answered));
            answered.push(next);
            next += 1;
        }
    }

    // Nothing answered is lost, and the chain is intact, across a restart.
    gw.stop();
    gw.start().unwrap();
    assert_audit_verifies(gw);
    let recorded = recorded_statements(gw);
    let ran = on_server();
    let unrecorded: Vec<&u64> = ran
        .iter()
        .filter(|v| !recorded.contains(&insert_text(**v)))
        .collect();
    assert!(
        unrecorded.is_empty(),
        "{prefix}: ran on the target but not recorded: {unrecorded:?}"
    );
    assert!(
        answered.iter().all(|v| ran.contains(v)),
        "{prefix}: every answered statement ran"
    );
    assert!(
        !refused_ran || recorded.contains(&insert_text(refused)),
        "{prefix}: the refused statement ran, so it must be recorded"
    );
    let log = gw.log();
    let failure: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("recorder") && !l.contains("connection refused"))
        .collect();
    assert!(
        recovered,
        "{prefix}: the gateway did not serve again within 30 s of the store being repaired (it needed a restart); recorder lines of its log:\n{}",
        failure.join("\n")
    );
}

/// The data directory on a small tmpfs, filled up while a session writes.
#[test]
fn a_full_store_disk_refuses_statements_keeps_what_was_recorded_and_recovers() {
    let pg = Postgres::shared();
    let db = pg.create_database("fault_full");
    let mut gw = AirlockBuilder::new(bin())
        .target("shop", pg, &db)
        .listener("allow_plaintext_loopback = true")
        .write();
    // Unmounted (lazily) before the gateway is dropped, which then removes its folder.
    let Some(disk) = Tmpfs::mount(&gw.dir.join("data"), "16m") else {
        eprintln!("cannot mount a tmpfs here (not root?); disk-full not exercised");
        return;
    };
    store_failure(
        "disk full",
        &mut gw,
        || {
            let ballast = disk.fill();
            Box::new(scopeguard(move || {
                let _ = std::fs::remove_file(&ballast);
            }))
        },
        &db,
    );
}

/// The SQLite store (`airlock.db` and its WAL) made immutable while a session writes:
/// root ignores permission bits, not the immutable flag.
#[test]
fn a_read_only_store_refuses_statements_keeps_what_was_recorded_and_recovers() {
    let pg = Postgres::shared();
    let db = pg.create_database("fault_ro");
    let mut gw = AirlockBuilder::new(bin())
        .target("shop", pg, &db)
        .listener("allow_plaintext_loopback = true")
        .write();
    let store = gw.store_path();
    store_failure(
        "read-only store",
        &mut gw,
        move || {
            let files = vec![store.clone(), store.with_extension("db-wal")];
            match Immutable::set(files) {
                Some(g) => Box::new(g),
                None => panic!("chattr +i is not supported on this file system"),
            }
        },
        &db,
    );
}

/// Runs `f` when dropped.
struct ScopeGuard<F: FnMut()>(F);

impl<F: FnMut()> Drop for ScopeGuard<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

fn scopeguard<F: FnMut()>(f: F) -> ScopeGuard<F> {
    ScopeGuard(f)
}

// === 3. The gateway killed (SIGKILL) ===

/// Several psycopg clients insert unique values in autocommit; the gateway is killed
/// mid-burst. After the restart `audit verify` passes and every row in the table (every
/// statement that reached the target) is among the recorded statements.
#[test]
fn gateway_killed_during_a_burst_of_writes_recorded_every_statement_that_ran() {
    let mut f = Fixture::new("kill_burst");
    let pg = Postgres::shared();
    pg.sql_as(
        "app",
        APP_PASSWORD,
        &f.db,
        "create table burst(v text primary key)",
    )
    .unwrap();
    let script = airlock_testkit::workspace_root().join("tests/clients/python/pg_client.py");
    let workers: Vec<Child> = (0..6)
        .map(|w| {
            Command::new(airlock_testkit::python())
                .arg(&script)
                .arg("insert_burst")
                .env("AIRLOCK_CONN", f.conn())
                .env("AIRLOCK_TAG", format!("w{w}"))
                .env("AIRLOCK_SECONDS", "60")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let count = || -> usize {
        pg.sql_as("app", APP_PASSWORD, &f.db, "select count(*) from burst")
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(60), || count() >= 300),
        "the burst did not get going: {} rows",
        count()
    );
    f.gw.signal("KILL");
    let mut acknowledged = Vec::new();
    for (w, child) in workers.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let r: Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap_or_else(|_| {
            panic!(
                "worker {w}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(r["error"].is_string(), "worker {w} was cut off: {r}");
        acknowledged.push(r["acknowledged"].as_u64().unwrap());
    }
    f.gw.start().unwrap();
    assert_audit_verifies(&f.gw);

    let rows: Vec<String> = pg
        .sql_as("app", APP_PASSWORD, &f.db, "select v from burst")
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let present: HashSet<&str> = rows.iter().map(String::as_str).collect();
    for (w, n) in acknowledged.iter().enumerate() {
        for i in 0..*n {
            assert!(present.contains(format!("w{w}-{i}").as_str()));
        }
    }
    let recorded = recorded_statements(&f.gw);
    eprintln!(
        "burst: {} rows in the table, {} acknowledged, {} statements recorded",
        rows.len(),
        acknowledged.iter().sum::<u64>(),
        recorded.len()
    );
    let unrecorded: Vec<&String> = rows
        .iter()
        .filter(|v| !recorded.contains(&format!("insert into burst values ('{v}')")))
        .collect();
    assert!(
        unrecorded.is_empty(),
        "{} of {} rows reached the target without a recorded statement: {:?}",
        unrecorded.len(),
        rows.len(),
        &unrecorded[..unrecorded.len().min(10)]
    );
}

const HOLD_DELETES: &str = r#"
@id("connect")
permit(principal in Group::"ai-agents", action == Action::"connect", resource == Target::"shop");
@id("agents-read")
permit(principal in Group::"ai-agents", action == Sql::Action::"select", resource in Target::"shop");
@id("delete-needs-dba")
@hold("dba")
@reason("deleting orders needs a DBA's approval")
permit(principal in Group::"ai-agents", action == Sql::Action::"delete", resource in Target::"shop");
"#;

fn pending_approvals(gw: &Airlock) -> Vec<Value> {
    let out = gw.cli_ok(&["approvals", "list", "--status", "pending", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["approvals"].as_array().cloned().unwrap_or_default()
}

/// The gateway killed while a DELETE waits for approval: after the restart the chain
/// verifies, the request is still pending, a DBA approves it, and the agent's retry
/// runs once.
#[test]
fn gateway_killed_during_a_held_statement_and_the_request_is_decided_after_restart() {
    let mut f = Fixture::with("kill_held", |b| {
        b.policy(Some(HOLD_DELETES))
            .target_extra("hold_timeout = \"60s\"")
    });
    let dba = f.gw.token("dana", &["dba"]);
    let sql = "delete from orders where id = 5";
    let held = psql_bg(&f.conn(), sql);
    let mut pending = Vec::new();
    assert!(wait_until(Duration::from_secs(20), || {
        pending = pending_approvals(&f.gw);
        pending.len() == 1
    }));
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    f.gw.signal("KILL");
    let (ok, _, stderr) = finish(held);
    assert!(!ok, "the held statement's client was cut off: {stderr}");
    let orders = || {
        Postgres::shared()
            .sql_as("app", APP_PASSWORD, &f.db, "select count(*) from orders")
            .unwrap()
    };
    assert_eq!(orders(), "100");

    f.gw.start().unwrap();
    assert_audit_verifies(&f.gw);
    let pending = pending_approvals(&f.gw);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["id"], id.as_str());
    let s = sessions_with(&f.gw, sql)
        .into_iter()
        .find(|s| {
            events_of(s, "query")
                .iter()
                .any(|e| e["decision"] == "hold")
        })
        .expect("the held statement is recorded");
    let steps: Vec<&str> = events_of(&s, "approval")
        .iter()
        .filter_map(|e| e["detail"]["step"].as_str())
        .collect();
    assert_eq!(steps.first(), Some(&"requested"), "{s}");
    assert!(s["ended_at"].is_string(), "closed at the restart: {s}");

    let out = f.gw.cli(&["approve", &id, "--token", &dba]);
    assert!(out.status.success(), "{out:?}");
    let retry = psql(&f.conn(), &[sql]);
    assert!(retry.ok, "{retry:?}");
    assert_eq!(retry.stdout.trim(), "DELETE 1");
    assert_eq!(orders(), "99");
    let used =
        f.gw.cli_ok(&["approvals", "list", "--status", "used", "--json"]);
    assert!(used.contains(&id), "{used}");
    assert_audit_verifies(&f.gw);
}

// === 4. A client that stops reading ===

/// A client asks for a 2 GB result and reads nothing: the gateway stops reading the
/// server (which waits in ClientWrite), its memory stays bounded, and other sessions'
/// statements are answered meanwhile.
#[test]
fn a_client_that_stops_reading_bounds_gateway_memory_and_stalls_no_one_else() {
    let f = Fixture::with("stuck", |b| b.listener("allow_plaintext_loopback = true"));
    let pg = Postgres::shared();
    // Warm up (TLS, catalog, pool) before the baseline.
    assert!(psql(&f.conn(), &["select count(*) from orders"]).ok);
    let before = f.gw.rss_kib();
    let mut stuck = Raw::ready(f.gw.port, "shop", &f.token);
    stuck.send(&message(
        b'Q',
        b"select repeat('x', 1000) /* stuck-reader */ from generate_series(1, 2000000)\0",
    ));
    let blocked = wait_until(Duration::from_secs(60), || {
        pg.superuser_sql(
            "postgres",
            "select count(*) from pg_stat_activity where query like '%stuck-reader%' and wait_event = 'ClientWrite' and pid <> pg_backend_pid()",
        )
        .unwrap()
            == "1"
    });
    assert!(blocked, "the server never waited for the gateway to read");

    let mut peak = f.gw.rss_kib();
    for i in 0..5 {
        let conn = f.conn();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(psql(&conn, &["select count(*) from orders"]));
        });
        // Generous: this is "not stalled", not a latency bound.
        let out = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("session {i} stalled behind the stuck one"));
        assert!(out.ok && out.stdout.trim() == "100", "{out:?}");
        peak = peak.max(f.gw.rss_kib());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Still stuck, still waiting on the gateway: nothing was read ahead without bound.
    assert_eq!(
        pg.superuser_sql(
            "postgres",
            "select wait_event from pg_stat_activity where query like '%stuck-reader%' and pid <> pg_backend_pid()",
        )
        .unwrap(),
        "ClientWrite"
    );
    peak = peak.max(f.gw.rss_kib());
    eprintln!("stuck reader: gateway RSS {before} KiB before, {peak} KiB at most while stuck");
    assert!(
        peak < before + 64 * 1024,
        "gateway RSS grew from {before} KiB to {peak} KiB with a 2 GB result unread"
    );
    drop(stuck);
    assert!(psql(&f.conn(), &["select 1"]).ok);
}
