//! `/approvals`: the pending queue with what an approver needs (who, the exact
//! statement or request, the target, the policy and its reason, how long it has waited,
//! what the same session did just before), the `Approve` and `Deny` forms, and the
//! history of decisions.
//!
//! Deciding is the approval service's: it refuses the requester and anyone outside the
//! approver group, exactly as `POST /api/approvals/{id}/approve` does.

use airlock_approvals::{DecideError, may_see};
use airlock_model::{Approval, ApprovalStatus, Timestamp};
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::browser::Viewer;
use super::page::{self, Chrome, DecidedView, Notice, PendingView};
use super::sessions::{shown, span};
use crate::ApiState;

/// Pending requests shown at most.
const QUEUE: i64 = 200;
/// Decided requests shown in the history.
const HISTORY: i64 = 50;
/// Statements of the session shown before a held one.
const CONTEXT: usize = 5;

#[derive(Deserialize)]
pub(super) struct QueueQuery {
    /// `approved`, `denied`: what the last form did (shown as a notice).
    done: Option<String>,
    id: Option<String>,
}

/// `GET /approvals`.
pub(super) async fn queue(
    State(state): State<ApiState>,
    viewer: Viewer,
    Query(q): Query<QueueQuery>,
) -> Response {
    render_queue(&state, &viewer, notice_for(&q), StatusCode::OK).await
}

fn notice_for(q: &QueueQuery) -> Option<Notice> {
    let id = q.id.as_deref().unwrap_or("");
    match q.done.as_deref() {
        Some("approved") => Some(Notice::info(&format!(
            "Approved request {id}: the agent's statement runs now (once)."
        ))),
        Some("denied") => Some(Notice::info(&format!(
            "Denied request {id}: the agent was told your reason."
        ))),
        _ => None,
    }
}

async fn render_queue(
    state: &ApiState,
    viewer: &Viewer,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let who = &viewer.principal;
    let pending = match state
        .approvals
        .list(who, Some(ApprovalStatus::Pending), QUEUE)
        .await
    {
        Ok(p) => p,
        Err(e) => return page::unavailable("the approval requests", &e),
    };
    let history = match state.approvals.list(who, None, HISTORY + QUEUE).await {
        Ok(h) => h,
        Err(e) => return page::unavailable("the approval history", &e),
    };
    let mut views = Vec::with_capacity(pending.len());
    // Oldest first: the one waiting longest is decided first.
    for a in pending.iter().rev() {
        views.push(pending_view(state, viewer, a).await);
    }
    let history = history
        .iter()
        .filter(|a| a.status != ApprovalStatus::Pending)
        .take(HISTORY as usize)
        .map(decided_view)
        .collect();
    page::render(
        status,
        &page::ApprovalsPage {
            chrome: Chrome::new(viewer, "approvals", pending.len()),
            pending: views,
            history,
            notice,
        },
    )
}

async fn pending_view(state: &ApiState, viewer: &Viewer, a: &Approval) -> PendingView {
    let now = Timestamp::now().unix();
    let who = &viewer.principal;
    let why_not = if who.name == a.principal {
        format!(
            "you asked for it: another member of `{}` decides",
            a.approver_group
        )
    } else if !who.groups.contains(&a.approver_group) {
        format!("only members of `{}` decide it", a.approver_group)
    } else {
        String::new()
    };
    PendingView {
        id: a.id.clone(),
        principal: a.principal.clone(),
        target: a.target.clone(),
        protocol: a.protocol.clone(),
        statement: a.statement.clone(),
        params: match &a.params {
            serde_json::Value::Array(p) if p.is_empty() => None,
            serde_json::Value::Null => None,
            p => Some(p.to_string()),
        },
        policies: a.policies.join(", "),
        reason: a.reason.clone(),
        approver_group: a.approver_group.clone(),
        waited: span(now - a.created_at.unix()),
        expires_in: span(a.expires_at.unix() - now),
        session_id: a.session_id.clone(),
        before: statements_before(state, a).await,
        may_decide: why_not.is_empty(),
        why_not,
    }
}

/// The statements the held one's session ran before it, newest last.
async fn statements_before(state: &ApiState, a: &Approval) -> Vec<String> {
    let Ok(events) = state.console.0.store.session_events(&a.session_id).await else {
        return Vec::new();
    };
    let mut statements: Vec<String> = events
        .iter()
        .filter(|e| e.kind != "approval")
        .filter_map(|e| {
            let s = e.statement.as_ref()?;
            let d = e.decision.as_deref().unwrap_or("");
            Some(format!("[{d}] {s}"))
        })
        .collect();
    // The held statement itself is the last one recorded.
    if statements
        .last()
        .is_some_and(|s| s.ends_with(a.statement.as_str()))
    {
        statements.pop();
    }
    let skip = statements.len().saturating_sub(CONTEXT);
    statements.split_off(skip)
}

fn decided_view(a: &Approval) -> DecidedView {
    DecidedView {
        id: a.id.clone(),
        status: a.status.to_string(),
        principal: a.principal.clone(),
        target: a.target.clone(),
        statement: a.statement.clone(),
        decided_by: a.decided_by.clone().unwrap_or_default(),
        decided_at: a.decided_at.map(shown).unwrap_or_default(),
        comment: a.comment.clone().unwrap_or_default(),
        session_id: a.session_id.clone(),
    }
}

/// The Approve form.
#[derive(Deserialize)]
pub(super) struct ApproveForm {
    csrf: String,
    #[serde(default)]
    comment: String,
}

/// The Deny form: the reason is required (the agent is told it).
#[derive(Deserialize)]
pub(super) struct DenyForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /approvals/{id}/approve`.
pub(super) async fn approve(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Result<Form<ApproveForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bad_form();
    };
    if let Some(r) = viewer.csrf_refusal(&form.csrf) {
        return r;
    }
    let comment = Some(form.comment.trim().to_owned()).filter(|c| !c.is_empty());
    decide(&state, &viewer, &id, true, comment).await
}

/// `POST /approvals/{id}/deny`.
pub(super) async fn deny(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: Result<Form<DenyForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bad_form();
    };
    if let Some(r) = viewer.csrf_refusal(&form.csrf) {
        return r;
    }
    let reason = form.reason.trim().to_owned();
    if reason.is_empty() {
        return render_queue(
            &state,
            &viewer,
            Some(Notice::error(
                "A denial needs a reason: the agent is told it. Nothing was decided.",
            )),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    decide(&state, &viewer, &id, false, Some(reason)).await
}

fn bad_form() -> Response {
    page::problem(
        StatusCode::BAD_REQUEST,
        "The form was incomplete",
        "Reload the approvals page and try again. Nothing was decided.",
    )
}

async fn decide(
    state: &ApiState,
    viewer: &Viewer,
    id: &str,
    approve: bool,
    comment: Option<String>,
) -> Response {
    // A request the viewer may not see is "not found", as in the API.
    match state.approvals.get(id, &viewer.principal).await {
        Ok(Some(a)) if may_see(&a, &viewer.principal) => {}
        Ok(_) => {
            return page::problem(
                StatusCode::NOT_FOUND,
                "No such request",
                &format!("No approval request `{id}` exists that you may see."),
            );
        }
        Err(e) => return page::unavailable("the approval request", &e),
    }
    match state
        .approvals
        .decide(id, &viewer.principal, approve, comment)
        .await
    {
        Ok(a) => {
            tracing::info!(approval = %a.id, by = %viewer.principal.name, approve, "console decision");
            let done = if approve { "approved" } else { "denied" };
            Redirect::to(&format!("/approvals?done={done}&id={id}")).into_response()
        }
        Err(e) => {
            let (status, text) = refusal(&e);
            render_queue(state, viewer, Some(Notice::error(&text)), status).await
        }
    }
}

/// Why a decision was refused, in the API's words.
fn refusal(e: &DecideError) -> (StatusCode, String) {
    let status = match e {
        DecideError::NotFound(_) => StatusCode::NOT_FOUND,
        DecideError::Forbidden(_) => StatusCode::FORBIDDEN,
        DecideError::Conflict(_) => StatusCode::CONFLICT,
        DecideError::Invalid(_) => StatusCode::BAD_REQUEST,
        DecideError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, format!("Not decided: {e}."))
}
