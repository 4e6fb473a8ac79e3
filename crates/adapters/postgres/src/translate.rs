//! Frames to model actions and event drafts, and server results back to outcome drafts.
//! Also remembers prepared statements and portals so that an Execute is recorded (and
//! decided) as the statement it runs.

use std::collections::HashMap;

use airlock_model::{Action, Decision, EventKind, SqlAction};
use airlock_session::EventDraft;
use serde_json::{Value, json};

use crate::codec::backend::ErrorFields;
use crate::codec::frontend::Bind;

/// Longest parameter value recorded verbatim; longer ones are recorded by length and
/// a prefix, so a multi-megabyte value does not bloat the log.
pub const MAX_RECORDED_PARAM: usize = 4096;

/// Prepared statements and portals of one session, by name.
#[derive(Default)]
pub struct Statements {
    prepared: HashMap<String, String>,
    portals: HashMap<String, String>,
}

impl Statements {
    /// Remembers a Parse.
    pub fn parsed(&mut self, name: &str, text: &str) {
        self.prepared.insert(name.to_owned(), text.to_owned());
    }

    /// Remembers a Bind; returns the statement text the portal runs, or `None` when the
    /// statement was not prepared through Parse (then the portal's old text is dropped, so
    /// an Execute is never recorded as a statement it does not run).
    pub fn bound(&mut self, portal: &str, statement: &str) -> Option<String> {
        let text = self.prepared.get(statement).cloned();
        match &text {
            Some(t) => {
                self.portals.insert(portal.to_owned(), t.clone());
            }
            None => {
                self.portals.remove(portal);
            }
        }
        text
    }

    /// The statement text behind a portal.
    pub fn portal(&self, portal: &str) -> Option<&str> {
        self.portals.get(portal).map(String::as_str)
    }

    /// Forgets a closed statement or portal.
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

    /// After a simple Query or a Sync outside a transaction block the unnamed portal is
    /// gone; named ones live until closed or the transaction ends. Keeping them is
    /// harmless: a later Execute of a dead portal fails at the server.
    pub fn sql_action(text: &str) -> Action {
        Action::Sql(SqlAction {
            text: text.to_owned(),
            kind: None,
        })
    }
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
        s.parsed("st", "select 1");
        assert_eq!(s.bound("", "st").as_deref(), Some("select 1"));
        assert_eq!(s.portal(""), Some("select 1"));
        assert_eq!(s.bound("", "missing"), None);
        s.closed(b'S', "st");
        assert_eq!(s.bound("", "st"), None);
        assert_eq!(
            s.portal(""),
            None,
            "a portal re-bound to an unknown statement forgets its old text"
        );
    }
}
