//! The W3C trace context (`traceparent`) of the agent request being handled: an adapter
//! runs the handling in [`with_traceparent`], and every event a session records meanwhile
//! carries it in its detail, so that a session's events can be joined to the agent run
//! that caused them (the `traceparent` an agent framework put on its HTTP request or MCP
//! message).
//!
//! A task-local rather than a parameter: one agent request records events in several
//! places (the call, its decision, a hold's steps, the result), and each adapter would
//! otherwise thread the value through all of them.
//!
//! When Airlock exports its own spans (`[telemetry]`), an adapter also calls
//! [`join_trace`] so that its session or request span becomes a child of the agent's
//! span: the agent's trace then shows Airlock. How that is done belongs to the exporter
//! (installed with [`set_trace_joiner`]); without one, joining does nothing.

use std::future::Future;
use std::sync::OnceLock;

tokio::task_local! {
    static TRACEPARENT: String;
}

/// Runs `f` with `traceparent` (already validated, e.g. by
/// `airlock_model::find_traceparent`) as the current trace context; with `None`, runs it
/// as it is (an outer context, if any, stays current).
pub async fn with_traceparent<F: Future>(traceparent: Option<String>, f: F) -> F::Output {
    match traceparent {
        Some(tp) => TRACEPARENT.scope(tp, f).await,
        None => f.await,
    }
}

/// Makes `span` a child of the agent's trace `traceparent` (already validated).
pub type TraceJoiner = fn(&tracing::Span, &str);

static JOINER: OnceLock<TraceJoiner> = OnceLock::new();

/// Installs how spans join agents' traces (once, at start-up); `false` when one is
/// already installed.
pub fn set_trace_joiner(joiner: TraceJoiner) -> bool {
    JOINER.set(joiner).is_ok()
}

/// Makes the current span (an adapter's session or request span, before any child span
/// of it starts) a child of the agent's span in `traceparent` (validated, e.g. by
/// `airlock_model::find_traceparent`). Does nothing unless spans are exported.
pub fn join_trace(traceparent: &str) {
    if let Some(join) = JOINER.get() {
        join(&tracing::Span::current(), traceparent);
    }
}

/// The current trace context, if the handling runs in one.
pub(crate) fn current() -> Option<String> {
    TRACEPARENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_innermost_context_is_current_and_none_keeps_the_outer_one() {
        assert_eq!(current(), None);
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned();
        let inner = "00-11111111111111111111111111111111-2222222222222222-01".to_owned();
        let seen = with_traceparent(Some(tp.clone()), async {
            let kept = with_traceparent(None, async { current() }).await;
            let replaced = with_traceparent(Some(inner.clone()), async { current() }).await;
            (current(), kept, replaced)
        })
        .await;
        assert_eq!(seen, (Some(tp.clone()), Some(tp), Some(inner)));
        assert_eq!(current(), None);
    }
}
