//! The approval service: request, wait, decide, use, expire.
//!
//! A waiting session learns of a decision taken in this process at once (`decided`), of
//! one taken by another process (the CLI, another replica) from the store's change
//! feed where it has one ([`Store::changes`], PostgreSQL), and otherwise, or should an
//! announcement be lost, at its next poll of the store.

use std::sync::Arc;
use std::time::Duration;

use airlock_model::{Approval, ApprovalStatus, Principal, Timestamp};
use airlock_store::{Store, StoreChange, next_change};
use tokio::sync::watch;

use crate::notify::Notifier;
use crate::{ApprovalError, DecideError};

/// How often a waiting session re-reads its request from the store, to see decisions
/// taken by another process (the CLI, another replica), on a store that does not
/// announce them.
const POLL_INTERVAL: Duration = Duration::from_millis(400);
/// The same on a store that announces them: a fallback for an announcement lost.
const POLL_INTERVAL_ANNOUNCED: Duration = Duration::from_secs(1);

/// What a held statement is, as the session saw it.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    /// The session that holds it.
    pub session_id: String,
    /// Who sent it.
    pub principal: String,
    /// Where it was going.
    pub target: String,
    /// The target's protocol.
    pub protocol: String,
    /// The statement as the approver sees it (as recorded).
    pub statement: String,
    /// Its parameters as recorded.
    pub params: serde_json::Value,
    /// See [`crate::StatementDigest`].
    pub digest: String,
    /// Version of the policy set that held it.
    pub policy_version: String,
    /// The policies that held it.
    pub policies: Vec<String>,
    /// Who must approve.
    pub approver_group: String,
    /// Why, in the policy's words.
    pub reason: String,
}

/// The reloadable part: expiry and notification channels.
pub struct Settings {
    /// How long a request stays open.
    pub expire_after: Duration,
    /// Where new requests are announced.
    pub notifier: Arc<Notifier>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("expire_after", &self.expire_after)
            .finish_non_exhaustive()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            expire_after: Duration::from_secs(3600),
            notifier: Arc::new(Notifier::none()),
        }
    }
}

/// What became of a held statement when it arrived.
#[derive(Debug)]
pub enum Begun {
    /// An earlier request for exactly this statement was approved and not yet used:
    /// use it ([`Approvals::use_approval`]) and run the statement.
    Approved(Approval),
    /// A request is pending: a new one (`created`), or an earlier one for exactly this
    /// statement (a retry after a timeout or a reconnect).
    Pending {
        /// The request.
        approval: Approval,
        /// Whether this call created it (and approvers are being notified).
        created: bool,
    },
}

/// How waiting for a decision ended.
#[derive(Debug)]
pub enum Waited {
    /// The request is no longer pending: approved, denied or expired (see its status).
    Decided(Approval),
    /// The wait ran out with the request still pending.
    TimedOut(Approval),
    /// The waiter gave up (its client cancelled); the request stays pending.
    Canceled,
}

/// Where approval steps that happen outside an agent's session (decisions taken in this
/// process, expiry) are recorded.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync {
    /// Records `step` (`approved`, `denied`, `expired`) of `approval`, with `detail`.
    async fn approval_step(&self, approval: &Approval, step: &str, detail: serde_json::Value);
}

/// The approval service, shared by every session of the process.
#[derive(Clone)]
pub struct Approvals {
    store: Arc<dyn Store>,
    /// Bumped whenever this process decides a request: waiters re-read at once.
    decided: Arc<watch::Sender<u64>>,
    audit: Option<Arc<dyn AuditSink>>,
    /// How often a waiter re-reads its request, when set; else by the store's kind.
    poll: Option<Duration>,
}

/// Whether `who` may see a request: a member of its approver group, or the principal
/// who asked.
pub fn may_see(approval: &Approval, who: &Principal) -> bool {
    who.name == approval.principal || who.groups.contains(&approval.approver_group)
}

impl Approvals {
    /// The service over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Approvals {
            store,
            decided: Arc::new(watch::channel(0).0),
            audit: None,
            poll: None,
        }
    }

    /// Waiters re-read their request from the store every `every`, whether or not the
    /// store announces decisions (by default 400 ms where it does not, 1 s where it
    /// does).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll = Some(every);
        self
    }

    /// Records decisions and expiries through `audit` as well.
    pub fn with_audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Looks for an open request for exactly this statement, or creates one. A new
    /// request is announced on `settings`' webhooks in the background; the returned
    /// handle reports the deliveries.
    pub async fn begin(
        &self,
        req: HoldRequest,
        settings: &Settings,
    ) -> Result<
        (
            Begun,
            Option<tokio::task::JoinHandle<Vec<crate::notify::Delivery>>>,
        ),
        ApprovalError,
    > {
        let now = Timestamp::now();
        if let Some(existing) = self
            .store
            .open_approval_for(
                &req.principal,
                &req.target,
                &req.digest,
                &req.policy_version,
                now,
            )
            .await?
        {
            let begun = match existing.status {
                ApprovalStatus::Approved => Begun::Approved(existing),
                _ => Begun::Pending {
                    approval: existing,
                    created: false,
                },
            };
            return Ok((begun, None));
        }
        let approval = Approval {
            id: uuid::Uuid::now_v7().to_string(),
            status: ApprovalStatus::Pending,
            session_id: req.session_id,
            principal: req.principal,
            target: req.target,
            protocol: req.protocol,
            statement: req.statement,
            params: req.params,
            digest: req.digest,
            policy_version: req.policy_version,
            policies: req.policies,
            approver_group: req.approver_group,
            reason: req.reason,
            created_at: now,
            expires_at: now.plus(settings.expire_after),
            decided_by: None,
            decided_at: None,
            comment: None,
            used_at: None,
            used_in_session: None,
        };
        self.store.insert_approval(&approval).await?;
        let notifier = settings.notifier.clone();
        let announced = approval.clone();
        let deliveries = (!notifier.is_empty())
            .then(|| tokio::spawn(async move { notifier.approval_requested(&announced).await }));
        Ok((
            Begun::Pending {
                approval,
                created: true,
            },
            deliveries,
        ))
    }

    /// Waits until request `id` is decided or expires, or `timeout` passes.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Waited, ApprovalError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Both subscribed before the first read: nothing decided after it is missed.
        let mut decided = self.decided.subscribe();
        let mut changes = self.store.changes();
        let poll = self.poll.unwrap_or(if changes.is_some() {
            POLL_INTERVAL_ANNOUNCED
        } else {
            POLL_INTERVAL
        });
        loop {
            let now = Timestamp::now();
            let current = self.store.get_approval(id).await?;
            let Some(current) = current else {
                // Deleted under us (by hand): nothing can approve it any more.
                return Err(ApprovalError::Store(airlock_store::StoreError::Corrupt {
                    what: "approval",
                    detail: format!("request {id} disappeared from the store"),
                }));
            };
            if current.status != ApprovalStatus::Pending {
                return Ok(Waited::Decided(current));
            }
            if current.expires_at <= now {
                // Expired while pending: mark it (the sweeper may not have run yet).
                let mut expired = current;
                for a in self.expire_due().await? {
                    if a.id == expired.id {
                        expired = a;
                    }
                }
                expired.status = ApprovalStatus::Expired;
                return Ok(Waited::Decided(expired));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Waited::TimedOut(current));
            }
            // Until the next poll, the deadline, or the request's expiry, which comes first.
            let now_instant = tokio::time::Instant::now();
            let expires_in = Duration::try_from(current.expires_at.datetime() - now.datetime())
                .unwrap_or(Duration::ZERO);
            let wake = [poll, expires_in]
                .into_iter()
                .filter_map(|d| now_instant.checked_add(d))
                .fold(deadline, std::cmp::Ord::min);
            let nap = tokio::time::sleep_until(wake);
            tokio::pin!(nap);
            loop {
                tokio::select! {
                    _ = &mut nap => break,
                    _ = decided.changed() => break,
                    change = next_change(&mut changes) => match change {
                        StoreChange::ApprovalDecided { id: decided_id } if decided_id == id => break,
                        StoreChange::Resync => break,
                        // Another request, or tokens: keep waiting.
                        _ => {}
                    },
                }
            }
        }
    }

    /// Uses an approved request for `session_id`; `Ok(false)` when it cannot be used
    /// (used already, expired, not approved).
    pub async fn use_approval(&self, id: &str, session_id: &str) -> Result<bool, ApprovalError> {
        Ok(self
            .store
            .use_approval(id, session_id, Timestamp::now())
            .await?)
    }

    /// One request, if `who` may see it.
    pub async fn get(&self, id: &str, who: &Principal) -> Result<Option<Approval>, ApprovalError> {
        Ok(self
            .store
            .get_approval(id)
            .await?
            .filter(|a| may_see(a, who)))
    }

    /// Requests `who` may see, newest first.
    pub async fn list(
        &self,
        who: &Principal,
        status: Option<ApprovalStatus>,
        limit: i64,
    ) -> Result<Vec<Approval>, ApprovalError> {
        self.expire_due().await?;
        Ok(self
            .store
            .list_approvals(status, Some((&who.name, &who.groups)), limit)
            .await?)
    }

    /// Approves (`approve`) or denies request `id` as `approver`. The approver must be
    /// in the request's group and must not be the principal who asked; a denial needs a
    /// reason. Waiting sessions in this process learn of it at once.
    pub async fn decide(
        &self,
        id: &str,
        approver: &Principal,
        approve: bool,
        comment: Option<String>,
    ) -> Result<Approval, DecideError> {
        let now = Timestamp::now();
        let Some(current) = self.store.get_approval(id).await? else {
            return Err(DecideError::NotFound(id.to_owned()));
        };
        if approver.name == current.principal {
            return Err(DecideError::Forbidden(format!(
                "`{}` asked for approval {id} and cannot decide its own request; a member of group \"{}\" must",
                approver.name, current.approver_group
            )));
        }
        if !approver.groups.contains(&current.approver_group) {
            return Err(DecideError::Forbidden(format!(
                "approval {id} must be decided by a member of group \"{}\"; `{}` is not one",
                current.approver_group, approver.name
            )));
        }
        let comment = comment
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        if !approve && comment.is_none() {
            return Err(DecideError::Invalid(
                "a denial needs a reason: the agent is told it".into(),
            ));
        }
        if let Some(c) = &comment
            && c.len() > 2000
        {
            return Err(DecideError::Invalid(
                "the comment or reason is longer than 2000 bytes".into(),
            ));
        }
        match self
            .store
            .decide_approval(id, approve, &approver.name, comment.as_deref(), now)
            .await?
        {
            None => Err(DecideError::NotFound(id.to_owned())),
            Some((decided, true)) => {
                self.decided.send_modify(|n| *n = n.wrapping_add(1));
                tracing::info!(approval = %id, by = %approver.name, status = %decided.status, "approval decided");
                if let Some(audit) = &self.audit {
                    let detail = serde_json::json!({
                        "decided_by": decided.decided_by,
                        "decided_at": decided.decided_at,
                        "comment": decided.comment,
                    });
                    audit
                        .approval_step(&decided, decided.status.as_str(), detail)
                        .await;
                }
                Ok(decided)
            }
            Some((other, false)) => Err(DecideError::Conflict(match other.status {
                ApprovalStatus::Pending => format!(
                    "approval {id} expired at {} and can no longer be decided",
                    other.expires_at
                ),
                ApprovalStatus::Expired => format!(
                    "approval {id} expired at {} and can no longer be decided",
                    other.expires_at
                ),
                status => format!(
                    "approval {id} was already decided: {status} by {} at {}",
                    other.decided_by.as_deref().unwrap_or("?"),
                    other.decided_at.map(|t| t.to_string()).unwrap_or_default()
                ),
            })),
        }
    }

    /// Marks requests whose time is up as expired, logs them, and returns them.
    pub async fn expire_due(&self) -> Result<Vec<Approval>, ApprovalError> {
        let expired = self.store.expire_approvals(Timestamp::now()).await?;
        for a in &expired {
            tracing::info!(approval = %a.id, principal = %a.principal, target = %a.target, group = %a.approver_group, "approval request expired");
            if let Some(audit) = &self.audit {
                let detail =
                    serde_json::json!({ "expires_at": a.expires_at, "decided_by": a.decided_by });
                audit.approval_step(a, "expired", detail).await;
            }
        }
        if !expired.is_empty() {
            self.decided.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(expired)
    }

    /// Expires due requests every `every` until the process ends.
    pub fn spawn_sweeper(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = me.expire_due().await {
                    tracing::warn!(error = %e, "could not expire approval requests");
                }
            }
        })
    }
}
