//! Model Context Protocol understanding: what an agent sends to an MCP server, read
//! strictly before anything is decided or forwarded.
//!
//! - `jsonrpc` parses a JSON-RPC 2.0 body (one message or a batch) and refuses anything
//!   two parsers could read differently: duplicate or case-variant keys, unknown members,
//!   ids that are not strings or integers, mixed batches. It also reads `tools/call`
//!   parameters exactly.
//!
//! Hand-written because Airlock must decide on the same message the MCP server will act
//! on; general JSON-RPC crates are lenient where a gateway must be strict (last duplicate
//! key wins, any id type, any extra member), so the rules live here, next to their tests.

pub mod jsonrpc;

pub use jsonrpc::{Body, Id, JsonRpcError, Message, ToolCall, parse, tool_call};
