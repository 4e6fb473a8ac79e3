//! Which [`SessionMarks`] an event sets: a session's flags are the union of its events'
//! marks, kept on the session row as events are stored so that "sessions that had a
//! denial" is an indexed filter, not a scan of every event.
//!
//! Computed from the stored event (kind, decision, JSON detail), so a journal replayed
//! after a crash marks its sessions exactly as the live path did.

use airlock_model::SessionMarks;
use serde::Deserialize;

use crate::ChainedEvent;

/// The detail members that mark a session; anything else is skipped without being
/// built.
#[derive(Deserialize, Default)]
struct Outcome {
    /// Counts per masking rule (an object; empty when nothing was masked).
    #[serde(default)]
    masked: Option<serde_json::Map<String, serde_json::Value>>,
    /// A statement's error object, or `true` on a disconnect caused by a failure.
    #[serde(default)]
    error: Option<serde_json::Value>,
    /// An HTTP answer's status.
    #[serde(default)]
    status: Option<serde_json::Value>,
}

/// The marks of one event.
pub fn event_marks(event: &ChainedEvent) -> SessionMarks {
    let decision = event.decision.as_deref();
    let kind = event.kind.as_str();
    let mut marks = SessionMarks {
        denied: decision == Some("deny") || matches!(kind, "refused" | "auth_failure"),
        held: decision == Some("hold") || kind == "approval",
        masked: false,
        error: kind == "connect_failure",
    };
    if matches!(kind, "result" | "message" | "disconnect") {
        let outcome: Outcome = serde_json::from_str(&event.detail).unwrap_or_default();
        marks.masked = outcome.masked.is_some_and(|m| !m.is_empty());
        marks.error |= outcome
            .error
            .is_some_and(|e| e != serde_json::Value::Bool(false));
        marks.error |= outcome
            .status
            .and_then(|s| s.as_u64())
            .is_some_and(|s| s >= 500);
    }
    marks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, decision: Option<&str>, detail: &str) -> ChainedEvent {
        ChainedEvent {
            id: 1,
            session_id: "s".into(),
            seq: 1,
            at: "2026-12-07T00:00:00.000000Z".into(),
            kind: kind.into(),
            statement: None,
            decision: decision.map(str::to_owned),
            detail: detail.into(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn each_flag_comes_from_the_event_that_shows_it() {
        let none = SessionMarks::default();
        assert_eq!(event_marks(&event("query", Some("allow"), "{}")), none);
        assert!(event_marks(&event("query", Some("deny"), "{}")).denied);
        assert!(event_marks(&event("refused", None, "{}")).denied);
        assert!(event_marks(&event("auth_failure", None, "{}")).denied);
        assert!(event_marks(&event("query", Some("hold"), "{}")).held);
        assert!(event_marks(&event("approval", None, r#"{"step":"requested"}"#)).held);
        let masked = event_marks(&event(
            "result",
            None,
            r#"{"tag":"SELECT 2","masked":{"email":{"email":2}},"captured_rows":[]}"#,
        ));
        assert!(masked.masked && !masked.error);
        assert!(!event_marks(&event("result", None, r#"{"masked":{}}"#)).masked);
        assert!(event_marks(&event("result", None, r#"{"error":{"code":"42P01"}}"#)).error);
        assert!(event_marks(&event("connect_failure", None, "{}")).error);
        assert!(event_marks(&event("disconnect", None, r#"{"reason":"x","error":true}"#)).error);
        assert!(!event_marks(&event("disconnect", None, r#"{"reason":"client_closed"}"#)).error);
        assert!(event_marks(&event("result", None, r#"{"status":502}"#)).error);
        assert!(!event_marks(&event("result", None, r#"{"status":404}"#)).error);
        // Not JSON (a store edited by hand): no marks rather than a failed batch.
        assert_eq!(event_marks(&event("result", None, "not json")), none);
    }
}
