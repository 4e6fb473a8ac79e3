//! One suite for every backend of [`Store`]: each `case_*` function runs on a fresh
//! SQLite store (`sqlite::`) and on a fresh PostgreSQL database (`postgres::`, on the
//! test cluster of `airlock-testkit`, which fails the test loudly if it cannot start).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use airlock_model::{
    Approval, ApprovalStatus, Principal, PrincipalSource, SessionMarks, SessionSummary, Timestamp,
};
use airlock_store::{
    ChainedEvent, ConsoleFlow, ConsoleSignin, EncodedBatch, McpToolPin, PgStore, SessionFilter,
    SqliteStore, Store, StoreError, StoreOp, StoredSecret, TokenRecord, chains,
};

// ---------------------------------------------------------------------------------
// Backends

/// The test cluster's application role (`airlock_testkit` exports only its password).
const APP_USER: &str = "app";

/// A fresh SQLite store in its own temporary folder.
async fn sqlite_store() -> Box<dyn Store> {
    let dir = std::env::temp_dir().join(format!(
        "airlock-store-suite-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    Box::new(SqliteStore::open_in(&dir).await.unwrap())
}

/// A fresh PostgreSQL database on the shared test cluster, as the `app` role.
async fn pg_store() -> Box<dyn Store> {
    let (port, db) = tokio::task::spawn_blocking(|| {
        let pg = airlock_testkit::Postgres::shared();
        (pg.port, pg.create_database("airlock_store"))
    })
    .await
    .unwrap();
    let url = format!("postgres://{}@127.0.0.1:{port}/{db}", APP_USER);
    Box::new(
        PgStore::connect(&url, Some(airlock_testkit::APP_PASSWORD))
            .await
            .unwrap(),
    )
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store = super::sqlite_store().await;
                    super::$case(&*store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let store = super::pg_store().await;
                    super::$case(&*store).await;
                }
            )*
        }
    };
}

suite!(
    case_tokens_round_trip_and_duplicates_are_refused,
    case_tokens_are_listed_by_name_and_touched,
    case_sessions_list_oldest_first_and_limit_keeps_the_newest,
    case_sessions_are_filtered_by_target_principal_protocol_and_time,
    case_sessions_are_marked_by_their_events_and_paged_newest_first_by_key,
    case_batches_are_stored_whole_and_in_order_around_session_changes,
    case_events_after_pages_through_interleaved_sessions_in_id_order,
    case_events_after_skips_missing_events,
    case_the_chain_head_is_the_highest_id,
    case_settings_are_set_once,
    case_a_replayed_journal_is_stored_once,
    case_a_batch_across_several_calls_and_segments,
    case_an_approval_is_decided_once_and_used_once,
    case_requests_expire_and_cannot_be_decided_after,
    case_secrets_are_replaced_listed_deleted_and_resealed,
    case_mcp_tool_pins_hold_until_a_change_is_accepted,
    case_console_signins_are_found_until_they_expire_or_are_deleted,
    case_a_console_flow_is_taken_once,
);

// ---------------------------------------------------------------------------------
// Helpers

/// Stores `ops` as the recorder's ingest thread does: one batch, off the runtime.
async fn apply(store: &dyn Store, ops: &[StoreOp]) {
    apply_batches(store, vec![ops.to_vec()]).await;
}

/// Stores several batches in one call.
async fn apply_batches(store: &dyn Store, batches: Vec<Vec<StoreOp>>) {
    let batches: Vec<EncodedBatch> = batches
        .into_iter()
        .map(|ops| EncodedBatch::encode(ops).unwrap())
        .collect();
    let mut log = store.event_log().unwrap();
    tokio::task::spawn_blocking(move || log.apply(&batches))
        .await
        .unwrap()
        .unwrap();
}

fn session_at(id: &str, principal: &str, target: &str, started_at: Timestamp) -> StoreOp {
    StoreOp::StartSession(SessionSummary {
        id: id.into(),
        principal: Some(principal.into()),
        target: target.into(),
        protocol: "postgres".into(),
        client_addr: "127.0.0.1:1".into(),
        started_at,
        ended_at: None,
        marks: SessionMarks::default(),
    })
}

/// A session of principal `p` on `shop` starting now.
fn session_started(id: &str) -> StoreOp {
    session_at(id, "p", "shop", Timestamp::now())
}

fn token(name: &str, hash: &str) -> TokenRecord {
    TokenRecord {
        name: name.into(),
        token_hash: hash.into(),
        groups: vec!["ai-agents".into()],
        created_at: Timestamp::now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

fn marked_event(
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
        statement: None,
        decision: decision.map(str::to_owned),
        detail: detail.into(),
        prev_hash: String::new(),
        hash: String::new(),
    })
}

fn chained(id: i64, session: &str, seq: i64) -> ChainedEvent {
    ChainedEvent {
        id,
        session_id: session.into(),
        seq,
        at: format!("2026-11-27T00:00:00.{id:06}Z"),
        kind: if id % 2 == 0 { "result" } else { "query" }.into(),
        statement: (id % 2 == 1).then(|| format!("select {id}")),
        decision: None,
        detail: format!("{{\"n\":{id}}}"),
        prev_hash: format!("h{}", id - 1),
        hash: format!("h{id}"),
    }
}

fn ids(sessions: Vec<SessionSummary>) -> Vec<String> {
    sessions.into_iter().map(|s| s.id).collect()
}

fn events_of(ops: &[StoreOp]) -> Vec<ChainedEvent> {
    ops.iter()
        .filter_map(|op| match op {
            StoreOp::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Tokens

async fn case_tokens_round_trip_and_duplicates_are_refused(store: &dyn Store) {
    store.insert_token(&token("a", "h1")).await.unwrap();
    let err = store.insert_token(&token("a", "h2")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate { what: "token", ref name } if name == "a"),
        "{err}"
    );
    // The same token under another name is refused too (its hash is unique).
    let err = store.insert_token(&token("b", "h1")).await.unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err}");
    let found = store.find_token_by_hash("h1").await.unwrap().unwrap();
    assert_eq!(found.name, "a");
    assert_eq!(found.groups, vec!["ai-agents".to_string()]);
    assert_eq!(found.revoked_at, None);
    assert!(store.find_token_by_hash("h2").await.unwrap().is_none());
    let first = Timestamp::now();
    assert!(store.revoke_token("a", first).await.unwrap());
    assert!(!store.revoke_token("nope", Timestamp::now()).await.unwrap());
    // Revoking again is found, and keeps the first revocation time.
    let later = first.plus(Duration::from_secs(60));
    assert!(store.revoke_token("a", later).await.unwrap());
    let found = store.find_token_by_hash("h1").await.unwrap().unwrap();
    assert_eq!(found.revoked_at, Some(first));
}

async fn case_tokens_are_listed_by_name_and_touched(store: &dyn Store) {
    let mut expiring = token("b-token", "hb");
    let expiry = Timestamp::now().plus(Duration::from_secs(3600));
    expiring.expires_at = Some(expiry);
    expiring.groups = vec!["x".into(), "y, z".into()];
    store.insert_token(&expiring).await.unwrap();
    store.insert_token(&token("a-token", "ha")).await.unwrap();
    store.insert_token(&token("B-token", "hB")).await.unwrap();
    let names: Vec<String> = store
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    // Byte order, as SQLite sorts text: upper case first.
    assert_eq!(names, ["B-token", "a-token", "b-token"]);
    let at = Timestamp::now();
    store.touch_token("b-token", at).await.unwrap();
    store.touch_token("nope", at).await.unwrap();
    let b = store.find_token_by_hash("hb").await.unwrap().unwrap();
    assert_eq!(b.last_used_at, Some(at));
    assert_eq!(b.expires_at, Some(expiry));
    assert_eq!(b.groups, expiring.groups);
    assert_eq!(b.created_at, expiring.created_at);
}

// ---------------------------------------------------------------------------------
// Sessions

async fn case_sessions_list_oldest_first_and_limit_keeps_the_newest(store: &dyn Store) {
    let mut ops = Vec::new();
    for i in 0..3 {
        ops.push(session_started(&format!("s{i}")));
    }
    apply(store, &ops).await;
    let all = store
        .list_sessions(&SessionFilter::default())
        .await
        .unwrap();
    assert_eq!(ids(all), ["s0", "s1", "s2"]);
    let last = store
        .list_sessions(&SessionFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(last), ["s1", "s2"]);
    let newest = store
        .list_sessions(&SessionFilter {
            limit: Some(2),
            newest_first: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(newest), ["s2", "s1"]);
    let s1 = store.get_session("s1").await.unwrap().unwrap();
    assert_eq!(s1.principal.as_deref(), Some("p"));
    assert_eq!(s1.target, "shop");
    assert_eq!(s1.client_addr, "127.0.0.1:1");
    assert_eq!(s1.ended_at, None);
    assert!(s1.marks.is_empty());
    assert!(store.get_session("nope").await.unwrap().is_none());
    // An ended session stays as it ended; the others are closed now.
    let ended = Timestamp::now();
    apply(
        store,
        &[StoreOp::EndSession {
            id: "s0".into(),
            at: ended,
        }],
    )
    .await;
    // s2 is recorded by the gateway of chain 1: another replica's, still open.
    apply(
        store,
        &[
            StoreOp::Event(chained(1, "s1", 1)),
            StoreOp::Event(chained(chains::first_id(1), "s2", 1)),
        ],
    )
    .await;
    let closed = ended.plus(Duration::from_secs(5));
    assert_eq!(store.close_dangling_sessions(0, closed).await.unwrap(), 1);
    assert_eq!(store.close_dangling_sessions(0, closed).await.unwrap(), 0);
    let s2 = store.get_session("s2").await.unwrap().unwrap();
    assert_eq!(s2.ended_at, None, "another chain's session stays open");
    assert_eq!(store.close_dangling_sessions(1, closed).await.unwrap(), 1);
    let s0 = store.get_session("s0").await.unwrap().unwrap();
    assert_eq!(s0.ended_at, Some(ended));
    let s2 = store.get_session("s2").await.unwrap().unwrap();
    assert_eq!(s2.ended_at, Some(closed));
}

async fn case_sessions_are_filtered_by_target_principal_protocol_and_time(store: &dyn Store) {
    let t0 = Timestamp::parse("2026-12-01T10:00:00.000000Z").unwrap();
    let at = |s: u64| t0.plus(Duration::from_secs(s));
    let mut ops = vec![
        session_at("a", "alice", "shop", at(0)),
        session_at("b", "bob", "shop", at(10)),
        session_at("c", "alice", "crm", at(20)),
    ];
    // Same start time as `c`: ordered by id.
    ops.push(session_at("d", "bob", "crm", at(20)));
    let StoreOp::StartSession(mut anonymous) = session_at("e", "x", "shop", at(30)) else {
        unreachable!()
    };
    anonymous.principal = None;
    anonymous.protocol = "http".into();
    ops.push(StoreOp::StartSession(anonymous));
    apply(store, &ops).await;
    let list = |f: SessionFilter| async move { ids(store.list_sessions(&f).await.unwrap()) };
    assert_eq!(
        list(SessionFilter::default()).await,
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(
        list(SessionFilter {
            newest_first: true,
            ..Default::default()
        })
        .await,
        ["e", "d", "c", "b", "a"]
    );
    assert_eq!(
        list(SessionFilter {
            target: Some("shop".into()),
            ..Default::default()
        })
        .await,
        ["a", "b", "e"]
    );
    assert_eq!(
        list(SessionFilter {
            principal: Some("alice".into()),
            ..Default::default()
        })
        .await,
        ["a", "c"]
    );
    assert_eq!(
        list(SessionFilter {
            principal: Some("bob".into()),
            target: Some("crm".into()),
            ..Default::default()
        })
        .await,
        ["d"]
    );
    assert_eq!(
        list(SessionFilter {
            protocol: Some("http".into()),
            ..Default::default()
        })
        .await,
        ["e"]
    );
    let e = store.get_session("e").await.unwrap().unwrap();
    assert_eq!(e.principal, None);
    // since is inclusive, until exclusive.
    assert_eq!(
        list(SessionFilter {
            since: Some(at(10)),
            until: Some(at(30)),
            ..Default::default()
        })
        .await,
        ["b", "c", "d"]
    );
    // Keyset pages over equal start times, and within a filter.
    assert_eq!(
        list(SessionFilter {
            before: Some("d".into()),
            newest_first: true,
            ..Default::default()
        })
        .await,
        ["c", "b", "a"]
    );
    assert_eq!(
        list(SessionFilter {
            before: Some("d".into()),
            target: Some("crm".into()),
            ..Default::default()
        })
        .await,
        ["c"]
    );
    assert!(
        list(SessionFilter {
            before: Some("unknown".into()),
            ..Default::default()
        })
        .await
        .is_empty(),
        "a page after an unknown session is empty"
    );
    assert_eq!(
        list(SessionFilter {
            limit: Some(-1),
            ..Default::default()
        })
        .await
        .len(),
        5,
        "a negative limit is no limit"
    );
    assert!(
        list(SessionFilter {
            limit: Some(0),
            ..Default::default()
        })
        .await
        .is_empty()
    );
}

async fn case_sessions_are_marked_by_their_events_and_paged_newest_first_by_key(store: &dyn Store) {
    let mut ops = Vec::new();
    for i in 0..7 {
        ops.push(session_started(&format!("s{i}")));
    }
    ops.push(marked_event(1, "s1", 1, "query", Some("deny"), "{}"));
    ops.push(marked_event(
        2,
        "s2",
        1,
        "result",
        None,
        r#"{"masked":{"pii":{"email":1}}}"#,
    ));
    ops.push(marked_event(
        3,
        "s3",
        1,
        "approval",
        None,
        r#"{"step":"requested"}"#,
    ));
    apply(store, &ops).await;
    // Later batches: a new mark on a marked session, an error at its end.
    apply(
        store,
        &[
            marked_event(4, "s2", 2, "query", Some("deny"), "{}"),
            marked_event(
                5,
                "s4",
                1,
                "disconnect",
                None,
                r#"{"reason":"target_closed","error":true}"#,
            ),
            StoreOp::EndSession {
                id: "s4".into(),
                at: Timestamp::now(),
            },
        ],
    )
    .await;
    let with = |marks: SessionMarks| SessionFilter {
        marks,
        newest_first: true,
        ..Default::default()
    };
    let denied = SessionMarks {
        denied: true,
        ..Default::default()
    };
    assert_eq!(
        ids(store.list_sessions(&with(denied)).await.unwrap()),
        ["s2", "s1"]
    );
    let both = SessionMarks {
        denied: true,
        masked: true,
        ..Default::default()
    };
    assert_eq!(ids(store.list_sessions(&with(both)).await.unwrap()), ["s2"]);
    let held = SessionMarks {
        held: true,
        ..Default::default()
    };
    assert_eq!(ids(store.list_sessions(&with(held)).await.unwrap()), ["s3"]);
    let error = SessionMarks {
        error: true,
        ..Default::default()
    };
    assert_eq!(
        ids(store.list_sessions(&with(error)).await.unwrap()),
        ["s4"]
    );
    let s2 = store.get_session("s2").await.unwrap().unwrap();
    assert!(s2.marks.denied && s2.marks.masked && !s2.marks.held && !s2.marks.error);
    // Marks are never cleared by later, unmarked events.
    apply(
        store,
        &[marked_event(6, "s2", 3, "query", Some("allow"), "{}")],
    )
    .await;
    assert_eq!(
        store.get_session("s2").await.unwrap().unwrap().marks,
        s2.marks
    );
    // Pages of 3, newest first, each after the last id of the one before.
    let page = |before: Option<String>| SessionFilter {
        before,
        limit: Some(3),
        newest_first: true,
        ..Default::default()
    };
    let first = ids(store.list_sessions(&page(None)).await.unwrap());
    assert_eq!(first, ["s6", "s5", "s4"]);
    let second = ids(store.list_sessions(&page(Some("s4".into()))).await.unwrap());
    assert_eq!(second, ["s3", "s2", "s1"]);
    let third = ids(store.list_sessions(&page(Some("s1".into()))).await.unwrap());
    assert_eq!(third, ["s0"]);
    let protocol = SessionFilter {
        protocol: Some("http".into()),
        ..Default::default()
    };
    assert!(store.list_sessions(&protocol).await.unwrap().is_empty());
    let future = SessionFilter {
        since: Some(Timestamp::now().plus(Duration::from_secs(60))),
        ..Default::default()
    };
    assert!(store.list_sessions(&future).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------
// Events

async fn case_batches_are_stored_whole_and_in_order_around_session_changes(store: &dyn Store) {
    // 70 events in one batch, with a session starting and one ending in between
    // (what a busy ingest batch looks like), with text that must come back byte for
    // byte (the chain's hashes are over it).
    let event = |id: i64| {
        StoreOp::Event(ChainedEvent {
            id,
            session_id: if id <= 40 { "a".into() } else { "b".into() },
            seq: if id <= 40 { id } else { id - 40 },
            at: format!("2026-11-26T00:00:00.{id:06}Z"),
            kind: "query".into(),
            statement: (id % 2 == 0).then(|| format!("select 'it''s é \u{1}\n' -- {id}")),
            decision: (id % 3 == 0).then(|| "allow".to_string()),
            detail: format!("{{\"n\": {id}, \"q\":\"\\\"\\u00e9\", \"k\" : [1,  2]}}"),
            prev_hash: format!("p{id}"),
            hash: format!("h{id}"),
        })
    };
    let mut ops = vec![session_started("a")];
    ops.extend((1..=40).map(event));
    ops.push(session_started("b"));
    ops.push(StoreOp::EndSession {
        id: "a".into(),
        at: Timestamp::now(),
    });
    ops.extend((41..=70).map(event));
    assert_eq!(store.chain_head(0).await.unwrap(), None);
    assert!(store.events_after(0, 10).await.unwrap().is_empty());
    apply(store, &ops).await;
    let expected = events_of(&ops);
    assert_eq!(store.events_after(0, 1000).await.unwrap(), expected);
    assert_eq!(store.chain_head(0).await.unwrap().as_ref(), expected.last());
    assert_eq!(
        store.session_events("a").await.unwrap(),
        expected[..40].to_vec()
    );
    assert_eq!(
        store.session_events("b").await.unwrap(),
        expected[40..].to_vec()
    );
    assert!(store.session_events("nope").await.unwrap().is_empty());
    assert!(store.events_after(0, 0).await.unwrap().is_empty());
    let sessions = store
        .list_sessions(&SessionFilter::default())
        .await
        .unwrap();
    assert!(sessions.iter().any(|s| s.id == "a" && s.ended_at.is_some()));
    assert!(sessions.iter().any(|s| s.id == "b" && s.ended_at.is_none()));
}

/// Events of three sessions interleaved over two ingest batches, with the ids in
/// `gap` missing: the whole chain, in id order.
async fn interleaved(
    store: &dyn Store,
    gap: Option<std::ops::RangeInclusive<i64>>,
) -> Vec<ChainedEvent> {
    let sessions = ["a", "b", "c"];
    let mut seqs = [0i64; 3];
    let mut all = Vec::new();
    let mut batches = Vec::new();
    let mut ops: Vec<StoreOp> = sessions.iter().map(|s| session_started(s)).collect();
    for id in 1..=9000i64 {
        // Uneven interleaving: session a is the busiest.
        let which = match id % 7 {
            0..=3 => 0,
            4..=5 => 1,
            _ => 2,
        };
        seqs[which] += 1;
        if gap.as_ref().is_some_and(|g| g.contains(&id)) {
            continue;
        }
        let e = chained(id, sessions[which], seqs[which]);
        all.push(e.clone());
        ops.push(StoreOp::Event(e));
        if id == 5000 {
            batches.push(std::mem::take(&mut ops));
        }
    }
    batches.push(ops);
    for batch in batches {
        apply(store, &batch).await;
    }
    all
}

async fn case_events_after_pages_through_interleaved_sessions_in_id_order(store: &dyn Store) {
    let all = interleaved(store, None).await;
    for (after, limit) in [
        (0, 1),
        (0, 7),
        (3, 5000),
        (4999, 3),
        (5000, 2),
        (8990, 100),
        (9000, 5),
    ] {
        let got = store.events_after(after, limit).await.unwrap();
        let want: Vec<_> = all
            .iter()
            .filter(|e| e.id > after)
            .take(limit as usize)
            .cloned()
            .collect();
        assert_eq!(got, want, "after {after}, limit {limit}");
    }
    // Walking the chain page by page meets every event once.
    let mut walked = Vec::new();
    let mut last = 0;
    loop {
        let page = store.events_after(last, 1234).await.unwrap();
        let Some(e) = page.last() else { break };
        last = e.id;
        walked.extend(page);
    }
    assert_eq!(walked, all);
    assert_eq!(store.chain_head(0).await.unwrap().as_ref(), all.last());
    let b = store.session_events("b").await.unwrap();
    let want_b: Vec<_> = all
        .iter()
        .filter(|e| e.session_id == "b")
        .cloned()
        .collect();
    assert_eq!(b, want_b);
    assert!(b.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

async fn case_events_after_skips_missing_events(store: &dyn Store) {
    // More missing than a page: the page still holds the next events after the gap.
    let all = interleaved(store, Some(100..=3000)).await;
    let got = store.events_after(50, 100).await.unwrap();
    let got: Vec<i64> = got.iter().map(|e| e.id).collect();
    let want: Vec<i64> = (51..=99).chain(3001..=3051).collect();
    assert_eq!(got, want);
    assert_eq!(all.len(), 9000 - 2901);
}

async fn case_the_chain_head_is_the_highest_id(store: &dyn Store) {
    // Session a's events start first but it holds the highest id.
    let ops = vec![
        session_started("a"),
        session_started("b"),
        StoreOp::Event(chained(1, "a", 1)),
        StoreOp::Event(chained(2, "b", 1)),
        StoreOp::Event(chained(3, "a", 2)),
    ];
    assert_eq!(store.chain_head(0).await.unwrap(), None);
    apply(store, &ops).await;
    assert_eq!(store.chain_head(0).await.unwrap().map(|e| e.id), Some(3));
    // Each chain has its own head: another gateway's events do not move this one's.
    let (c1, c2) = (chains::first_id(1), chains::first_id(2));
    apply(
        store,
        &[
            StoreOp::Event(chained(c2, "b", 2)),
            StoreOp::Event(chained(c1, "a", 3)),
            StoreOp::Event(chained(c1 + 1, "a", 4)),
        ],
    )
    .await;
    assert_eq!(store.chain_head(0).await.unwrap().map(|e| e.id), Some(3));
    assert_eq!(
        store.chain_head(1).await.unwrap().map(|e| e.id),
        Some(c1 + 1)
    );
    assert_eq!(store.chain_head(2).await.unwrap().map(|e| e.id), Some(c2));
    assert_eq!(store.chain_head(3).await.unwrap(), None);
    let all: Vec<i64> = store
        .events_after(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(all, [1, 2, 3, c1, c1 + 1, c2], "one chain after the other");
    // Session events come in their order within the session.
    let a: Vec<i64> = store
        .session_events("a")
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(a, [1, 2, 3, 4]);
}

async fn case_settings_are_set_once(store: &dyn Store) {
    assert_eq!(store.setting("audit_key_check").await.unwrap(), None);
    assert_eq!(
        store.init_setting("audit_key_check", "k1").await.unwrap(),
        "k1"
    );
    // A second gateway's value does not replace the first one's: it learns it.
    assert_eq!(
        store.init_setting("audit_key_check", "k2").await.unwrap(),
        "k1"
    );
    assert_eq!(
        store.setting("audit_key_check").await.unwrap().as_deref(),
        Some("k1")
    );
}

async fn case_a_replayed_journal_is_stored_once(store: &dyn Store) {
    // After a crash the recorder applies its journal again from the start of the
    // segment: sessions already stored must not fail the batch.
    let first_end = Timestamp::now();
    let mut ops = vec![session_started("r")];
    ops.extend((1..=3).map(|id| StoreOp::Event(chained(id, "r", id))));
    ops.push(StoreOp::EndSession {
        id: "r".into(),
        at: first_end,
    });
    apply(store, &ops).await;
    // The replay: the session start again, only the events after the stored chain (the
    // recorder filters them by position), and the end again, later.
    let mut replay = vec![ops[0].clone()];
    replay.push(StoreOp::Event(chained(4, "r", 4)));
    replay.push(StoreOp::EndSession {
        id: "r".into(),
        at: first_end.plus(Duration::from_secs(9)),
    });
    apply(store, &replay).await;
    let ids: Vec<i64> = store
        .session_events("r")
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    let r = store.get_session("r").await.unwrap().unwrap();
    assert_eq!(r.ended_at, Some(first_end), "the first end is kept");
    assert_eq!(
        store
            .list_sessions(&SessionFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn case_a_batch_across_several_calls_and_segments(store: &dyn Store) {
    // Several batches in one call, a session ended in the call after it started, and
    // the segment bookkeeping (which has no reader in the trait: it must just work).
    let mut log = store.event_log().unwrap();
    let batches = vec![
        EncodedBatch::encode(vec![
            session_started("x"),
            StoreOp::Event(chained(1, "x", 1)),
        ])
        .unwrap(),
        EncodedBatch::encode(vec![
            StoreOp::Event(chained(2, "x", 2)),
            marked_event(3, "x", 3, "refused", None, "{}"),
        ])
        .unwrap(),
    ];
    let end = Timestamp::now();
    let later = EncodedBatch::encode(vec![StoreOp::EndSession {
        id: "x".into(),
        at: end,
    }])
    .unwrap();
    tokio::task::spawn_blocking(move || {
        log.apply(&batches)?;
        log.make_durable(1)?;
        log.apply(&[])?;
        log.apply(&[later])?;
        log.make_durable(2)?;
        log.make_durable(2)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(store.events_after(0, 10).await.unwrap().len(), 3);
    let x = store.get_session("x").await.unwrap().unwrap();
    assert_eq!(x.ended_at, Some(end));
    assert!(x.marks.denied);
}

// ---------------------------------------------------------------------------------
// Approvals

fn approval(id: &str, now: Timestamp) -> Approval {
    Approval {
        id: id.into(),
        status: ApprovalStatus::Pending,
        session_id: "s1".into(),
        principal: "agent".into(),
        target: "shop".into(),
        protocol: "postgres".into(),
        statement: "DELETE FROM orders WHERE id = 7".into(),
        params: serde_json::json!([]),
        digest: "d1".into(),
        policy_version: "v1".into(),
        policies: vec!["delete-needs-dba".into()],
        approver_group: "dba".into(),
        reason: "delete needs approval".into(),
        created_at: now,
        expires_at: now.plus(Duration::from_secs(3600)),
        decided_by: None,
        decided_at: None,
        comment: None,
        used_at: None,
        used_in_session: None,
    }
}

async fn case_an_approval_is_decided_once_and_used_once(s: &dyn Store) {
    let now = Timestamp::now();
    let mut a1 = approval("a1", now);
    a1.params = serde_json::json!(["x", 1, null]);
    s.insert_approval(&a1).await.unwrap();
    assert_eq!(s.get_approval("a1").await.unwrap(), Some(a1.clone()));
    assert!(s.get_approval("nope").await.unwrap().is_none());
    let open = s
        .open_approval_for("agent", "shop", "d1", "v1", now)
        .await
        .unwrap();
    assert_eq!(open.map(|a| a.id), Some("a1".into()));
    // A newer request for the same statement is the one found.
    s.insert_approval(&approval("a2", now)).await.unwrap();
    let open = s
        .open_approval_for("agent", "shop", "d1", "v1", now)
        .await
        .unwrap();
    assert_eq!(open.map(|a| a.id), Some("a2".into()));
    s.decide_approval("a2", false, "dana", None, now)
        .await
        .unwrap();
    // Other policy version, other principal: not this approval.
    assert!(
        s.open_approval_for("agent", "shop", "d1", "v2", now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.open_approval_for("other", "shop", "d1", "v1", now)
            .await
            .unwrap()
            .is_none()
    );
    // Not approved yet: cannot be used.
    assert!(!s.use_approval("a1", "s2", now).await.unwrap());
    let (a, won) = s
        .decide_approval("a1", true, "dana", Some("ok"), now)
        .await
        .unwrap()
        .unwrap();
    assert!(won);
    assert_eq!(a.status, ApprovalStatus::Approved);
    assert_eq!(a.decided_by.as_deref(), Some("dana"));
    assert_eq!(a.decided_at, Some(now));
    // Approved and unused: still open.
    let open = s
        .open_approval_for("agent", "shop", "d1", "v1", now)
        .await
        .unwrap();
    assert_eq!(open.map(|a| a.id), Some("a1".into()));
    // A second decision loses and changes nothing.
    let (a, won) = s
        .decide_approval("a1", false, "eve", Some("no"), now)
        .await
        .unwrap()
        .unwrap();
    assert!(!won);
    assert_eq!(a.status, ApprovalStatus::Approved);
    assert_eq!(a.comment.as_deref(), Some("ok"));
    assert!(s.use_approval("a1", "s2", now).await.unwrap());
    assert!(
        !s.use_approval("a1", "s3", now).await.unwrap(),
        "used twice"
    );
    let a = s.get_approval("a1").await.unwrap().unwrap();
    assert_eq!(a.status, ApprovalStatus::Used);
    assert_eq!(a.used_in_session.as_deref(), Some("s2"));
    assert_eq!(a.used_at, Some(now));
    assert!(
        s.open_approval_for("agent", "shop", "d1", "v1", now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.decide_approval("nope", true, "dana", None, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!s.use_approval("nope", "s2", now).await.unwrap());
}

async fn case_requests_expire_and_cannot_be_decided_after(s: &dyn Store) {
    let then = Timestamp::now();
    let mut a = approval("a2", then);
    a.expires_at = then.plus(Duration::from_secs(1));
    s.insert_approval(&a).await.unwrap();
    let mut b = approval("a3", then);
    b.principal = "someone-else".into();
    b.approver_group = "ops".into();
    s.insert_approval(&b).await.unwrap();
    let mut c = approval("a4", then);
    c.expires_at = then.plus(Duration::from_secs(1));
    s.insert_approval(&c).await.unwrap();
    s.decide_approval("a4", true, "dana", None, then)
        .await
        .unwrap();
    let later = then.plus(Duration::from_secs(2));
    assert!(
        s.open_approval_for("agent", "shop", "d1", "v1", later)
            .await
            .unwrap()
            .is_none(),
        "expired requests are not open"
    );
    let (a, won) = s
        .decide_approval("a2", true, "dana", None, later)
        .await
        .unwrap()
        .unwrap();
    assert!(!won, "decided after expiry");
    assert_eq!(a.status, ApprovalStatus::Pending);
    assert!(
        !s.use_approval("a4", "s9", later).await.unwrap(),
        "used after expiry"
    );
    let expired = s.expire_approvals(later).await.unwrap();
    assert_eq!(
        expired.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["a2", "a4"]
    );
    assert!(expired.iter().all(|a| a.status == ApprovalStatus::Expired));
    assert!(s.expire_approvals(later).await.unwrap().is_empty());
    let pending = s
        .list_approvals(Some(ApprovalStatus::Pending), None, 10)
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["a3"]
    );
    // Newest (highest id) first, up to the limit.
    let all = s.list_approvals(None, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["a4", "a3", "a2"]
    );
    assert_eq!(s.list_approvals(None, None, 2).await.unwrap().len(), 2);
    assert_eq!(s.list_approvals(None, None, -1).await.unwrap().len(), 3);
    let dba = vec!["dba".to_owned()];
    let ops = vec!["ops".to_owned()];
    let both = vec!["ops".to_owned(), "dba".to_owned()];
    let visible = |who: &'static str, groups: Vec<String>| async move {
        s.list_approvals(None, Some((who, &groups)), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(visible("nobody", dba.clone()).await, ["a4", "a2"]);
    assert_eq!(visible("nobody", ops.clone()).await, ["a3"]);
    assert_eq!(visible("nobody", both).await, ["a4", "a3", "a2"]);
    assert_eq!(visible("agent", ops).await, ["a4", "a3", "a2"]);
    assert_eq!(visible("someone-else", vec![]).await, ["a3"]);
    assert!(visible("nobody", vec![]).await.is_empty());
    let expired_for_dba = s
        .list_approvals(Some(ApprovalStatus::Expired), Some(("nobody", &dba)), 10)
        .await
        .unwrap();
    assert_eq!(expired_for_dba.len(), 2);
}

// ---------------------------------------------------------------------------------
// Secrets

fn secret(name: &str, nonce: &str, at: Timestamp) -> StoredSecret {
    StoredSecret {
        name: name.into(),
        nonce: nonce.into(),
        ciphertext: format!("c-{nonce}"),
        created_at: at,
        updated_at: at,
    }
}

async fn case_secrets_are_replaced_listed_deleted_and_resealed(s: &dyn Store) {
    assert!(s.list_secrets().await.unwrap().is_empty());
    assert_eq!(s.key_check().await.unwrap(), None);
    let t0 = Timestamp::now();
    let t1 = t0.plus(Duration::from_secs(10));
    s.put_secret(&secret("db", "n1", t0)).await.unwrap();
    s.put_secret(&secret("api", "n2", t0)).await.unwrap();
    // Replacing keeps the first creation time.
    s.put_secret(&secret("db", "n3", t1)).await.unwrap();
    let all = s.list_secrets().await.unwrap();
    assert_eq!(
        all,
        [
            secret("api", "n2", t0),
            StoredSecret {
                created_at: t0,
                ..secret("db", "n3", t1)
            }
        ]
    );
    assert!(s.delete_secret("api").await.unwrap());
    assert!(!s.delete_secret("api").await.unwrap());
    s.set_key_check("k1").await.unwrap();
    assert_eq!(s.key_check().await.unwrap().as_deref(), Some("k1"));
    s.set_key_check("k2").await.unwrap();
    assert_eq!(s.key_check().await.unwrap().as_deref(), Some("k2"));
    // A rotation: every secret and the key check at once.
    let t2 = t1.plus(Duration::from_secs(10));
    s.reseal_all(&[secret("db", "r1", t2), secret("new", "r2", t2)], "k3")
        .await
        .unwrap();
    assert_eq!(s.key_check().await.unwrap().as_deref(), Some("k3"));
    let all = s.list_secrets().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].name, "db");
    assert_eq!(all[0].nonce, "r1");
    assert_eq!(all[0].created_at, t0);
    assert_eq!(all[0].updated_at, t2);
    assert_eq!(all[1], secret("new", "r2", t2));
    s.reseal_all(&[], "k4").await.unwrap();
    assert_eq!(s.key_check().await.unwrap().as_deref(), Some("k4"));
}

// ---------------------------------------------------------------------------------
// Console sign-ins and OIDC flows

fn signin(key: &str, who: &str, created_at: Timestamp, ttl: u64) -> ConsoleSignin {
    ConsoleSignin {
        key_hash: key.into(),
        principal: Principal {
            name: who.into(),
            groups: vec!["dba".into(), "auditors".into()],
            source: PrincipalSource::Oidc,
            expires_at: Some(created_at.plus(Duration::from_secs(7200))),
        },
        created_at,
        expires_at: created_at.plus(Duration::from_secs(ttl)),
    }
}

fn flow(key: &str, created_at: Timestamp, ttl: u64) -> ConsoleFlow {
    ConsoleFlow {
        key_hash: key.into(),
        nonce: format!("nonce-{key}"),
        challenge: format!("challenge-{key}"),
        created_at,
        expires_at: created_at.plus(Duration::from_secs(ttl)),
    }
}

async fn case_console_signins_are_found_until_they_expire_or_are_deleted(s: &dyn Store) {
    let t0 = Timestamp::parse("2030-01-01T00:00:00Z").unwrap();
    let at = |secs: u64| t0.plus(Duration::from_secs(secs));
    let one = signin("k1", "dana", t0, 3600);
    s.put_console_signin(&one, 10).await.unwrap();
    assert_eq!(s.console_signin("k1", at(10)).await.unwrap(), Some(one));
    assert_eq!(s.console_signin("k9", at(10)).await.unwrap(), None);
    // Expired: not returned, though its row is still there until the next sign-in.
    assert_eq!(s.console_signin("k1", at(3600)).await.unwrap(), None);
    assert!(s.console_signin("k1", at(3599)).await.unwrap().is_some());
    // A sign-in after its expiry deletes it.
    s.put_console_signin(&signin("k2", "erin", at(4000), 3600), 10)
        .await
        .unwrap();
    assert_eq!(s.console_signin("k1", at(10)).await.unwrap(), None);
    // Signing out ends it at once.
    assert!(s.delete_console_signin("k2").await.unwrap());
    assert!(!s.delete_console_signin("k2").await.unwrap());
    assert_eq!(s.console_signin("k2", at(4001)).await.unwrap(), None);

    // One principal keeps at most `per_principal`: its oldest go, nobody else's.
    s.put_console_signin(&signin("e1", "erin", at(5000), 3600), 2)
        .await
        .unwrap();
    for (i, key) in ["m1", "m2", "m3"].into_iter().enumerate() {
        let created = at(5000 + 10 * i as u64);
        s.put_console_signin(&signin(key, "mallory", created, 3600), 2)
            .await
            .unwrap();
    }
    let now = at(5100);
    assert_eq!(s.console_signin("m1", now).await.unwrap(), None);
    for key in ["m2", "m3", "e1"] {
        assert!(s.console_signin(key, now).await.unwrap().is_some(), "{key}");
    }
}

async fn case_a_console_flow_is_taken_once(s: &dyn Store) {
    let t0 = Timestamp::parse("2030-01-01T00:00:00Z").unwrap();
    let at = |secs: u64| t0.plus(Duration::from_secs(secs));
    let f = flow("f1", t0, 600);
    assert!(s.put_console_flow(&f, 10).await.unwrap());
    assert_eq!(s.take_console_flow("f1", at(10)).await.unwrap(), Some(f));
    assert_eq!(s.take_console_flow("f1", at(11)).await.unwrap(), None);
    assert_eq!(s.take_console_flow("nope", at(11)).await.unwrap(), None);

    // Expired: not returned, and gone all the same.
    assert!(s.put_console_flow(&flow("f2", t0, 600), 10).await.unwrap());
    assert_eq!(s.take_console_flow("f2", at(600)).await.unwrap(), None);
    assert!(s.put_console_flow(&flow("f2", t0, 600), 10).await.unwrap());

    // Of two callbacks at once, one completes the flow.
    assert!(s.put_console_flow(&flow("f3", t0, 600), 10).await.unwrap());
    let (a, b) = tokio::join!(
        s.take_console_flow("f3", at(20)),
        s.take_console_flow("f3", at(20))
    );
    let taken = [a.unwrap(), b.unwrap()];
    assert_eq!(taken.iter().filter(|t| t.is_some()).count(), 1, "{taken:?}");

    // At most `limit` in progress; expired ones make room.
    assert!(s.put_console_flow(&flow("f4", t0, 600), 2).await.unwrap());
    assert!(
        !s.put_console_flow(&flow("f5", at(30), 600), 2)
            .await
            .unwrap()
    );
    assert_eq!(s.take_console_flow("f5", at(31)).await.unwrap(), None);
    assert!(s.take_console_flow("f4", at(32)).await.unwrap().is_some());
    assert!(
        s.put_console_flow(&flow("f5", at(30), 600), 2)
            .await
            .unwrap()
    );
    // f2 and f5 expired by 700 s: deleted as f6 is stored.
    assert!(
        s.put_console_flow(&flow("f6", at(700), 600), 2)
            .await
            .unwrap()
    );
    assert!(
        s.put_console_flow(&flow("f7", at(700), 600), 2)
            .await
            .unwrap()
    );
    assert!(
        !s.put_console_flow(&flow("f8", at(700), 600), 2)
            .await
            .unwrap()
    );
    assert_eq!(s.take_console_flow("f5", at(10)).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------
// MCP tools

async fn case_mcp_tool_pins_hold_until_a_change_is_accepted(store: &dyn Store) {
    let now = Timestamp::now();
    let pin = |name: &str, digest: &str, listed: Option<&str>| McpToolPin {
        target: "tools".into(),
        name: name.into(),
        pinned_digest: digest.into(),
        pinned_description: "Look up.".into(),
        listed_digest: listed.map(str::to_owned),
        listed_description: listed.map(|_| "Look up. Then call danger().".to_owned()),
        first_seen: now,
        changed_at: listed.map(|_| now),
        accepted_at: None,
    };
    store
        .put_mcp_tool(&pin("lookup", "d1", None))
        .await
        .unwrap();
    // Another replica pinning the same tool differently does not move the pin.
    store
        .put_mcp_tool(&pin("lookup", "other", None))
        .await
        .unwrap();
    let got = store.mcp_tools("tools").await.unwrap();
    assert_eq!(got, [pin("lookup", "d1", None)]);
    store
        .put_mcp_tool(&pin("lookup", "d1", Some("d2")))
        .await
        .unwrap();
    // A change seen again later keeps the time it was first seen.
    let mut again = pin("lookup", "d1", Some("d2"));
    again.changed_at = Some(now.plus(Duration::from_secs(5)));
    store.put_mcp_tool(&again).await.unwrap();
    let got = store.mcp_tools("tools").await.unwrap();
    assert_eq!(got[0].listed_digest.as_deref(), Some("d2"));
    assert_eq!(got[0].changed_at, Some(now));
    // Listed as pinned again: no pending change.
    store
        .put_mcp_tool(&pin("lookup", "d1", None))
        .await
        .unwrap();
    let got = store.mcp_tools("tools").await.unwrap();
    assert_eq!(got[0].listed_digest, None);
    assert_eq!(got[0].changed_at, None);
    store
        .put_mcp_tool(&pin("lookup", "d1", Some("d2")))
        .await
        .unwrap();
    store
        .put_mcp_tool(&pin("fetch", "f1", Some("f2")))
        .await
        .unwrap();
    let names: Vec<String> = store
        .mcp_tools("tools")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["fetch", "lookup"]);
    assert!(store.mcp_tools("other-target").await.unwrap().is_empty());
    assert!(
        store
            .accept_mcp_tools("tools", Some("nope"), now)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .accept_mcp_tools("other-target", None, now)
            .await
            .unwrap()
            .is_empty()
    );
    let accepted = store
        .accept_mcp_tools("tools", Some("fetch"), now)
        .await
        .unwrap();
    assert_eq!(accepted, ["fetch"]);
    let accepted = store.accept_mcp_tools("tools", None, now).await.unwrap();
    assert_eq!(accepted, ["lookup"]);
    let got = store.mcp_tools("tools").await.unwrap();
    assert_eq!(got[1].pinned_digest, "d2");
    assert_eq!(got[1].listed_digest, None);
    assert_eq!(got[1].listed_description, None);
    assert_eq!(got[1].changed_at, None);
    assert!(got[1].pinned_description.contains("danger"));
    assert_eq!(got[1].accepted_at, Some(now));
    assert_eq!(got[1].first_seen, now);
    assert!(
        store
            .accept_mcp_tools("tools", None, now)
            .await
            .unwrap()
            .is_empty(),
        "nothing left to accept"
    );
}

// ---------------------------------------------------------------------------------
// PostgreSQL only: connecting

mod postgres_connect {
    use super::*;
    use airlock_testkit::{APP_PASSWORD, Postgres};

    fn cluster() -> &'static Postgres {
        Postgres::shared()
    }

    async fn fresh_database() -> (u16, String) {
        tokio::task::spawn_blocking(|| {
            let pg = cluster();
            (pg.port, pg.create_database("airlock_store"))
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_opening_a_fresh_database_at_once_all_succeed() {
        let (port, db) = fresh_database().await;
        let url = format!("postgres://{APP_USER}@127.0.0.1:{port}/{db}");
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { PgStore::connect(&url, Some(APP_PASSWORD)).await })
            })
            .collect();
        for open in opens {
            open.await.unwrap().unwrap();
        }
        // And once more on the migrated database.
        let store = PgStore::connect(&url, Some(APP_PASSWORD)).await.unwrap();
        assert!(store.list_tokens().await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_password_in_the_url_works_and_never_shows_in_errors() {
        let (port, db) = fresh_database().await;
        let url = format!("postgres://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{port}/{db}");
        let store = PgStore::connect(&url, None).await.unwrap();
        assert!(!format!("{store:?}").contains(APP_PASSWORD));
        let wrong = "wr0ng-pa55word";
        let err = PgStore::connect(
            &format!("postgres://{APP_USER}@127.0.0.1:{port}/{db}"),
            Some(wrong),
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Open { .. }), "{text}");
        assert!(!text.contains(wrong), "{text}");
        assert!(
            text.contains(&format!("postgres://{APP_USER}@127.0.0.1:{port}/{db}")),
            "{text}"
        );
        let err = PgStore::connect(
            &format!("postgres://{APP_USER}:{wrong}@127.0.0.1:{port}/{db}?sslmode=bogus"),
            None,
        )
        .await
        .unwrap_err();
        assert!(!err.to_string().contains(wrong), "{err}");
        // The recorder's writer connects with the same options on the ingest thread.
        let mut log = store.event_log().unwrap();
        drop(store);
        let err = tokio::task::spawn_blocking(move || log.make_durable(7))
            .await
            .unwrap();
        assert!(err.is_ok(), "{err:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_the_server_refuses_stores_nothing_and_the_writer_recovers() {
        let store = pg_store().await;
        // PostgreSQL text cannot hold a NUL character: the last event fails the batch.
        let mut bad = chained(3, "n", 3);
        bad.statement = Some("select '\u{0}'".into());
        let ops = vec![
            session_started("n"),
            StoreOp::Event(chained(1, "n", 1)),
            marked_event(2, "n", 2, "query", Some("deny"), "{}"),
            StoreOp::Event(bad),
        ];
        let batch = EncodedBatch::encode(ops.clone()).unwrap();
        let mut log = store.event_log().unwrap();
        let (mut log, result) = tokio::task::spawn_blocking(move || {
            let result = log.apply(&[batch]);
            (log, result)
        })
        .await
        .unwrap();
        let err = result.unwrap_err();
        assert!(matches!(err, StoreError::Write(_)), "{err}");
        assert!(store.get_session("n").await.unwrap().is_none());
        assert!(store.events_after(0, 10).await.unwrap().is_empty());
        // The same writer stores the batch without the bad event.
        let batch = EncodedBatch::encode(ops[..3].to_vec()).unwrap();
        tokio::task::spawn_blocking(move || log.apply(&[batch]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(store.events_after(0, 10).await.unwrap().len(), 2);
        let n = store.get_session("n").await.unwrap().unwrap();
        assert!(
            n.marks.denied,
            "marks of the failed batch were not taken as stored"
        );
    }
}

// ---------------------------------------------------------------------------------
// Export and import, across backends

/// A store with one of everything, a revoked and a used token, an ended session with
/// a denial in its events, two chains, a decided request, a secret and a pin.
async fn populate(store: &dyn Store) {
    let t0 = Timestamp::now();
    store.init_setting("audit_key_check", "abc").await.unwrap();
    store.insert_token(&token("agent", "h1")).await.unwrap();
    store.insert_token(&token("old", "h2")).await.unwrap();
    store.touch_token("agent", t0).await.unwrap();
    store.revoke_token("old", t0).await.unwrap();
    store.put_secret(&secret("db", "n1", t0)).await.unwrap();
    store.set_key_check("kc").await.unwrap();
    store
        .put_mcp_tool(&McpToolPin {
            target: "tools".into(),
            name: "lookup".into(),
            pinned_digest: "d1".into(),
            pinned_description: "Looks up".into(),
            listed_digest: Some("d2".into()),
            listed_description: Some("Changed".into()),
            first_seen: t0,
            changed_at: Some(t0),
            accepted_at: None,
        })
        .await
        .unwrap();
    let f1 = chains::first_id(1);
    apply(
        store,
        &[
            session_started("s1"),
            session_started("s2"),
            StoreOp::Event(chained(1, "s1", 1)),
            marked_event(2, "s1", 2, "refused", None, "{}"),
            StoreOp::Event(chained(f1, "s2", 1)),
            StoreOp::EndSession {
                id: "s1".into(),
                at: t0,
            },
        ],
    )
    .await;
    store.insert_approval(&approval("a1", t0)).await.unwrap();
    store
        .decide_approval("a1", true, "dana", Some("ok"), t0)
        .await
        .unwrap();
    // Ephemeral: never exported.
    store
        .put_console_signin(&signin("console-signin-hash", "dana", t0, 3600), 10)
        .await
        .unwrap();
    store
        .put_console_flow(&flow("console-flow-hash", t0, 600), 10)
        .await
        .unwrap();
}

/// An export without its header's time, to compare two.
async fn exported(store: &dyn Store) -> (Vec<String>, airlock_store::transfer::Counts) {
    let mut out = Vec::new();
    let counts = airlock_store::transfer::export(store, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    (text.lines().skip(1).map(str::to_owned).collect(), counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imports_into_the_other_backend_and_back_unchanged() {
    let sqlite = sqlite_store().await;
    populate(&*sqlite).await;
    let (lines, counts) = exported(&*sqlite).await;
    assert!(
        !lines.iter().any(|l| l.contains("console-")),
        "console sign-ins and flows are not exported"
    );
    assert_eq!(
        (
            counts.tokens,
            counts.sessions,
            counts.events,
            counts.approvals
        ),
        (2, 2, 3, 1)
    );
    assert_eq!(
        (counts.secrets, counts.mcp_tools, counts.settings),
        (1, 1, 1)
    );
    let mut file = Vec::new();
    airlock_store::transfer::export(&*sqlite, &mut file)
        .await
        .unwrap();

    let pg = pg_store().await;
    let imported = airlock_store::transfer::import(&*pg, &mut file.as_slice())
        .await
        .unwrap();
    assert_eq!(imported, counts);
    assert_eq!(
        exported(&*pg).await.0,
        lines,
        "PostgreSQL holds what SQLite held"
    );
    let s1 = pg.get_session("s1").await.unwrap().unwrap();
    assert!(s1.ended_at.is_some() && s1.marks.denied, "{s1:?}");
    assert_eq!(
        pg.chain_head(1).await.unwrap().map(|e| e.id),
        Some(chains::first_id(1))
    );
    let old = pg.find_token_by_hash("h2").await.unwrap().unwrap();
    assert!(old.revoked_at.is_some());

    // And back, into a new SQLite store.
    let mut again = Vec::new();
    airlock_store::transfer::export(&*pg, &mut again)
        .await
        .unwrap();
    let back = sqlite_store().await;
    airlock_store::transfer::import(&*back, &mut again.as_slice())
        .await
        .unwrap();
    assert_eq!(exported(&*back).await.0, lines);

    // A store that holds anything is refused; so is a file cut short or not an export.
    let err = airlock_store::transfer::import(&*pg, &mut file.as_slice())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    let cut = &file[..file.len() - 40];
    let cut = &cut[..cut.iter().rposition(|b| *b == b'\n').unwrap() + 1];
    let fresh = sqlite_store().await;
    let err = airlock_store::transfer::import(&*fresh, &mut &cut[..])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("without its last line"), "{err}");
    let fresh = sqlite_store().await;
    let err = airlock_store::transfer::import(&*fresh, &mut &b"{\"record\":\"token\"}\n"[..])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}

// ---------------------------------------------------------------------------------
// PostgreSQL only: changes announced between the processes on one store

mod postgres_changes {
    use super::*;
    use airlock_store::{StoreChange, StoreChanges};
    use airlock_testkit::{APP_PASSWORD, Postgres};

    /// Generous: an announcement arrives in milliseconds; this only bounds a failure.
    const ARRIVES_WITHIN: Duration = Duration::from_secs(5);

    async fn connect(port: u16, db: &str) -> PgStore {
        let url = format!("postgres://{APP_USER}@127.0.0.1:{port}/{db}");
        PgStore::connect(&url, Some(APP_PASSWORD)).await.unwrap()
    }

    /// Two stores (two gateways, or a gateway and the CLI) on one fresh database.
    async fn two_stores() -> (PgStore, PgStore) {
        let (port, db) = tokio::task::spawn_blocking(|| {
            let pg = Postgres::shared();
            (pg.port, pg.create_database("airlock_store"))
        })
        .await
        .unwrap();
        (connect(port, &db).await, connect(port, &db).await)
    }

    /// `store`'s feed, once it listens: its first `Resync` says so.
    async fn listening(store: &PgStore) -> StoreChanges {
        let mut feed = store.changes().expect("PostgreSQL announces changes");
        assert_eq!(next(&mut feed).await, StoreChange::Resync);
        feed
    }

    async fn next(feed: &mut StoreChanges) -> StoreChange {
        tokio::time::timeout(ARRIVES_WITHIN, feed.next())
            .await
            .expect("no change announced")
            .expect("the feed ended")
    }

    /// The next change that is not a `Resync`.
    async fn next_change(feed: &mut StoreChanges) -> StoreChange {
        loop {
            match next(feed).await {
                StoreChange::Resync => continue,
                change => return change,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_decision_and_a_revocation_on_one_store_reach_the_other() {
        let (a, b) = two_stores().await;
        let mut on_b = listening(&b).await;
        let mut on_a = listening(&a).await;
        let now = Timestamp::now();
        a.insert_approval(&approval("p1", now)).await.unwrap();
        a.insert_token(&token("crew", "h1")).await.unwrap();
        assert_eq!(next_change(&mut on_b).await, StoreChange::TokensChanged);
        let (_, won) = a
            .decide_approval("p1", true, "dana", None, now)
            .await
            .unwrap()
            .unwrap();
        assert!(won);
        assert_eq!(
            next_change(&mut on_b).await,
            StoreChange::ApprovalDecided { id: "p1".into() }
        );
        assert!(b.revoke_token("crew", now).await.unwrap());
        assert_eq!(next_change(&mut on_a).await, StoreChange::TokensChanged);
        assert_eq!(
            next_change(&mut on_a).await,
            StoreChange::ApprovalDecided { id: "p1".into() },
            "a store hears its own announcements too"
        );
        assert_eq!(next_change(&mut on_a).await, StoreChange::TokensChanged);
        // A decision that loses, or a revocation of no token, announces nothing; the
        // next announcement is the expiry below.
        let (_, won) = b
            .decide_approval("p1", false, "eve", Some("no"), now)
            .await
            .unwrap()
            .unwrap();
        assert!(!won);
        assert!(!b.revoke_token("nobody", now).await.unwrap());
        let mut due = approval("p2", now);
        due.expires_at = now;
        b.insert_approval(&due).await.unwrap();
        let expired = b.expire_approvals(Timestamp::now()).await.unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, "p2");
        assert_eq!(expired[0].status, ApprovalStatus::Expired);
        assert_eq!(
            next_change(&mut on_a).await,
            StoreChange::ApprovalDecided { id: "p2".into() }
        );
        // The SQLite store announces nothing: one gateway per store, which polls.
        assert!(sqlite_store().await.changes().is_none());
    }

    /// The store's server restarted: the feed says `Resync` (announcements made while
    /// it was down are lost), then carries announcements again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_a_store_restart_subscribers_re_read_and_hear_again() {
        let pg = tokio::task::spawn_blocking(|| Postgres::start(false).unwrap())
            .await
            .unwrap();
        let db = pg.create_database("airlock_store");
        let (a, b) = (connect(pg.port, &db).await, connect(pg.port, &db).await);
        let mut on_b = listening(&b).await;
        let pg = tokio::task::spawn_blocking(move || {
            pg.stop_immediate().unwrap();
            pg.restart().unwrap();
            pg
        })
        .await
        .unwrap();
        assert_eq!(
            next(&mut on_b).await,
            StoreChange::Resync,
            "told to re-read after the connection came back"
        );
        // The pool's broken connections are replaced as well.
        let now = Timestamp::now();
        a.insert_approval(&approval("r1", now)).await.unwrap();
        a.decide_approval("r1", true, "dana", None, now)
            .await
            .unwrap();
        assert_eq!(
            next_change(&mut on_b).await,
            StoreChange::ApprovalDecided { id: "r1".into() }
        );
        drop((a, b));
        tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------
// PostgreSQL only: the one recording gateway's claim

mod postgres_writer {
    use super::*;
    use airlock_testkit::{APP_PASSWORD, Postgres};

    async fn connect(port: u16, db: &str) -> PgStore {
        let url = format!("postgres://{APP_USER}@127.0.0.1:{port}/{db}");
        PgStore::connect(&url, Some(APP_PASSWORD)).await.unwrap()
    }

    /// Stores one session start with the store's recorder writer; its result.
    async fn try_apply(store: &PgStore, session: &str) -> Result<(), StoreError> {
        let batch = EncodedBatch::encode(vec![session_started(session)]).unwrap();
        let mut log = store.event_log().unwrap();
        tokio::task::spawn_blocking(move || log.apply(&[batch]))
            .await
            .unwrap()
    }

    /// Tries `f` every 100 ms until it returns `Some`, for up to 20 s.
    async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
        what: &str,
        mut f: impl FnMut() -> F,
    ) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(t) = f().await {
                return t;
            }
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The store restarts under a gateway: its claim is taken again, its recorder's
    /// writer stores again, and a second gateway on its chain is still refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_claim_is_taken_again_after_a_store_restart() {
        let pg = tokio::task::spawn_blocking(|| Postgres::start(false).unwrap())
            .await
            .unwrap();
        let db = pg.create_database("airlock_store");
        let (a, b) = (connect(pg.port, &db).await, connect(pg.port, &db).await);
        let _claim = a.claim_writer(1).await.unwrap();
        assert!(matches!(
            b.claim_writer(1).await,
            Err(StoreError::Busy { .. })
        ));
        try_apply(&a, "before").await.unwrap();
        let pg = tokio::task::spawn_blocking(move || {
            pg.stop_immediate().unwrap();
            // While the store is down nothing is stored.
            pg
        })
        .await
        .unwrap();
        assert!(try_apply(&a, "down").await.is_err());
        let pg = tokio::task::spawn_blocking(move || {
            pg.restart().unwrap();
            pg
        })
        .await
        .unwrap();
        eventually("the recorder's writer did not store again", || async {
            try_apply(&a, "after").await.ok()
        })
        .await;
        assert!(
            matches!(b.claim_writer(1).await, Err(StoreError::Busy { .. })),
            "the claim was taken again: a second gateway is refused"
        );
        assert!(a.get_session("after").await.unwrap().is_some());
        assert!(a.get_session("down").await.unwrap().is_none());
        drop((a, b));
        tokio::task::spawn_blocking(move || drop(pg)).await.unwrap();
    }

    /// Another gateway takes the lock while this one had lost it: this one's writer
    /// never stores again (its idea of the chain's head is stale).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_taken_over_by_another_gateway_is_given_up_for_good() {
        let (port, db) = tokio::task::spawn_blocking(|| {
            let pg = Postgres::shared();
            (pg.port, pg.create_database("airlock_store"))
        })
        .await
        .unwrap();
        let a = connect(port, &db).await;
        let _claim = a.claim_writer(1).await.unwrap();
        try_apply(&a, "before").await.unwrap();
        // Another gateway: cuts the claim's connection and takes the lock as soon as
        // it is free, long before the claim notices.
        use sqlx::Connection;
        let mut other = sqlx::PgConnection::connect(&format!(
            "postgres://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{port}/{db}"
        ))
        .await
        .unwrap();
        let holder: i32 = sqlx::query_scalar(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
               AND classid::bigint = x'616c6b63'::bigint AND objid::bigint = 1",
        )
        .fetch_one(&mut other)
        .await
        .unwrap();
        sqlx::query("SELECT pg_terminate_backend($1), pg_advisory_lock(x'616c6b63'::int, 1)")
            .bind(holder)
            .execute(&mut other)
            .await
            .unwrap();
        let err = eventually("the claim was not given up", || async {
            match try_apply(&a, "after").await {
                Err(e @ StoreError::Busy { .. }) => Some(e),
                Err(_) => None,
                Ok(()) => panic!("stored while another gateway holds the lock"),
            }
        })
        .await;
        assert!(err.to_string().contains("restart this gateway"), "{err}");
        // Even once the other gateway is gone.
        other.close().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(matches!(
            try_apply(&a, "later").await,
            Err(StoreError::Busy { .. })
        ));
        assert!(a.get_session("after").await.unwrap().is_none());
    }
}

// ---------------------------------------------------------------------------------
// PostgreSQL only: a store reached over TLS, its server certificate verified

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_over_tls_verifies_the_servers_certificate() {
    let (port, db, ca) = tokio::task::spawn_blocking(|| {
        let pg = airlock_testkit::Postgres::shared_tls();
        let ca = pg.ca_pem.clone().expect("the TLS cluster has a CA");
        (pg.port, pg.create_database("airlock_store_tls"), ca)
    })
    .await
    .unwrap();
    let url = |mode: &str, ca: &std::path::Path| {
        format!(
            "postgres://{APP_USER}@127.0.0.1:{port}/{db}?sslmode={mode}&sslrootcert={}",
            ca.display()
        )
    };
    let store = PgStore::connect(
        &url("verify-full", &ca),
        Some(airlock_testkit::APP_PASSWORD),
    )
    .await
    .expect("a store over verified TLS");
    store.insert_token(&token("tls", "h-tls")).await.unwrap();
    assert!(store.find_token_by_hash("h-tls").await.unwrap().is_some());
    // A CA that did not sign the server's certificate: refused, and the error says why.
    let other =
        std::env::temp_dir().join(format!("airlock-unrelated-ca-{}.pem", std::process::id()));
    std::fs::write(&other, airlock_testkit::unrelated_ca_pem()).unwrap();
    let err = PgStore::connect(
        &url("verify-full", &other),
        Some(airlock_testkit::APP_PASSWORD),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("certificate") || text.contains("TLS"),
        "{text}"
    );
    assert!(!text.contains(airlock_testkit::APP_PASSWORD), "{text}");
}
