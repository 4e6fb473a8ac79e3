//! The engine: pure, synchronous decisions over the model. SQL understanding (`sql`)
//! turns statements into actions; Cedar policy (`policy`) is the one decision point
//! every action of every protocol passes through; `effects` tells whether actions can
//! change anything beyond their answer; `masking` finds PII and secrets in results and
//! rewrites them; `http` normalises HTTP request paths and turns requests into actions;
//! `k8s` decides a Kubernetes API request's verb and resource as the API server will;
//! `mcp` strictly parses the JSON-RPC messages an agent sends to an MCP server.

pub mod effects;
pub mod http;
pub mod k8s;
pub mod masking;
pub mod mcp;
pub mod policy;
pub mod sql;
