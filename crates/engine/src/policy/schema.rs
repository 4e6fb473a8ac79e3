//! The Cedar schema Airlock generates: the entity types, the actions (one per SQL kind,
//! one per HTTP method, one per Kubernetes verb, plus `connect`), and the context every
//! action carries. `airlock policy schema`
//! prints it; policies are validated against it in strict mode.

use cedar_policy::Schema;

use super::PolicyError;
use crate::sql::SQL_KINDS;

/// Action groups: a policy may name a group (`action in Sql::Action::"session"`) instead
/// of listing kinds. A kind belongs to at most one group; kinds in no group (`set`,
/// `do`, `call`, ...) must be permitted by name.
pub const ACTION_GROUPS: &[(&str, &[&str])] = &[
    ("read", &["select", "show"]),
    ("write", &["insert", "update", "delete", "merge", "copy"]),
    (
        "ddl",
        &["create", "alter", "drop", "truncate", "comment", "refresh"],
    ),
    (
        "admin",
        &[
            "grant",
            "revoke",
            "vacuum",
            "analyze",
            "cluster",
            "reindex",
            "checkpoint",
            "load",
            "lock",
            "listen",
            "unlisten",
            "notify",
        ],
    ),
    // Statements that only manage the session; what a transaction, a prepared statement
    // or a cursor runs is decided separately, as its own actions. Permitted unless a
    // forbid names them (see `SESSION_KINDS`).
    ("session", SESSION_KINDS),
];

/// Settings a client may set without a permit (unless forbidden), by SQL `SET` or as a
/// startup parameter: formatting, encoding and timeouts that change no data and no
/// privilege. `role`, `session_authorization`, `search_path` and everything else need a
/// permit for `Sql::Action::"set"`.
pub const HARMLESS_SETTINGS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
    "bytea_output",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "client_min_messages",
    "geqo",
    "enable_seqscan",
    "work_mem",
    "jit",
];

/// Built-in (`pg_catalog`) functions that are `volatile` only because they read the
/// clock or randomness, or wait: calling them changes nothing, so they are permitted
/// without a permit (unless forbidden), like immutable and stable functions. Matched
/// unqualified (PostgreSQL searches `pg_catalog` first unless `search_path` was changed,
/// which itself needs a permit) or qualified with `pg_catalog`. `setseed` and
/// `nextval` are not here: they change session or database state.
pub const HARMLESS_VOLATILE_FUNCTIONS: &[&str] = &[
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "random",
    "random_normal",
    "gen_random_uuid",
    "clock_timestamp",
    "timeofday",
];

/// Kinds that are permitted without a permit, unless a forbid applies: transaction
/// control, prepared statement and cursor bookkeeping, plain EXPLAIN. Every one of them
/// is harmless by itself; what they run is decided as its own actions.
pub const SESSION_KINDS: &[&str] = &[
    "transaction",
    "prepare",
    "execute",
    "deallocate",
    "discard",
    "declare",
    "fetch",
    "close",
    "explain",
];

/// HTTP methods policy knows, lower case, and `websocket` (an upgrade). A request with
/// another method is refused before policy (it could not be named in a policy).
pub const HTTP_METHODS: &[&str] = &[
    "get",
    "head",
    "options",
    "post",
    "put",
    "patch",
    "delete",
    "trace",
    "propfind",
    "proppatch",
    "mkcol",
    "copy",
    "move",
    "lock",
    "unlock",
    "report",
    "search",
    "query",
    "websocket",
];

/// HTTP method groups: `Http::Action::"read"` and `"write"`. Other methods (and
/// `websocket`) are in neither group and must be permitted by name.
pub const HTTP_METHOD_GROUPS: &[(&str, &[&str])] = &[
    ("read", &["get", "head", "options"]),
    ("write", &["post", "put", "patch", "delete"]),
];

/// The Kubernetes API server's verbs (`proxy` for the deprecated `/proxy/` paths), and
/// `discover` for non-resource requests
/// (`/version`, `/apis`, `/openapi/v2`), which kubectl needs before any command.
pub const K8S_VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "proxy",
    "discover",
];

/// Kubernetes verb groups: `K8s::Action::"read"` and `"write"`; `discover` is in
/// neither.
pub const K8S_VERB_GROUPS: &[(&str, &[&str])] = &[
    ("read", &["get", "list", "watch"]),
    (
        "write",
        &["create", "update", "patch", "delete", "deletecollection"],
    ),
];

fn group_of(kind: &str) -> Option<&'static str> {
    ACTION_GROUPS
        .iter()
        .find(|(_, kinds)| kinds.contains(&kind))
        .map(|(g, _)| *g)
}

/// The schema in Cedar's human-readable syntax.
pub fn schema_text() -> String {
    let mut actions = String::new();
    for (group, _) in ACTION_GROUPS {
        actions.push_str(&format!("  action \"{group}\";\n"));
    }
    for kind in SQL_KINDS.iter().filter(|k| **k != "call") {
        let member = group_of(kind)
            .map(|g| format!(" in [\"{g}\"]"))
            .unwrap_or_default();
        actions.push_str(&format!(
            "  action \"{kind}\"{member} appliesTo {{ principal: [Agent], resource: [Target, Table], context: Statement }};\n"
        ));
    }
    let mut http_actions = String::new();
    for (group, _) in HTTP_METHOD_GROUPS {
        http_actions.push_str(&format!("  action \"{group}\";\n"));
    }
    for method in HTTP_METHODS {
        let member = HTTP_METHOD_GROUPS
            .iter()
            .find(|(_, methods)| methods.contains(method))
            .map(|(g, _)| format!(" in [\"{g}\"]"))
            .unwrap_or_default();
        http_actions.push_str(&format!(
            "  action \"{method}\"{member} appliesTo {{ principal: [Agent], resource: [Path], context: Request }};\n"
        ));
    }
    let mut k8s_actions = String::new();
    for (group, _) in K8S_VERB_GROUPS {
        k8s_actions.push_str(&format!("  action \"{group}\";\n"));
    }
    for verb in K8S_VERBS {
        let member = K8S_VERB_GROUPS
            .iter()
            .find(|(_, verbs)| verbs.contains(verb))
            .map(|(g, _)| format!(" in [\"{g}\"]"))
            .unwrap_or_default();
        let resource = if *verb == "discover" {
            "Target"
        } else {
            "Resource"
        };
        k8s_actions.push_str(&format!(
            "  action \"{verb}\"{member} appliesTo {{ principal: [Agent], resource: [{resource}], context: Request }};\n"
        ));
    }
    format!(
        r#"// Airlock's Cedar schema (generated; `airlock policy schema` prints it).

// An agent: a service token's name or an OIDC principal, member of its groups.
entity Group;
entity Agent in [Group];

// A target, its schemas and tables, and the functions statements call.
entity Target;
entity Schema in [Target];
entity Table in [Schema, Target] = {{
  "schema": String,   // "public" when the statement did not qualify the name
  "name": String,
}};
entity Function in [Target] = {{
  "name": String,
  "schema": String,   // "" when the statement did not qualify the name
  "volatility": String, // "immutable" | "stable" | "volatile" | "unknown" (not in the catalog)
}};

// Opening a session to a target.
action "connect" appliesTo {{
  principal: [Agent],
  resource: [Target],
}};

namespace Sql {{
  // Facts about the statement an action belongs to.
  type Statement = {{
    "statement": String,  // the top-level statement's kind ("select", "delete", ...)
    "has_where": Bool,    // UPDATE/DELETE with a WHERE clause
    "into": Bool,         // SELECT ... INTO
    "analyze": Bool,      // EXPLAIN ANALYZE
    "program": Bool,      // COPY ... PROGRAM
    "copy_from": Bool,    // COPY FROM (a write) rather than COPY TO
    "variable": String,   // SET/SHOW/ALTER SYSTEM: the setting ("role", "search_path"...)
    "system": Bool,       // ALTER SYSTEM
    "nested": Bool,       // inside a CTE, EXPLAIN ANALYZE, PREPARE, rule or DO block
  }};

  // Groups (read, write, ddl, admin, session), then one action per statement kind, on
  // the target (statements without a table) or on a table.
{actions}
  // Calling a function or procedure, anywhere in a statement.
  action "call" appliesTo {{
    principal: [Agent],
    resource: [Function],
    context: Statement,
  }};
}}

namespace Http {{
  // A request's path under an HTTP target: `Http::Path::"billing/v1/invoices/7"` is in
  // every shorter prefix (`"billing/v1/invoices"`, `"billing/v1"`, `"billing"`) and in
  // `Target::"billing"`. Paths are normalised before the decision.
  entity Path in [Path, Target];

  // Facts about the request.
  type Request = {{
    "method": String,          // lower case: "get", "post", ... ("websocket" for an upgrade)
    "path": String,            // the normalised path under the target, with a leading "/"
    "query": String,           // the raw query string, without "?"
    "content_type": String,    // the body's media type, lower case, no parameters ("" without a body)
    "body_fields": Set<String>, // a JSON object body's top-level field names (up to [http] inspect_body_bytes)
  }};

  // Groups (read: get, head, options; write: post, put, patch, delete), then one action
  // per method; others and "websocket" are in no group.
{http_actions}}}

namespace K8s {{
  // A namespace of a cluster target: `K8s::Namespace::"cluster/kube-system"`.
  entity Namespace in [Target];
  // The object of a Kubernetes request, as the API server's request info names it.
  entity Resource in [Namespace, Target] = {{
    "group": String,        // "" for the core group
    "resource": String,     // "pods", "namespaces", "deployments"
    "subresource": String,  // "" or "exec", "log", "status", ...
    "namespace": String,    // "" when cluster-scoped ("foo" for namespaces/foo itself)
    "name": String,         // "" for a collection
  }};

  // Facts about the request.
  type Request = {{
    "verb": String,         // the API server's verb ("discover" for non-resource requests)
    "path": String,         // a non-resource request's path ("/version"), else ""
    "kind": String,         // a write's object kind from its body ("Deployment"), else ""
    "labels": Set<String>,  // a write's object labels as "key=value"
    "command": String,      // pods/exec and pods/attach: the command, words joined by spaces
  }};

  // Groups (read: get, list, watch; write: create, update, patch, delete,
  // deletecollection), then one action per verb; "discover" is on the target.
{k8s_actions}}}

namespace Mcp {{
  // What an MCP server offers, by its target: `Mcp::Tool::"tools/query_db"`.
  entity Tool in [Target] = {{ "name": String }};
  entity Resource in [Target] = {{ "uri": String }};
  entity Prompt in [Target] = {{ "name": String }};

  // The arguments of a call (or a prompt's), in forms policies can test.
  type Arguments = {{
    "arguments": Set<String>,       // top-level string/number/boolean arguments as "name=value"
    "argument_names": Set<String>,  // every top-level argument's name
    "arguments_json": String,       // all of them as compact JSON, for `like` over nested values
  }};

  action "call" appliesTo {{ principal: [Agent], resource: [Tool], context: Arguments }};
  action "read" appliesTo {{ principal: [Agent], resource: [Resource], context: Arguments }};
  action "prompt" appliesTo {{ principal: [Agent], resource: [Prompt], context: Arguments }};
}}
"#
    )
}

/// The parsed schema.
pub fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(&schema_text())
        .map(|(s, _warnings)| s)
        .map_err(|e| PolicyError::Schema(e.to_string()))
}
