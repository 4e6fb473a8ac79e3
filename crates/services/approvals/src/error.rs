//! The approval service's errors. Messages are written for the person or agent that
//! gets them: what is wrong and what to do.

use airlock_store::StoreError;

/// A request could not be created, looked up or used.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The store failed; the statement is not run (fail closed).
    #[error("the approval store is unavailable: {0}")]
    Store(#[from] StoreError),
}

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// No request has this id.
    #[error("no approval request `{0}` exists")]
    NotFound(String),
    /// The approver may not decide this request.
    #[error("{0}")]
    Forbidden(String),
    /// The request is no longer pending.
    #[error("{0}")]
    Conflict(String),
    /// The decision is incomplete (a denial without a reason).
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error("the approval store is unavailable: {0}")]
    Store(#[from] StoreError),
}
