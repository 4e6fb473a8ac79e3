//! Approval requests: a held statement waiting for a human's decision.
//!
//! An approval is bound to what was held (principal, target, the digest of the exact
//! statement and its parameters, the policy version) and is used at most once.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Where a request stands. Only `Pending` can be decided; only `Approved` can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a decision.
    Pending,
    /// Approved and not yet used.
    Approved,
    /// Denied by an approver.
    Denied,
    /// Nobody decided (or nobody used the approval) before it expired.
    Expired,
    /// Approved and run once; it cannot run again.
    Used,
}

impl ApprovalStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Used => "used",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "expired" => ApprovalStatus::Expired,
            "used" => ApprovalStatus::Used,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One approval request and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// UUIDv7.
    pub id: String,
    /// Where it stands.
    pub status: ApprovalStatus,
    /// The session that was held.
    pub session_id: String,
    /// Who asked (the agent).
    pub principal: String,
    /// The target the statement was for.
    pub target: String,
    /// Protocol of the target (`postgres`).
    pub protocol: String,
    /// The statement as the approver sees it (as recorded: masked where the session
    /// masks), with the prepared statements it executes.
    pub statement: String,
    /// Its parameters as recorded (JSON array), for the approver.
    pub params: serde_json::Value,
    /// Hex SHA-256 of the exact statement text, the texts it executes, and its
    /// parameters with their formats: what an approval is for.
    pub digest: String,
    /// Version of the policy set that asked for approval.
    pub policy_version: String,
    /// Ids of the policies that asked for it.
    pub policies: Vec<String>,
    /// The group whose member must decide.
    pub approver_group: String,
    /// Why approval is needed (the policy's words).
    pub reason: String,
    /// When it was asked for.
    pub created_at: Timestamp,
    /// When it lapses if it is still pending or approved but unused.
    pub expires_at: Timestamp,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<Timestamp>,
    /// The approver's comment (approve) or reason (deny).
    pub comment: Option<String>,
    /// When the approved statement ran.
    pub used_at: Option<Timestamp>,
    /// The session it ran in.
    pub used_in_session: Option<String>,
}
