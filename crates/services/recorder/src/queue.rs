//! The submission queue between sessions (async) and the writer thread (blocking).
//!
//! Two kinds of submissions: *urgent* ones, whose caller waits for durability (a
//! statement about to be forwarded), wake the writer at once; *lazy* ones (results,
//! disconnects) never wake it, and ride along with the next urgent commit or are
//! written within [`LAZY_FLUSH`] (the writer looks that often while it has nothing
//! urgent). Under load that saves a thread wake-up
//! per statement. Capacity is bounded by a semaphore: a full queue makes submitters
//! wait (back-pressure); nothing is ever dropped.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::{Record, RecorderError};

/// The longest a lazy submission waits before the writer commits it on its own.
pub(crate) const LAZY_FLUSH: Duration = Duration::from_millis(5);

/// What a waiting submitter is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckAt {
    /// Once the records are in the journal file (a plain read's record, with
    /// `read_durability = "written"`).
    Written,
    /// Once they are synced to disk.
    Synced,
}

/// One submission: records in order, and who to tell once they are durable.
pub(crate) struct Batch {
    pub(crate) records: Vec<Record>,
    pub(crate) ack: Option<(oneshot::Sender<Result<(), String>>, AckAt)>,
    /// Returned to the queue's capacity when the batch is dropped after its commit.
    _permit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct State {
    batches: Vec<Batch>,
    /// An urgent batch is queued.
    urgent: bool,
    /// When the oldest lazy batch still queued arrived.
    lazy_since: Option<Instant>,
    /// Every handle is gone: drain and stop.
    closed: bool,
}

/// The shared queue.
pub(crate) struct Queue {
    state: Mutex<State>,
    wake: Condvar,
    capacity: Arc<Semaphore>,
    /// The most batches it holds.
    depth: usize,
}

impl Queue {
    pub(crate) fn new(depth: usize) -> Self {
        Queue {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            capacity: Arc::new(Semaphore::new(depth)),
            depth,
        }
    }

    /// Batches queued or being committed (each holds a permit until its commit is
    /// done): one atomic read, for the metrics scrape.
    pub(crate) fn depth(&self) -> usize {
        self.depth.saturating_sub(self.capacity.available_permits())
    }

    /// Queues `records`; waits only while the queue is full. `urgent` wakes the writer
    /// now (always so when someone waits for the `ack`).
    pub(crate) async fn push(
        &self,
        records: Vec<Record>,
        ack: Option<(oneshot::Sender<Result<(), String>>, AckAt)>,
        urgent: bool,
    ) -> Result<(), RecorderError> {
        let permit = self
            .capacity
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RecorderError::Stopped)?;
        let urgent = urgent || ack.is_some();
        let mut state = self
            .state
            .lock()
            .map_err(|_| RecorderError::Unavailable("recorder queue poisoned".into()))?;
        if state.closed {
            return Err(RecorderError::Stopped);
        }
        state.batches.push(Batch {
            records,
            ack,
            _permit: permit,
        });
        let wake = if urgent {
            // Wake the writer only on the first urgent batch; later ones find it busy
            // or about to look.
            !std::mem::replace(&mut state.urgent, true)
        } else {
            // Never woken for: the writer looks every LAZY_FLUSH anyway.
            state.lazy_since.get_or_insert_with(Instant::now);
            false
        };
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Blocks until there is work to commit: an urgent batch, lazy batches older than
    /// [`LAZY_FLUSH`], anything left once closed, or `until` (the writer's next sync
    /// being due). Moves nothing: the writer takes the batches with [`Queue::drain`]
    /// under its own lock, so that nobody writes between taking and writing.
    pub(crate) fn wait(&self, until: Option<Instant>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        loop {
            if state.urgent || state.closed {
                return;
            }
            // Lazy batches do not wake the writer (that would cost a thread switch per
            // statement's result): it looks every LAZY_FLUSH instead.
            let mut left = match state.lazy_since {
                Some(since) if since.elapsed() >= LAZY_FLUSH => return,
                Some(since) => LAZY_FLUSH - since.elapsed(),
                None => LAZY_FLUSH,
            };
            if let Some(until) = until {
                match until.checked_duration_since(Instant::now()) {
                    None => return,
                    Some(d) if d.is_zero() => return,
                    Some(d) => left = left.min(d),
                }
            }
            match self.wake.wait_timeout(state, left) {
                Ok((s, _)) => state = s,
                Err(_) => return,
            }
        }
    }

    /// Moves every queued batch into `into`. Returns `false` when the queue is closed
    /// and was empty: the writer's cue to stop.
    pub(crate) fn drain(&self, into: &mut Vec<Batch>) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        std::mem::swap(into, &mut state.batches);
        state.urgent = false;
        state.lazy_since = None;
        !(state.closed && into.is_empty())
    }

    /// [`wait`](Self::wait), then [`drain`](Self::drain).
    #[cfg(test)]
    pub(crate) fn take(&self, into: &mut Vec<Batch>, until: Option<Instant>) -> bool {
        self.wait(until);
        self.drain(into)
    }

    /// Moves the queued batches nobody waits for (results, disconnects) into `into`,
    /// in order, without blocking: a session writing its own records first writes the
    /// ones it queued before, so that a session's events stay in order.
    pub(crate) fn take_lazy(&self, into: &mut Vec<Batch>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.batches.iter().all(|b| b.ack.is_some()) {
            return;
        }
        into.extend(state.batches.extract_if(.., |b| b.ack.is_none()));
        state.lazy_since = None;
    }

    /// Wakes the writer without giving it anything (something was written that it
    /// must sync in time).
    pub(crate) fn nudge(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.urgent = true;
        }
        self.wake.notify_one();
    }

    /// No more submissions: the writer drains what is queued and stops.
    pub(crate) fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.capacity.close();
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urgent_batches_are_taken_at_once_and_lazy_ones_after_the_flush_delay() {
        let queue = Arc::new(Queue::new(8));
        queue.push(Vec::new(), None, false).await.unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        assert!(queue.take(&mut got, None));
        assert_eq!(got.len(), 1);
        assert!(
            started.elapsed() >= LAZY_FLUSH,
            "a lazy batch waits for the flush delay"
        );

        got.clear();
        queue.push(Vec::new(), None, false).await.unwrap();
        let (ack, _done) = oneshot::channel();
        queue
            .push(Vec::new(), Some((ack, AckAt::Synced)), false)
            .await
            .unwrap();
        assert!(queue.take(&mut got, None));
        assert_eq!(got.len(), 2, "the lazy batch rides with the urgent one");
    }

    #[test]
    fn an_idle_queue_returns_empty_when_the_next_sync_is_due() {
        let queue = Queue::new(8);
        let started = Instant::now();
        let mut got = Vec::new();
        assert!(queue.take(&mut got, Some(started + Duration::from_millis(2))));
        assert!(got.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(2));
        assert!(started.elapsed() < LAZY_FLUSH * 20);
    }

    #[tokio::test]
    async fn a_closed_queue_drains_then_stops_and_refuses_more() {
        let queue = Queue::new(8);
        queue.push(Vec::new(), None, false).await.unwrap();
        queue.close();
        let mut got = Vec::new();
        assert!(queue.take(&mut got, None));
        assert_eq!(got.len(), 1);
        got.clear();
        assert!(!queue.take(&mut got, None));
        assert!(matches!(
            queue.push(Vec::new(), None, false).await,
            Err(RecorderError::Stopped)
        ));
    }

    #[tokio::test]
    async fn its_depth_counts_batches_until_their_commit_is_done() {
        let queue = Queue::new(8);
        assert_eq!(queue.depth(), 0);
        queue.push(Vec::new(), None, false).await.unwrap();
        queue.push(Vec::new(), None, true).await.unwrap();
        assert_eq!(queue.depth(), 2);
        let mut got = Vec::new();
        assert!(queue.take(&mut got, None));
        assert_eq!(queue.depth(), 2, "taken but not yet committed");
        drop(got);
        assert_eq!(queue.depth(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_makes_submitters_wait_until_a_commit_frees_room() {
        let queue = Arc::new(Queue::new(1));
        queue.push(Vec::new(), None, false).await.unwrap();
        let second = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.push(Vec::new(), None, false).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "no room: the second submitter waits");
        let mut got = Vec::new();
        assert!(queue.take(&mut got, None));
        drop(got); // the commit is done: its permit returns
        second.await.unwrap().unwrap();
    }
}
