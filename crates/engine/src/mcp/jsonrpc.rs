//! A strict JSON-RPC 2.0 parser for what an agent sends to an MCP server, so that the
//! message Airlock decides on is the only message the server can read from the bytes.
//!
//! Two JSON parsers can read one body differently: serde_json keeps the last of two
//! duplicate keys, other parsers keep the first; Go's `encoding/json` matches member
//! names case-insensitively (with Unicode simple folding, so `ſ` matches `s` and the
//! Kelvin sign matches `k`). A gateway that decides on one reading and forwards bytes
//! that an upstream reads another way has decided nothing. So this module refuses every
//! body with such an ambiguity rather than picking a reading.
//!
//! Hand-written: the JSON text is read by a small recursive-descent parser that builds a
//! `serde_json::Value` and refuses a duplicate key (after unescaping, so `"a"` and
//! `"\u0061"` are duplicates) at any depth, nesting deeper than [`MAX_DEPTH`], and trailing
//! data. A custom serde `Visitor` could reject duplicates too, but this crate depends on
//! serde_json only (not on serde itself), and a parser of our own also gives exact byte
//! offsets and one place for the depth limit. Numbers are checked against the JSON
//! grammar here and then converted by serde_json, so they mean what serde_json says.
//! The JSON-RPC rules (members, ids, batches) are then checked on the built value.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

#[cfg(test)]
mod tests;

/// The largest body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The deepest nesting of arrays and objects accepted (a top-level object is depth 1).
pub const MAX_DEPTH: usize = 128;
/// The most messages accepted in one batch.
pub const MAX_BATCH: usize = 100;

/// The members a JSON-RPC 2.0 message may have.
const MEMBERS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];
/// The members `tools/call` parameters may have.
const TOOL_CALL_MEMBERS: [&str; 3] = ["name", "arguments", "_meta"];

/// A JSON-RPC id as an agent may send it: a string or an integer that fits in `i64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    Number(i64),
    String(String),
}

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: Id,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A response to a request the server sent (sampling, elicitation, roots). Exactly one
    /// of `result` and `error` is `Some`.
    Response {
        id: Id,
        result: Option<Value>,
        error: Option<Value>,
    },
}

impl Message {
    /// The method of a request or notification; `None` for a response.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }
}

/// A JSON-RPC body: one message, or a non-empty, homogeneous batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Single(Message),
    Batch(Vec<Message>),
}

/// The parameters of a `tools/call` request.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The tool name, byte for byte as sent: not trimmed, case-folded or normalised.
    pub name: String,
    /// The arguments; empty when the request has none.
    pub arguments: Map<String, Value>,
}

/// Which message of a body an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At(pub Option<usize>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("the message"),
            Some(i) => write!(f, "batch element {i} (counting from 0)"),
        }
    }
}

/// Why a body was refused. Each message says what was wrong and what to send instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonRpcError {
    #[error(
        "the body is {len} bytes, over the limit of {max} bytes; send smaller requests (split batches, pass large data by reference)",
        max = MAX_BODY_BYTES
    )]
    BodyTooLarge { len: usize },
    #[error("the body is not valid UTF-8 (at byte {offset}); send JSON encoded as UTF-8")]
    NotUtf8 { offset: usize },
    #[error(
        "the body is not valid JSON at byte {offset}: {reason}; send one well-formed JSON value"
    )]
    InvalidJson { offset: usize, reason: &'static str },
    #[error(
        "the body has data after the JSON value, at byte {offset}; send exactly one JSON value (use a JSON array for a batch)"
    )]
    TrailingData { offset: usize },
    #[error(
        "arrays and objects are nested deeper than {max} levels at byte {offset}; send flatter data",
        max = MAX_DEPTH
    )]
    TooDeep { offset: usize },
    #[error(
        "the key {key:?} appears twice in one object (second at byte {offset}); send each key once"
    )]
    DuplicateKey { key: String, offset: usize },
    #[error(
        "{at} is not a JSON object; send an object such as {{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}}"
    )]
    NotAnObject { at: At },
    #[error("{at} has no \"jsonrpc\" member; add \"jsonrpc\":\"2.0\"")]
    MissingVersion { at: At },
    #[error(
        "{at} has a \"jsonrpc\" member that is not exactly the string \"2.0\"; send \"jsonrpc\":\"2.0\""
    )]
    BadVersion { at: At },
    #[error(
        "{at} has the member {key:?}, a case variant of {member:?}; spell it exactly {member:?}"
    )]
    CaseVariantMember {
        at: At,
        key: String,
        member: &'static str,
    },
    #[error(
        "{at} has the unknown member {key:?}; a JSON-RPC message may only have \"jsonrpc\", \"id\", \"method\", \"params\", \"result\" and \"error\""
    )]
    UnknownMember { at: At, key: String },
    #[error(
        "the params of {at} have the keys {first:?} and {second:?} in one object, which differ only in case; send only one of them"
    )]
    CaseVariantKeys {
        at: At,
        first: String,
        second: String,
    },
    #[error(
        "{at} has an id that is {kind}; send a string or an integer between -2^63 and 2^63-1, such as \"id\":1"
    )]
    BadId { at: At, kind: &'static str },
    #[error(
        "{at} has a \"method\" that is not a string; send the method name as a string, such as \"method\":\"tools/call\""
    )]
    MethodNotString { at: At },
    #[error(
        "{at} has an empty \"method\"; send the method name, such as \"method\":\"tools/call\""
    )]
    EmptyMethod { at: At },
    #[error(
        "{at} has \"params\" that are neither an object nor an array; send an object (or omit \"params\")"
    )]
    BadParams { at: At },
    #[error(
        "{at} has a \"method\" and also a \"result\" or \"error\"; a request has \"method\", a response has \"result\" or \"error\", never both"
    )]
    MethodWithResult { at: At },
    #[error("{at} has \"params\" but no \"method\"; add the \"method\" the params are for")]
    ParamsWithoutMethod { at: At },
    #[error(
        "{at} has no \"method\" and no \"id\"; send a request (\"id\" and \"method\") or a notification (\"method\")"
    )]
    MissingMethod { at: At },
    #[error("{at} is a response with both \"result\" and \"error\"; send exactly one of them")]
    ResultAndError { at: At },
    #[error(
        "{at} is a response with neither \"result\" nor \"error\"; send exactly one of them, or add a \"method\" if it is a request"
    )]
    NoResultOrError { at: At },
    #[error("the batch is empty; send at least one message, or a single message without the array")]
    EmptyBatch,
    #[error(
        "the batch has {len} messages, over the limit of {max}; split it into smaller batches",
        max = MAX_BATCH
    )]
    BatchTooLarge { len: usize },
    #[error(
        "batch element {index} is an array; batches cannot be nested, send a flat array of messages"
    )]
    NestedBatch { index: usize },
    #[error(
        "the batch mixes methods ({first} and {other}, at element {index}); every message of a batch must have the same method, so send one batch (or request) per method"
    )]
    MixedBatch {
        first: String,
        other: String,
        index: usize,
    },
    #[error(
        "the tools/call params are not an object; send {{\"name\":\"<tool>\",\"arguments\":{{...}}}}"
    )]
    ToolParamsNotObject,
    #[error(
        "the tools/call params have the unknown key {key:?}; only \"name\", \"arguments\" and \"_meta\" are allowed"
    )]
    ToolUnknownKey { key: String },
    #[error("the tools/call params have no \"name\"; send the tool name as \"name\":\"<tool>\"")]
    ToolNameMissing,
    #[error("the tools/call \"name\" is not a non-empty string; send the tool name as a string")]
    ToolNameNotString,
    #[error(
        "the tools/call \"arguments\" are not an object; send an object of arguments, or omit \"arguments\""
    )]
    ToolArgumentsNotObject,
    #[error("the tools/call \"_meta\" is not an object; send an object, or omit \"_meta\"")]
    ToolMetaNotObject,
}

/// Parses a JSON-RPC 2.0 body sent by an agent, refusing anything ambiguous or not
/// JSON-RPC (see [`JsonRpcError`]).
pub fn parse(body: &[u8]) -> Result<Body, JsonRpcError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(JsonRpcError::BodyTooLarge { len: body.len() });
    }
    let text = std::str::from_utf8(body).map_err(|e| JsonRpcError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let value = Parser { text, pos: 0 }.document()?;
    match value {
        Value::Array(items) => batch(items),
        other => message(other, At(None)).map(Body::Single),
    }
}

/// Reads `tools/call` params: `name` (a string, kept byte for byte), optional `arguments`
/// (an object) and optional `_meta` (an object); no other keys.
pub fn tool_call(params: &Value) -> Result<ToolCall, JsonRpcError> {
    let Value::Object(map) = params else {
        return Err(JsonRpcError::ToolParamsNotObject);
    };
    if let Some(key) = map
        .keys()
        .find(|k| !TOOL_CALL_MEMBERS.contains(&k.as_str()))
    {
        return Err(JsonRpcError::ToolUnknownKey { key: key.clone() });
    }
    let name = match map.get("name") {
        None => return Err(JsonRpcError::ToolNameMissing),
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        Some(_) => return Err(JsonRpcError::ToolNameNotString),
    };
    let arguments = match map.get("arguments") {
        None => Map::new(),
        Some(Value::Object(arguments)) => arguments.clone(),
        Some(_) => return Err(JsonRpcError::ToolArgumentsNotObject),
    };
    match map.get("_meta") {
        None | Some(Value::Object(_)) => {}
        Some(_) => return Err(JsonRpcError::ToolMetaNotObject),
    }
    Ok(ToolCall { name, arguments })
}

fn batch(items: Vec<Value>) -> Result<Body, JsonRpcError> {
    if items.is_empty() {
        return Err(JsonRpcError::EmptyBatch);
    }
    if items.len() > MAX_BATCH {
        return Err(JsonRpcError::BatchTooLarge { len: items.len() });
    }
    let mut messages = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        if item.is_array() {
            return Err(JsonRpcError::NestedBatch { index });
        }
        messages.push(message(item, At(Some(index)))?);
    }
    let mut methods = messages.iter().map(Message::method).enumerate();
    if let Some((_, first)) = methods.next()
        && let Some((index, other)) = methods.find(|(_, m)| *m != first)
    {
        return Err(JsonRpcError::MixedBatch {
            first: describe_method(first),
            other: describe_method(other),
            index,
        });
    }
    Ok(Body::Batch(messages))
}

fn describe_method(method: Option<&str>) -> String {
    match method {
        Some(m) => format!("method {m:?}"),
        None => "a response".to_owned(),
    }
}

fn message(value: Value, at: At) -> Result<Message, JsonRpcError> {
    let Value::Object(mut map) = value else {
        return Err(JsonRpcError::NotAnObject { at });
    };
    for key in map.keys() {
        if MEMBERS.contains(&key.as_str()) {
            continue;
        }
        let folded = fold(key);
        if let Some(member) = MEMBERS.iter().find(|m| **m == folded) {
            return Err(JsonRpcError::CaseVariantMember {
                at,
                key: key.clone(),
                member,
            });
        }
        return Err(JsonRpcError::UnknownMember {
            at,
            key: key.clone(),
        });
    }
    match map.get("jsonrpc") {
        None => return Err(JsonRpcError::MissingVersion { at }),
        Some(Value::String(v)) if v == "2.0" => {}
        Some(_) => return Err(JsonRpcError::BadVersion { at }),
    }
    let id = map.remove("id").map(|id| read_id(id, at)).transpose()?;
    let method = match map.remove("method") {
        None => None,
        Some(Value::String(m)) if m.is_empty() => return Err(JsonRpcError::EmptyMethod { at }),
        Some(Value::String(m)) => Some(m),
        Some(_) => return Err(JsonRpcError::MethodNotString { at }),
    };
    let params = map.remove("params");
    if let Some(params) = &params {
        if !(params.is_object() || params.is_array()) {
            return Err(JsonRpcError::BadParams { at });
        }
        case_variant_keys(params, at)?;
    }
    let result = map.remove("result");
    let error = map.remove("error");
    match (method, id) {
        (Some(_), _) if result.is_some() || error.is_some() => {
            Err(JsonRpcError::MethodWithResult { at })
        }
        (Some(method), Some(id)) => Ok(Message::Request { id, method, params }),
        (Some(method), None) => Ok(Message::Notification { method, params }),
        (None, _) if params.is_some() => Err(JsonRpcError::ParamsWithoutMethod { at }),
        (None, None) => Err(JsonRpcError::MissingMethod { at }),
        (None, Some(id)) => match (&result, &error) {
            (Some(_), Some(_)) => Err(JsonRpcError::ResultAndError { at }),
            (None, None) => Err(JsonRpcError::NoResultOrError { at }),
            _ => Ok(Message::Response { id, result, error }),
        },
    }
}

fn read_id(id: Value, at: At) -> Result<Id, JsonRpcError> {
    let kind = match id {
        Value::String(s) => return Ok(Id::String(s)),
        Value::Number(n) => match n.as_i64() {
            Some(i) if n.is_i64() => return Ok(Id::Number(i)),
            _ if n.is_u64() => "an integer above 2^63-1",
            _ => "a number with a fraction or exponent",
        },
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Err(JsonRpcError::BadId { at, kind })
}

/// Folds a key the way a case-insensitive upstream might: ASCII case, plus the two
/// non-ASCII letters whose Unicode simple folding reaches an ASCII letter (`ſ` U+017F to
/// `s`, the Kelvin sign U+212A to `k`), which Go's `encoding/json` honours.
fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{017F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Refuses two keys of one object, at any depth, that fold to the same key.
fn case_variant_keys(value: &Value, at: At) -> Result<(), JsonRpcError> {
    match value {
        Value::Object(map) => {
            let mut seen: HashMap<String, &str> = HashMap::with_capacity(map.len());
            for (key, child) in map {
                if let Some(first) = seen.insert(fold(key), key) {
                    return Err(JsonRpcError::CaseVariantKeys {
                        at,
                        first: first.to_owned(),
                        second: key.clone(),
                    });
                }
                case_variant_keys(child, at)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| case_variant_keys(v, at)),
        _ => Ok(()),
    }
}

/// A recursive-descent JSON parser (RFC 8259) that refuses duplicate keys and deep
/// nesting. Recursion is bounded by [`MAX_DEPTH`].
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

fn invalid(offset: usize, reason: &'static str) -> JsonRpcError {
    JsonRpcError::InvalidJson { offset, reason }
}

impl Parser<'_> {
    fn document(mut self) -> Result<Value, JsonRpcError> {
        self.whitespace();
        let value = self.value(0)?;
        self.whitespace();
        if self.pos < self.text.len() {
            return Err(JsonRpcError::TrailingData { offset: self.pos });
        }
        Ok(value)
    }

    fn rest(&self) -> &[u8] {
        self.text.as_bytes().get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonRpcError> {
        match self.peek() {
            None => Err(invalid(
                self.pos,
                "the input ends where a value was expected",
            )),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(_) => Err(invalid(self.pos, "expected a value")),
        }
    }

    fn literal(&mut self, word: &'static str, value: Value) -> Result<Value, JsonRpcError> {
        if self.rest().starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(invalid(self.pos, "expected true, false or null"))
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonRpcError> {
        if depth > MAX_DEPTH {
            return Err(JsonRpcError::TooDeep { offset: self.pos });
        }
        self.pos += 1; // '{'
        let mut map = Map::new();
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.whitespace();
            if self.peek() != Some(b'"') {
                return Err(invalid(self.pos, "expected a member name in double quotes"));
            }
            let key_offset = self.pos;
            let key = self.string()?;
            if map.contains_key(&key) {
                return Err(JsonRpcError::DuplicateKey {
                    key,
                    offset: key_offset,
                });
            }
            self.whitespace();
            if self.peek() != Some(b':') {
                return Err(invalid(self.pos, "expected ':' after a member name"));
            }
            self.pos += 1;
            self.whitespace();
            let value = self.value(depth)?;
            map.insert(key, value);
            self.whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(invalid(self.pos, "expected ',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonRpcError> {
        if depth > MAX_DEPTH {
            return Err(JsonRpcError::TooDeep { offset: self.pos });
        }
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.whitespace();
            items.push(self.value(depth)?);
            self.whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(invalid(self.pos, "expected ',' or ']' in an array")),
            }
        }
    }

    fn string(&mut self) -> Result<String, JsonRpcError> {
        let open = self.pos;
        self.pos += 1; // '"'
        let mut out = String::new();
        loop {
            let run = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The run stops before an ASCII byte or at the end, so both ends are char
            // boundaries and `get` always succeeds.
            out.push_str(self.text.get(run..self.pos).unwrap_or_default());
            match self.peek() {
                None => return Err(invalid(open, "a string is not closed")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    return Err(invalid(
                        self.pos,
                        "a control character must be escaped inside a string",
                    ));
                }
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), JsonRpcError> {
        let at = self.pos;
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let high = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&high) {
                    if !self.rest().starts_with(b"\\u") {
                        return Err(invalid(at, "a \\u escape is an unpaired surrogate"));
                    }
                    self.pos += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(invalid(at, "a \\u escape is an unpaired surrogate"));
                    }
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                let c = char::from_u32(code)
                    .ok_or_else(|| invalid(at, "a \\u escape is an unpaired surrogate"))?;
                out.push(c);
                return Ok(());
            }
            _ => return Err(invalid(at, "unknown escape in a string")),
        };
        self.pos += 1;
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonRpcError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| invalid(self.pos, "a \\u escape needs four hex digits"))?;
        let code = u32::from_str_radix(digits, 16)
            .map_err(|_| invalid(self.pos, "a \\u escape needs four hex digits"))?;
        self.pos += 4;
        Ok(code)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Value, JsonRpcError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(invalid(self.pos, "expected a digit in a number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(invalid(self.pos, "expected a digit after '.' in a number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(invalid(self.pos, "expected a digit in a number's exponent"));
            }
        }
        // The text matches the JSON number grammar; serde_json gives it its meaning.
        let text = self.text.get(start..self.pos).unwrap_or_default();
        serde_json::from_str::<Value>(text).map_err(|_| invalid(start, "a number is out of range"))
    }
}
