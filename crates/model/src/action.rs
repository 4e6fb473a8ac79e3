//! What an agent is trying to do, normalized across protocols.

use serde::{Deserialize, Serialize};

/// One action a policy decides on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum Action {
    /// Opening a session to a target.
    Connect,
    /// One thing a SQL statement does (a statement usually does several).
    Sql(SqlAction),
    /// One HTTP request (or WebSocket upgrade) to an HTTP target.
    Http(HttpAction),
    /// One Kubernetes API request, as the API server's request info names it.
    K8s(K8sAction),
    /// One MCP request: a tool call, a resource read or a prompt.
    Mcp(McpAction),
}

/// One MCP request as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct McpAction {
    /// `call` (`tools/call`), `read` (`resources/read`) or `prompt` (`prompts/get`).
    pub kind: String,
    /// The tool's or prompt's name, or the resource's URI, exactly as sent.
    pub name: String,
    /// The top-level arguments whose values are strings, numbers or booleans, as
    /// `name=value`, sorted.
    pub arguments: Vec<String>,
    /// Every top-level argument's name, sorted.
    pub argument_names: Vec<String>,
    /// The arguments as compact JSON (for `like` patterns over nested values).
    pub arguments_json: String,
}

/// One Kubernetes API request as policy sees it: the API server's verb on a resource
/// (or a non-resource path, verb `discover`), with the facts of a write.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct K8sAction {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`;
    /// `discover` for a non-resource request (`/version`, `/apis`, `/openapi/v2`).
    pub verb: String,
    /// The API group, `""` for the core group.
    pub group: String,
    /// The resource (`pods`), `""` for a non-resource request.
    pub resource: String,
    /// The subresource (`exec`, `log`, `status`), or `""`.
    pub subresource: String,
    /// The namespace, `""` when cluster-scoped (for `namespaces/foo` itself: `foo`).
    pub namespace: String,
    /// The object's name, `""` for a collection.
    pub name: String,
    /// For a non-resource request: its path.
    pub path: String,
    /// For a write: the object's `kind` from its body, else `""`.
    pub kind: String,
    /// For a write: the object's labels as `key=value`, sorted.
    pub labels: Vec<String>,
    /// For `pods/exec` and `pods/attach`: the command, its words joined by spaces.
    pub command: String,
}

/// One HTTP request as policy sees it: its method on a normalised path, with the facts
/// of the request a policy may condition on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HttpAction {
    /// The method in lower case (`get`, `post`...), or `websocket` for an upgrade.
    pub method: String,
    /// The normalised path under the target, without a leading slash (`v1/invoices/7`;
    /// empty for the target's root), as the upstream will resolve it.
    pub path: String,
    /// The raw query string (without `?`), empty when there is none.
    pub query: String,
    /// The request's media type, lower case without parameters (`application/json`);
    /// empty when there is no body.
    pub content_type: String,
    /// For a JSON object body (up to the configured size): its top-level field names,
    /// sorted. Empty otherwise.
    pub body_fields: Vec<String>,
}

/// One thing a SQL statement does: a kind of operation on one object.
///
/// `SELECT nextval('s') FROM orders` is two actions: `select` on the table
/// `public.orders` and `call` on the function `nextval`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SqlAction {
    /// The operation: `select`, `insert`, `update`, `delete`, `merge`, `copy`, `create`,
    /// `alter`, `drop`, `truncate`, `grant`, `revoke`, `set`, `show`, `transaction`,
    /// `prepare`, `execute`, `deallocate`, `do`, `call`, `explain`, ... (see `SQL_KINDS`).
    pub kind: String,
    /// What it operates on.
    pub object: SqlObject,
    /// Facts about the statement that matter to policy.
    pub flags: SqlFlags,
}

/// The object of a SQL action.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SqlObject {
    /// The target as a whole (statements without a table: `SET`, `BEGIN`, `SELECT 1`).
    Target,
    /// A table (or view, sequence...) by schema and name; an unqualified name is taken
    /// to be in `public`.
    Table {
        /// Schema.
        schema: String,
        /// Name.
        name: String,
    },
    /// A function or procedure, by name as written (schema only if written).
    Function {
        /// Schema, if the statement qualified the name.
        schema: Option<String>,
        /// Name.
        name: String,
    },
}

/// Statement facts exposed to policy as Cedar context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SqlFlags {
    /// The kind of the top-level statement this action belongs to.
    pub statement: String,
    /// An UPDATE or DELETE has a WHERE clause.
    pub has_where: bool,
    /// SELECT ... INTO (creates a table).
    pub into: bool,
    /// EXPLAIN ANALYZE (the explained statement runs).
    pub analyze: bool,
    /// COPY ... PROGRAM (runs a shell command on the server).
    pub program: bool,
    /// COPY FROM (writes) rather than COPY TO.
    pub copy_from: bool,
    /// For `set`/`show`: the setting's name (`role`, `search_path`...).
    pub variable: String,
    /// ALTER SYSTEM.
    pub system: bool,
    /// The action comes from inside another statement (a CTE, EXPLAIN ANALYZE, PREPARE,
    /// a rule, a DO block).
    pub nested: bool,
}
