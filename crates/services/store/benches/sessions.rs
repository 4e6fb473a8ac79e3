//! The console's session list on a store with 100,000 sessions: the first page, a page
//! deep in the list (keyset: after a given id), filtered by principal, by outcome, and
//! by a time range. Each page is 51 rows (50 shown, one to know there are more), newest
//! first, as `/sessions` asks for them.
//!
//! `cargo bench -p airlock-store --bench sessions`. The store is built once per run in
//! a temporary directory (about 20 s): 100,000 sessions of 20 principals on 5 targets,
//! each with a connect, a statement and a result, one in 7 with a denial and one in 11
//! with masking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use airlock_model::{SessionMarks, SessionSummary, Timestamp};
use airlock_store::{ChainedEvent, EncodedBatch, SessionFilter, SqliteStore, Store, StoreOp};
use criterion::{Criterion, criterion_group, criterion_main};

const SESSIONS: usize = 100_000;

fn event(
    id: i64,
    session: &str,
    seq: i64,
    kind: &str,
    decision: Option<&str>,
    detail: &str,
) -> StoreOp {
    StoreOp::Event(ChainedEvent {
        id,
        session_id: session.into(),
        seq,
        at: Timestamp::now().to_string(),
        kind: kind.into(),
        statement: (kind == "query").then(|| "select * from customers where id = $1".into()),
        decision: decision.map(str::to_owned),
        detail: detail.into(),
        prev_hash: "0".repeat(64),
        hash: "0".repeat(64),
    })
}

fn build(store: &SqliteStore) -> Vec<String> {
    let start = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
    let mut log = store.event_log().unwrap();
    let mut ids = Vec::with_capacity(SESSIONS);
    let mut next = 1i64;
    for chunk in 0..SESSIONS / 1000 {
        let mut ops = Vec::with_capacity(5000);
        for i in chunk * 1000..(chunk + 1) * 1000 {
            let id = format!("{i:012}");
            ops.push(StoreOp::StartSession(SessionSummary {
                id: id.clone(),
                principal: Some(format!("agent-{}", i % 20)),
                target: format!("target-{}", i % 5),
                protocol: if i % 3 == 0 { "http" } else { "postgres" }.into(),
                client_addr: "127.0.0.1:40000".into(),
                started_at: start.plus(std::time::Duration::from_secs(i as u64 * 30)),
                ended_at: None,
                marks: SessionMarks::default(),
            }));
            let decision = if i % 7 == 0 { "deny" } else { "allow" };
            let result = if i % 11 == 0 {
                r#"{"tag":"SELECT 1","rows":1,"masked":{"pii":{"email":1}}}"#
            } else {
                r#"{"tag":"SELECT 1","rows":1}"#
            };
            ops.push(event(next, &id, 1, "connect", None, r#"{"principal":"a"}"#));
            ops.push(event(next + 1, &id, 2, "query", Some(decision), "{}"));
            ops.push(event(next + 2, &id, 3, "result", None, result));
            ops.push(StoreOp::EndSession {
                id: id.clone(),
                at: start,
            });
            next += 3;
            ids.push(id);
        }
        log.apply(&[EncodedBatch::encode(ops).unwrap()]).unwrap();
    }
    ids
}

fn sessions(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = std::env::temp_dir().join(format!("airlock-bench-sessions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = rt.block_on(SqliteStore::open_in(&dir)).unwrap();
    let ids = build(&store);
    let page = |f: SessionFilter| SessionFilter {
        limit: Some(51),
        newest_first: true,
        ..f
    };
    let cases = [
        ("first page", page(SessionFilter::default())),
        (
            "page 1000 (keyset)",
            page(SessionFilter {
                before: Some(ids[SESSIONS - 50_000].clone()),
                ..SessionFilter::default()
            }),
        ),
        (
            "last page (keyset)",
            page(SessionFilter {
                before: Some(ids[40].clone()),
                ..SessionFilter::default()
            }),
        ),
        (
            "principal",
            page(SessionFilter {
                principal: Some("agent-7".into()),
                ..SessionFilter::default()
            }),
        ),
        (
            "principal, deep",
            page(SessionFilter {
                principal: Some("agent-7".into()),
                before: Some(ids[20_007].clone()),
                ..SessionFilter::default()
            }),
        ),
        (
            "outcome denied",
            page(SessionFilter {
                marks: SessionMarks {
                    denied: true,
                    ..SessionMarks::default()
                },
                ..SessionFilter::default()
            }),
        ),
        (
            "outcome denied + masked",
            page(SessionFilter {
                marks: SessionMarks {
                    denied: true,
                    masked: true,
                    ..SessionMarks::default()
                },
                ..SessionFilter::default()
            }),
        ),
        (
            "time range (one day)",
            page(SessionFilter {
                since: Some(Timestamp::parse("2026-01-10T00:00:00Z").unwrap()),
                until: Some(Timestamp::parse("2026-01-11T00:00:00Z").unwrap()),
                ..SessionFilter::default()
            }),
        ),
    ];
    let mut group = c.benchmark_group("console sessions list, 100k sessions");
    for (name, filter) in cases {
        let n = rt.block_on(store.list_sessions(&filter)).unwrap().len();
        assert!(n > 0, "{name}: no rows");
        group.bench_function(name, |b| {
            b.iter(|| rt.block_on(store.list_sessions(&filter)).unwrap())
        });
    }
    group.bench_function("one session's events", |b| {
        b.iter(|| {
            rt.block_on(store.session_events(&ids[SESSIONS / 2]))
                .unwrap()
        })
    });
    group.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, sessions);
criterion_main!(benches);
