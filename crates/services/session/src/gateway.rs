//! `Gateway`: the process-wide services, and opening a session.

use std::net::SocketAddr;
use std::sync::Arc;

use airlock_engine::policy::{NoCatalog, describe};
use airlock_identity::{Identity, IdentityError};
use airlock_model::{Action, Decision, EventKind, SessionSummary, TargetKind, Timestamp};
use airlock_recorder::{NewEvent, Record, Recorder, RecorderError};
use airlock_vault::Secret;
use arc_swap::ArcSwap;

use crate::{Runtime, Session};

/// What a client asks for when it connects.
#[derive(Debug)]
pub struct ConnectRequest {
    /// Protocol family of the listener.
    pub kind: TargetKind,
    /// The target name the client asked for.
    pub target: String,
    /// The credential it presented.
    pub credential: Secret,
    /// Where it connects from.
    pub client_addr: SocketAddr,
    /// Protocol-specific facts worth recording (client user name, application, TLS).
    pub detail: serde_json::Map<String, serde_json::Value>,
}

/// Why a session was not opened. The adapter turns each into its protocol's error.
#[derive(Debug, thiserror::Error)]
pub enum ConnectRefusal {
    /// The credential was not accepted.
    #[error(transparent)]
    Credential(#[from] IdentityError),
    /// No target by that name (for this protocol).
    #[error("target `{name}` does not exist")]
    UnknownTarget {
        /// The name asked for.
        name: String,
        /// Targets the client could use instead.
        available: Vec<String>,
    },
    /// Policy does not let this principal connect to the target.
    #[error("{reason}")]
    Denied {
        /// Why, for the agent.
        reason: String,
    },
    /// The session could not be recorded, so it is not opened (fail closed).
    #[error(transparent)]
    Recorder(#[from] RecorderError),
}

/// The services every session uses.
pub struct Gateway {
    runtime: Arc<ArcSwap<Runtime>>,
    identity: Identity,
    recorder: Recorder,
    approvals: airlock_approvals::Approvals,
}

impl Gateway {
    /// Assembles the gateway.
    pub fn new(
        runtime: Runtime,
        identity: Identity,
        recorder: Recorder,
        approvals: airlock_approvals::Approvals,
    ) -> Self {
        identity.set_providers(runtime.oidc.clone());
        Gateway {
            runtime: Arc::new(ArcSwap::from_pointee(runtime)),
            identity,
            recorder,
            approvals,
        }
    }

    /// The approval service held statements wait on.
    pub fn approvals(&self) -> &airlock_approvals::Approvals {
        &self.approvals
    }

    /// The identity service (for other surfaces that authenticate, like the API).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The configuration snapshot in force now.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Puts a new snapshot in force for sessions opened from now on (and its OIDC
    /// providers for every credential checked from now on).
    pub fn reload(&self, runtime: Runtime) {
        self.identity.set_providers(runtime.oidc.clone());
        self.runtime.store(Arc::new(runtime));
    }

    /// Authenticates the client, resolves its target and records the session's start.
    /// Every refusal is recorded too (without the credential).
    pub async fn open_session(&self, req: ConnectRequest) -> Result<Session, ConnectRefusal> {
        let runtime = self.runtime();
        let started_at = Timestamp::now();
        let session_id = uuid::Uuid::now_v7().to_string();
        let client_addr = req.client_addr.to_string();
        let mut detail = req.detail;
        detail.insert("target".into(), req.target.clone().into());
        detail.insert("client_addr".into(), client_addr.clone().into());

        // On refusal, the principal (if the credential was good) is still recorded.
        let outcome = match self.identity.authenticate_full(&req.credential).await {
            Err(e) => Err((ConnectRefusal::Credential(e), None)),
            Ok(authenticated) => {
                let principal = authenticated.principal;
                if let Some(issuer) = authenticated.issuer {
                    detail.insert("issuer".into(), issuer.into());
                }
                if let Some(jti) = authenticated.token_id {
                    detail.insert("token_id".into(), jti.into());
                }
                if let Some(exp) = principal.expires_at {
                    detail.insert("credential_expires_at".into(), exp.to_string().into());
                }
                match runtime
                    .target(&req.target)
                    .filter(|t| t.model.kind == req.kind)
                {
                    None => Err((
                        ConnectRefusal::UnknownTarget {
                            name: req.target.clone(),
                            available: runtime.target_names(req.kind),
                        },
                        Some(principal.name),
                    )),
                    Some(target) => {
                        // Connecting is itself an action policy decides.
                        let verdict = match &runtime.policy {
                        Some(p) => p.decide(&principal, &target.model, &Action::Connect, &NoCatalog).decision,
                        None => Decision::Deny { reason: "no policy is configured on this gateway (add a [policy] section)".into() },
                    };
                        match verdict {
                            Decision::Allow => Ok((principal, target)),
                            Decision::Deny { reason } => {
                                Err((ConnectRefusal::Denied { reason }, Some(principal.name)))
                            }
                            Decision::Hold { group, .. } => Err((
                                ConnectRefusal::Denied {
                                    reason: format!(
                                        "{} needs approval by group \"{group}\", and connections cannot be held",
                                        describe(&Action::Connect, &target.model)
                                    ),
                                },
                                Some(principal.name),
                            )),
                        }
                    }
                }
            }
        };
        match outcome {
            Ok((principal, target)) => {
                detail.insert("principal".into(), principal.name.clone().into());
                detail.insert("groups".into(), principal.groups.clone().into());
                detail.insert(
                    "principal_source".into(),
                    serde_json::to_value(principal.source).unwrap_or_default(),
                );
                let summary = SessionSummary {
                    id: session_id.clone(),
                    principal: Some(principal.name.clone()),
                    target: req.target,
                    protocol: req.kind.as_str().to_owned(),
                    client_addr,
                    started_at,
                    ended_at: None,
                    marks: airlock_model::SessionMarks::default(),
                };
                self.recorder
                    .record(vec![
                        Record::StartSession(summary),
                        Record::Event(NewEvent {
                            session_id: session_id.clone(),
                            at: started_at,
                            kind: EventKind::Connect,
                            statement: None,
                            decision: None,
                            detail: serde_json::Value::Object(detail),
                        }),
                    ])
                    .await?;
                airlock_metrics::global()
                    .session_opened(&target.model.name, target.model.kind.as_str());
                Ok(Session::new(
                    session_id,
                    principal,
                    target,
                    self.recorder.clone(),
                    self.runtime.clone(),
                    self.approvals.clone(),
                    self.identity.clone(),
                ))
            }
            Err((refusal, principal)) => {
                airlock_metrics::global().session_refused(req.kind.as_str());
                detail.insert("principal".into(), principal.clone().into());
                detail.insert("reason".into(), refusal.to_string().into());
                let summary = SessionSummary {
                    id: session_id.clone(),
                    principal,
                    target: req.target,
                    protocol: req.kind.as_str().to_owned(),
                    client_addr,
                    started_at,
                    ended_at: Some(started_at),
                    marks: airlock_model::SessionMarks::default(),
                };
                let records = vec![
                    Record::StartSession(summary),
                    Record::Event(NewEvent {
                        session_id: session_id.clone(),
                        at: started_at,
                        kind: EventKind::AuthFailure,
                        statement: None,
                        decision: None,
                        detail: serde_json::Value::Object(detail),
                    }),
                    Record::EndSession {
                        id: session_id,
                        at: started_at,
                    },
                ];
                // The refusal stands whether or not it could be recorded.
                if let Err(e) = self.recorder.record_later(records).await {
                    tracing::error!(error = %e, "could not record an authentication failure");
                }
                Err(refusal)
            }
        }
    }
}
