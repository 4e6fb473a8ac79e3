//! `/audit`: `airlock audit verify` in the browser: the whole chain re-walked with the
//! audit key, and the result per session (every session with a problem, then the
//! newest intact ones).
//!
//! Reviewers verify the whole log; anyone else sees the check of their own newest
//! sessions, one by one.

use std::collections::BTreeMap;

use airlock_recorder::ChainProblem;
use airlock_store::SessionFilter;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::browser::Viewer;
use super::page::{self, AuditRow, Chrome};
use super::sessions::{pending_count, shown};
use crate::ApiState;

/// Intact sessions listed (newest first) below those with problems.
const INTACT_SHOWN: usize = 100;

/// `GET /audit`.
pub(super) async fn page(State(state): State<ApiState>, viewer: Viewer) -> Response {
    let pending = pending_count(&state, &viewer).await;
    let chrome = Chrome::new(&viewer, "audit", pending);
    let console = &state.console.0;
    let Some(key) = &console.audit_key else {
        return page::render(
            StatusCode::OK,
            &page::AuditPage {
                chrome,
                ok: true,
                summary: "Nothing to verify: this gateway has recorded nothing yet (no audit key exists).".into(),
                chain_problems: Vec::new(),
                rows: Vec::new(),
                more: 0,
            },
        );
    };
    let key = key.expose().as_bytes();
    let filter = SessionFilter {
        principal: (!viewer.reviewer).then(|| viewer.principal.name.clone()),
        newest_first: true,
        limit: (!viewer.reviewer).then_some(INTACT_SHOWN as i64),
        ..SessionFilter::default()
    };
    let sessions = match console.store.list_sessions(&filter).await {
        Ok(s) => s,
        Err(e) => return page::unavailable("the sessions", &e),
    };
    // Problems per session, and those of the chain itself.
    let mut per_session: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut chain_problems = Vec::new();
    let (ok, summary) = if viewer.reviewer {
        let report = match airlock_recorder::verify_chain(console.store.as_ref(), key).await {
            Ok(r) => r,
            Err(e) => return page::unavailable("the audit chain", &e),
        };
        for p in &report.problems {
            match session_of(p) {
                Some(id) => per_session.entry(id).or_default().push(p.to_string()),
                None => chain_problems.push(p.to_string()),
            }
        }
        let summary = report.summary();
        (report.ok(), summary)
    } else {
        let mut events = 0;
        for s in &sessions {
            match airlock_recorder::verify_session(console.store.as_ref(), key, &s.id).await {
                Ok(Some(v)) => {
                    events += v.events;
                    if !v.ok() {
                        per_session
                            .entry(s.id.clone())
                            .or_default()
                            .extend(v.problems.iter().map(ToString::to_string));
                    }
                }
                Ok(None) => {}
                Err(e) => return page::unavailable("the audit chain", &e),
            }
        }
        let ok = per_session.is_empty();
        let summary = format!(
            "{}: {events} events in your {} newest sessions{}",
            if ok { "ok" } else { "FAILED" },
            sessions.len(),
            if ok { "; each is intact" } else { "" }
        );
        (ok, summary)
    };
    let mut rows: Vec<AuditRow> = Vec::new();
    let mut intact = 0usize;
    let mut more = 0u64;
    let row = |s: &airlock_model::SessionSummary, problems: Vec<String>| AuditRow {
        id: s.id.clone(),
        principal: s.principal.clone().unwrap_or_else(|| "(refused)".into()),
        target: s.target.clone(),
        started: shown(s.started_at),
        ok: problems.is_empty(),
        problems,
    };
    for s in &sessions {
        if let Some(problems) = per_session.remove(&s.id) {
            rows.push(row(s, problems));
        }
    }
    // Problems of sessions whose row is gone (or newer than the list).
    for (id, problems) in per_session {
        chain_problems.extend(problems.into_iter().map(|p| format!("session {id}: {p}")));
    }
    for s in &sessions {
        if rows.iter().any(|r| r.id == s.id) {
            continue;
        }
        if intact < INTACT_SHOWN {
            rows.push(row(s, Vec::new()));
            intact += 1;
        } else {
            more += 1;
        }
    }
    page::render(
        StatusCode::OK,
        &page::AuditPage {
            chrome,
            ok,
            summary,
            chain_problems,
            rows,
            more,
        },
    )
}

/// The session a problem belongs to, when it names one.
fn session_of(p: &ChainProblem) -> Option<String> {
    match p {
        ChainProblem::Edited { session_id, .. }
        | ChainProblem::SessionGap { session_id, .. }
        | ChainProblem::SessionWithoutEvents { session_id }
        | ChainProblem::SessionEdited { session_id, .. } => Some(session_id.clone()),
        ChainProblem::Missing { .. } | ChainProblem::Unlinked { .. } => None,
    }
}
