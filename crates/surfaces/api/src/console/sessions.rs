//! `/sessions`: the recorded sessions, filtered and paged newest first by index
//! (keyset: each page starts after the last id of the one before), and
//! `/sessions/{id}`: one session replayed as a timeline with its chain status, updated
//! while it runs through `/sessions/{id}/events?after=N`.
//!
//! A person who is not a reviewer sees their own sessions only; another's session is
//! "not found", exactly like one that does not exist.

use airlock_model::{ApprovalStatus, SessionMarks, SessionSummary, Timestamp};
use airlock_store::SessionFilter;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::browser::Viewer;
use super::page::{self, ChainStatus, Choice, Chrome, Notice};
use super::timeline;
use crate::ApiState;

/// Sessions per page.
const PAGE: i64 = 50;
/// The protocols a session can have, for the filter.
const PROTOCOLS: [&str; 4] = ["postgres", "http", "kubernetes", "mcp"];

/// A session as the list and the replay's header show it.
pub(crate) struct SessionRow {
    pub id: String,
    pub started: String,
    pub ended: String,
    pub duration: String,
    pub principal: String,
    pub target: String,
    pub protocol: String,
    pub client: String,
    /// What happened in it, in the filter's words.
    pub marks: Vec<&'static str>,
    pub live: bool,
}

impl SessionRow {
    fn of(s: &SessionSummary) -> Self {
        let mut marks = Vec::new();
        if s.marks.denied {
            marks.push("denied");
        }
        if s.marks.held {
            marks.push("held");
        }
        if s.marks.masked {
            marks.push("masked");
        }
        if s.marks.error {
            marks.push("error");
        }
        SessionRow {
            id: s.id.clone(),
            started: shown(s.started_at),
            ended: s.ended_at.map(shown).unwrap_or_default(),
            duration: s
                .ended_at
                .map(|end| span(end.unix() - s.started_at.unix()))
                .unwrap_or_default(),
            principal: s.principal.clone().unwrap_or_else(|| "(refused)".into()),
            target: s.target.clone(),
            protocol: s.protocol.clone(),
            client: s.client_addr.clone(),
            marks,
            live: s.ended_at.is_none(),
        }
    }
}

/// `2026-12-07 10:11:12 UTC`.
pub(super) fn shown(t: Timestamp) -> String {
    let text = t.to_string();
    match (text.get(..10), text.get(11..19)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => text,
    }
}

/// A span of seconds as `2h 03m`, `4m 05s` or `7s`.
pub(super) fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `GET /`: the sessions list when signed in, else the sign-in page.
pub(super) async fn home(viewer: Result<Viewer, Response>) -> Response {
    match viewer {
        Ok(_) => Redirect::to("/sessions").into_response(),
        Err(_) => Redirect::to("/signin").into_response(),
    }
}

/// The list's filters, as the form sends them (and the page links keep them).
#[derive(Deserialize, Serialize, Default, Clone)]
pub(super) struct ListQuery {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    principal: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    protocol: String,
    /// From (UTC), `YYYY-MM-DDTHH:MM` as a browser's date-time field sends it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    since: String,
    /// Until (UTC), exclusive.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    until: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    denied: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    held: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    masked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The last id of the page before (keyset pagination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<String>,
}

/// A time filter as typed: a date, a date and time (UTC), or RFC 3339.
fn parse_time(text: &str) -> Result<Option<Timestamp>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let full = match t.len() {
        10 => format!("{t}T00:00:00Z"),
        16 => format!("{t}:00Z"),
        19 => format!("{t}Z"),
        _ => t.to_owned(),
    };
    Timestamp::parse(&full)
        .map(Some)
        .map_err(|_| format!("`{t}` is not a time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)"))
}

/// `GET /sessions`.
pub(super) async fn list(
    State(state): State<ApiState>,
    viewer: Viewer,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let mut notice = None;
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            notice = Some(Notice::error(&format!(
                "The filter was not understood: {}",
                e.body_text()
            )));
            ListQuery::default()
        }
    };
    let (since, until) = match (parse_time(&q.since), parse_time(&q.until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => {
            notice = Some(Notice::error(&e));
            (None, None)
        }
    };
    let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    let principal = if viewer.reviewer {
        some(&q.principal)
    } else {
        // Not a reviewer: their own sessions, whatever the form says.
        Some(viewer.principal.name.clone())
    };
    let filter = SessionFilter {
        target: some(&q.target),
        principal,
        protocol: some(&q.protocol),
        since,
        until,
        marks: SessionMarks {
            denied: q.denied.is_some(),
            held: q.held.is_some(),
            masked: q.masked.is_some(),
            error: q.error.is_some(),
        },
        before: q.before.clone().filter(|b| !b.is_empty()),
        limit: Some(PAGE + 1),
        newest_first: true,
    };
    let mut sessions = match state.console.0.store.list_sessions(&filter).await {
        Ok(s) => s,
        Err(e) => return page::unavailable("the sessions", &e),
    };
    let more = sessions.len() > PAGE as usize;
    sessions.truncate(PAGE as usize);
    let older = match (more, sessions.last()) {
        (true, Some(last)) => Some(link(&ListQuery {
            before: Some(last.id.clone()),
            ..q.clone()
        })),
        _ => None,
    };
    let newest = q.before.as_ref().map(|_| {
        link(&ListQuery {
            before: None,
            ..q.clone()
        })
    });
    let pending = pending_count(&state, &viewer).await;
    let protocols = PROTOCOLS
        .iter()
        .map(|p| Choice {
            value: (*p).to_owned(),
            label: (*p).to_owned(),
            selected: q.protocol == *p,
        })
        .collect();
    let outcomes = [
        ("denied", "had a denial", q.denied.is_some()),
        ("held", "had a hold", q.held.is_some()),
        ("masked", "masked something", q.masked.is_some()),
        ("error", "had an error", q.error.is_some()),
    ]
    .into_iter()
    .map(|(value, label, selected)| Choice {
        value: value.into(),
        label: label.into(),
        selected,
    })
    .collect();
    page::render(
        StatusCode::OK,
        &page::SessionsPage {
            chrome: Chrome::new(&viewer, "sessions", pending),
            reviewer: viewer.reviewer,
            principal: if viewer.reviewer {
                q.principal.clone()
            } else {
                viewer.principal.name.clone()
            },
            target: q.target.clone(),
            protocols,
            since: q.since.clone(),
            until: q.until.clone(),
            outcomes,
            rows: sessions.iter().map(SessionRow::of).collect(),
            older,
            newest,
            notice,
        },
    )
}

fn link(q: &ListQuery) -> String {
    match serde_urlencoded::to_string(q) {
        Ok(query) if !query.is_empty() => format!("/sessions?{query}"),
        _ => "/sessions".to_owned(),
    }
}

/// Pending requests the viewer may see (the number beside Approvals).
pub(super) async fn pending_count(state: &ApiState, viewer: &Viewer) -> usize {
    state
        .approvals
        .list(&viewer.principal, Some(ApprovalStatus::Pending), 1000)
        .await
        .map(|a| a.len())
        .unwrap_or(0)
}

/// The session `id` if the viewer may see it.
async fn visible(state: &ApiState, viewer: &Viewer, id: &str) -> Result<SessionSummary, Response> {
    let not_found = || {
        page::problem(
            StatusCode::NOT_FOUND,
            "No such session",
            &format!(
                "No session `{id}` exists that you may see: you see your own sessions{}.",
                if viewer.reviewer {
                    " and every other"
                } else {
                    "; reviewers see every session"
                }
            ),
        )
    };
    match state.console.0.store.get_session(id).await {
        Ok(Some(s))
            if viewer.reviewer || s.principal.as_deref() == Some(&viewer.principal.name) =>
        {
            Ok(s)
        }
        Ok(_) => Err(not_found()),
        Err(e) => Err(page::unavailable("the session", &e)),
    }
}

/// `GET /sessions/{id}`: the replay.
pub(super) async fn show(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let session = match visible(&state, &viewer, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let store = &state.console.0.store;
    let events = match store.session_events(&id).await {
        Ok(e) => e,
        Err(e) => return page::unavailable("the session's events", &e),
    };
    let chain = chain_status(&state, &id).await;
    let pending = pending_count(&state, &viewer).await;
    page::render(
        StatusCode::OK,
        &page::SessionPage {
            chrome: Chrome::new(&viewer, "sessions", pending),
            session: SessionRow::of(&session),
            chain,
            masked: timeline::masked_totals(&events),
            last_seq: events.last().map(|e| e.seq).unwrap_or(0),
            entries: events.iter().map(timeline::entry).collect(),
            live: session.ended_at.is_none(),
        },
    )
}

/// The session's events re-checked against the audit chain.
async fn chain_status(state: &ApiState, id: &str) -> ChainStatus {
    let Some(key) = &state.console.0.audit_key else {
        return ChainStatus {
            state: "unknown",
            text: "not checked: this gateway has no audit key yet".into(),
            problems: Vec::new(),
        };
    };
    match airlock_recorder::verify_session(
        state.console.0.store.as_ref(),
        key.expose().as_bytes(),
        id,
    )
    .await
    {
        Ok(Some(v)) if v.ok() => ChainStatus {
            state: "ok",
            text: format!(
                "intact: {} events, each hash and link checked with the audit key",
                v.events
            ),
            problems: Vec::new(),
        },
        Ok(Some(v)) => ChainStatus {
            state: "broken",
            text: format!(
                "BROKEN: {} problem(s) in {} events",
                v.problems.len(),
                v.events
            ),
            problems: v.problems.iter().map(ToString::to_string).collect(),
        },
        Ok(None) => ChainStatus {
            state: "unknown",
            text: "not checked: the session is gone".into(),
            problems: Vec::new(),
        },
        Err(e) => {
            tracing::error!(error = %e, "console: session chain check failed");
            ChainStatus {
                state: "unknown",
                text: "not checked: the store could not be read".into(),
                problems: Vec::new(),
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct AfterQuery {
    after: Option<i64>,
}

/// `GET /sessions/{id}/events?after=N`: timeline entries after sequence `N`, as an HTML
/// fragment; `X-Airlock-Session-Ended: 1` once the session has ended (the script then
/// stops asking).
pub(super) async fn events_after(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<AfterQuery>,
) -> Response {
    let session = match visible(&state, &viewer, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let after = q.after.unwrap_or(0);
    let events = match state.console.0.store.session_events(&id).await {
        Ok(e) => e,
        Err(e) => return page::unavailable("the session's events", &e),
    };
    let entries = events
        .iter()
        .filter(|e| e.seq > after)
        .map(timeline::entry)
        .collect();
    let mut r = page::render(StatusCode::OK, &page::EntriesFragment { entries });
    if session.ended_at.is_some() {
        r.headers_mut()
            .insert("x-airlock-session-ended", HeaderValue::from_static("1"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_filters_take_what_a_browser_sends() {
        let t = |s: &str| parse_time(s).unwrap().map(|t| t.to_string());
        assert_eq!(t(""), None);
        assert_eq!(
            t("2026-12-07").as_deref(),
            Some("2026-12-07T00:00:00.000000Z")
        );
        assert_eq!(
            t("2026-12-07T10:30").as_deref(),
            Some("2026-12-07T10:30:00.000000Z")
        );
        assert_eq!(
            t("2026-12-07T10:30:05").as_deref(),
            Some("2026-12-07T10:30:05.000000Z")
        );
        assert!(parse_time("yesterday").unwrap_err().contains("YYYY-MM-DD"));
    }

    #[test]
    fn page_links_keep_the_filters() {
        let q = ListQuery {
            principal: "crew analyst".into(),
            denied: Some("1".into()),
            before: Some("0193-x".into()),
            ..ListQuery::default()
        };
        assert_eq!(
            link(&q),
            "/sessions?principal=crew+analyst&denied=1&before=0193-x"
        );
        assert_eq!(link(&ListQuery::default()), "/sessions");
        assert_eq!(span(7), "7s");
        assert_eq!(span(245), "4m 05s");
        assert_eq!(span(7380), "2h 03m");
    }
}
