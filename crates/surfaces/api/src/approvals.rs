//! `/api/approvals`: list, show, approve and deny approval requests.
//!
//! Visibility and the right to decide are the approval service's: a caller sees the
//! requests it asked for and those of its groups; only a member of the request's
//! approver group who did not ask for it may decide. These handlers parse and translate.

use airlock_model::{Approval, ApprovalStatus, Principal};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::reply::Reply;
use crate::{ApiState, BODY_LIMIT};

/// Requests listed when the caller gives no `limit`.
const DEFAULT_LIMIT: i64 = 100;
/// The largest `limit` accepted.
const MAX_LIMIT: i64 = 1000;

/// `GET /api/approvals` query parameters, checked by hand for clear messages.
#[derive(Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
}

/// `GET /api/approvals` answer.
#[derive(Serialize)]
pub(crate) struct ApprovalList {
    approvals: Vec<Approval>,
}

/// `POST …/approve` body; all of it optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    comment: Option<String>,
}

/// `POST …/deny` body; the reason is required (the agent is told it).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DenyBody {
    #[serde(alias = "comment")]
    reason: Option<String>,
}

/// `GET /api/approvals?status=…&limit=…`: the requests the caller may see, newest first.
pub(crate) async fn list(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ApprovalList>, Reply> {
    let Query(query) = query.map_err(|e| Reply::bad_request("invalid_query", e.body_text()))?;
    let status = match query.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(ApprovalStatus::parse(text).ok_or_else(|| {
            Reply::bad_request(
                "invalid_status",
                format!(
                    "unknown status `{text}`: use pending, approved, denied, expired or used, or leave it out for all"
                ),
            )
        })?),
    };
    let limit = match query.limit.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Reply::bad_request(
                    "invalid_limit",
                    format!("limit `{text}` is not a whole number from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let approvals = state
        .approvals
        .list(&who, status, limit)
        .await
        .map_err(Reply::approval)?;
    Ok(Json(ApprovalList { approvals }))
}

/// `GET /api/approvals/{id}`: 404 when it does not exist or the caller may not see it
/// (the two are not told apart).
pub(crate) async fn show(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Approval>, Reply> {
    let id = approval_id(id)?;
    match state.approvals.get(&id, &who).await {
        Ok(Some(approval)) => Ok(Json(approval)),
        Ok(None) => Err(Reply::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no approval request `{id}` exists that `{}` may see: only its requester and members of its approver group see it",
                who.name
            ),
        )),
        Err(e) => Err(Reply::approval(e)),
    }
}

/// `POST /api/approvals/{id}/approve` with an optional `{"comment":"…"}`.
pub(crate) async fn approve(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Approval>, Reply> {
    let id = approval_id(id)?;
    let body: ApproveBody = json_body(body, r#"{"comment":"…"} or nothing"#)?;
    state
        .approvals
        .decide(&id, &who, true, body.comment)
        .await
        .map(Json)
        .map_err(Reply::decide)
}

/// `POST /api/approvals/{id}/deny` with `{"reason":"…"}`.
pub(crate) async fn deny(
    State(state): State<ApiState>,
    Extension(who): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Approval>, Reply> {
    let id = approval_id(id)?;
    let body: DenyBody = json_body(body, r#"{"reason":"…"}"#)?;
    state
        .approvals
        .decide(&id, &who, false, body.reason)
        .await
        .map(Json)
        .map_err(|e| {
            let reply = Reply::decide(e);
            if reply.code() == "invalid_decision" {
                reply.with_hint(r#"; send {"reason":"…"}"#)
            } else {
                reply
            }
        })
}

fn approval_id(id: Result<Path<String>, PathRejection>) -> Result<String, Reply> {
    id.map(|Path(id)| id)
        .map_err(|e| Reply::bad_request("invalid_id", e.body_text()))
}

/// Parses an optional JSON object body; an empty body is the default.
fn json_body<T: DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
    expected: &str,
) -> Result<T, Reply> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Reply::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is larger than {} KiB", BODY_LIMIT / 1024),
            )
        } else {
            Reply::bad_request("unreadable_body", e.body_text())
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| {
        Reply::bad_request(
            "malformed_json",
            format!("the request body is not the JSON this endpoint takes ({e}); send {expected}"),
        )
    })
}
