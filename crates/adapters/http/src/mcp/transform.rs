//! What the upstream answers, on its way to the agent: each JSON-RPC message (one JSON
//! body, or each event of an SSE stream) is read, listings are filtered to what the agent
//! may use (and to tools whose pinned fingerprint still holds), results are masked by
//! MCP's shapes, and what was done is summed up for the session's record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use airlock_engine::masking::rules::{Scan, Tally};
use airlock_engine::mcp::requests::{self, Listing, MethodClass};
use airlock_engine::mcp::results;
use airlock_engine::policy::NoCatalog;
use airlock_model::{Action, Decision};
use serde_json::{Value, json};

use crate::body::Filter;
use crate::conn::Slot;
use crate::mcp::pins::ToolPins;

/// Longest SSE event accepted from an upstream; beyond it the stream is refused.
const MAX_EVENT: usize = 16 * 1024 * 1024;

/// What happened to one exchange's answers, for its record.
#[derive(Default)]
pub struct Summary {
    /// What masking replaced.
    pub tally: Tally,
    /// Listed items the agent may not use, hidden (`tools/<name>`, `resources/<uri>`,
    /// `prompts/<name>`).
    pub hidden: Vec<String>,
    /// Tools hidden because their fingerprint changed under `pin_tools`.
    pub changed: Vec<String>,
    /// Whether a tool result said `isError`.
    pub tool_error: bool,
    /// JSON-RPC error messages the upstream answered with.
    pub errors: Vec<String>,
    /// Why a result was replaced by an error (it could not be masked).
    pub withheld: Option<String>,
    /// Messages passed.
    pub messages: usize,
}

/// Rewrites the upstream's messages for one agent request (or event stream).
pub struct Transformer {
    slot: Arc<Slot>,
    pins: Arc<ToolPins>,
    /// The method of each request this exchange forwarded, by its id as JSON text.
    asked: HashMap<String, String>,
    /// What was done, for the record.
    pub summary: Arc<Mutex<Summary>>,
}

impl Transformer {
    /// A transformer for answers to `asked` (id as JSON text -> method).
    pub fn new(slot: Arc<Slot>, pins: Arc<ToolPins>, asked: HashMap<String, String>) -> Self {
        Transformer {
            slot,
            pins,
            asked,
            summary: Arc::new(Mutex::new(Summary::default())),
        }
    }

    /// Rewrites one JSON body (a message or an array of them).
    pub fn body(&self, value: &mut Value) {
        match value {
            Value::Array(items) => {
                for item in items {
                    self.message(item);
                }
            }
            other => self.message(other),
        }
    }

    /// Rewrites one message.
    pub fn message(&self, message: &mut Value) {
        let Ok(mut summary) = self.summary.lock() else {
            return;
        };
        summary.messages += 1;
        let masker = self.slot.session.masker().cloned();
        let Some(map) = message.as_object_mut() else {
            return;
        };
        let method = map.get("method").and_then(Value::as_str).map(str::to_owned);
        if let Some(method) = method {
            // The server's own request or notification (sampling, logs, progress).
            if let (Some(m), Some(params)) = (&masker, map.get_mut("params")) {
                let _ = method;
                results::mask_params(m, params, &mut summary.tally);
            }
            return;
        }
        let answered = map
            .get("id")
            .map(Value::to_string)
            .and_then(|id| self.asked.get(&id).cloned())
            .unwrap_or_default();
        if let Some(error) = map.get_mut("error") {
            if let Some(m) = &masker {
                results::mask_params(m, error, &mut summary.tally);
            }
            if let Some(text) = error.get("message").and_then(Value::as_str) {
                summary.errors.push(text.chars().take(300).collect());
            }
            return;
        }
        let Some(result) = map.get_mut("result") else {
            return;
        };
        match requests::classify(&answered) {
            Some(MethodClass::List(listing)) => self.filter(listing, result, &mut summary),
            Some(MethodClass::Call) if result.get("isError") == Some(&Value::Bool(true)) => {
                summary.tool_error = true;
            }
            _ => {}
        }
        if let Some(m) = &masker {
            let method = if answered.is_empty() {
                "unknown"
            } else {
                answered.as_str()
            };
            if let Err(w) = results::mask_result(m, method, result, &mut summary.tally) {
                let why = w.to_string();
                summary.withheld = Some(why.clone());
                let id = map.get("id").cloned().unwrap_or(Value::Null);
                *message = json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "error": {
                        "code": super::reply::WITHHELD,
                        "message": format!("airlock: the result was withheld: {why}"),
                    }
                });
            }
        }
    }

    /// Drops the listed items the agent may not use.
    fn filter(&self, listing: Listing, result: &mut Value, summary: &mut Summary) {
        let (key, kind, name_key) = match listing {
            Listing::Tools => ("tools", "call", "name"),
            Listing::Resources => ("resources", "read", "uri"),
            Listing::Prompts => ("prompts", "prompt", "name"),
            // A template is not a resource; each read of one is decided on its URI.
            Listing::ResourceTemplates => return,
        };
        let target = self.slot.session.target();
        let pinned = listing == Listing::Tools;
        let changed = if pinned {
            self.pins.observe(
                &target.model.name,
                &airlock_engine::mcp::tools::prints(result),
            )
        } else {
            Vec::new()
        };
        let Some(items) = result.get_mut(key).and_then(Value::as_array_mut) else {
            return;
        };
        let session = &self.slot.session;
        items.retain(|item| {
            let Some(name) = item.get(name_key).and_then(Value::as_str) else {
                return false;
            };
            if pinned && changed.iter().any(|c| c == name) {
                summary.changed.push(name.to_owned());
                if target.config.pin_tools {
                    return false;
                }
            }
            let action = Action::Mcp(requests::action(kind, name, &serde_json::Map::new()));
            let verdict = session.decide(std::slice::from_ref(&action), &NoCatalog);
            let allowed = !matches!(verdict.decision, Decision::Deny { .. });
            if !allowed {
                summary.hidden.push(format!("{key}/{name}"));
            }
            allowed
        });
        // A filtered listing is this principal's: no shared cache may serve it to another.
        if let Some(map) = result.as_object_mut()
            && map.contains_key("cacheScope")
        {
            map.insert("cacheScope".into(), "private".into());
        }
    }
}

/// An SSE stream of JSON-RPC messages, rewritten event by event: each complete event's
/// `data` is read as one message, rewritten, and sent on at once.
pub struct SseMessages {
    transformer: Transformer,
    pending: Vec<u8>,
    event: Vec<Vec<u8>>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseMessages {
    /// A filter around `transformer`.
    pub fn new(transformer: Transformer) -> Self {
        SseMessages {
            transformer,
            pending: Vec::new(),
            event: Vec::new(),
            data: Vec::new(),
            has_data: false,
        }
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        } else {
            self.event.push(line.to_vec());
        }
    }

    fn dispatch(&mut self, out: &mut Vec<u8>) {
        for l in self.event.drain(..) {
            out.extend_from_slice(&l);
            out.push(b'\n');
        }
        if self.has_data {
            let data = std::mem::take(&mut self.data);
            self.has_data = false;
            let text = match serde_json::from_slice::<Value>(&data) {
                Ok(mut v) => {
                    self.transformer.body(&mut v);
                    v.to_string().into_bytes()
                }
                // Not a message: the detectors still read it.
                Err(_) => self.scan(&data),
            };
            for part in text.split(|b| *b == b'\n') {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(part);
                out.push(b'\n');
            }
        }
        out.push(b'\n');
    }

    fn scan(&self, data: &[u8]) -> Vec<u8> {
        let Some(m) = self.transformer.slot.session.masker() else {
            return data.to_vec();
        };
        let mut out = Vec::new();
        let Ok(mut s) = self.transformer.summary.lock() else {
            return data.to_vec();
        };
        match m.scan(data, &mut out, &mut s.tally) {
            Scan::Masked => out,
            Scan::Clean => data.to_vec(),
        }
    }
}

impl Filter for SseMessages {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.pending.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(i) = self
            .pending
            .get(start..)
            .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
        {
            let end = start + i;
            let mut line = self.pending.get(start..end).unwrap_or_default().to_vec();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.line(&line, out);
            start = end + 1;
        }
        self.pending.drain(..start);
        if self.pending.len() + self.data.len() > MAX_EVENT {
            return Err(format!(
                "an event of the upstream's stream is over {MAX_EVENT} bytes"
            ));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.line(&rest, out);
        }
        if self.has_data || !self.event.is_empty() {
            self.dispatch(out);
        }
        Ok(())
    }
}
