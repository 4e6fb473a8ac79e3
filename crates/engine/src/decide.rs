//! The decision point: every action of every protocol is decided here before it is
//! forwarded.

use airlock_model::{Action, Decision, Principal, TargetRef};

/// Turns (principal, target, action) into a decision. Pure and fast: implementations
/// must not block, so a session can call it on every statement.
pub trait Decide: Send + Sync {
    /// Decides one action.
    fn decide(&self, principal: &Principal, target: &TargetRef, action: &Action) -> Decision;
}

/// Allows everything. The placeholder until policy lands: it keeps the seam in place so
/// that every statement already flows through one `decide` call.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Decide for AllowAll {
    fn decide(&self, _: &Principal, _: &TargetRef, _: &Action) -> Decision {
        Decision::Allow
    }
}
