//! Two gateways on one PostgreSQL store (a real server from `airlock-testkit`): a
//! statement held on one is released by a decision taken on the other, through the
//! store's announcement. The waiting side polls only every minute here, longer than
//! the test may take, so the test fails if announcements stop working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_approvals::{Approvals, Begun, HoldRequest, Settings, Waited};
use airlock_model::{ApprovalStatus, Principal, PrincipalSource};
use airlock_store::{PgStore, Store};
use airlock_testkit::{APP_PASSWORD, Postgres};

/// Longer than a wait: a waiter released before its wait ran out was released by an
/// announcement, not by a poll.
const NO_POLL: Duration = Duration::from_secs(120);
/// Far more than an announcement takes. A wait that runs out still reads the request a
/// last time, and would find the decision then: the test checks it did not run out.
const WAIT: Duration = Duration::from_secs(20);

/// Two stores on one fresh database, as two replicas would have.
async fn replicas() -> (Arc<dyn Store>, Arc<dyn Store>) {
    let (port, db) = tokio::task::spawn_blocking(|| {
        let pg = Postgres::shared();
        (pg.port, pg.create_database("airlock_approvals"))
    })
    .await
    .unwrap();
    let url = format!("postgres://app@127.0.0.1:{port}/{db}");
    let a = PgStore::connect(&url, Some(APP_PASSWORD)).await.unwrap();
    let b = PgStore::connect(&url, Some(APP_PASSWORD)).await.unwrap();
    (Arc::new(a), Arc::new(b))
}

fn hold(digest: &str) -> HoldRequest {
    HoldRequest {
        session_id: "s1".into(),
        principal: "agent".into(),
        target: "shop".into(),
        protocol: "postgres".into(),
        statement: "DELETE FROM orders WHERE id = 7".into(),
        params: serde_json::json!([]),
        digest: digest.into(),
        policy_version: "v1".into(),
        policies: vec!["delete-needs-dba".into()],
        approver_group: "dba".into(),
        reason: "deletes need a DBA".into(),
    }
}

fn dana() -> Principal {
    Principal {
        name: "dana".into(),
        groups: vec!["dba".into()],
        source: PrincipalSource::ServiceToken,
        expires_at: None,
    }
}

/// Holds a statement on `a`, waits for it there, and runs `decide` on `b` once the
/// waiter is waiting; returns how the wait ended, which was before it ran out.
async fn held_on_a_decided_on_b(
    a: &Approvals,
    b: &Approvals,
    digest: &str,
    approve: bool,
) -> Waited {
    let (begun, _) = a.begin(hold(digest), &Settings::default()).await.unwrap();
    let Begun::Pending { approval, created } = begun else {
        panic!("a new statement is pending: {begun:?}");
    };
    assert!(created);
    let started = Instant::now();
    let waiter = {
        let a = a.clone();
        let id = approval.id.clone();
        tokio::spawn(async move { a.wait(&id, WAIT).await.unwrap() })
    };
    // The waiter has read the request (pending) and waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "released before any decision");
    let comment = (!approve).then(|| "not on a Friday".to_owned());
    b.decide(&approval.id, &dana(), approve, comment)
        .await
        .unwrap();
    let waited = waiter.await.unwrap();
    let took = started.elapsed();
    assert!(
        took < WAIT,
        "not released by the announcement: the wait ran out ({took:?})"
    );
    waited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_one_replica_releases_the_statement_held_on_the_other() {
    let (store_a, store_b) = replicas().await;
    let a = Approvals::new(store_a).with_poll_interval(NO_POLL);
    let b = Approvals::new(store_b).with_poll_interval(NO_POLL);

    let waited = held_on_a_decided_on_b(&a, &b, "d-approve", true).await;
    let Waited::Decided(decided) = waited else {
        panic!("the wait ended without the decision: {waited:?}");
    };
    assert_eq!(decided.status, ApprovalStatus::Approved);
    assert_eq!(decided.decided_by.as_deref(), Some("dana"));

    // A denial, the other way round, reaches the waiter with its reason.
    let waited = held_on_a_decided_on_b(&b, &a, "d-deny", false).await;
    let Waited::Decided(decided) = waited else {
        panic!("the wait ended without the decision: {waited:?}");
    };
    assert_eq!(decided.status, ApprovalStatus::Denied);
    assert_eq!(decided.comment.as_deref(), Some("not on a Friday"));
}
