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
        "update events set statement = replace(statement, 'customers', 'customerz') where statement like '%customers%'",
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
    sqlite(&db, "delete from events where id = 3");
    let (ok, text) = verify(&f);
    assert!(!ok && text.contains("event 3 is missing"), "{text}");
    restore();

    // Two events swapped (ids kept, contents exchanged).
    sqlite(
        &db,
        "update events set id = -1 where id = 2; update events set id = 2 where id = 3; update events set id = 3 where id = -1;",
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
        "delete from events where session_id = (select id from sessions order by started_at desc limit 1)",
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
    let journal = f.gw.store_path().with_file_name("journal");
    let left: Vec<_> = std::fs::read_dir(&journal).unwrap().collect();
    assert_eq!(left.len(), 1, "replayed segments are deleted: {left:?}");
}
