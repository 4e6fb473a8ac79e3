//! What an agent is trying to do, normalized across protocols.

use serde::{Deserialize, Serialize};

/// One action a policy decides on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum Action {
    /// Opening a session to a target.
    Connect,
    /// A SQL statement.
    Sql(SqlAction),
}

/// A SQL statement as the gateway understood it.
///
/// Until statement classification lands, `kind` is `None` and only the text is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlAction {
    /// The statement text exactly as the client sent it.
    pub text: String,
    /// The statement kind (`select`, `insert`, …) once classified.
    pub kind: Option<String>,
}
