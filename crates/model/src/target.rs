//! A named thing an agent reaches through Airlock, as seen by policy and records.

use serde::{Deserialize, Serialize};

/// The protocol family of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A PostgreSQL server.
    Postgres,
    /// An HTTP API, reached under `https://<listener>/<target>/`.
    Http,
    /// A Kubernetes API server, reached through the HTTP listener like an HTTP API.
    Kubernetes,
    /// An MCP server, reached through the HTTP listener over streamable HTTP.
    Mcp,
}

impl TargetKind {
    /// The name used in configuration and records.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Postgres => "postgres",
            TargetKind::Http => "http",
            TargetKind::Kubernetes => "kubernetes",
            TargetKind::Mcp => "mcp",
        }
    }
}

/// The identity of a target, without its address or credential.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TargetRef {
    /// The name agents use (the PostgreSQL `dbname`).
    pub name: String,
    /// Its protocol.
    pub kind: TargetKind,
}
