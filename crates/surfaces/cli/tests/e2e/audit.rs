//! `audit verify` finds edited, deleted and reordered events, and names them.

use std::process::Command;

use airlock_testkit::psql;

use crate::Fixture;

/// Runs Python's sqlite3 on the store (no sqlite3 CLI needed).
fn sqlite(db: &std::path::Path, script: &str) {
    let code = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nc.executescript(sys.argv[2])\nc.commit()\nc.execute('pragma wal_checkpoint(truncate)')\n".to_string();
    let st = Command::new("python3")
        .arg("-c")
        .arg(code)
        .arg(db)
        .arg(script)
        .status()
        .unwrap();
    assert!(st.success());
}

fn verify(f: &Fixture) -> (bool, String) {
    let out = f.gw.cli(&["audit", "verify"]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn audit_verify_detects_and_names_edits_deletions_and_reordering() {
    let mut f = Fixture::new("audit");
    psql(
        &f.conn(),
        &[
            "select name from customers order by id",
            "select count(*) from orders",
        ],
    );
    psql(&f.conn(), &["select 42"]);
    f.gw.stop();
    let db = f.gw.store_path();
    sqlite(&db, "select 1");
    let (ok, text) = verify(&f);
    assert!(ok, "untouched store: {text}");
    assert!(text.starts_with("ok: "), "{text}");
    sqlite(&db, "select 1");
    let pristine = std::fs::read(&db).unwrap();
    let restore = || {
        for ext in ["db-wal", "db-shm"] {
            let _ = std::fs::remove_file(db.with_extension(ext));
        }
        std::fs::write(&db, &pristine).unwrap();
    };

    // An edited statement.
    sqlite(
        &db,
        "update event_blocks set events = replace(events, 'customers', 'customerz') where events like '%customers%'",
    );
    let (ok, text) = verify(&f);
    assert!(!ok);
    assert!(text.contains("was edited"), "{text}");
    let id: i64 = text
        .split("event ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(id > 1);
    restore();

    // A deleted event in the middle.
    sqlite(
        &db,
        "update event_blocks set events = (select json_group_array(json(value)) from json_each(event_blocks.events) where json_extract(value, '$.id') != 3) where first_id <= 3 and last_id >= 3",
    );
    let (ok, text) = verify(&f);
    assert!(!ok && text.contains("event 3 is missing"), "{text}");
    restore();

    // Two events swapped (ids kept, contents exchanged).
    sqlite(
        &db,
        "update event_blocks set events = (select json_group_array(case json_extract(value, '$.id') when 2 then json_set(value, '$.id', 3) when 3 then json_set(value, '$.id', 2) else json(value) end) from json_each(event_blocks.events)) where first_id <= 3 and last_id >= 2",
    );
    let (ok, text) = verify(&f);
    assert!(
        !ok && (text.contains("does not follow") || text.contains("was edited")),
        "{text}"
    );
    restore();

    // A whole session's events removed.
    sqlite(
        &db,
        "delete from event_blocks where session_id = (select id from sessions order by started_at desc limit 1)",
    );
    let (ok, text) = verify(&f);
    assert!(!ok && text.contains("has no recorded events"), "{text}");
    restore();

    // A session row rewritten to blame someone else.
    sqlite(&db, "update sessions set principal = 'someone-else'");
    let (ok, text) = verify(&f);
    assert!(!ok && text.contains("`principal` differs"), "{text}");
    restore();

    // JSON output after restoring.
    let out = f.gw.cli_ok(&["audit", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["events"].as_u64().unwrap() >= 8);
}

/// "Recorded before forwarded" across a crash: statements answered just before the
/// gateway is killed (SIGKILL, no chance to flush anything) are in the store after the
/// restart, replayed from the recorder's journal, and the chain still verifies.
#[test]
fn statements_answered_before_a_crash_are_recorded_after_the_restart() {
    let mut f = Fixture::with("crash", |b| b.listener("allow_plaintext_loopback = true"));
    let mut r = crate::raw::Raw::ready(f.gw.port, "shop", &f.token);
    let markers: Vec<String> = (0..20)
        .map(|i| format!("select 'crash-marker-{i}'"))
        .collect();
    for m in &markers {
        let answer = r.query(m);
        assert!(answer.iter().any(|m| m.tag == b'C'), "{m} ran");
    }
    // Killed right after the last answer: the ingest thread has likely not stored it yet.
    f.gw.signal("KILL");
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(r);
    let before = f.gw.cli(&["audit", "verify"]);
    assert!(
        String::from_utf8_lossy(&before.stderr).contains("not yet in the store"),
        "audit verify says the journal is not replayed yet: {}",
        String::from_utf8_lossy(&before.stderr)
    );
    f.gw.start().unwrap();
    assert!(
        f.gw.log().contains("replaying the recorder journal"),
        "{}",
        f.gw.log()
    );
    let session = f.gw.last_session_of("agent", "shop");
    let recorded: Vec<&str> = session["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["statement"].as_str())
        .collect();
    for m in &markers {
        assert!(
            recorded.contains(&m.as_str()),
            "{m} missing from {recorded:?}"
        );
    }
    assert!(
        session["ended_at"].is_string(),
        "the session cut by the crash is closed: {session}"
    );
    let out = f.gw.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("not yet in the store"),
        "a running gateway's journal is not reported"
    );
    let journal = f.gw.store_path().with_file_name("journal");
    let left: Vec<_> = std::fs::read_dir(&journal).unwrap().collect();
    assert_eq!(left.len(), 1, "replayed segments are deleted: {left:?}");
}

/// `[audit] read_durability = "synced"`: the same crash test passes, the gateway says
/// at start which durability it runs with, and the default says "written".
#[test]
fn reads_can_be_synced_before_they_are_answered() {
    let mut f = Fixture::with("synced", |b| {
        b.listener("allow_plaintext_loopback = true")
            .extra("[audit]\nread_durability = \"synced\"\nsync_interval = \"50ms\"\n")
    });
    assert!(
        f.gw.log()
            .contains("recording: every record is synced before its statement runs"),
        "{}",
        f.gw.log()
    );
    let mut r = crate::raw::Raw::ready(f.gw.port, "shop", &f.token);
    for i in 0..5 {
        let answer = r.query(&format!("select 'synced-marker-{i}'"));
        assert!(answer.iter().any(|m| m.tag == b'C'));
    }
    f.gw.signal("KILL");
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(r);
    f.gw.start().unwrap();
    let session = f.gw.last_session_of("agent", "shop");
    let recorded = session["events"].to_string();
    for i in 0..5 {
        assert!(
            recorded.contains(&format!("synced-marker-{i}")),
            "{recorded}"
        );
    }

    let written = Fixture::with("written", |b| b);
    assert!(
        written
            .gw
            .log()
            .contains("recording: reads are answered once their record is written"),
        "{}",
        written.gw.log()
    );
}

/// Makes the journal's files immutable (`chattr +i`) for as long as it lives.
struct FrozenJournal(Vec<std::path::PathBuf>);

impl FrozenJournal {
    /// `None` where the file system has no immutable flag (tmpfs...).
    fn freeze(dir: &std::path::Path) -> Option<FrozenJournal> {
        let files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let ok = Command::new("chattr")
            .arg("+i")
            .args(&files)
            .status()
            .is_ok_and(|s| s.success());
        let frozen = FrozenJournal(files);
        ok.then_some(frozen)
    }
}

impl Drop for FrozenJournal {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

/// Fail closed: when the journal cannot be written, a read sent to the server is not
/// answered, the session ends with 58000, and no further session is served.
#[test]
fn when_recording_fails_no_answer_reaches_the_agent_and_nothing_more_is_served() {
    let f = Fixture::with("recfail", |b| b.listener("allow_plaintext_loopback = true"));
    let mut r = crate::raw::Raw::ready(f.gw.port, "shop", &f.token);
    assert!(r.query("select 1").iter().any(|m| m.tag == b'D'));
    let journal = f.gw.store_path().with_file_name("journal");
    let Some(_frozen) = FrozenJournal::freeze(&journal) else {
        eprintln!("chattr +i is not supported here; recorder failure not exercised");
        return;
    };
    let answer = r.query("select 'must-not-arrive'");
    assert!(
        !answer.iter().any(|m| m.tag == b'D'),
        "a row reached the agent although its record failed: {answer:?}"
    );
    let error = answer
        .iter()
        .find(|m| m.tag == b'E')
        .expect("an error is sent");
    assert_eq!(error.field(b'C').as_deref(), Some("58000"), "{error:?}");
    assert!(r.closed(), "the session ends");
    let next = psql(&f.conn(), &["select 1"]);
    assert!(!next.ok, "a new session is not served: {}", next.stdout);
    assert!(next.stderr.contains("record"), "{}", next.stderr);
    // The failure is logged once; the writer does not retry (and log) in a loop, which
    // once wrote 500 MB of log in 10 s to a disk that may already be the problem.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let log = f.gw.log();
    let failures = log.matches("recorder write failed").count();
    assert_eq!(failures, 1, "logged once ({} bytes of log)", log.len());
}

/// Inside a transaction block a data change is sent while its record syncs (its
/// command tag may even come back): when the record cannot be written, COMMIT is never
/// forwarded, the session ends with 58000, and the server rolls the change back.
#[test]
fn when_recording_fails_inside_a_transaction_the_change_is_rolled_back() {
    let f = Fixture::with("recfail_tx", |b| {
        b.listener("allow_plaintext_loopback = true")
    });
    let mut r = crate::raw::Raw::ready(f.gw.port, "shop", &f.token);
    r.query("begin");
    assert!(
        r.query("update orders set total = 31337 where id = 1")
            .iter()
            .any(|m| m.tag == b'C')
    );
    let journal = f.gw.store_path().with_file_name("journal");
    let Some(frozen) = FrozenJournal::freeze(&journal) else {
        eprintln!("chattr +i is not supported here; recorder failure not exercised");
        return;
    };
    // The update's command tag may come back (it carries no data); the failure shows
    // at the latest when the transaction tries to commit.
    let mut seen = r.query("update orders set total = 424242 where id = 2");
    seen.extend(r.query("commit"));
    let error = seen
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("an error is sent: {seen:?}"));
    assert_eq!(error.field(b'C').as_deref(), Some("58000"), "{error:?}");
    assert!(
        !seen
            .iter()
            .any(|m| m.tag == b'C' && m.body.starts_with(b"COMMIT")),
        "{seen:?}"
    );
    assert!(r.closed(), "the session ends");
    drop(frozen);
    let pg = airlock_testkit::Postgres::shared();
    let total = pg
        .superuser_sql(
            &f.db,
            "select count(*) from orders where total in (31337, 424242)",
        )
        .unwrap();
    assert_eq!(total.trim(), "0", "the open transaction was rolled back");
}
