//! The Cedar schema Airlock generates: the entity types, the actions (one per SQL kind,
//! plus `connect`), and the context every SQL action carries. `airlock policy schema`
//! prints it; policies are validated against it in strict mode.

use cedar_policy::Schema;

use super::PolicyError;
use crate::sql::SQL_KINDS;

/// The schema in Cedar's human-readable syntax.
pub fn schema_text() -> String {
    let kinds = SQL_KINDS
        .iter()
        .filter(|k| **k != "call")
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ");
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

  // One action per statement kind, on the target (statements without a table) or on
  // a table.
  action {kinds} appliesTo {{
    principal: [Agent],
    resource: [Target, Table],
    context: Statement,
  }};

  // Calling a function or procedure, anywhere in a statement.
  action "call" appliesTo {{
    principal: [Agent],
    resource: [Function],
    context: Statement,
  }};
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
