//! Frames to model actions and event drafts, and server results back to outcome drafts.
//! Also remembers prepared statements and portals so that an Execute is recorded (and
//! decided) as the statement it runs.

use std::collections::HashMap;
use std::sync::Arc;

use airlock_approvals::StatementDigest;
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
    prepared: HashMap<String, Arc<Prepared>>,
    portals: HashMap<String, Portal>,
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
    pub shapes: Arc<[airlock_engine::sql::ResultShape]>,
    /// Policy held it for approval when it was prepared: its Binds keep what an
    /// approval is bound to (see [`Held`]).
    pub held: bool,
    /// The parameter types the client declared (0 = unspecified), to show binary
    /// parameters readably.
    pub param_types: Vec<u32>,
}

/// A portal: the statement it was bound to (as it was then: a later Parse under the
/// same name does not change what the portal runs), and, for a held statement, what
/// an approval of its execution is bound to.
#[derive(Clone)]
pub struct Portal {
    /// The statement bound.
    pub prepared: Arc<Prepared>,
    /// Set when the statement was held at Parse.
    pub held: Option<Held>,
}

/// What an approval of one execution is for: the statement, its parameters and the
/// result formats asked for.
#[derive(Clone)]
pub struct Held {
    /// See `airlock_approvals::StatementDigest`.
    pub digest: String,
    /// The parameters as recorded, for the approver.
    pub params: Value,
}

impl Held {
    /// What binding `bind` to `prepared` is, for an approval.
    pub fn of(prepared: &Prepared, bind: &Bind<'_>) -> Held {
        let mut digest = StatementDigest::new(&prepared.text);
        for (i, value) in bind.params.iter().enumerate() {
            digest = digest.param(bind.param_format(i), *value);
        }
        Held {
            digest: digest.result_formats(&bind.result_formats).finish(),
            params: recorded_params(bind, &prepared.param_types),
        }
    }
}

impl Statements {
    /// Remembers a statement prepared under `name`.
    pub fn prepared(&mut self, name: &str, prepared: Prepared) {
        self.prepared.insert(name.to_owned(), Arc::new(prepared));
    }

    /// The statement prepared under `name`.
    pub fn get(&self, name: &str) -> Option<&Prepared> {
        self.prepared.get(name).map(|p| &**p)
    }

    /// Remembers a Bind: the portal runs the statement prepared now under
    /// `bind.statement`. An unknown statement drops the portal's old binding, so an
    /// Execute is never taken for a statement it does not run.
    pub fn bound(&mut self, bind: &Bind<'_>) -> Option<Arc<Prepared>> {
        match self.prepared.get(bind.statement) {
            Some(p) => {
                let held = p.held.then(|| Held::of(p, bind));
                self.portals.insert(
                    bind.portal.to_owned(),
                    Portal {
                        prepared: p.clone(),
                        held,
                    },
                );
                Some(p.clone())
            }
            None => {
                self.portals.remove(bind.portal);
                None
            }
        }
    }

    /// The portal's binding.
    pub fn portal(&self, portal: &str) -> Option<&Portal> {
        self.portals.get(portal)
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
fn summarize_action(a: &Action) -> String {
    match a {
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
        Action::Http(http) => format!("{} /{}", http.method, http.path),
        Action::K8s(k) => format!("{} {}/{}", k.verb, k.resource, k.name),
        Action::Mcp(m) => format!("{} {}", m.kind, m.name),
    }
}

/// The decision part of a statement event's detail, plus `extra` fields.
pub fn verdict_detail(verdict: &Verdict, actions: &[Action], extra: &[(&str, Value)]) -> Value {
    let mut d = serde_json::Map::with_capacity(5 + extra.len());
    // Built as values directly (every statement does this): `json!` of a `Vec<String>`
    // goes through serde and copies each string once more.
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    d.insert(
        "actions".into(),
        Value::Array(
            actions
                .iter()
                .map(|a| Value::String(summarize_action(a)))
                .collect(),
        ),
    );
    d.insert("policies".into(), strings(verdict.policies.clone()));
    d.insert(
        "policy_version".into(),
        Value::String(verdict.policy_version.clone()),
    );
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
///
/// Binary values of a few common declared types (`types`, from the Parse) are shown
/// as text, always as JSON strings, so that masking scans them like text parameters.
pub fn recorded_params(bind: &Bind<'_>, types: &[u32]) -> Value {
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
            Some(bytes) => match types.get(i).and_then(|t| binary_as_text(*t, bytes)) {
                Some(text) => Value::String(text),
                None => {
                    let shown = bytes.get(..bytes.len().min(64)).unwrap_or(&[]);
                    json!({ "len": bytes.len(), "format": "binary", "hex_prefix": hex_encode(shown) })
                }
            },
        })
        .collect();
    Value::Array(values)
}

/// The text form of a binary parameter of a simple type, if it is one and well formed.
fn binary_as_text(oid: u32, bytes: &[u8]) -> Option<String> {
    const BOOL: u32 = 16;
    const INT8: u32 = 20;
    const INT2: u32 = 21;
    const INT4: u32 = 23;
    const TEXT: u32 = 25;
    const FLOAT4: u32 = 700;
    const FLOAT8: u32 = 701;
    const VARCHAR: u32 = 1043;
    const UUID: u32 = 2950;
    Some(match oid {
        BOOL => match bytes {
            [0] => "false".into(),
            [1] => "true".into(),
            _ => return None,
        },
        INT2 => i16::from_be_bytes(bytes.try_into().ok()?).to_string(),
        INT4 => i32::from_be_bytes(bytes.try_into().ok()?).to_string(),
        INT8 => i64::from_be_bytes(bytes.try_into().ok()?).to_string(),
        FLOAT4 => f32::from_be_bytes(bytes.try_into().ok()?).to_string(),
        FLOAT8 => f64::from_be_bytes(bytes.try_into().ok()?).to_string(),
        TEXT | VARCHAR if bytes.len() <= MAX_RECORDED_PARAM => {
            std::str::from_utf8(bytes).ok()?.to_owned()
        }
        UUID => {
            let h = hex_encode(<&[u8; 16]>::try_from(bytes).ok()?);
            format!(
                "{}-{}-{}-{}-{}",
                h.get(..8)?,
                h.get(8..12)?,
                h.get(12..16)?,
                h.get(16..20)?,
                h.get(20..)?
            )
        }
        _ => return None,
    })
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
        let v = recorded_params(&bind, &[]);
        assert_eq!(v[0], json!("42"));
        assert_eq!(v[1]["format"], json!("binary"));
        assert_eq!(v[1]["hex_prefix"], json!("000102"));
        assert_eq!(v[2], Value::Null);
        assert_eq!(v[3]["truncated"], json!(true));
        assert_eq!(v[3]["len"], json!(MAX_RECORDED_PARAM + 10));
    }

    fn bind<'a>(portal: &'a str, statement: &'a str, params: Vec<Option<&'a [u8]>>) -> Bind<'a> {
        Bind {
            portal,
            statement,
            param_formats: vec![1, 0],
            params,
            result_formats: vec![],
        }
    }

    fn prepared(text: &str, held: bool) -> Prepared {
        Prepared {
            text: text.into(),
            actions: vec![],
            refused: None,
            shapes: std::sync::Arc::new([]),
            held,
            param_types: vec![23, 25],
        }
    }

    #[test]
    fn portals_resolve_to_the_statement_they_were_bound_to() {
        let mut s = Statements::default();
        s.prepared("st", prepared("select 1", false));
        assert_eq!(
            s.bound(&bind("", "st", vec![]))
                .map(|p| p.text.clone())
                .as_deref(),
            Some("select 1")
        );
        assert_eq!(
            s.portal("").map(|p| p.prepared.text.as_str()),
            Some("select 1")
        );
        assert!(
            s.portal("").is_some_and(|p| p.held.is_none()),
            "not held: nothing kept"
        );
        // The unnamed statement is parsed again: the bound portal still runs the old one.
        s.prepared("st", prepared("select 2", false));
        assert_eq!(
            s.portal("").map(|p| p.prepared.text.as_str()),
            Some("select 1")
        );
        s.closed(b'S', "st");
        assert!(s.bound(&bind("", "st", vec![])).is_none());
        assert!(
            s.portal("").is_none(),
            "a portal re-bound to an unknown statement forgets its old text"
        );
    }

    #[test]
    fn a_held_statement_binds_keep_the_digest_of_their_parameters() {
        let mut s = Statements::default();
        s.prepared(
            "del",
            prepared("delete from t where id = $1 and note = $2", true),
        );
        let seven = 7i32.to_be_bytes();
        s.bound(&bind("a", "del", vec![Some(&seven), Some(b"x")]));
        s.bound(&bind("b", "del", vec![Some(&seven), Some(b"x")]));
        let eight = 8i32.to_be_bytes();
        s.bound(&bind("c", "del", vec![Some(&eight), Some(b"x")]));
        let held = |p: &str| s.portal(p).and_then(|p| p.held.clone()).unwrap();
        assert_eq!(held("a").digest, held("b").digest);
        assert_ne!(held("a").digest, held("c").digest);
        // Binary int4 shown as its text, for the approver.
        assert_eq!(held("a").params, json!(["7", "x"]));
    }
}
