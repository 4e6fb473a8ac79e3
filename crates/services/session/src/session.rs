//! `Session`: one authenticated connection's handle on decisions and recording.

use std::sync::Arc;

use airlock_engine::masking::rules::{Masker, Tally};
use airlock_engine::policy::FunctionCatalog;
use airlock_model::{Action, Decision, EventKind, Principal, Timestamp, Verdict};
use airlock_recorder::{NewEvent, Pending, Receipt, Record, Recorder, RecorderError};
use arc_swap::ArcSwap;

use crate::{Runtime, Target};

/// An event as an adapter describes it; the recorder adds time, order and chain.
#[derive(Debug, Clone)]
pub struct EventDraft {
    /// What happened.
    pub kind: EventKind,
    /// Statement text, for statement events.
    pub statement: Option<String>,
    /// Decision label, for statement events.
    pub decision: Option<&'static str>,
    /// Kind-specific detail.
    pub detail: serde_json::Value,
}

impl EventDraft {
    /// A draft with only a kind and detail.
    pub fn new(kind: EventKind, detail: serde_json::Value) -> Self {
        EventDraft {
            kind,
            statement: None,
            decision: None,
            detail,
        }
    }
}

/// One open session. Shared by the connection's two directions (`&self` methods).
pub struct Session {
    id: String,
    principal: Principal,
    target: Arc<Target>,
    recorder: Recorder,
    /// The gateway's configuration: each decision uses the policies in force now, so a
    /// reload applies to open sessions' next statements.
    runtime: Arc<ArcSwap<Runtime>>,
    /// Held while records are handed to the recorder, so that nothing is queued after
    /// the session's end (the writer numbers events per open session).
    ended: tokio::sync::Mutex<bool>,
    /// What of results this session may not see, fixed when it opens; `None` when no
    /// masking rule applies.
    masker: Option<Arc<Masker>>,
    /// Where held statements wait for approval.
    approvals: airlock_approvals::Approvals,
    /// Wakes a statement waiting for approval when the client cancels it.
    pub(crate) hold_canceled: tokio::sync::Notify,
    /// Tells whether the credential still holds (expiry, revocation).
    identity: airlock_identity::Identity,
    /// The target's metrics, resolved once for the session.
    counters: airlock_metrics::TargetCounters,
}

impl Session {
    pub(crate) fn new(
        id: String,
        principal: Principal,
        target: Arc<Target>,
        recorder: Recorder,
        runtime: Arc<ArcSwap<Runtime>>,
        approvals: airlock_approvals::Approvals,
        identity: airlock_identity::Identity,
    ) -> Self {
        let masker = runtime
            .load()
            .masking
            .for_session(&target.model.name, &principal);
        let (target_name, target_kind) = (target.model.name.clone(), target.model.kind);
        Session {
            id,
            principal,
            target,
            recorder,
            runtime,
            ended: tokio::sync::Mutex::new(false),
            masker,
            approvals,
            hold_canceled: tokio::sync::Notify::new(),
            identity,
            counters: airlock_metrics::global().for_target(&target_name, target_kind.as_str()),
        }
    }

    /// Why the credential that opened this session no longer holds, if it does not:
    /// expired (past `[identity] expiry_grace`) or revoked. Adapters check it before
    /// each statement and close the session with the message.
    pub fn credential_problem(&self) -> Option<String> {
        let grace = self.runtime.load().config.identity.expiry_grace;
        match self.identity.still_valid(&self.principal, grace) {
            Ok(()) => None,
            Err(airlock_identity::NoLongerValid::Expired(at)) => Some(format!(
                "the credential this session was opened with expired at {at}; reconnect with a fresh token"
            )),
            Err(airlock_identity::NoLongerValid::Revoked) => Some(format!(
                "token `{}` was revoked; this session is closed",
                self.principal.name
            )),
        }
    }

    /// The client asked to cancel: a statement waiting for approval stops waiting (and
    /// is not run). Does nothing when none waits.
    pub fn cancel_hold(&self) {
        self.hold_canceled.notify_waiters();
    }

    /// The approval service.
    pub(crate) fn approvals(&self) -> &airlock_approvals::Approvals {
        &self.approvals
    }

    /// The configuration in force now.
    pub(crate) fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// A statement and its parameters as an approver may see them: masked as the
    /// session's recording is.
    pub(crate) fn masked_for_approver(
        &self,
        text: &str,
        mut params: serde_json::Value,
    ) -> (String, serde_json::Value) {
        let Some(m) = &self.masker else {
            return (text.to_owned(), params);
        };
        let mut tally = Tally::default();
        let text = m
            .scan_str(text, &mut tally)
            .unwrap_or_else(|| text.to_owned());
        m.mask_json_strings(&mut params, &mut tally);
        (text, params)
    }

    /// The session's masking, if any rule applies to it.
    pub fn masker(&self) -> Option<&Arc<Masker>> {
        self.masker.as_ref()
    }

    /// The target's metrics, resolved when the session opened: adapters count relayed
    /// bytes, the latency they add and failed upstream connections on them without a
    /// label lookup.
    pub fn metrics(&self) -> &airlock_metrics::TargetCounters {
        &self.counters
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Who is connected.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The target, as resolved when the session opened.
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// Decides every action of one statement with the policies in force now. Without a
    /// policy everything is denied.
    pub fn decide(&self, actions: &[Action], catalog: &dyn FunctionCatalog) -> Verdict {
        match &self.runtime.load().policy {
            Some(policy) => policy.decide_all(&self.principal, &self.target.model, actions, catalog),
            None => Verdict {
                decision: Decision::Deny {
                    reason: "no policy is configured on this gateway, so nothing is permitted (the operator must add a [policy] section)".into(),
                },
                policies: Vec::new(),
                policy_version: String::new(),
                observed: None,
            },
        }
    }

    /// Turns drafts into records. For a masking session, the statement text and every
    /// string of the detail pass through the detectors first: the recording holds no more
    /// PII than the agent's results do. (Policy decided on the real text; the masked
    /// literal stays a valid literal, so the recorded statement still parses.)
    fn to_records(&self, drafts: Vec<EventDraft>) -> Vec<Record> {
        let at = Timestamp::now();
        let traceparent = crate::trace::current();
        drafts
            .into_iter()
            .map(|mut d| {
                self.count(&d);
                if let (Some(tp), Some(map)) = (&traceparent, d.detail.as_object_mut())
                    && !map.contains_key("traceparent")
                {
                    map.insert("traceparent".into(), tp.clone().into());
                }
                if let Some(m) = &self.masker {
                    let mut tally = Tally::default();
                    if let Some(text) = &d.statement
                        && let Some(masked) = m.scan_str(text, &mut tally)
                    {
                        d.statement = Some(masked);
                    }
                    m.mask_json_strings(&mut d.detail, &mut tally);
                }
                Record::Event(NewEvent {
                    session_id: self.id.clone(),
                    at,
                    kind: d.kind,
                    statement: d.statement,
                    decision: d.decision,
                    detail: d.detail,
                })
            })
            .collect()
    }

    /// Counts what a draft shows in the process's metrics: its decision, what was
    /// masked, an approval's step.
    fn count(&self, d: &EventDraft) {
        if let Some(decision) = d.decision {
            self.counters.decided(decision);
        }
        let metrics = airlock_metrics::global();
        let target = &self.target.model;
        match d.kind {
            EventKind::Result | EventKind::Message => {
                if let Some(serde_json::Value::Object(rules)) = d.detail.get("masked") {
                    for (rule, found) in rules {
                        if let serde_json::Value::Object(found) = found {
                            for (detector, n) in found {
                                metrics.masked(rule, detector, n.as_u64().unwrap_or(0));
                            }
                        }
                    }
                }
            }
            EventKind::Approval => {
                if let Some(step) = d.detail.get("step").and_then(|s| s.as_str()) {
                    metrics.approval_step(&target.name, step);
                }
            }
            _ => {}
        }
    }

    /// Holds the session open while records are queued (so none lands after its
    /// end); fails once it ended.
    async fn open(&self) -> Result<tokio::sync::MutexGuard<'_, bool>, RecorderError> {
        let ended = self.ended.lock().await;
        if *ended {
            return Err(RecorderError::SessionEnded);
        }
        Ok(ended)
    }

    /// Records events and returns once they are durable (synced). Fails once the
    /// session ended.
    pub async fn record(&self, drafts: Vec<EventDraft>) -> Result<Receipt, RecorderError> {
        let open = self.open().await?;
        let pending = self.recorder.submit(self.to_records(drafts)).await?;
        drop(open);
        pending.await
    }

    /// Queues the events of plain reads in order and returns what resolves once they
    /// are as durable as `[audit] read_durability` asks, so that a caller can send the
    /// reads to the target meanwhile and wait before their answer reaches the client.
    pub async fn submit_read(&self, drafts: Vec<EventDraft>) -> Result<Pending, RecorderError> {
        let _open = self.open().await?;
        self.recorder.submit_read(self.to_records(drafts)).await
    }

    /// Queues events without waiting for them to be durable. Fails once the session ended.
    pub async fn record_later(&self, drafts: Vec<EventDraft>) -> Result<(), RecorderError> {
        let _open = self.open().await?;
        self.recorder.record_later(self.to_records(drafts)).await
    }

    /// Records the disconnect and ends the session. Only the first call has an effect.
    pub async fn end(&self, detail: serde_json::Value) {
        let mut ended = self.ended.lock().await;
        if *ended {
            return;
        }
        *ended = true;
        airlock_metrics::global()
            .session_ended(&self.target.model.name, self.target.model.kind.as_str());
        let mut records = self.to_records(vec![EventDraft::new(EventKind::Disconnect, detail)]);
        records.push(Record::EndSession {
            id: self.id.clone(),
            at: Timestamp::now(),
        });
        if let Err(e) = self.recorder.record_soon(records).await {
            tracing::error!(session = %self.id, error = %e, "could not record the end of a session");
        }
    }
}
