//! What policy said about one action.

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
}
