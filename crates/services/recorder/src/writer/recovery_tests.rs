//! The recorder failing for real and recovering by itself: its journal's file made
//! immutable (`chattr +i`, which stops root too), its journal's disk full (a small
//! tmpfs), the store's files made immutable. Skipped, with a note, where the machine
//! cannot do that (not root, no immutable flag).

use std::process::{Command, Stdio};
use std::sync::OnceLock;

use airlock_model::{EventKind, SessionSummary, Timestamp};
use airlock_store::SqliteStore;

use super::*;
use crate::{NewEvent, verify_chain};

const KEY: &str = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";

/// Everything logged (at info and above) by every test of this binary, from any
/// thread: the recorder logs from its own threads. Tests tell their lines apart by
/// their folder, which the causes name.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        // Another test binary's subscriber cannot be here: one per process.
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
}

/// The lines logged so far that contain `needle`.
fn lines_with(needle: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

struct Running {
    recorder: Recorder,
    done: oneshot::Receiver<()>,
    store: Arc<dyn Store>,
    dir: PathBuf,
    journal: PathBuf,
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "airlock-recovery-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn start(dir: &Path, reads: ReadDurability) -> Running {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(dir).await.unwrap());
    let journal = dir.join("journal");
    let (recorder, done) =
        Recorder::start(store.clone(), Secret::new(KEY.into()), &journal, 0, reads)
            .await
            .unwrap();
    Running {
        recorder,
        done,
        store,
        dir: dir.to_owned(),
        journal,
    }
}

impl Running {
    /// Stops the recorder (everything queued is stored) and checks the chain and that
    /// session `s` holds exactly `statements`, numbered 1, 2, ... in order.
    async fn stop_and_check(self, s: &str, statements: &[String]) {
        drop(self.recorder);
        tokio::time::timeout(Duration::from_secs(30), self.done)
            .await
            .expect("the recorder stops")
            .unwrap();
        let report = verify_chain(self.store.as_ref(), KEY.as_bytes())
            .await
            .unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        let events = self.store.session_events(s).await.unwrap();
        let got: Vec<&str> = events
            .iter()
            .map(|e| e.statement.as_deref().unwrap_or(e.kind.as_str()))
            .collect();
        let want: Vec<&str> = std::iter::once("connect")
            .chain(statements.iter().map(String::as_str))
            .chain(["disconnect"])
            .collect();
        assert_eq!(got, want);
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=want.len() as i64).collect::<Vec<_>>());
        let ended = self.store.get_session(s).await.unwrap().unwrap();
        assert!(ended.ended_at.is_some(), "its end was recorded");
        let left: Vec<_> = std::fs::read_dir(&self.journal)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".jsonl"))
            .collect();
        assert!(
            left.is_empty(),
            "every segment was stored, then deleted: {left:?}"
        );
        // Kept when a check above failed, to look at.
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Waits (up to 10 s) until the recorder takes records again.
    async fn wait_recovered(&self) -> Duration {
        let started = Instant::now();
        while self.recorder.check().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no recovery within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }
}

fn session_start(s: &str) -> Vec<Record> {
    let summary = SessionSummary {
        id: s.into(),
        principal: Some("agent".into()),
        target: "shop".into(),
        protocol: "postgres".into(),
        client_addr: "127.0.0.1:5000".into(),
        started_at: Timestamp::now(),
        ended_at: None,
        marks: airlock_model::SessionMarks::default(),
    };
    vec![
        Record::StartSession(summary),
        Record::Event(NewEvent {
            session_id: s.into(),
            at: Timestamp::now(),
            kind: EventKind::Connect,
            statement: None,
            decision: None,
            detail: serde_json::json!({
                "principal": "agent",
                "target": "shop",
                "client_addr": "127.0.0.1:5000",
            }),
        }),
    ]
}

fn query(s: &str, statement: &str) -> Record {
    Record::Event(NewEvent {
        session_id: s.into(),
        at: Timestamp::now(),
        kind: EventKind::Query,
        statement: Some(statement.into()),
        decision: Some("allow"),
        detail: serde_json::json!({}),
    })
}

fn session_end(s: &str) -> Vec<Record> {
    vec![
        Record::Event(NewEvent {
            session_id: s.into(),
            at: Timestamp::now(),
            kind: EventKind::Disconnect,
            statement: None,
            decision: None,
            detail: serde_json::json!({ "reason": "recorder_failed" }),
        }),
        Record::EndSession {
            id: s.into(),
            at: Timestamp::now(),
        },
    ]
}

/// Files made immutable for as long as it lives.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    /// `None` where the immutable flag cannot be set.
    fn set(files: Vec<PathBuf>) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .args(&files)
            .stderr(Stdio::null())
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

/// A tmpfs mounted on a folder for as long as it lives.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` where mounting is not possible (not root).
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the disk is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in [64 * 1024, 512] {
        let zeros = vec![0u8; chunk];
        while f.write_all(&zeros).is_ok() {}
    }
}

#[tokio::test]
async fn a_journal_that_cannot_be_written_refuses_everything_then_recovers_by_itself() {
    logs();
    let dir = temp_dir("frozen");
    let r = start(
        &dir,
        ReadDurability::Written {
            sync_within: Duration::from_millis(5),
        },
    )
    .await;
    let s = "s-frozen";
    r.recorder.record(session_start(s)).await.unwrap();
    let mut recorded = Vec::new();
    for i in 0..3 {
        let q = format!("select {i}");
        r.recorder.record(vec![query(s, &q)]).await.unwrap();
        recorded.push(q);
    }
    let segments: Vec<PathBuf> = std::fs::read_dir(&r.journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let Some(frozen) = Immutable::set(segments) else {
        eprintln!("chattr +i is not supported here; journal failure not exercised");
        return;
    };
    // A read written by its session itself, then a statement through the writer
    // thread (which retries a few times): both refused, and so is what follows.
    let refused = r.recorder.submit_read(vec![query(s, "refused read")]).await;
    assert!(
        matches!(refused, Err(RecorderError::Unavailable(_))),
        "{:?}",
        refused.err()
    );
    let refused = r.recorder.record(vec![query(s, "refused write")]).await;
    assert!(matches!(refused, Err(RecorderError::Unavailable(_))));
    assert!(
        r.recorder
            .record_later(vec![query(s, "refused")])
            .await
            .is_err()
    );
    assert!(r.recorder.record(session_start("s-new")).await.is_err());
    // Probed about once a second, and still failing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(r.recorder.check().is_err(), "still refusing while frozen");
    // A session ending meanwhile: its end is kept and written once recovered.
    r.recorder.record_soon(session_end(s)).await.unwrap();

    drop(frozen);
    let took = r.wait_recovered().await;
    assert!(took <= Duration::from_secs(5), "recovered after {took:?}");
    // The end was written first; the chain continues after it.
    let t = "s-after";
    r.recorder.record(session_start(t)).await.unwrap();
    r.recorder
        .submit_read(vec![query(t, "a read after recovery")])
        .await
        .unwrap()
        .await
        .unwrap();
    r.recorder.record_soon(session_end(t)).await.unwrap();
    // Logged once as it broke, with the cause, and once as it recovered, with how long
    // it was out: not once per refusal, nor once per probe.
    let ours = lines_with(&dir.display().to_string());
    let failed: Vec<_> = ours
        .iter()
        .filter(|l| l.contains("recorder write failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{ours:#?}");
    assert!(
        failed[0].contains("ERROR") && failed[0].contains("Operation not permitted"),
        "{ours:#?}"
    );
    let recovered: Vec<_> = ours
        .iter()
        .filter(|l| l.contains("recorder recovered"))
        .collect();
    assert_eq!(recovered.len(), 1, "{ours:#?}");
    assert!(recovered[0].contains("out_for="), "{ours:#?}");
    assert_eq!(ours.len(), 2, "nothing else names the cause: {ours:#?}");
    r.stop_and_check(s, &recorded).await;
}

#[tokio::test]
async fn a_full_journal_disk_refuses_everything_then_recovers_once_space_returns() {
    let dir = temp_dir("full");
    let Some(_disk) = Tmpfs::mount(&dir.join("journal"), "3m") else {
        eprintln!("cannot mount a tmpfs here (not root?); disk-full not exercised");
        return;
    };
    let r = start(&dir, ReadDurability::Synced).await;
    let s = "s-full";
    // The first write preallocates the segment's first MiB; then the disk fills up.
    r.recorder.record(session_start(s)).await.unwrap();
    let ballast = r.journal.join("ballast");
    fill(&ballast);
    let mut recorded = Vec::new();
    let long = "x".repeat(16 * 1024);
    let refused_at = loop {
        let q = format!("select '{}' /* {} */", long, recorded.len());
        match r.recorder.record(vec![query(s, &q)]).await {
            Ok(_) => recorded.push(q),
            Err(e) => break e,
        }
        assert!(recorded.len() < 200, "the disk never filled up");
    };
    assert!(
        refused_at.to_string().contains("No space left"),
        "{refused_at}"
    );
    assert!(!recorded.is_empty(), "the preallocated MiB took records");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        r.recorder.record(vec![query(s, "refused")]).await.is_err(),
        "still refusing while the disk is full"
    );

    std::fs::remove_file(&ballast).unwrap();
    r.wait_recovered().await;
    for i in 0..3 {
        let q = format!("select 'after {i}'");
        r.recorder.record(vec![query(s, &q)]).await.unwrap();
        recorded.push(q);
    }
    r.recorder.record_soon(session_end(s)).await.unwrap();
    r.stop_and_check(s, &recorded).await;
}

#[tokio::test]
async fn a_store_that_cannot_be_written_refuses_everything_then_recovers_by_itself() {
    let dir = temp_dir("store");
    let r = start(
        &dir,
        ReadDurability::Written {
            sync_within: Duration::from_millis(5),
        },
    )
    .await;
    let s = "s-store";
    r.recorder.record(session_start(s)).await.unwrap();
    let mut recorded = Vec::new();
    r.recorder
        .record(vec![query(s, "select 'stored'")])
        .await
        .unwrap();
    recorded.push("select 'stored'".to_owned());
    // Until the ingest thread has stored that, and the WAL file exists.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let db = dir.join("airlock.db");
    let files = vec![db.clone(), db.with_extension("db-wal")];
    let Some(frozen) = Immutable::set(files) else {
        eprintln!("chattr +i is not supported here; store failure not exercised");
        return;
    };
    // Records keep reaching the journal until the ingest thread finds that the store
    // refuses them (at once for a session's start).
    r.recorder.record(session_start("s-prompt")).await.unwrap();
    let started = Instant::now();
    loop {
        let q = format!("select {}", recorded.len());
        match r.recorder.record(vec![query(s, &q)]).await {
            Ok(_) => recorded.push(q),
            Err(RecorderError::Unavailable(_)) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(r.recorder.check().is_err(), "still refusing while frozen");

    drop(frozen);
    r.wait_recovered().await;
    r.recorder
        .submit_read(vec![query(s, "select 'after'")])
        .await
        .unwrap()
        .await
        .unwrap();
    recorded.push("select 'after'".to_owned());
    r.recorder.record_soon(session_end(s)).await.unwrap();
    r.recorder
        .record_soon(session_end("s-prompt"))
        .await
        .unwrap();
    r.stop_and_check(s, &recorded).await;
}
