//! What each MCP method an agent sends means to the gateway: decided by policy (a tool
//! call, a resource read, a prompt), passed with the connection's permission (the
//! handshake, listings, pings, notifications), or refused as unknown (fail closed).
//!
//! Also the strict readers of the decided methods' params and the policy action they
//! become.

use airlock_model::McpAction;
use serde_json::{Map, Value};

use super::jsonrpc::{JsonRpcError, tool_call};

/// How the gateway treats one method an agent sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodClass {
    /// `tools/call`: decided as `Mcp::Action::"call"`.
    Call,
    /// `resources/read`: decided as `Mcp::Action::"read"`.
    Read,
    /// `prompts/get`: decided as `Mcp::Action::"prompt"`.
    Prompt,
    /// A listing whose answer is filtered to what the agent may use.
    List(Listing),
    /// The handshake, pings, completions, subscriptions and notifications: allowed by
    /// the permission to connect, answered unchanged (but masked).
    Pass,
}

/// The listings the gateway filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Tools,
    Resources,
    ResourceTemplates,
    Prompts,
}

/// Methods an agent may send that need no decision of their own, across the protocol
/// revisions from 2024-11-05 to 2026-07-28.
const PASS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "subscriptions/listen",
    "completion/complete",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/elicitation/complete",
];

/// The class of `method`, or `None` for a method the gateway does not know (refused:
/// it cannot tell what the method would do).
pub fn classify(method: &str) -> Option<MethodClass> {
    Some(match method {
        "tools/call" => MethodClass::Call,
        "resources/read" => MethodClass::Read,
        "prompts/get" => MethodClass::Prompt,
        "tools/list" => MethodClass::List(Listing::Tools),
        "resources/list" => MethodClass::List(Listing::Resources),
        "resources/templates/list" => MethodClass::List(Listing::ResourceTemplates),
        "prompts/list" => MethodClass::List(Listing::Prompts),
        m if PASS.contains(&m) => MethodClass::Pass,
        _ => return None,
    })
}

/// The method names the gateway serves, for an error that lists them.
pub fn known_methods() -> Vec<&'static str> {
    let mut all = vec![
        "tools/call",
        "tools/list",
        "resources/read",
        "resources/list",
        "resources/templates/list",
        "prompts/get",
        "prompts/list",
    ];
    all.extend_from_slice(PASS);
    all
}

/// A request policy decides: what it names and with which arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// `call`, `read` or `prompt`.
    pub kind: &'static str,
    /// The tool or prompt name, or the resource URI, exactly as sent.
    pub name: String,
    /// The arguments (empty for a read).
    pub arguments: Map<String, Value>,
}

impl Decided {
    /// The policy action.
    pub fn action(&self) -> McpAction {
        action(self.kind, &self.name, &self.arguments)
    }
}

/// Reads the params of a decided method strictly: unknown keys, a missing or empty
/// name, and arguments that are not an object are refused.
pub fn decided(class: MethodClass, params: Option<&Value>) -> Result<Decided, JsonRpcError> {
    let empty = Value::Object(Map::new());
    let params = params.unwrap_or(&empty);
    match class {
        MethodClass::Call => {
            let call = tool_call(params)?;
            Ok(Decided {
                kind: "call",
                name: call.name,
                arguments: call.arguments,
            })
        }
        MethodClass::Read => {
            let map = object(params)?;
            only(map, &["uri", "_meta"])?;
            let uri = non_empty(map, "uri")?;
            Ok(Decided {
                kind: "read",
                name: uri,
                arguments: Map::new(),
            })
        }
        MethodClass::Prompt => {
            let map = object(params)?;
            only(map, &["name", "arguments", "_meta"])?;
            let name = non_empty(map, "name")?;
            let arguments = match map.get("arguments") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(a)) => a.clone(),
                Some(_) => return Err(JsonRpcError::ToolArgumentsNotObject),
            };
            Ok(Decided {
                kind: "prompt",
                name,
                arguments,
            })
        }
        MethodClass::List(_) | MethodClass::Pass => Err(JsonRpcError::ToolParamsNotObject),
    }
}

fn object(params: &Value) -> Result<&Map<String, Value>, JsonRpcError> {
    params.as_object().ok_or(JsonRpcError::ToolParamsNotObject)
}

fn only(map: &Map<String, Value>, keys: &[&str]) -> Result<(), JsonRpcError> {
    match map.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(key) => Err(JsonRpcError::ToolUnknownKey { key: key.clone() }),
        None => Ok(()),
    }
}

fn non_empty(map: &Map<String, Value>, key: &str) -> Result<String, JsonRpcError> {
    match map.get(key) {
        None => Err(JsonRpcError::ToolNameMissing),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(JsonRpcError::ToolNameNotString),
    }
}

/// The policy action of an MCP request: scalar top-level arguments as sorted
/// `name=value` (strings unquoted), every argument name, and the arguments as JSON.
pub fn action(kind: &str, name: &str, arguments: &Map<String, Value>) -> McpAction {
    let mut scalars: Vec<String> = arguments
        .iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some(format!("{k}={s}")),
            Value::Number(_) | Value::Bool(_) => Some(format!("{k}={v}")),
            _ => None,
        })
        .collect();
    scalars.sort();
    let mut names: Vec<String> = arguments.keys().cloned().collect();
    names.sort();
    McpAction {
        kind: kind.to_owned(),
        name: name.to_owned(),
        arguments: scalars,
        argument_names: names,
        arguments_json: Value::Object(arguments.clone()).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn methods_are_classified_and_unknown_ones_are_not() {
        assert_eq!(classify("tools/call"), Some(MethodClass::Call));
        assert_eq!(
            classify("tools/list"),
            Some(MethodClass::List(Listing::Tools))
        );
        assert_eq!(classify("server/discover"), Some(MethodClass::Pass));
        assert_eq!(classify("initialize"), Some(MethodClass::Pass));
        assert_eq!(classify("Tools/Call"), None, "methods are case-sensitive");
        assert_eq!(classify("tools/call "), None);
        assert_eq!(classify("admin/shutdown"), None);
        assert!(known_methods().contains(&"prompts/get"));
    }

    #[test]
    fn decided_params_are_read_strictly() {
        let call = decided(
            MethodClass::Call,
            Some(&json!({"name": "add", "arguments": {"a": 1, "b": "x"}})),
        )
        .unwrap();
        assert_eq!(call.name, "add");
        let a = call.action();
        assert_eq!(a.kind, "call");
        assert_eq!(a.arguments, ["a=1", "b=x"]);
        assert_eq!(a.argument_names, ["a", "b"]);
        assert!(decided(MethodClass::Call, Some(&json!({"Name": "add"}))).is_err());
        assert!(
            decided(MethodClass::Call, None).is_err(),
            "a call names a tool"
        );
        let read = decided(MethodClass::Read, Some(&json!({"uri": "customers://1"}))).unwrap();
        assert_eq!((read.kind, read.name.as_str()), ("read", "customers://1"));
        assert!(decided(MethodClass::Read, Some(&json!({"uri": ""}))).is_err());
        assert!(decided(MethodClass::Read, Some(&json!({"uri": "a", "extra": 1}))).is_err());
        let prompt = decided(
            MethodClass::Prompt,
            Some(&json!({"name": "greet", "arguments": {"name": "Ada"}})),
        )
        .unwrap();
        assert_eq!(prompt.action().arguments, ["name=Ada"]);
        assert!(
            decided(
                MethodClass::Prompt,
                Some(&json!({"name": "g", "arguments": [1]}))
            )
            .is_err()
        );
    }
}
