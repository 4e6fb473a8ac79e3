//! A token revoked through one gateway (or the CLI) on a shared PostgreSQL store (a real
//! server from `airlock-testkit`) stops holding on another at once, through the store's
//! announcement: the watching side polls only every two minutes here, longer than the
//! test may take, so the test fails if announcements stop working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_identity::{Identity, NoLongerValid};
use airlock_model::Timestamp;
use airlock_store::{PgStore, Store};
use airlock_testkit::{APP_PASSWORD, Postgres};

const NO_POLL: Duration = Duration::from_secs(120);
/// Far more than an announcement takes; only bounds a failure.
const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_ends_the_token_on_the_other() {
    let (port, db) = tokio::task::spawn_blocking(|| {
        let pg = Postgres::shared();
        (pg.port, pg.create_database("airlock_identity"))
    })
    .await
    .unwrap();
    let url = format!("postgres://app@127.0.0.1:{port}/{db}");
    let a: Arc<dyn Store> = Arc::new(PgStore::connect(&url, Some(APP_PASSWORD)).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PgStore::connect(&url, Some(APP_PASSWORD)).await.unwrap());
    let on_a = Identity::new(a);
    let on_b = Identity::new(b.clone());
    let minted = on_b
        .mint("crew", &["ai-agents".into()], None)
        .await
        .unwrap();
    let principal = on_a.authenticate(&minted.token).await.unwrap();
    let watch = on_a.spawn_revocation_watch(NO_POLL);
    // The watch's first read is done, and it waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(on_a.still_valid(&principal, Duration::ZERO), Ok(()));

    assert!(b.revoke_token("crew", Timestamp::now()).await.unwrap());
    let revoked_at = Instant::now();
    while on_a.still_valid(&principal, Duration::ZERO) != Err(NoLongerValid::Revoked) {
        assert!(
            revoked_at.elapsed() < WITHIN,
            "the revocation did not reach the other replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watch.abort();
}
