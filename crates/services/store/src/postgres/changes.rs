//! Store changes announced between the processes on one PostgreSQL store: the
//! statements that decide or expire an approval, and add or revoke a token, also
//! `NOTIFY` channel [`CHANNEL`] (in the same statement, so an announcement is sent
//! exactly when the change commits). A [`PgStore`](super::PgStore) that is asked for its
//! changes `LISTEN`s on a connection of its own, in a background task, and hands every
//! announcement to its subscribers.
//!
//! Announcements sent while that connection is down are lost (PostgreSQL does not keep
//! them): the task reconnects with a back-off (a store restart is survived) and then
//! tells every subscriber to re-read ([`StoreChange::Resync`]), as it does when it first
//! connects. The task ends with the last clone of the store.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::changes::FEED_CAPACITY;
use crate::{StoreChange, StoreChanges};

/// The channel every change is announced on.
pub(super) const CHANNEL: &str = "airlock_changes";

/// The first wait before connecting again after the listening connection was lost (or
/// could not be made); doubled on each failure up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between two tries to listen again.
const MAX_RETRY: Duration = Duration::from_secs(2);
/// How long one try to connect may take (the server may be restarting).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `NOTIFY` payload announcing that approval `id` was decided or expired.
pub(super) fn approval_payload(id: &str) -> String {
    format!("{}{id}", StoreChange::APPROVAL_PREFIX)
}

/// The `NOTIFY` payload announcing a token change.
pub(super) const TOKENS_PAYLOAD: &str = StoreChange::TOKENS;

/// The announcements of one store, shared by its clones: the subscribers' channel and
/// the listening task, started for the first subscriber.
pub(super) struct Announcer {
    options: PgConnectOptions,
    location: String,
    tx: broadcast::Sender<StoreChange>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Announcer {
    pub(super) fn new(options: PgConnectOptions, location: String) -> Self {
        Announcer {
            options,
            location,
            tx: broadcast::channel(FEED_CAPACITY).0,
            task: Mutex::new(None),
        }
    }

    fn task(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        // A plain assignment only: the slot stays consistent through a panic elsewhere.
        self.task.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new subscriber's feed, starting the listening task if it does not run. `None`
    /// outside a tokio runtime (no task can run there): the caller polls.
    pub(super) fn subscribe(&self) -> Option<StoreChanges> {
        // Subscribed before the task starts: its first `Resync` reaches this feed.
        let rx = self.tx.subscribe();
        let mut task = self.task();
        if task.as_ref().is_none_or(JoinHandle::is_finished) {
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            *task = Some(runtime.spawn(listen(
                self.options.clone(),
                self.location.clone(),
                self.tx.clone(),
            )));
        }
        Some(StoreChanges::new(rx))
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        if let Some(task) = self.task().take() {
            task.abort();
        }
    }
}

/// Listens on [`CHANNEL`] and forwards every announcement to `tx`, for ever
/// (until aborted): a lost connection is made again, and then subscribers re-read.
async fn listen(options: PgConnectOptions, location: String, tx: broadcast::Sender<StoreChange>) {
    // One connection, made when first needed; the pool only makes it again.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options);
    let mut retry = FIRST_RETRY;
    // Since when announcements are not received, and why; logged once per outage.
    let mut lost: Option<(Instant, String)> = None;
    loop {
        match subscribed(&pool).await {
            Ok(mut listener) => {
                if let Some((since, cause)) = lost.take() {
                    tracing::info!(
                        store = %location,
                        out_for = %format!("{:.1}s", since.elapsed().as_secs_f64()),
                        cause = %cause,
                        "receiving the store's change announcements again"
                    );
                }
                retry = FIRST_RETRY;
                // Whatever was announced before now was missed.
                let _ = tx.send(StoreChange::Resync);
                let error = loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => {
                            let _ = tx.send(StoreChange::from_payload(n.payload()));
                        }
                        // The connection was lost and made again at once.
                        Ok(None) => {
                            let _ = tx.send(StoreChange::Resync);
                        }
                        Err(e) => break e,
                    }
                };
                // A listener whose reconnection failed is not used again (its state
                // may be half made): the next try starts a fresh one.
                lost_announcements(&mut lost, &location, &error);
            }
            Err(error) => lost_announcements(&mut lost, &location, &error),
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// A listener on [`CHANNEL`].
async fn subscribed(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Notes (and logs, when it begins an outage) that announcements are not received.
fn lost_announcements(lost: &mut Option<(Instant, String)>, location: &str, error: &sqlx::Error) {
    if lost.is_none() {
        tracing::warn!(
            store = %location,
            error = %error,
            "not receiving the store's change announcements; waiting sessions poll the store meanwhile"
        );
        *lost = Some((Instant::now(), error.to_string()));
    }
}
