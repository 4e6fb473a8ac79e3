//! The one API protocol adapters call. It composes identity, the vault, the decision
//! point and the recorder so that every adapter runs the same security-relevant
//! sequence: authenticate, resolve the target, record, decide, record outcomes, end.
//!
//! Adapters only translate bytes to and from these calls; none of them touches the
//! store, the policy or secrets' sources directly.

mod audit;
mod gateway;
mod hold;
mod runtime;
mod session;
mod trace;

pub use audit::{AUDIT_PROTOCOL, GatewayAudit};
pub use gateway::{ConnectRefusal, ConnectRequest, Gateway};
pub use hold::{Held, HoldFailure, HoldOutcome, HoldTicket, Waiting};
pub use runtime::{Runtime, RuntimeError, Target};
pub use session::{EventDraft, Session};
pub use trace::{TraceJoiner, join_trace, set_trace_joiner, with_traceparent};

pub use airlock_recorder::{Pending, Receipt, RecorderError};
