//! A recorded event as a replay shows it: what happened, the decision and the policy
//! behind it, timings, rows, what was masked, captured (masked) rows, approval steps,
//! and a Kubernetes exec stream's bytes as terminal text.
//!
//! Pure functions of the stored event, so the page, the live fragment and the tests
//! agree. Nothing here escapes: the templates do, for every field.

use airlock_store::ChainedEvent;
use serde_json::{Map, Value};

/// One line of a replay.
pub(crate) struct Entry {
    /// Position in the session.
    pub seq: i64,
    /// Time of day, to the millisecond (UTC).
    pub at: String,
    /// The full timestamp.
    pub at_full: String,
    /// The event's kind, in the CLI's words (`query`, `result`, `approval`…).
    pub kind: String,
    /// `allow`, `deny`, `hold`, or empty.
    pub decision: String,
    /// The statement, request line or tool call; or the event's one-line summary.
    pub text: String,
    /// Whether `text` is a statement (shown as code).
    pub is_statement: bool,
    /// Bind parameters, as recorded (masked where the session masks), compact JSON.
    pub params: String,
    /// The policies that decided.
    pub policies: String,
    /// Labelled facts: duration, rows, command tag, status, reason, who decided…
    pub facts: Vec<(String, String)>,
    /// Masked values, `rule: kind × n`.
    pub masked: Vec<String>,
    /// Captured rows (as the client received them: masked), when `capture_rows` is on.
    pub captured: Vec<Vec<String>>,
    /// Their column names, when the result was described.
    pub columns: Vec<String>,
    /// Exec or attach stream text (`stdin`, `stdout`, `stderr`), for terminal playback.
    pub terminal: Option<(String, String)>,
    /// A CSS class for the line: `deny`, `hold`, `error` or empty.
    pub tone: &'static str,
}

/// The replay line of `e`.
pub(crate) fn entry(e: &ChainedEvent) -> Entry {
    let detail: Map<String, Value> = match serde_json::from_str(&e.detail) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let decision = e.decision.clone().unwrap_or_default();
    let mut entry = Entry {
        seq: e.seq,
        at: e.at.get(11..23).unwrap_or(&e.at).to_owned(),
        at_full: e.at.clone(),
        kind: e.kind.clone(),
        tone: match decision.as_str() {
            "deny" => "deny",
            "hold" => "hold",
            _ => "",
        },
        decision,
        text: String::new(),
        is_statement: false,
        params: String::new(),
        policies: strings(detail.get("policies")),
        facts: Vec::new(),
        masked: masked(detail.get("masked")),
        captured: captured(detail.get("captured_rows")),
        columns: match detail.get("captured_columns") {
            Some(Value::Array(names)) => names.iter().map(|n| text_of(Some(n))).collect(),
            _ => Vec::new(),
        },
        terminal: None,
    };
    if let Some(statement) = &e.statement {
        entry.text = statement.clone();
        entry.is_statement = true;
    }
    if let Some(params) = detail.get("params").filter(|p| !is_empty(p)) {
        entry.params = params.to_string();
    }
    match e.kind.as_str() {
        "connect" => {
            fact(&mut entry, "principal", detail.get("principal"));
            fact(&mut entry, "groups", detail.get("groups"));
            fact(&mut entry, "signed in with", detail.get("principal_source"));
            fact(&mut entry, "from", detail.get("client_addr"));
            entry.text = format!("connected to {}", text_of(detail.get("target")));
        }
        "auth_failure" | "connect_failure" | "refused" => {
            entry.tone = "deny";
            if e.kind == "connect_failure" {
                entry.tone = "error";
            }
            if entry.text.is_empty() {
                entry.text = first_text(&detail, &["reason", "message", "error"]);
            } else {
                fact(&mut entry, "reason", detail.get("reason"));
            }
            let has_text = !entry.text.is_empty();
            fact(
                &mut entry,
                "message",
                detail.get("message").filter(|_| has_text),
            );
        }
        "result" => result(&mut entry, &detail),
        "approval" => {
            entry.tone = "hold";
            let step = text_of(detail.get("step"));
            entry.text = format!("approval {step}");
            fact(
                &mut entry,
                "request",
                detail.get("approval_id").or(detail.get("id")),
            );
            fact(
                &mut entry,
                "approver group",
                detail.get("approver_group").or(detail.get("group")),
            );
            fact(
                &mut entry,
                "decided by",
                detail.get("decided_by").or(detail.get("by")),
            );
            fact(&mut entry, "reason", detail.get("reason"));
            fact(&mut entry, "comment", detail.get("comment"));
            fact(&mut entry, "decided at", detail.get("decided_at"));
            fact(&mut entry, "waited ms", detail.get("waited_ms"));
            if step == "denied" || step == "timed_out" || step == "expired" {
                entry.tone = "deny";
            }
        }
        "disconnect" => {
            entry.text = format!("disconnected: {}", text_of(detail.get("reason")));
            if detail
                .get("error")
                .is_some_and(|v| v != &Value::Bool(false))
            {
                entry.tone = "error";
            }
            fact(&mut entry, "requests", detail.get("requests"));
        }
        "message" => {
            let channel = text_of(detail.get("channel"));
            let text = text_of(detail.get("text"));
            if matches!(channel.as_str(), "stdin" | "stdout" | "stderr") {
                entry.terminal = Some((channel, text));
            } else {
                entry.text = text;
                fact(&mut entry, "direction", detail.get("direction"));
            }
            fact(&mut entry, "bytes", detail.get("bytes"));
        }
        "cancel" => entry.text = "the client asked to cancel the running statement".into(),
        _ => {
            fact(&mut entry, "reason", detail.get("reason"));
            fact(&mut entry, "hint", detail.get("hint"));
        }
    }
    if entry.text.is_empty() && entry.terminal.is_none() && entry.facts.is_empty() {
        entry.text = compact(&detail);
    }
    entry
}

/// A result: command tag or status, rows, bytes, duration, the error if it failed.
fn result(entry: &mut Entry, detail: &Map<String, Value>) {
    if let Some(err) = detail.get("error").filter(|v| v.is_object()) {
        entry.tone = "error";
        entry.text = format!(
            "{} {}: {}",
            text_of(err.get("severity")),
            text_of(err.get("code")),
            text_of(err.get("message"))
        )
        .trim()
        .to_owned();
    } else if let Some(tag) = detail.get("tag") {
        entry.text = text_of(Some(tag));
    } else if let Some(status) = detail.get("status") {
        entry.text = format!("status {}", text_of(Some(status)));
        if status.as_u64().is_some_and(|s| s >= 500) {
            entry.tone = "error";
        }
    } else if detail.get("suspended").is_some() {
        entry.text = "suspended (the client asked for rows in batches)".into();
    }
    fact(entry, "rows", detail.get("rows"));
    fact(
        entry,
        "bytes",
        detail.get("bytes").or(detail.get("response_bytes")),
    );
    if let Some(us) = detail.get("duration_us").and_then(Value::as_u64) {
        entry
            .facts
            .push(("duration".into(), format!("{:.3} ms", us as f64 / 1000.0)));
    }
}

/// Adds `label: value` when the value is present and not empty.
fn fact(entry: &mut Entry, label: &str, value: Option<&Value>) {
    if let Some(v) = value.filter(|v| !is_empty(v)) {
        entry.facts.push((label.to_owned(), text_of(Some(v))));
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// A value as plain text: strings as they are, lists comma separated, the rest as JSON.
fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => strings(v),
        Some(other) => other.to_string(),
    }
}

fn strings(v: Option<&Value>) -> String {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| text_of(Some(i)))
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => text_of(Some(other)),
        None => String::new(),
    }
}

fn first_text(detail: &Map<String, Value>, keys: &[&str]) -> String {
    keys.iter()
        .find_map(|k| detail.get(*k).filter(|v| !is_empty(v)))
        .map(|v| text_of(Some(v)))
        .unwrap_or_default()
}

/// `{"rule": {"kind": n}}` as `rule: kind × n` lines.
fn masked(v: Option<&Value>) -> Vec<String> {
    let Some(Value::Object(rules)) = v else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (rule, kinds) in rules {
        match kinds {
            Value::Object(kinds) => {
                for (kind, n) in kinds {
                    out.push(format!("{rule}: {kind} × {}", text_of(Some(n))));
                }
            }
            n => out.push(format!("{rule} × {}", text_of(Some(n)))),
        }
    }
    out
}

/// Captured rows: arrays of fields (text, null, or `{prefix|binary_hex, len}`).
fn captured(v: Option<&Value>) -> Vec<Vec<String>> {
    let Some(Value::Array(rows)) = v else {
        return Vec::new();
    };
    rows.iter()
        .map(|row| match row {
            Value::Array(fields) => fields.iter().map(field).collect(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| format!("{k}: {}", field(v)))
                .collect(),
            other => vec![field(other)],
        })
        .collect()
}

fn field(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            let len = text_of(o.get("len"));
            if let Some(p) = o.get("prefix") {
                format!("{}… ({len} bytes)", text_of(Some(p)))
            } else if o.contains_key("binary_hex") {
                format!("(binary, {len} bytes)")
            } else {
                v.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// The detail as `key=value` pairs, for kinds with nothing better to show.
fn compact(detail: &Map<String, Value>) -> String {
    detail
        .iter()
        .filter(|(_, v)| !is_empty(v))
        .map(|(k, v)| format!("{k}={}", text_of(Some(v))))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Masked values over a whole session, per rule and kind, summed.
pub(crate) fn masked_totals(events: &[ChainedEvent]) -> Vec<(String, u64)> {
    let mut totals: Vec<(String, u64)> = Vec::new();
    for e in events {
        let Ok(Value::Object(d)) = serde_json::from_str::<Value>(&e.detail) else {
            continue;
        };
        let Some(Value::Object(rules)) = d.get("masked") else {
            continue;
        };
        for (rule, kinds) in rules {
            let pairs: Vec<(String, u64)> = match kinds {
                Value::Object(kinds) => kinds
                    .iter()
                    .map(|(k, n)| (format!("{rule}: {k}"), n.as_u64().unwrap_or(0)))
                    .collect(),
                n => vec![(rule.clone(), n.as_u64().unwrap_or(0))],
            };
            for (name, n) in pairs {
                match totals.iter_mut().find(|(k, _)| *k == name) {
                    Some((_, total)) => *total += n,
                    None => totals.push((name, n)),
                }
            }
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        kind: &str,
        statement: Option<&str>,
        decision: Option<&str>,
        detail: &str,
    ) -> ChainedEvent {
        ChainedEvent {
            id: 1,
            session_id: "s".into(),
            seq: 3,
            at: "2026-12-07T10:11:12.345678Z".into(),
            kind: kind.into(),
            statement: statement.map(str::to_owned),
            decision: decision.map(str::to_owned),
            detail: detail.into(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn a_statement_shows_its_decision_and_policy() {
        let e = entry(&event(
            "query",
            Some("DELETE FROM orders WHERE id = 7"),
            Some("hold"),
            r#"{"policies":["delete-needs-dba"],"params":[]}"#,
        ));
        assert_eq!(e.at, "10:11:12.345");
        assert_eq!(e.text, "DELETE FROM orders WHERE id = 7");
        assert!(e.is_statement);
        assert_eq!((e.decision.as_str(), e.tone), ("hold", "hold"));
        assert_eq!(e.policies, "delete-needs-dba");
        assert!(e.params.is_empty());
    }

    #[test]
    fn a_result_shows_rows_timing_masking_and_captured_rows() {
        let e = entry(&event(
            "result",
            None,
            None,
            r#"{"tag":"SELECT 2","rows":2,"duration_us":1534,
                "masked":{"customers-pii":{"email":2}},
                "captured_rows":[["Ada Lovelace","[REDACTED:email]",null],["x",{"prefix":"abc","len":900},"1"]],
                "captured_columns":["name","email","note"]}"#,
        ));
        assert_eq!(e.text, "SELECT 2");
        assert!(e.facts.contains(&("rows".into(), "2".into())));
        assert!(e.facts.contains(&("duration".into(), "1.534 ms".into())));
        assert_eq!(e.masked, ["customers-pii: email × 2"]);
        assert_eq!(e.captured[0], ["Ada Lovelace", "[REDACTED:email]", "NULL"]);
        assert_eq!(e.captured[1][1], "abc… (900 bytes)");
        assert_eq!(e.columns, ["name", "email", "note"]);
        let failed = entry(&event(
            "result",
            None,
            None,
            r#"{"error":{"severity":"ERROR","code":"42P01","message":"relation \"nope\" does not exist"}}"#,
        ));
        assert_eq!(failed.tone, "error");
        assert_eq!(
            failed.text,
            r#"ERROR 42P01: relation "nope" does not exist"#
        );
    }

    #[test]
    fn exec_streams_play_back_as_terminal_text() {
        let e = entry(&event(
            "message",
            None,
            None,
            r#"{"direction":"upstream","channel":"stdout","bytes":6,"text":"hello\n"}"#,
        ));
        assert_eq!(e.terminal, Some(("stdout".into(), "hello\n".into())));
    }

    #[test]
    fn approvals_and_disconnects_say_who_and_why() {
        let e = entry(&event(
            "approval",
            None,
            None,
            r#"{"step":"approved","approval_id":"a1","decided_by":"dana"}"#,
        ));
        assert_eq!(e.text, "approval approved");
        assert!(e.facts.contains(&("decided by".into(), "dana".into())));
        let d = entry(&event(
            "disconnect",
            None,
            None,
            r#"{"reason":"target_closed","error":true}"#,
        ));
        assert_eq!(
            (d.text.as_str(), d.tone),
            ("disconnected: target_closed", "error")
        );
        // A detail that is not JSON still renders.
        let odd = entry(&event("cancel", None, None, "garbage"));
        assert!(!odd.text.is_empty());
    }

    #[test]
    fn masked_totals_sum_over_the_session() {
        let r = r#"{"masked":{"pii":{"email":2,"card":1}}}"#;
        let totals = masked_totals(&[
            event("result", None, None, r),
            event("result", None, None, r),
        ]);
        assert_eq!(
            totals,
            [("pii: email".to_owned(), 4), ("pii: card".to_owned(), 2)]
        );
    }
}
