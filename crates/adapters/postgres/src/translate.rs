//! Frames to model actions and event drafts, and server results back to outcome drafts.
//! Also remembers prepared statements and portals so that an Execute is recorded (and
//! decided) as the statement it runs.

use std::collections::HashMap;

use airlock_model::{Action, Decision, EventKind, SqlObject, Verdict};
use airlock_session::EventDraft;
use serde_json::{Value, json};

use crate::codec::backend::ErrorFields;
use crate::codec::frontend::Bind;

/// Longest parameter value recorded verbatim; longer ones are recorded by length and
/// a prefix, so a multi-megabyte value does not bloat the log.
pub const MAX_RECORDED_PARAM: usize = 4096;

/// What the session has prepared, by name: protocol-level (Parse) and SQL-level
/// (PREPARE) statements share one namespace in PostgreSQL, and so they do here.
#[derive(Default)]
pub struct Statements {
    prepared: HashMap<String, Prepared>,
    portals: HashMap<String, String>,
}

/// A prepared statement as Airlock understood it.
#[derive(Clone)]
pub struct Prepared {
    /// Its text.
    pub text: String,
    /// Its actions, decided again at every execution.
    pub actions: Vec<Action>,
    /// The refusal it got when it was prepared, if it was refused.
    pub refused: Option<String>,
    /// What its result is made of (for masking); shared, as a portal's copy is taken
    /// at every Execute.
    pub shapes: std::sync::Arc<[airlock_engine::sql::ResultShape]>,
}

impl Statements {
    /// Remembers a statement prepared under `name`.
    pub fn prepared(&mut self, name: &str, prepared: Prepared) {
        self.prepared.insert(name.to_owned(), prepared);
    }

    /// The statement prepared under `name`.
    pub fn get(&self, name: &str) -> Option<&Prepared> {
        self.prepared.get(name)
    }

    /// Remembers a Bind: the portal runs statement `name`. An unknown statement drops the
    /// portal's old binding, so an Execute is never taken for a statement it does not run.
    pub fn bound(&mut self, portal: &str, statement: &str) -> Option<&Prepared> {
        if self.prepared.contains_key(statement) {
            self.portals.insert(portal.to_owned(), statement.to_owned());
        } else {
            self.portals.remove(portal);
        }
        self.prepared.get(statement)
    }

    /// The statement behind a portal.
    pub fn portal(&self, portal: &str) -> Option<&Prepared> {
        self.portals.get(portal).and_then(|s| self.prepared.get(s))
    }

    /// Forgets a closed statement (`b'S'`) or portal.
    pub fn closed(&mut self, kind: u8, name: &str) {
        match kind {
            b'S' => {
                self.prepared.remove(name);
            }
            _ => {
                self.portals.remove(name);
            }
        }
    }

    /// `DEALLOCATE name` / `DEALLOCATE ALL`.
    pub fn deallocate(&mut self, name: Option<&str>) {
        match name {
            Some(n) => {
                self.prepared.remove(n);
            }
            None => self.prepared.clear(),
        }
    }
}

/// Compact descriptions of actions for the event detail: `delete public.orders`.
pub fn action_summary(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Connect => "connect".to_owned(),
            Action::Sql(sql) => match &sql.object {
                SqlObject::Target => sql.kind.clone(),
                SqlObject::Table { schema, name } => format!("{} {schema}.{name}", sql.kind),
                SqlObject::Function {
                    schema: Some(s),
                    name,
                } => format!("{} {s}.{name}", sql.kind),
                SqlObject::Function { schema: None, name } => format!("{} {name}", sql.kind),
            },
        })
        .collect()
}

/// The decision part of a statement event's detail, plus `extra` fields.
pub fn verdict_detail(verdict: &Verdict, actions: &[Action], extra: &[(&str, Value)]) -> Value {
    let mut d = serde_json::Map::new();
    d.insert("actions".into(), json!(action_summary(actions)));
    d.insert("policies".into(), json!(verdict.policies));
    d.insert("policy_version".into(), json!(verdict.policy_version));
    if let Decision::Deny { reason } | Decision::Hold { reason, .. } = &verdict.decision {
        d.insert("reason".into(), json!(reason));
    }
    if let Some(observed) = &verdict.observed {
        d.insert("observed".into(), json!(observed.label()));
    }
    for (k, v) in extra {
        d.insert((*k).to_owned(), v.clone());
    }
    Value::Object(d)
}

/// The draft for a statement event.
pub fn statement_draft(
    kind: EventKind,
    text: Option<&str>,
    decision: Option<&Decision>,
    detail: Value,
) -> EventDraft {
    EventDraft {
        kind,
        statement: text.map(str::to_owned),
        decision: decision.map(Decision::label),
        detail,
    }
}

/// Bind parameters as recorded: text values as strings, NULL as null, binary and long
/// values by length with a prefix.
pub fn recorded_params(bind: &Bind<'_>) -> Value {
    let values = bind
        .params
        .iter()
        .enumerate()
        .map(|(i, p)| match p {
            None => Value::Null,
            Some(bytes) if bind.param_format(i) == 0 => match std::str::from_utf8(bytes) {
                Ok(s) if s.len() <= MAX_RECORDED_PARAM => Value::String(s.to_owned()),
                Ok(s) => {
                    let mut cut = MAX_RECORDED_PARAM;
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    json!({ "len": s.len(), "prefix": s.get(..cut).unwrap_or(""), "truncated": true })
                }
                Err(_) => json!({ "len": bytes.len(), "format": "text", "invalid_utf8": true }),
            },
            Some(bytes) => {
                let shown = bytes.get(..bytes.len().min(64)).unwrap_or(&[]);
                json!({ "len": bytes.len(), "format": "binary", "hex_prefix": hex_encode(shown) })
            }
        })
        .collect();
    Value::Array(values)
}

fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The outcome draft of one statement.
pub fn result_draft(outcome: Outcome, rows: u64, duration_us: u64) -> EventDraft {
    let detail = match outcome {
        Outcome::Complete(tag) => json!({ "tag": tag, "rows": rows, "duration_us": duration_us }),
        Outcome::Suspended => {
            json!({ "suspended": true, "rows": rows, "duration_us": duration_us })
        }
        Outcome::Empty => json!({ "empty_query": true, "duration_us": duration_us }),
        Outcome::Error(f) => json!({
            "error": { "severity": f.severity, "code": f.code, "message": f.message },
            "rows": rows,
            "duration_us": duration_us,
        }),
    };
    EventDraft::new(EventKind::Result, detail)
}

/// How a statement ended, as the server reported it.
pub enum Outcome {
    /// `CommandComplete` with its tag.
    Complete(String),
    /// `PortalSuspended` (Execute row limit reached).
    Suspended,
    /// `EmptyQueryResponse`.
    Empty,
    /// `ErrorResponse`.
    Error(ErrorFields),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_recorded_by_format_and_size() {
        let long = "x".repeat(MAX_RECORDED_PARAM + 10);
        let bind = Bind {
            portal: "",
            statement: "",
            param_formats: vec![0, 1, 0, 0],
            params: vec![Some(b"42"), Some(&[0, 1, 2]), None, Some(long.as_bytes())],
            result_formats: vec![],
        };
        let v = recorded_params(&bind);
        assert_eq!(v[0], json!("42"));
        assert_eq!(v[1]["format"], json!("binary"));
        assert_eq!(v[1]["hex_prefix"], json!("000102"));
        assert_eq!(v[2], Value::Null);
        assert_eq!(v[3]["truncated"], json!(true));
        assert_eq!(v[3]["len"], json!(MAX_RECORDED_PARAM + 10));
    }

    #[test]
    fn portals_resolve_to_their_statement() {
        let mut s = Statements::default();
        let p = Prepared {
            text: "select 1".into(),
            actions: vec![],
            refused: None,
            shapes: std::sync::Arc::new([]),
        };
        s.prepared("st", p);
        assert_eq!(s.bound("", "st").map(|p| p.text.as_str()), Some("select 1"));
        assert_eq!(s.portal("").map(|p| p.text.as_str()), Some("select 1"));
        s.closed(b'S', "st");
        assert!(s.bound("", "st").is_none());
        assert!(
            s.portal("").is_none(),
            "a portal re-bound to an unknown statement forgets its old text"
        );
    }
}
