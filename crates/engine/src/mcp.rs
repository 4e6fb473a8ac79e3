//! Model Context Protocol understanding: what an agent sends to an MCP server, read
//! strictly before anything is decided or forwarded.
//!
//! - `jsonrpc` parses a JSON-RPC 2.0 body (one message or a batch) and refuses anything
//!   two parsers could read differently: duplicate or case-variant keys, unknown members,
//!   ids that are not strings or integers, mixed batches. It also reads `tools/call`
//!   parameters exactly.
//! - `requests` says how each method is treated (decided, filtered, passed, refused)
//!   and turns a decided request into its policy action.
//! - `results` masks what the server answers, by MCP's shapes.
//! - `tools` fingerprints listed tools for pinning.
//!
//! Hand-written because Airlock must decide on the same message the MCP server will act
//! on; general JSON-RPC crates are lenient where a gateway must be strict (last duplicate
//! key wins, any id type, any extra member), so the rules live here, next to their tests.

pub mod jsonrpc;
pub mod requests;
pub mod results;
pub mod tools;

pub use jsonrpc::{Body, Id, JsonRpcError, Message, ToolCall, parse, tool_call};
