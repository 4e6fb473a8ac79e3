//! Recording in isolation: the CPU work per event (chain hash, journal encoding), a
//! whole durable round (submit, journal append + fdatasync, acknowledgement) for one
//! statement and for a group of concurrent ones, and a plain read's record written by
//! its caller (`read_durability = "written"`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use airlock_model::{EventKind, Timestamp};
use airlock_recorder::{
    ChainKey, GENESIS_HASH, NewEvent, ReadDurability, Record, Recorder, chain_hash,
};
use airlock_store::{ChainedEvent, SqliteStore, Store, StoreOp};
use airlock_vault::Secret;
use criterion::{Criterion, criterion_group, criterion_main};

fn event() -> ChainedEvent {
    ChainedEvent {
        id: 123_456,
        session_id: "01a21606-8021-70d6-b927-1a9d108b5c6d".into(),
        seq: 42,
        at: "2026-11-26T04:04:14.498963Z".into(),
        kind: "query".into(),
        statement: Some("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;".into()),
        decision: Some("allow".into()),
        detail: r#"{"actions":[{"kind":"select","object":"public.pgbench_accounts"}],"policies":["agents-read-only"],"policy_version":"3f2a"}"#.into(),
        prev_hash: GENESIS_HASH.into(),
        hash: String::new(),
    }
}

fn new_event(session: &str) -> Record {
    Record::Event(NewEvent {
        session_id: session.into(),
        at: Timestamp::now(),
        kind: EventKind::Query,
        statement: Some("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;".into()),
        decision: Some("allow"),
        detail: serde_json::json!({ "actions": [{ "kind": "select" }] }),
    })
}

/// A recorder on a fresh store and journal in a temporary folder (returned, to delete).
fn start(
    rt: &tokio::runtime::Runtime,
    name: &str,
    reads: ReadDurability,
) -> (Recorder, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("airlock-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (recorder, _done) = rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in(&dir).await.unwrap());
        Recorder::start(
            store,
            Secret::new("k".repeat(32)),
            &dir.join("journal"),
            0,
            reads,
        )
        .await
        .unwrap()
    });
    (recorder, dir)
}

fn bench(c: &mut Criterion) {
    let e = event();
    c.bench_function("record/chain_hash", |b| {
        b.iter(|| {
            black_box(chain_hash(
                b"an audit key of 32 bytes........",
                black_box(&e),
            ))
        })
    });
    let key = ChainKey::new(b"an audit key of 32 bytes........").expect("any key length");
    c.bench_function("record/chain_hash_keyed", |b| {
        b.iter(|| black_box(key.hash(black_box(&e))))
    });
    let op = StoreOp::Event(e.clone());
    c.bench_function("record/journal_line", |b| {
        let mut buf = Vec::with_capacity(1024);
        b.iter(|| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&op)).unwrap();
            black_box(buf.len())
        })
    });

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (recorder, dir) = start(&rt, "record", ReadDurability::Synced);
    c.bench_function("record/durable_round_1_statement", |b| {
        b.iter(|| rt.block_on(recorder.record(vec![new_event("s1")])).unwrap())
    });
    c.bench_function("record/durable_round_8_concurrent_statements", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut tasks = Vec::new();
                for i in 0..8 {
                    let r = recorder.clone();
                    tasks.push(tokio::spawn(async move {
                        r.record(vec![new_event(&format!("s{i}"))]).await
                    }));
                }
                for t in tasks {
                    t.await.unwrap().unwrap();
                }
            })
        })
    });
    drop(recorder);
    let _ = std::fs::remove_dir_all(&dir);

    // A plain read's record with `read_durability = "written"`: written by the caller,
    // synced later by the writer thread.
    let (recorder, dir) = start(
        &rt,
        "read",
        ReadDurability::Written {
            sync_within: std::time::Duration::from_millis(10),
        },
    );
    c.bench_function("record/read_written_1_statement", |b| {
        b.iter(|| {
            rt.block_on(async { recorder.submit_read(vec![new_event("s1")]).await?.await })
                .unwrap()
        })
    });
    drop(recorder);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
