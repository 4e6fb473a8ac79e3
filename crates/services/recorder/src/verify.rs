//! `audit verify`: re-walks the event chain and the sessions that own the events.

use std::collections::HashMap;
use std::fmt;

use airlock_model::SessionSummary;
use airlock_store::{SessionFilter, Store, chains};

use crate::chain::ChainKey;
use crate::{GENESIS_HASH, RecorderError};

/// One thing verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// The event's content does not match its hash: a column was edited.
    Edited {
        /// Chain id.
        id: i64,
        /// Its session.
        session_id: String,
        /// Its position in the session.
        seq: i64,
    },
    /// Chain ids jump: events in between were deleted.
    Missing {
        /// First missing id.
        from: i64,
        /// Last missing id.
        to: i64,
    },
    /// The event does not link to the one before it: reordered, or something before it
    /// was deleted or replaced.
    Unlinked {
        /// Chain id.
        id: i64,
    },
    /// A session's events skip a sequence number.
    SessionGap {
        /// Session id.
        session_id: String,
        /// The sequence number expected.
        expected: i64,
        /// The one found.
        found: i64,
    },
    /// A session row has no events at all (its events were deleted).
    SessionWithoutEvents {
        /// Session id.
        session_id: String,
    },
    /// A session row disagrees with its first recorded event.
    SessionEdited {
        /// Session id.
        session_id: String,
        /// Which field.
        field: &'static str,
    },
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainProblem::Edited {
                id,
                session_id,
                seq,
            } => write!(
                f,
                "event {id} (session {session_id}, seq {seq}) was edited: its content does not match its hash"
            ),
            ChainProblem::Missing { from, to } if from == to => {
                write!(f, "event {from} is missing: it was deleted")
            }
            ChainProblem::Missing { from, to } => {
                write!(f, "events {from} to {to} are missing: they were deleted")
            }
            ChainProblem::Unlinked { id } => write!(
                f,
                "event {id} does not follow the event before it: events were reordered, replaced or deleted"
            ),
            ChainProblem::SessionGap {
                session_id,
                expected,
                found,
            } => write!(
                f,
                "session {session_id}: event seq {expected} is missing (next found is seq {found})"
            ),
            ChainProblem::SessionWithoutEvents { session_id } => {
                write!(
                    f,
                    "session {session_id} has no recorded events: they were deleted"
                )
            }
            ChainProblem::SessionEdited { session_id, field } => write!(
                f,
                "session {session_id}: `{field}` differs from what its first event recorded"
            ),
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Events read.
    pub events: u64,
    /// Sessions read.
    pub sessions: u64,
    /// Chains read: one per gateway that recorded into the store.
    pub chains: u64,
    /// Problems found, in chain order.
    pub problems: Vec<ChainProblem>,
}

impl VerifyReport {
    /// True when nothing was found wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The one-line verdict, as `airlock audit verify` and the console print it.
    pub fn summary(&self) -> String {
        if self.ok() {
            format!(
                "ok: {} events in {} sessions; the chain is intact",
                self.events, self.sessions
            )
        } else {
            format!(
                "FAILED: {} problem(s) in {} events and {} sessions",
                self.problems.len(),
                self.events,
                self.sessions
            )
        }
    }
}

const PAGE: i64 = 5000;

/// Walks the whole chain with `key` and cross-checks sessions against their events.
pub async fn verify_chain(store: &dyn Store, key: &[u8]) -> Result<VerifyReport, RecorderError> {
    let mut report = VerifyReport::default();
    let key = ChainKey::new(key)
        .ok_or_else(|| RecorderError::Unavailable("the audit key cannot key HMAC-SHA256".into()))?;
    // Sessions are read first: one that opens while the chain is walked is not in this
    // snapshot, so a live gateway cannot make a new session look like a deleted one.
    let sessions = store.list_sessions(&SessionFilter::default()).await?;
    let mut last_id = 0i64;
    let mut prev_hash = GENESIS_HASH.to_owned();
    // Per session: last seq seen, and the first event's detail for the cross-check.
    let mut seqs: HashMap<String, i64> = HashMap::new();
    let mut first_detail: HashMap<String, String> = HashMap::new();
    loop {
        let page = store.events_after(last_id, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for e in page {
            report.events += 1;
            // Each gateway's chain starts at its range's first id with the genesis
            // hash (see `airlock_store::chains`); within one, ids follow each other.
            let expected =
                if report.events > 1 && chains::chain_of(e.id) == chains::chain_of(last_id) {
                    last_id + 1
                } else {
                    report.chains += 1;
                    prev_hash = GENESIS_HASH.to_owned();
                    chains::first_id(chains::chain_of(e.id))
                };
            if e.id != expected {
                report.problems.push(ChainProblem::Missing {
                    from: expected,
                    to: e.id - 1,
                });
            } else if e.prev_hash != prev_hash {
                report.problems.push(ChainProblem::Unlinked { id: e.id });
            }
            if key.hash(&e) != e.hash {
                report.problems.push(ChainProblem::Edited {
                    id: e.id,
                    session_id: e.session_id.clone(),
                    seq: e.seq,
                });
            }
            let expected = seqs.get(&e.session_id).map(|s| s + 1).unwrap_or(1);
            if e.seq != expected {
                report.problems.push(ChainProblem::SessionGap {
                    session_id: e.session_id.clone(),
                    expected,
                    found: e.seq,
                });
            }
            seqs.insert(e.session_id.clone(), e.seq);
            if e.seq == 1 {
                first_detail.insert(e.session_id.clone(), e.detail.clone());
            }
            last_id = e.id;
            prev_hash = e.hash;
        }
    }
    for s in sessions {
        report.sessions += 1;
        let Some(detail) = first_detail.get(&s.id) else {
            if !seqs.contains_key(&s.id) {
                report
                    .problems
                    .push(ChainProblem::SessionWithoutEvents { session_id: s.id });
            }
            continue;
        };
        report.problems.extend(row_problems(&s, detail));
    }
    Ok(report)
}

/// Where a session row disagrees with what its first event (`detail`, as stored)
/// recorded.
fn row_problems(s: &SessionSummary, detail: &str) -> Vec<ChainProblem> {
    let detail: serde_json::Value = serde_json::from_str(detail).unwrap_or_default();
    // A missing or null field in the event matches a NULL column.
    let field_is = |name: &str, value: Option<&str>| {
        detail.get(name).map(|v| v.as_str()).unwrap_or(None) == value
    };
    let checks: [(&'static str, Option<&str>); 3] = [
        ("principal", s.principal.as_deref()),
        ("target", Some(s.target.as_str())),
        ("client_addr", Some(s.client_addr.as_str())),
    ];
    checks
        .into_iter()
        .filter(|(field, value)| !field_is(field, *value))
        .map(|(field, _)| ChainProblem::SessionEdited {
            session_id: s.id.clone(),
            field,
        })
        .collect()
}

/// One session's events re-checked with `key`: each hash, the sequence, each event's
/// link to the event before it in the chain (which may be another session's), and the
/// session row against its first event. What the console shows beside a replay;
/// `verify_chain` remains the check of the whole log (it also finds events deleted
/// between sessions).
#[derive(Debug, Clone, Default)]
pub struct SessionVerdict {
    /// Events read.
    pub events: u64,
    /// Problems found, in order.
    pub problems: Vec<ChainProblem>,
}

impl SessionVerdict {
    /// True when nothing was found wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks session `id` (see [`SessionVerdict`]); `Ok(None)` when it does not exist.
pub async fn verify_session(
    store: &dyn Store,
    key: &[u8],
    id: &str,
) -> Result<Option<SessionVerdict>, RecorderError> {
    let key = ChainKey::new(key)
        .ok_or_else(|| RecorderError::Unavailable("the audit key cannot key HMAC-SHA256".into()))?;
    let Some(session) = store.get_session(id).await? else {
        return Ok(None);
    };
    let mut events = store.session_events(id).await?;
    events.sort_by_key(|e| e.id);
    let mut verdict = SessionVerdict {
        events: events.len() as u64,
        problems: Vec::new(),
    };
    if events.is_empty() {
        verdict.problems.push(ChainProblem::SessionWithoutEvents {
            session_id: session.id,
        });
        return Ok(Some(verdict));
    }
    let mut previous: Option<(i64, String)> = None;
    for (n, e) in events.iter().enumerate() {
        let expected_seq = n as i64 + 1;
        if e.seq != expected_seq {
            verdict.problems.push(ChainProblem::SessionGap {
                session_id: e.session_id.clone(),
                expected: expected_seq,
                found: e.seq,
            });
        }
        if key.hash(e) != e.hash {
            verdict.problems.push(ChainProblem::Edited {
                id: e.id,
                session_id: e.session_id.clone(),
                seq: e.seq,
            });
        }
        // The hash of chain position id - 1: this session's previous event when they
        // are adjacent, else whichever session's event holds that place.
        let before = match &previous {
            _ if e.id == chains::first_id(chains::chain_of(e.id)) => Some(GENESIS_HASH.to_owned()),
            Some((id, hash)) if *id == e.id - 1 => Some(hash.clone()),
            _ => store
                .events_after(e.id - 2, 1)
                .await?
                .into_iter()
                .next()
                .filter(|p| p.id == e.id - 1)
                .map(|p| p.hash),
        };
        match before {
            None => verdict.problems.push(ChainProblem::Missing {
                from: e.id - 1,
                to: e.id - 1,
            }),
            Some(hash) if hash != e.prev_hash => {
                verdict.problems.push(ChainProblem::Unlinked { id: e.id })
            }
            Some(_) => {}
        }
        previous = Some((e.id, e.hash.clone()));
    }
    if let Some(first) = events.iter().find(|e| e.seq == 1) {
        verdict
            .problems
            .extend(row_problems(&session, &first.detail));
    }
    Ok(Some(verdict))
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_model::{SessionMarks, Timestamp};
    use airlock_store::{ChainedEvent, EncodedBatch, SqliteStore, StoreOp};

    const KEY: &[u8] = b"an audit key of thirty-two bytes";

    fn start(id: &str) -> StoreOp {
        StoreOp::StartSession(SessionSummary {
            id: id.into(),
            principal: Some("p".into()),
            target: "shop".into(),
            protocol: "postgres".into(),
            client_addr: "127.0.0.1:1".into(),
            started_at: Timestamp::now(),
            ended_at: None,
            marks: SessionMarks::default(),
        })
    }

    /// Two sessions' events interleaved in one chain; `tamper` changes an event after
    /// it was hashed (an edit), or its link.
    fn chain(tamper: impl Fn(&mut ChainedEvent)) -> Vec<StoreOp> {
        let mut ops = vec![start("a"), start("b")];
        ops.extend(events(
            &[(1, "a"), (2, "b"), (3, "a"), (4, "b"), (5, "a")],
            tamper,
        ));
        ops
    }

    /// The events `(id, session)`, chained in that order from the genesis hash.
    fn events(order: &[(i64, &str)], tamper: impl Fn(&mut ChainedEvent)) -> Vec<StoreOp> {
        let key = ChainKey::new(KEY).unwrap();
        let mut ops = Vec::new();
        let mut prev = GENESIS_HASH.to_owned();
        let mut seqs: HashMap<&str, i64> = HashMap::new();
        for &(id, session) in order {
            let seq = seqs.entry(session).or_insert(0);
            *seq += 1;
            let detail = if *seq == 1 {
                r#"{"principal":"p","target":"shop","client_addr":"127.0.0.1:1"}"#
            } else {
                "{}"
            };
            let mut e = ChainedEvent {
                id,
                session_id: session.into(),
                seq: *seq,
                at: "2026-12-07T00:00:00.000000Z".into(),
                kind: "query".into(),
                statement: Some(format!("select {id}")),
                decision: Some("allow".into()),
                detail: detail.into(),
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            e.hash = key.hash(&e);
            prev = e.hash.clone();
            tamper(&mut e);
            ops.push(StoreOp::Event(e));
        }
        ops
    }

    async fn store(ops: Vec<StoreOp>) -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "airlock-verify-{}-{:x}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open_in(&dir).await.unwrap();
        store
            .event_log()
            .unwrap()
            .apply(&[EncodedBatch::encode(ops).unwrap()])
            .unwrap();
        (store, dir)
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    /// Chain 0 as above, and gateway 1's chain with sessions c and d.
    fn two_chains(tamper: impl Fn(&mut ChainedEvent) + Copy) -> Vec<StoreOp> {
        let f = chains::first_id(1);
        let mut ops = chain(tamper);
        ops.extend([start("c"), start("d")]);
        ops.extend(events(&[(f, "c"), (f + 1, "d"), (f + 2, "c")], tamper));
        ops
    }

    #[tokio::test]
    async fn every_gateway_chain_is_verified_from_its_own_genesis() {
        let (s, dir) = store(two_chains(|_| {})).await;
        let report = verify_chain(&s, KEY).await.unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!((report.events, report.sessions, report.chains), (8, 4, 2));
        for id in ["a", "c", "d"] {
            let v = verify_session(&s, KEY, id).await.unwrap().unwrap();
            assert!(v.ok(), "{id}: {:?}", v.problems);
        }
        let _ = std::fs::remove_dir_all(dir);

        // The first event of chain 1 deleted: found, though chain 0 ended before it.
        let f = chains::first_id(1);
        let ops: Vec<StoreOp> = two_chains(|_| {})
            .into_iter()
            .filter(|op| !matches!(op, StoreOp::Event(e) if e.id == f))
            .collect();
        let (s, dir) = store(ops).await;
        let report = verify_chain(&s, KEY).await.unwrap();
        assert!(
            report
                .problems
                .contains(&ChainProblem::Missing { from: f, to: f }),
            "{:?}",
            report.problems
        );
        let _ = std::fs::remove_dir_all(dir);

        // An event of chain 1 linked to chain 0's head instead of its genesis.
        let (s, dir) = store(two_chains(|e| {
            if e.id == chains::first_id(1) {
                e.prev_hash = "0".repeat(63) + "1";
            }
        }))
        .await;
        let report = verify_chain(&s, KEY).await.unwrap();
        assert!(
            report.problems.contains(&ChainProblem::Unlinked {
                id: chains::first_id(1)
            }),
            "{:?}",
            report.problems
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_session_is_checked_with_links_into_other_sessions() {
        let (s, dir) = store(chain(|_| {})).await;
        for id in ["a", "b"] {
            let v = verify_session(&s, KEY, id).await.unwrap().unwrap();
            assert!(v.ok(), "{id}: {:?}", v.problems);
        }
        assert_eq!(
            verify_session(&s, KEY, "a").await.unwrap().unwrap().events,
            3
        );
        assert!(verify_session(&s, KEY, "none").await.unwrap().is_none());
        // Another key finds every event edited.
        let v = verify_session(&s, b"another key, also thirty-two by", "a")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.problems.len(), 3, "{:?}", v.problems);
        let _ = std::fs::remove_dir_all(dir);

        // An edit in b is b's problem, not a's; a broken link in a is a's.
        let (s, dir) = store(chain(|e| {
            if e.id == 4 {
                e.statement = Some("drop table customers".into());
            }
        }))
        .await;
        assert!(verify_session(&s, KEY, "a").await.unwrap().unwrap().ok());
        let v = verify_session(&s, KEY, "b").await.unwrap().unwrap();
        assert_eq!(
            v.problems,
            [ChainProblem::Edited {
                id: 4,
                session_id: "b".into(),
                seq: 2
            }]
        );
        let _ = std::fs::remove_dir_all(dir);
        let (s, dir) = store(chain(|e| {
            if e.id == 3 {
                e.prev_hash = GENESIS_HASH.into();
            }
        }))
        .await;
        let v = verify_session(&s, KEY, "a").await.unwrap().unwrap();
        assert!(
            v.problems.contains(&ChainProblem::Unlinked { id: 3 }),
            "{:?}",
            v.problems
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
