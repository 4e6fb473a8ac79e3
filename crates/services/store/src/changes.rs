//! Changes to a shared store, announced to the processes that use it: an approval
//! decided or expired, tokens added or revoked ([`StoreChange`]). A backend that can
//! announce them (PostgreSQL, with `LISTEN`/`NOTIFY`) hands out a [`StoreChanges`] feed
//! from [`crate::Store::changes`]; readers still poll as a fallback, since an
//! announcement can be missed.
//!
//! A subscriber that may have missed announcements (its store connection was lost and is
//! back, or it fell behind the feed) gets [`StoreChange::Resync`]: re-read everything it
//! keeps.

use tokio::sync::broadcast;

/// Announcements held for a subscriber that has not read them yet; one that falls
/// further behind gets [`StoreChange::Resync`] instead of the ones it missed.
pub(crate) const FEED_CAPACITY: usize = 256;

/// What changed in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChange {
    /// Approval request `id` is no longer pending: approved, denied or expired.
    ApprovalDecided {
        /// The request's id.
        id: String,
    },
    /// A token was added or revoked.
    TokensChanged,
    /// Announcements may have been missed: re-read everything.
    Resync,
}

impl StoreChange {
    /// The `NOTIFY` payload of an approval decided or expired.
    pub(crate) const APPROVAL_PREFIX: &'static str = "approval:";
    /// The `NOTIFY` payload of a token change.
    pub(crate) const TOKENS: &'static str = "tokens";

    /// The change a `NOTIFY` payload announces. A payload this version does not know
    /// (from a newer gateway) asks for a re-read, rather than being ignored.
    pub(crate) fn from_payload(payload: &str) -> StoreChange {
        if payload == Self::TOKENS {
            return StoreChange::TokensChanged;
        }
        match payload.strip_prefix(Self::APPROVAL_PREFIX) {
            Some(id) if !id.is_empty() => StoreChange::ApprovalDecided { id: id.to_owned() },
            _ => StoreChange::Resync,
        }
    }
}

/// One subscriber's feed of [`StoreChange`]s.
#[derive(Debug)]
pub struct StoreChanges {
    rx: broadcast::Receiver<StoreChange>,
}

impl StoreChanges {
    pub(crate) fn new(rx: broadcast::Receiver<StoreChange>) -> Self {
        StoreChanges { rx }
    }

    /// The next change; [`StoreChange::Resync`] when this subscriber fell behind and
    /// missed some. `None` once the store is gone (no more announcements will come).
    pub async fn next(&mut self) -> Option<StoreChange> {
        match self.rx.recv().await {
            Ok(change) => Some(change),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(StoreChange::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// The next change of `feed`, or never when there is no feed (or it ended, which also
/// clears it): for a `select!` next to a polling timer.
pub async fn next_change(feed: &mut Option<StoreChanges>) -> StoreChange {
    if let Some(changes) = feed {
        if let Some(change) = changes.next().await {
            return change;
        }
        *feed = None;
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_their_change_and_unknown_ones_ask_for_a_re_read() {
        assert_eq!(
            StoreChange::from_payload("approval:0190-ab"),
            StoreChange::ApprovalDecided {
                id: "0190-ab".into()
            }
        );
        assert_eq!(
            StoreChange::from_payload("tokens"),
            StoreChange::TokensChanged
        );
        for other in ["approval:", "", "sessions", "TOKENS"] {
            assert_eq!(StoreChange::from_payload(other), StoreChange::Resync);
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_to_re_read() {
        let (tx, rx) = broadcast::channel(2);
        let mut feed = StoreChanges::new(rx);
        for _ in 0..3 {
            tx.send(StoreChange::TokensChanged).unwrap();
        }
        assert_eq!(feed.next().await, Some(StoreChange::Resync));
        assert_eq!(feed.next().await, Some(StoreChange::TokensChanged));
        drop(tx);
        assert_eq!(feed.next().await, Some(StoreChange::TokensChanged));
        assert_eq!(feed.next().await, None);
        let mut feed = Some(feed);
        let next =
            tokio::time::timeout(std::time::Duration::from_millis(50), next_change(&mut feed))
                .await;
        assert!(next.is_err(), "an ended feed never yields");
        assert!(feed.is_none(), "and is cleared");
    }
}
