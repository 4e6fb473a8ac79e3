//! Approvals: what happens to a statement policy holds (`@hold("group")`).
//!
//! A held statement becomes an approval request in the store, bound to the principal,
//! the target, the digest of the exact statement and parameters ([`digest`]), the
//! policy version and the approver group. Approvers are told through webhooks
//! ([`notify`]) and decide through the admin API or the CLI ([`Approvals::decide`]);
//! the waiting session learns of the decision in this process at once, and from other
//! processes (the CLI, another replica) as soon as the store announces it (PostgreSQL's
//! `NOTIFY`), or at its next poll of the store (the fallback). An approval runs its
//! statement once ([`Approvals::use_approval`]) and lapses after `expire_after`.

mod digest;
mod error;
pub mod notify;
mod service;

pub use digest::StatementDigest;
pub use error::{ApprovalError, DecideError};
pub use service::{Approvals, AuditSink, Begun, HoldRequest, Settings, Waited, may_see};
