//! What the recorder keeps: sessions and the events inside them.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The kinds of event a session records. The string forms are stored and printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A client authenticated and was connected to its target.
    Connect,
    /// A client was refused before its session opened: a bad credential or an unknown
    /// target.
    AuthFailure,
    /// Connecting to the target failed after the client authenticated.
    ConnectFailure,
    /// A simple-protocol query string.
    Query,
    /// An extended-protocol Parse (statement text, name).
    Parse,
    /// An extended-protocol Bind (portal, statement, parameters).
    Bind,
    /// An extended-protocol Execute (portal).
    Execute,
    /// The outcome of a statement: command tag, rows, or error, with timing.
    Result,
    /// Something the gateway refused without forwarding.
    Refused,
    /// A client asked to cancel the running query.
    Cancel,
    /// The session ended.
    Disconnect,
    /// A step of an approval: requested, notified, approved, denied, timed out, used,
    /// expired (`detail.step`).
    Approval,
    /// An HTTP request: method, path, query, decision (its outcome is a `Result`).
    Request,
    /// A message inside an upgraded connection (a WebSocket text message), masked.
    Message,
}

impl EventKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Connect => "connect",
            EventKind::AuthFailure => "auth_failure",
            EventKind::ConnectFailure => "connect_failure",
            EventKind::Query => "query",
            EventKind::Parse => "parse",
            EventKind::Bind => "bind",
            EventKind::Execute => "execute",
            EventKind::Result => "result",
            EventKind::Refused => "refused",
            EventKind::Cancel => "cancel",
            EventKind::Disconnect => "disconnect",
            EventKind::Approval => "approval",
            EventKind::Request => "request",
            EventKind::Message => "message",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "connect" => EventKind::Connect,
            "auth_failure" => EventKind::AuthFailure,
            "connect_failure" => EventKind::ConnectFailure,
            "query" => EventKind::Query,
            "parse" => EventKind::Parse,
            "bind" => EventKind::Bind,
            "execute" => EventKind::Execute,
            "result" => EventKind::Result,
            "refused" => EventKind::Refused,
            "cancel" => EventKind::Cancel,
            "disconnect" => EventKind::Disconnect,
            "approval" => EventKind::Approval,
            "request" => EventKind::Request,
            "message" => EventKind::Message,
            _ => return None,
        })
    }
}

/// One recorded event of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// Position within the session, from 1.
    pub seq: i64,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
    /// The statement text, for statement events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// The policy decision label (`allow`, `deny`, `hold`), for statement events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Kind-specific detail (parameters, command tag, rows, error, timings).
    pub detail: serde_json::Value,
}

/// A session as listed: who connected to what, from where, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Session id (a UUIDv7, time ordered).
    pub id: String,
    /// The authenticated principal, or `None` when authentication failed.
    pub principal: Option<String>,
    /// The target name the client asked for.
    pub target: String,
    /// The protocol (`postgres`).
    pub protocol: String,
    /// The client's address and port.
    pub client_addr: String,
    /// When the connection was accepted.
    pub started_at: Timestamp,
    /// When it ended, or `None` while open (or if the gateway stopped abruptly).
    pub ended_at: Option<Timestamp>,
    /// What happened in it that a reviewer filters by (kept up to date as its events
    /// are stored).
    #[serde(default)]
    pub marks: SessionMarks,
}

/// What a session's events showed, for finding sessions worth a look: each flag is set
/// by the first event that shows it and never cleared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMarks {
    /// Something was denied or refused (a statement, a request, a tool call, the
    /// sign-in itself).
    pub denied: bool,
    /// Something was held for approval.
    pub held: bool,
    /// Something of a result was masked.
    pub masked: bool,
    /// A statement failed, the target could not be reached, or the session ended with
    /// an error.
    pub error: bool,
}

impl SessionMarks {
    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self == SessionMarks::default()
    }

    /// The flags set in `self` or `other`.
    pub fn union(self, other: SessionMarks) -> SessionMarks {
        SessionMarks {
            denied: self.denied || other.denied,
            held: self.held || other.held,
            masked: self.masked || other.masked,
            error: self.error || other.error,
        }
    }
}
