//! The gateway's own audit session: approval steps that happen outside any agent's
//! session (a decision taken through this process's API, a request that expired) are
//! recorded here, in the same hash chain, so that who decided what and when is in the
//! tamper-evident log even when the agent that asked is long gone.
//!
//! The session opens with its first event (a gateway without approvals records none)
//! and ends when the gateway stops. It appears in `sessions list` with protocol
//! `airlock` and principal `airlock`.

use airlock_approvals::AuditSink;
use airlock_model::{Approval, EventKind, SessionSummary, Timestamp};
use airlock_recorder::{NewEvent, Record, Recorder};
use serde_json::{Value, json};

/// Protocol and target name of the gateway's audit session.
pub const AUDIT_PROTOCOL: &str = "airlock";

/// Records gateway-level approval steps (see the module doc).
pub struct GatewayAudit {
    recorder: Recorder,
    /// The session id, once the first event opened it.
    session: tokio::sync::Mutex<Option<String>>,
}

impl GatewayAudit {
    /// An audit trail that writes through `recorder`.
    pub fn new(recorder: Recorder) -> Self {
        GatewayAudit {
            recorder,
            session: tokio::sync::Mutex::new(None),
        }
    }

    /// Ends the audit session, if one was opened.
    pub async fn end(&self) {
        let mut session = self.session.lock().await;
        if let Some(id) = session.take()
            && let Err(e) = self
                .recorder
                .record_soon(vec![Record::EndSession {
                    id,
                    at: Timestamp::now(),
                }])
                .await
        {
            tracing::error!(error = %e, "could not record the end of the gateway's audit session");
        }
    }
}

#[async_trait::async_trait]
impl AuditSink for GatewayAudit {
    async fn approval_step(&self, approval: &Approval, step: &str, extra: Value) {
        let at = Timestamp::now();
        let mut detail = json!({
            "step": step,
            "approval_id": approval.id,
            "requested_in": approval.session_id,
            "principal": approval.principal,
            "target": approval.target,
            "group": approval.approver_group,
        });
        if let (Some(d), Value::Object(mut e)) = (detail.as_object_mut(), extra) {
            d.append(&mut e);
        }
        let mut session = self.session.lock().await;
        let mut records = Vec::with_capacity(3);
        let id = match session.as_ref() {
            Some(id) => id.clone(),
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                records.push(Record::StartSession(SessionSummary {
                    id: id.clone(),
                    principal: Some(AUDIT_PROTOCOL.into()),
                    target: AUDIT_PROTOCOL.into(),
                    protocol: AUDIT_PROTOCOL.into(),
                    client_addr: "-".into(),
                    started_at: at,
                    ended_at: None,
                    marks: airlock_model::SessionMarks::default(),
                }));
                // Like every session, it opens with what `audit verify` cross-checks
                // against the session row.
                records.push(Record::Event(NewEvent {
                    session_id: id.clone(),
                    at,
                    kind: EventKind::Connect,
                    statement: None,
                    decision: None,
                    detail: json!({
                        "principal": AUDIT_PROTOCOL,
                        "target": AUDIT_PROTOCOL,
                        "client_addr": "-",
                        "audit": "the gateway's own approval steps",
                    }),
                }));
                id
            }
        };
        records.push(Record::Event(NewEvent {
            session_id: id.clone(),
            at,
            kind: EventKind::Approval,
            statement: None,
            decision: None,
            detail,
        }));
        match self.recorder.record_later(records).await {
            Ok(()) => *session = Some(id),
            Err(e) => {
                tracing::error!(approval = %approval.id, step, error = %e, "could not record an approval step in the audit log")
            }
        }
    }
}
