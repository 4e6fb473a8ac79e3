//! What policy said about one action or statement.

use serde::{Deserialize, Serialize};

/// The outcome of a policy decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    /// The action may proceed.
    Allow,
    /// The action is refused; `reason` is written for the agent to act on.
    Deny {
        /// Why, naming the rule and what would be allowed.
        reason: String,
    },
    /// The action waits for approval by `group`.
    Hold {
        /// The group whose member must approve.
        group: String,
        /// Why approval is needed.
        reason: String,
    },
}

impl Decision {
    /// The short label stored with events: `allow`, `deny` or `hold`.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny { .. } => "deny",
            Decision::Hold { .. } => "hold",
        }
    }

    /// How restrictive: allow < hold < deny. Combining decisions keeps the strictest.
    pub fn severity(&self) -> u8 {
        match self {
            Decision::Allow => 0,
            Decision::Hold { .. } => 1,
            Decision::Deny { .. } => 2,
        }
    }
}

/// A decision with what produced it, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The decision enforced.
    pub decision: Decision,
    /// Ids of the policies that determined it.
    pub policies: Vec<String>,
    /// Version of the policy set that decided.
    pub policy_version: String,
    /// The decision policy would have made, when an observe-only policy kept it from
    /// being enforced.
    pub observed: Option<Decision>,
}
