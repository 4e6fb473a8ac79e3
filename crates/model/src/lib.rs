//! The plain types every layer of Airlock speaks: who is acting (`Principal`), where
//! (`TargetRef`), what (`Action`), what policy said (`Decision`) and what happened
//! (`SessionEvent`).
//!
//! No I/O and no async live here; every protocol adapter translates into these types, so
//! they carry no PostgreSQL-specific wire detail beyond what a policy or an auditor reads.

mod action;
mod approval;
mod decision;
mod event;
mod principal;
mod target;
mod timestamp;
mod trace;

pub use action::{Action, HttpAction, K8sAction, McpAction, SqlAction, SqlFlags, SqlObject};
pub use approval::{Approval, ApprovalStatus};
pub use decision::{Decision, Verdict};
pub use event::{EventKind, SessionEvent, SessionMarks, SessionSummary};
pub use principal::{Principal, PrincipalSource};
pub use target::{TargetKind, TargetRef};
pub use timestamp::Timestamp;
pub use trace::find_traceparent;
