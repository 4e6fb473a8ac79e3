//! Every message the gateway itself sends a PostgreSQL client, each with its SQLSTATE and
//! wording an agent can act on. No internal error text with secrets reaches a client:
//! each case is mapped here by an exhaustive match.

use airlock_identity::IdentityError;
use airlock_session::ConnectRefusal;
use bytes::BytesMut;

use crate::codec::backend::{OwnError, put_error_like};
use crate::error::UpstreamError;

/// One error or notice for the client.
#[derive(Debug, Clone)]
pub struct Reply {
    /// `ERROR` or `FATAL` (or `NOTICE`).
    pub severity: &'static str,
    /// SQLSTATE.
    pub code: &'static str,
    /// Primary message.
    pub message: String,
    /// Optional detail.
    pub detail: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
    /// Where in the statement the error is: a 1-based character index, as the server
    /// sends it (psql prints `LINE n:` and a caret from it).
    pub position: Option<usize>,
}

impl Reply {
    fn fatal(code: &'static str, message: String, hint: impl Into<Option<String>>) -> Self {
        Reply {
            severity: "FATAL",
            code,
            message,
            detail: None,
            hint: hint.into(),
            position: None,
        }
    }

    fn error(code: &'static str, message: String, hint: impl Into<Option<String>>) -> Self {
        Reply {
            severity: "ERROR",
            code,
            message,
            detail: None,
            hint: hint.into(),
            position: None,
        }
    }

    fn with_detail(mut self, detail: String) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Appends the wire form (`ErrorResponse`, or `NoticeResponse` for a notice).
    pub fn encode(&self, out: &mut BytesMut) {
        let tag = if self.severity == "NOTICE" {
            b'N'
        } else {
            b'E'
        };
        put_error_like(
            out,
            tag,
            &OwnError {
                severity: self.severity,
                code: self.code,
                message: &self.message,
                detail: self.detail.as_deref(),
                hint: self.hint.as_deref(),
                position: self.position,
            },
        );
    }
}

/// The client asked for a token password over an unencrypted connection.
pub fn tls_required() -> Reply {
    Reply::fatal(
        "28000",
        "Airlock requires TLS: the connection is not encrypted".into(),
        "Connect with sslmode=require (or verify-full with Airlock's certificate).".to_string(),
    )
}

/// The startup packet named no user.
pub fn missing_user() -> Reply {
    Reply::fatal(
        "28000",
        "no user name was given in the startup packet".into(),
        "Set user= to your agent's name and password= to your Airlock token.".to_string(),
    )
}

/// A replication connection was requested.
pub fn replication_refused() -> Reply {
    Reply::fatal(
        "0A000",
        "replication connections are not available through Airlock".into(),
        "Connect without the replication parameter to run SQL statements.".to_string(),
    )
}

/// The client speaks a protocol version Airlock does not.
pub fn unsupported_protocol(code: i32) -> Reply {
    Reply::fatal(
        "0A000",
        format!(
            "unsupported frontend protocol {}.{}: Airlock speaks 3.0",
            code >> 16,
            code & 0xffff
        ),
        None,
    )
}

/// The client sent bytes that are not valid protocol.
pub fn protocol_violation(what: &str) -> Reply {
    Reply::fatal("08P01", format!("protocol violation: {what}"), None)
}

/// The session could not be opened.
pub fn connect_refused(refusal: &ConnectRefusal) -> Reply {
    match refusal {
        ConnectRefusal::Credential(e) => credential_refused(e),
        ConnectRefusal::UnknownTarget { name, available } => Reply::fatal(
            "3D000",
            format!("target \"{name}\" does not exist"),
            "Set dbname to the name of an Airlock target.".to_string(),
        )
        .with_detail(if available.is_empty() {
            "No PostgreSQL targets are configured.".into()
        } else {
            format!("PostgreSQL targets: {}.", available.join(", "))
        }),
        ConnectRefusal::Denied { reason } => Reply::fatal(
            "42501",
            format!("airlock: {reason}"),
            "Ask the operator for a policy that lets this agent connect to the target.".to_string(),
        ),
        ConnectRefusal::Recorder(_) => recorder_unavailable("FATAL"),
    }
}

fn credential_refused(e: &IdentityError) -> Reply {
    match e {
        IdentityError::UnknownToken | IdentityError::InvalidName(_) => Reply::fatal(
            "28P01",
            "password authentication failed: the password is not a valid Airlock token".into(),
            "Use the token printed by `airlock token create` as the password, not the database's password.".to_string(),
        ),
        IdentityError::Expired { name, at } => Reply::fatal(
            "28P01",
            format!("Airlock token \"{name}\" expired at {at}"),
            "Ask the operator for a new token (airlock token create) and reconnect with it.".to_string(),
        ),
        IdentityError::Revoked { name, at } => Reply::fatal(
            "28P01",
            format!("Airlock token \"{name}\" was revoked at {at}"),
            "This token no longer works; ask the operator for a new one.".to_string(),
        ),
        IdentityError::Store(_) => Reply::fatal(
            "58000",
            "Airlock could not verify the token: its store is unavailable".into(),
            "Retry in a moment; if it persists, tell the operator.".to_string(),
        ),
        IdentityError::Oidc(e) => Reply::fatal(
            "28P01",
            format!("password authentication failed: the OIDC token was refused: {e}"),
            "Get a fresh access token from your identity provider for this gateway's audience and use it as the password; `airlock whoami --token ...` shows how Airlock reads a token.".to_string(),
        ),
    }
}

/// Recording failed, so the gateway refuses to go on (fail closed).
pub fn recorder_unavailable(severity: &'static str) -> Reply {
    Reply {
        severity,
        code: "58000",
        message: "Airlock cannot record this session, so it does not forward statements".into(),
        detail: None,
        hint: Some("This is a gateway problem, not a problem with the statement; retry later or tell the operator.".into()),
        position: None,
    }
}

/// Recording a statement's outcome failed after the statement was sent to the target:
/// it may have taken effect (its own record is durable, so it did not run unrecorded).
pub fn outcome_unrecorded() -> Reply {
    Reply::fatal(
        "58000",
        "Airlock cannot record this session's results, so it closed the session; the last statement was sent to the target and may have taken effect".into(),
        "Check whether it took effect before retrying it, once Airlock records again (a gateway problem, not one of the statement; tell the operator if it persists).".to_string(),
    )
}

/// The target could not be reached or refused Airlock's credential.
pub fn upstream_failed(target: &str, e: &UpstreamError) -> Reply {
    match e {
        UpstreamError::Rejected { code, message } if code.starts_with("28") => Reply::fatal(
            "08004",
            format!("target \"{target}\" rejected the credential Airlock holds for it"),
            "This is a gateway configuration problem; tell the operator (the target's password reference may be stale).".to_string(),
        )
        .with_detail(format!("The server said: {message} (SQLSTATE {code}).")),
        UpstreamError::Rejected { code, message } => Reply::fatal(
            "08004",
            format!("target \"{target}\" refused the connection: {message}"),
            "Retry later; if it persists, tell the operator.".to_string(),
        )
        .with_detail(format!("SQLSTATE {code} from the server.")),
        other => Reply::fatal(
            "08001",
            format!("Airlock could not connect to target \"{target}\""),
            "The target may be down or unreachable; retry later, and tell the operator if it persists.".to_string(),
        )
        .with_detail(other.agent_summary().to_string()),
    }
}

/// The target's connection ended while the session was open.
pub fn upstream_lost(target: &str) -> Reply {
    Reply::fatal(
        "08006",
        format!("the connection to target \"{target}\" was lost"),
        "The outcome of a statement that was running is unknown; reconnect, check, and retry."
            .to_string(),
    )
}

/// The fast-path function call interface was used.
pub fn function_call_refused() -> Reply {
    Reply::error(
        "0A000",
        "the fast-path function call interface is not available through Airlock".into(),
        "Call the function in a SQL statement instead (SELECT f(...)).".to_string(),
    )
}

/// A statement was too large to inspect.
pub fn message_too_large(limit: usize) -> Reply {
    Reply::fatal(
        "54000",
        format!("message too large: Airlock inspects statements up to {limit} bytes"),
        "Send large values as COPY data or split the statement.".to_string(),
    )
}

/// The notice a client gets when its statement waits for approval.
pub fn approval_pending(
    approval: &airlock_model::Approval,
    created: bool,
    timeout: std::time::Duration,
) -> Reply {
    let what = if created {
        "statement held for approval"
    } else {
        "statement still waiting for approval (requested earlier)"
    };
    Reply {
        severity: "NOTICE",
        code: "01000",
        message: format!(
            "airlock: {what} by group \"{}\" (request {}); waiting up to {}s",
            approval.approver_group,
            approval.id,
            timeout.as_secs()
        ),
        detail: Some(approval.reason.clone()),
        hint: Some(format!(
            "It runs as soon as a member of \"{group}\" approves (airlock approve {id}, or POST /api/approvals/{id}/approve). If the wait ends first, the request stays open until {expires}: send exactly the same statement again after approval and it runs once.",
            group = approval.approver_group,
            id = approval.id,
            expires = approval.expires_at
        )),
        position: None,
    }
}

/// The error for a statement whose wait for approval the client cancelled.
pub fn hold_canceled(approval_id: &str) -> Reply {
    Reply::error(
        "57014",
        "canceling statement due to user request: it was waiting for approval and was not run"
            .into(),
        format!(
            "Approval request {approval_id} stays open: send exactly the same statement again to wait for it, or once it is approved, to run it."
        ),
    )
}

/// The session's credential expired or was revoked: the session ends.
pub fn credential_ended(message: &str) -> Reply {
    Reply::fatal(
        "28000",
        format!("airlock: {message}"),
        "Reconnect with a valid token (a fresh OIDC access token, or a new Airlock token from the operator); the statement was not run.".to_string(),
    )
}
