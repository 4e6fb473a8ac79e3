//! Holding a statement for approval, in a session: request (or find the earlier
//! request for exactly this statement), wait for the decision, and record every step
//! in the session's events. Adapters only say what was held and how to tell their
//! client; the outcome is run it (once) or refuse it with words the agent can act on.

use std::time::{Duration, Instant};

use airlock_approvals::notify::Delivery;
use airlock_approvals::{Begun, HoldRequest, Waited};
use airlock_model::{Approval, ApprovalStatus, Decision, EventKind, Verdict};
use airlock_recorder::RecorderError;
use serde_json::json;

use crate::{EventDraft, Session};

/// What an adapter held.
#[derive(Debug, Clone)]
pub struct HoldTicket {
    /// The statement text as the client sent it, with the prepared statements it
    /// executes (for the approver; the session masks it like a recording).
    pub statement: String,
    /// The parameters as recorded.
    pub params: serde_json::Value,
    /// What an approval is bound to (`airlock_approvals::StatementDigest`).
    pub digest: String,
    /// The verdict that held it (a `Decision::Hold`).
    pub verdict: Verdict,
}

/// A request the client must wait for.
pub struct Waiting {
    /// The request.
    pub approval: Approval,
    /// Whether it is new (`false`: the same statement was held before and is still
    /// pending, e.g. a retry after a timeout or a reconnect).
    pub created: bool,
    deliveries: Option<tokio::task::JoinHandle<Vec<Delivery>>>,
}

/// How a hold ends.
#[derive(Debug)]
pub enum HoldOutcome {
    /// Approved and claimed for this one execution: run the statement now.
    Run {
        /// The approval used.
        approval_id: String,
    },
    /// Not run: denied, expired, already used, or the approval could not be requested
    /// or claimed. `message` and `hint` are for the agent.
    Refuse {
        /// What happened.
        message: String,
        /// What to do about it.
        hint: String,
    },
    /// Still undecided when the wait ended (the target's `hold_timeout`): not run; the
    /// request stays open, and the same statement or request sent again after approval
    /// runs once.
    Pending {
        /// The open request.
        approval_id: String,
        /// What happened.
        message: String,
        /// What to do about it.
        hint: String,
    },
    /// The client cancelled the wait (a CancelRequest): not run; the request stays
    /// open.
    Canceled {
        /// The request, which stays pending.
        approval_id: String,
    },
}

/// Why a hold ended without an outcome.
#[derive(Debug)]
pub enum HoldFailure<E> {
    /// A step could not be recorded: nothing runs (fail closed).
    Recorder(RecorderError),
    /// The adapter could not tell its client to wait.
    Announce(E),
}

/// Where a held statement stands right after it arrived.
pub enum Held {
    /// Settled at once: an earlier approval of exactly this statement was claimed, or
    /// requesting failed.
    Settled(HoldOutcome),
    /// The client must wait: tell it, then [`Session::await_approval`].
    Wait(Box<Waiting>),
}

impl Session {
    /// What this session's adapter holds, and what happens to it once approved, for
    /// the agent's messages: a PostgreSQL statement is run, an HTTP request is sent.
    pub(crate) fn held_noun(&self) -> (&'static str, &'static str) {
        match self.target().model.kind {
            airlock_model::TargetKind::Postgres => ("statement", "run"),
            airlock_model::TargetKind::Http | airlock_model::TargetKind::Kubernetes => {
                ("request", "sent")
            }
            airlock_model::TargetKind::Mcp => ("call", "made"),
        }
    }
}

fn step(step: &str, approval: &Approval, mut extra: serde_json::Value) -> EventDraft {
    let mut detail = json!({ "step": step, "approval_id": approval.id });
    if let (Some(d), Some(e)) = (detail.as_object_mut(), extra.as_object_mut()) {
        d.append(e);
    }
    EventDraft::new(EventKind::Approval, detail)
}

fn decided_detail(a: &Approval) -> serde_json::Value {
    json!({
        "decided_by": a.decided_by,
        "decided_at": a.decided_at,
        "comment": a.comment,
    })
}

impl Session {
    /// Starts holding a statement: claims an earlier approval of exactly this statement
    /// (same principal, target, digest and policy version), joins its pending request,
    /// or creates one (approvers are notified). Every step is recorded before this
    /// returns.
    pub async fn hold(&self, ticket: HoldTicket) -> Result<Held, RecorderError> {
        let (what, done) = self.held_noun();
        let Decision::Hold { group, reason } = &ticket.verdict.decision else {
            return Ok(Held::Settled(HoldOutcome::Refuse {
                message: format!(
                    "airlock: the {} was not held, so it cannot wait for approval",
                    self.held_noun().0
                ),
                hint: "Send it again.".into(),
            }));
        };
        let (statement, params) = self.masked_for_approver(&ticket.statement, ticket.params);
        let runtime = self.runtime();
        let request = HoldRequest {
            session_id: self.id().to_owned(),
            principal: self.principal().name.clone(),
            target: self.target().model.name.clone(),
            protocol: self.target().model.kind.as_str().to_owned(),
            statement,
            params,
            digest: ticket.digest,
            policy_version: ticket.verdict.policy_version.clone(),
            policies: ticket.verdict.policies.clone(),
            approver_group: group.clone(),
            reason: reason.clone(),
        };
        let (begun, deliveries) = match self.approvals().begin(request, &runtime.approvals).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(session = %self.id(), error = %e, "could not request an approval");
                self.record(vec![EventDraft::new(
                    EventKind::Approval,
                    json!({ "step": "request_failed", "error": e.to_string() }),
                )])
                .await?;
                return Ok(Held::Settled(HoldOutcome::Refuse {
                    message: format!(
                        "airlock: {reason}, and the approval request could not be stored, so the {what} was not {done}"
                    ),
                    hint: "Try again later; if it persists, tell the operator that Airlock's store is failing.".into(),
                }));
            }
        };
        match begun {
            Begun::Approved(approval) => {
                // Decided while no statement waited (a retry after a timeout finds it).
                self.time_decision(&approval);
                Ok(Held::Settled(self.claim(&approval).await?))
            }
            Begun::Pending { approval, created } => {
                let what = if created { "requested" } else { "rejoined" };
                self.record(vec![step(
                    what,
                    &approval,
                    json!({
                        "group": approval.approver_group,
                        "expires_at": approval.expires_at,
                        "digest": approval.digest,
                        "policy_version": approval.policy_version,
                        "policies": approval.policies,
                    }),
                )])
                .await?;
                Ok(Held::Wait(Box::new(Waiting {
                    approval,
                    created,
                    deliveries,
                })))
            }
        }
    }

    /// The whole hold, as every adapter runs it: request (or rejoin, or claim) the
    /// approval, call `announce` once if the agent must wait (PostgreSQL sends a notice;
    /// HTTP sends nothing, so the client sees only a delay), then wait up to the
    /// target's `hold_timeout` for the decision. The caller races this against its
    /// client leaving; dropping it stops the wait (the request stays open).
    pub async fn hold_until_decided<E, F, Fut>(
        &self,
        ticket: HoldTicket,
        announce: F,
    ) -> Result<HoldOutcome, HoldFailure<E>>
    where
        F: FnOnce(&Waiting, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
    {
        let waiting = match self.hold(ticket).await.map_err(HoldFailure::Recorder)? {
            Held::Settled(outcome) => return Ok(outcome),
            Held::Wait(w) => w,
        };
        let timeout = self.target().config.hold_timeout;
        announce(&waiting, timeout)
            .await
            .map_err(HoldFailure::Announce)?;
        self.await_approval(waiting, timeout)
            .await
            .map_err(HoldFailure::Recorder)
    }

    /// Waits up to `timeout` for the decision on a held statement, recording the
    /// notifications sent meanwhile and the outcome.
    pub async fn await_approval(
        &self,
        mut waiting: Box<Waiting>,
        timeout: Duration,
    ) -> Result<HoldOutcome, RecorderError> {
        let (what, done) = self.held_noun();
        let started = Instant::now();
        // Counted as pending until this returns or is dropped (the client left).
        let _pending = self.metrics().hold_pending();
        let id = waiting.approval.id.clone();
        let approvals = self.approvals().clone();
        let wait = approvals.wait(&id, timeout);
        tokio::pin!(wait);
        let canceled = self.hold_canceled.notified();
        tokio::pin!(canceled);
        let waited = loop {
            match waiting.deliveries.as_mut() {
                Some(handle) => {
                    tokio::select! {
                        w = &mut wait => break w,
                        _ = &mut canceled => break Ok(Waited::Canceled),
                        d = handle => {
                            waiting.deliveries = None;
                            let deliveries = d.unwrap_or_default();
                            self.record(vec![step("notified", &waiting.approval, json!({ "deliveries": deliveries }))]).await?;
                        }
                    }
                }
                None => {
                    tokio::select! {
                        w = &mut wait => break w,
                        _ = &mut canceled => break Ok(Waited::Canceled),
                    }
                }
            }
        };
        let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let approval = match waited {
            Ok(Waited::Decided(a)) => {
                self.time_decision(&a);
                a
            }
            Ok(Waited::Canceled) => {
                self.record(vec![step(
                    "canceled",
                    &waiting.approval,
                    json!({ "waited_ms": waited_ms }),
                )])
                .await?;
                return Ok(HoldOutcome::Canceled {
                    approval_id: waiting.approval.id.clone(),
                });
            }
            Ok(Waited::TimedOut(a)) => {
                self.record(vec![step(
                    "timed_out",
                    &a,
                    json!({ "waited_ms": waited_ms }),
                )])
                .await?;
                return Ok(HoldOutcome::Pending {
                    approval_id: a.id.clone(),
                    message: format!(
                        "airlock: {what} still waiting for approval by group \"{}\" after {}s (request {}); it was not {done}",
                        a.approver_group,
                        timeout.as_secs(),
                        a.id
                    ),
                    hint: format!(
                        "The request stays open until {}. Once a member of \"{}\" approves it (airlock approve {}), send exactly the same {what} again and it runs once; a changed {what} needs a new approval.",
                        a.expires_at, a.approver_group, a.id
                    ),
                });
            }
            Err(e) => {
                tracing::error!(session = %self.id(), approval = %id, error = %e, "could not wait for an approval");
                return Ok(HoldOutcome::Refuse {
                    message: format!(
                        "airlock: the approval store failed while waiting for request {id}; the {what} was not {done}"
                    ),
                    hint: format!("Send the same {what} again to keep waiting for request {id}."),
                });
            }
        };
        match approval.status {
            ApprovalStatus::Approved => {
                self.record(vec![step("approved", &approval, decided_detail(&approval))])
                    .await?;
                self.claim(&approval).await
            }
            ApprovalStatus::Denied => {
                self.record(vec![step("denied", &approval, decided_detail(&approval))])
                    .await?;
                Ok(HoldOutcome::Refuse {
                    message: format!(
                        "airlock: approval denied by {}: {}",
                        approval.decided_by.as_deref().unwrap_or("an approver"),
                        approval.comment.as_deref().unwrap_or("no reason given")
                    ),
                    hint: format!(
                        "The {what} was not {done}. Do not retry it as is; address the approver's reason, or ask a person."
                    ),
                })
            }
            ApprovalStatus::Expired => {
                self.record(vec![step(
                    "expired",
                    &approval,
                    json!({ "expires_at": approval.expires_at }),
                )])
                .await?;
                Ok(HoldOutcome::Refuse {
                    message: format!(
                        "airlock: approval request {} expired at {} without a decision; the {what} was not {done}",
                        approval.id, approval.expires_at
                    ),
                    hint: format!("Send the {what} again to ask for approval anew."),
                })
            }
            ApprovalStatus::Used | ApprovalStatus::Pending => Ok(self.already_used(&approval)),
        }
    }

    /// Samples how long a decided request took to be decided (an expired one: its
    /// whole life), in `airlock_approval_latency_seconds`.
    fn time_decision(&self, approval: &Approval) {
        let (outcome, at) = match approval.status {
            ApprovalStatus::Approved => ("approved", approval.decided_at),
            ApprovalStatus::Denied => ("denied", approval.decided_at),
            ApprovalStatus::Expired => ("expired", Some(approval.expires_at)),
            ApprovalStatus::Pending | ApprovalStatus::Used => return,
        };
        let Some(at) = at else {
            return;
        };
        let took =
            Duration::try_from(at.datetime() - approval.created_at.datetime()).unwrap_or_default();
        self.metrics().approval_decided(outcome, took);
    }

    /// Claims an approved request for this one execution and records it.
    async fn claim(&self, approval: &Approval) -> Result<HoldOutcome, RecorderError> {
        let (what, done) = self.held_noun();
        match self.approvals().use_approval(&approval.id, self.id()).await {
            Ok(true) => {
                self.record(vec![step("used", approval, decided_detail(approval))])
                    .await?;
                Ok(HoldOutcome::Run {
                    approval_id: approval.id.clone(),
                })
            }
            Ok(false) => Ok(self.already_used(approval)),
            Err(e) => {
                tracing::error!(session = %self.id(), approval = %approval.id, error = %e, "could not use an approval");
                Ok(HoldOutcome::Refuse {
                    message: format!(
                        "airlock: approval {} could not be claimed (the store failed); the {what} was not {done}",
                        approval.id
                    ),
                    hint: format!("Send the same {what} again."),
                })
            }
        }
    }

    fn already_used(&self, approval: &Approval) -> HoldOutcome {
        let (what, done) = self.held_noun();
        HoldOutcome::Refuse {
            message: format!(
                "airlock: approval {} was already used (an approval runs its {what} once); the {what} was not {done}",
                approval.id
            ),
            hint: format!("Send the {what} again to ask for a new approval."),
        }
    }
}
