//! OAuth 2.0 Protected Resource Metadata (RFC 9728) for MCP targets, as the MCP
//! authorization spec asks: a client that gets a 401 finds here which authorization
//! servers (the configured OIDC providers) issue tokens Airlock accepts.
//!
//! Served at `/.well-known/oauth-protected-resource/<target>` (the RFC's path insertion)
//! and, for clients that look at the root, `/.well-known/oauth-protected-resource`
//! (describing the listener as a whole). The 401 of an MCP target names its document in
//! `WWW-Authenticate: Bearer resource_metadata="..."`.

use airlock_model::TargetKind;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::AdapterState;

/// The path prefix of the documents.
pub const PREFIX: &str = "/.well-known/oauth-protected-resource";

/// The document for `path` (under [`PREFIX`]), or `None` for an unknown target.
pub fn document(state: &AdapterState, host: &str, path: &str) -> (StatusCode, Value) {
    let runtime = state.gateway.runtime();
    let rest = path.strip_prefix(PREFIX).unwrap_or("");
    let target = rest.trim_start_matches('/');
    let resource = if target.is_empty() {
        format!("https://{host}")
    } else {
        match runtime.target(target) {
            Some(t) if t.model.kind == TargetKind::Mcp => format!("https://{host}/{target}"),
            _ if target == "mcp" => format!("https://{host}/mcp"),
            _ => {
                return (
                    StatusCode::NOT_FOUND,
                    json!({ "error": format!("airlock: no MCP target `{target}` is served here") }),
                );
            }
        }
    };
    let issuers: Vec<String> = runtime
        .config
        .identity
        .oidc
        .iter()
        .map(|p| p.issuer.clone())
        .collect();
    (
        StatusCode::OK,
        json!({
            "resource": resource,
            "authorization_servers": issuers,
            "bearer_methods_supported": ["header"],
            "resource_name": "Airlock",
            "resource_documentation": "Send an Airlock service token or an access token of one of the authorization servers as `Authorization: Bearer <token>`.",
        }),
    )
}

/// The `WWW-Authenticate` challenge of an MCP target's 401.
pub fn challenge(host: &str, target: &str, invalid: bool) -> String {
    let error = if invalid {
        ", error=\"invalid_token\""
    } else {
        ""
    };
    format!(
        "Bearer realm=\"airlock\"{error}, resource_metadata=\"https://{host}{PREFIX}/{target}\""
    )
}
