//! The JSON-RPC answers Airlock writes itself: a refused tool call is a tool result
//! with `isError` (so the model reads why, and what it may do instead), anything else
//! refused is a JSON-RPC error whose `data` carries the policy and a hint.

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::body::{ResponseBody, ResponseBodyExt};

/// JSON-RPC: the body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the message is not a valid request.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: the method is not served.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Airlock: policy denied the request.
pub const DENIED: i64 = -32003;
/// Airlock: the request waits for a human's approval.
pub const PENDING: i64 = -32004;
/// Airlock: the answer could not be masked and was withheld.
pub const WITHHELD: i64 = -32005;
/// Airlock: the upstream MCP server failed before answering.
pub const UPSTREAM: i64 = -32006;

/// A tool result that reports a refusal or a wait to the model.
pub fn tool_error(id: &Value, text: &str, data: Value, modern: bool) -> Value {
    let mut result = json!({
        "content": [{ "type": "text", "text": text }],
        "isError": true,
        "_meta": { "airlock": data },
    });
    if modern && let Some(map) = result.as_object_mut() {
        map.insert("resultType".into(), "complete".into());
    }
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A JSON-RPC error answer.
pub fn error(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let (Some(d), Some(map)) = (data, error.as_object_mut()) {
        map.insert("data".into(), d);
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": error })
}

/// An HTTP response carrying JSON.
pub fn json_response(status: StatusCode, value: &Value) -> Response<ResponseBody> {
    let body = Bytes::from(value.to_string());
    let mut r = Response::new(ResponseBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
