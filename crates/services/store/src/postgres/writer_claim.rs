//! The claim of a recording gateway on its chain (see `crate::chains`): a
//! session-level advisory lock (`WRITER_LOCK`, chain) on a connection of the claim's
//! own, which the server releases if the gateway dies. A chain has one writer; a second
//! gateway on the same chain (a copied `data_dir`) is refused at start.
//!
//! The lock dies with its connection, and so with a restart of the store: a task checks
//! the connection every [`CHECK_EVERY`] and, once it is lost, takes the lock again on a
//! new one (with a back-off while the store is down). Meanwhile the recorder's writer
//! ([`super::PgEventLog`]) stores nothing (the recorder refuses statements: fail
//! closed): before each write it checks that the claim's connection holds the lock. If
//! another gateway took the lock in between, this one never records again until it is
//! restarted (its idea of the chain's head is stale).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgExecutor};

use crate::{StoreError, WriterClaim};

use super::WRITER_LOCK;

/// How often the claim's connection is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a check, or a try to connect again, may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before taking the lock again; doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between two tries to take the lock again.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// No claim was made in this process (the CLI, tests): writes are not checked.
const UNCLAIMED: i32 = 0;
/// The claim's connection was lost; the lock is being taken again.
const LOST: i32 = -1;
/// Another gateway took the lock while this one had lost it.
const FORFEITED: i32 = -2;

/// Whether, and on which server process, this process holds the writer lock (and of
/// which chain); shared by a store's clones, its claim and its recorder's writer.
#[derive(Debug, Default)]
pub(super) struct Holder(AtomicI32, AtomicI32);

/// What [`Holder::get`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    /// No claim was made: write without checking.
    Unclaimed,
    /// Held by the connection of this server process id (check that it still is).
    By(i32),
    /// Lost with its connection; being taken again.
    Lost,
    /// Taken by another gateway meanwhile: never write again.
    Forfeited,
}

impl Holder {
    /// The chain claimed (its lock's second key).
    pub(super) fn chain(&self) -> i32 {
        self.1.load(Ordering::Acquire)
    }

    pub(super) fn get(&self) -> Held {
        match self.0.load(Ordering::Acquire) {
            UNCLAIMED => Held::Unclaimed,
            LOST => Held::Lost,
            pid if pid > 0 => Held::By(pid),
            _ => Held::Forfeited,
        }
    }

    fn set(&self, value: i32) {
        // Forfeiting is final: nothing overwrites it.
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                (old != FORFEITED).then_some(value)
            });
    }
}

/// Takes the writer lock (`Busy` when another gateway holds it) and keeps it, taking it
/// again after its connection is lost, for as long as the returned claim lives.
pub(super) async fn claim(
    options: &PgConnectOptions,
    location: &str,
    holder: &Arc<Holder>,
    chain: i64,
) -> Result<WriterClaim, StoreError> {
    let chain = i32::try_from(chain).map_err(|_| StoreError::Busy {
        location: location.to_owned(),
        why: format!("chain {chain} is out of range"),
    })?;
    let mut conn = PgConnection::connect_with(options)
        .await
        .map_err(|source| StoreError::Open {
            location: location.to_owned(),
            source,
        })?;
    let Some(pid) = try_lock(&mut conn, chain).await? else {
        return Err(StoreError::Busy {
            location: location.to_owned(),
            why: format!(
                "another gateway records into chain {chain} of this store (each replica needs a data_dir of its own: was this one copied from another?)"
            ),
        });
    };
    holder.1.store(chain, Ordering::Release);
    holder.set(pid);
    let task = tokio::spawn(keep(
        conn,
        options.clone(),
        location.to_owned(),
        holder.clone(),
    ));
    Ok(WriterClaim(Some(Box::new(Claim {
        task,
        holder: holder.clone(),
    }))))
}

/// Takes `chain`'s lock on `conn` if it is free: the server process id that holds it.
async fn try_lock(conn: &mut PgConnection, chain: i32) -> Result<Option<i32>, sqlx::Error> {
    let (claimed, pid): (bool, i32) =
        sqlx::query_as("SELECT pg_try_advisory_lock($1, $2), pg_backend_pid()")
            .bind(WRITER_LOCK)
            .bind(chain)
            .fetch_one(conn)
            .await?;
    Ok(claimed.then_some(pid))
}

/// Whether server process `pid` holds `chain`'s writer lock.
pub(super) async fn holds_lock(
    conn: impl PgExecutor<'_>,
    pid: i32,
    chain: i32,
) -> Result<bool, sqlx::Error> {
    // A lock on two int4 keys shows in pg_locks as classid and objid, objsubid 2.
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks
           WHERE locktype = 'advisory' AND granted AND pid = $1 AND objsubid = 2
             AND classid::bigint = $2 AND objid::bigint = $3)",
    )
    .bind(pid)
    .bind(i64::from(WRITER_LOCK))
    .bind(i64::from(chain))
    .fetch_one(conn)
    .await
}

/// The claim handed to the gateway; dropping it releases the lock (the connection
/// closes) and stops the recorder's writes.
struct Claim {
    task: tokio::task::JoinHandle<()>,
    holder: Arc<Holder>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.task.abort();
        self.holder.set(LOST);
    }
}

/// Checks the claim's connection, and takes the lock again on a new one when it is
/// lost, until aborted or another gateway has taken it.
async fn keep(
    mut conn: PgConnection,
    options: PgConnectOptions,
    location: String,
    holder: Arc<Holder>,
) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let check = tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&mut conn));
        let error = match check.await {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {CHECK_TIMEOUT:?}"),
        };
        holder.set(LOST);
        tracing::error!(
            store = %location,
            error = %error,
            "lost the store's writer lock with its connection (the store restarted?); not recording until it is taken again"
        );
        let mut retry = FIRST_RETRY;
        conn = loop {
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(MAX_RETRY);
            let Ok(Ok(mut new)) =
                tokio::time::timeout(CHECK_TIMEOUT, PgConnection::connect_with(&options)).await
            else {
                continue;
            };
            match tokio::time::timeout(CHECK_TIMEOUT, try_lock(&mut new, holder.chain())).await {
                Ok(Ok(Some(pid))) => {
                    holder.set(pid);
                    tracing::info!(store = %location, "took the store's writer lock again; recording");
                    break new;
                }
                Ok(Ok(None)) => {
                    holder.set(FORFEITED);
                    tracing::error!(
                        store = %location,
                        "another gateway took the store's writer lock while this one had lost it; this gateway refuses statements until it is restarted (the event chain has one writer)"
                    );
                    return;
                }
                Ok(Err(_)) | Err(_) => continue,
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forfeiting_the_lock_is_final() {
        let holder = Holder::default();
        assert_eq!(holder.get(), Held::Unclaimed);
        holder.set(42);
        assert_eq!(holder.get(), Held::By(42));
        holder.set(LOST);
        assert_eq!(holder.get(), Held::Lost);
        holder.set(43);
        assert_eq!(holder.get(), Held::By(43));
        holder.set(FORFEITED);
        holder.set(44);
        holder.set(LOST);
        assert_eq!(holder.get(), Held::Forfeited);
    }
}
