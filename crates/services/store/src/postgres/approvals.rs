//! Approval requests in PostgreSQL. Deciding and using are single conditional UPDATEs:
//! of two approvers (or two sessions) racing on one request, the second waits for the
//! first's row lock, then finds the request no longer pending (or approved) and loses.
//! Deciding and expiring are announced to the other processes on the store in the same
//! statement (see [`super::changes`]).

use airlock_model::{Approval, ApprovalStatus, Timestamp};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use super::changes::{CHANNEL, approval_payload};
use super::{limit as sql_limit, parse_opt_ts, parse_ts};
use crate::{StoreChange, StoreError};

fn corrupt(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

fn from_row(row: &PgRow) -> Result<Approval, StoreError> {
    let status: String = row.try_get("status")?;
    let params: String = row.try_get("params")?;
    let policies: String = row.try_get("policies")?;
    Ok(Approval {
        id: row.try_get("id")?,
        status: ApprovalStatus::parse(&status)
            .ok_or_else(|| corrupt("approval status", format!("unknown status `{status}`")))?,
        session_id: row.try_get("session_id")?,
        principal: row.try_get("principal")?,
        target: row.try_get("target")?,
        protocol: row.try_get("protocol")?,
        statement: row.try_get("statement")?,
        params: serde_json::from_str(&params).map_err(|e| corrupt("approval params", e))?,
        digest: row.try_get("digest")?,
        policy_version: row.try_get("policy_version")?,
        policies: serde_json::from_str(&policies).map_err(|e| corrupt("approval policies", e))?,
        approver_group: row.try_get("approver_group")?,
        reason: row.try_get("reason")?,
        created_at: parse_ts("approval", &row.try_get::<String, _>("created_at")?)?,
        expires_at: parse_ts("approval", &row.try_get::<String, _>("expires_at")?)?,
        decided_by: row.try_get("decided_by")?,
        decided_at: parse_opt_ts("approval", row.try_get("decided_at")?)?,
        comment: row.try_get("comment")?,
        used_at: parse_opt_ts("approval", row.try_get("used_at")?)?,
        used_in_session: row.try_get("used_in_session")?,
    })
}

pub(super) async fn insert(pool: &PgPool, a: &Approval) -> Result<(), StoreError> {
    let params = serde_json::to_string(&a.params).map_err(|e| corrupt("approval params", e))?;
    let policies =
        serde_json::to_string(&a.policies).map_err(|e| corrupt("approval policies", e))?;
    sqlx::query(
        "INSERT INTO approvals (id, status, session_id, principal, target, protocol, statement,
            params, digest, policy_version, policies, approver_group, reason, created_at,
            expires_at, decided_by, decided_at, comment, used_at, used_in_session)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, $20)",
    )
    .bind(&a.id)
    .bind(a.status.as_str())
    .bind(&a.session_id)
    .bind(&a.principal)
    .bind(&a.target)
    .bind(&a.protocol)
    .bind(&a.statement)
    .bind(params)
    .bind(&a.digest)
    .bind(&a.policy_version)
    .bind(policies)
    .bind(&a.approver_group)
    .bind(&a.reason)
    .bind(a.created_at.to_string())
    .bind(a.expires_at.to_string())
    .bind(&a.decided_by)
    .bind(a.decided_at.map(|t| t.to_string()))
    .bind(&a.comment)
    .bind(a.used_at.map(|t| t.to_string()))
    .bind(&a.used_in_session)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn get(pool: &PgPool, id: &str) -> Result<Option<Approval>, StoreError> {
    let row = sqlx::query("SELECT * FROM approvals WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn list(
    pool: &PgPool,
    status: Option<ApprovalStatus>,
    visible_to: Option<(&str, &[String])>,
    limit: i64,
) -> Result<Vec<Approval>, StoreError> {
    let mut q = QueryBuilder::<Postgres>::new("SELECT * FROM approvals WHERE true");
    if let Some(s) = status {
        q.push(" AND status = ").push_bind(s.as_str());
    }
    if let Some((principal, groups)) = visible_to {
        q.push(" AND (principal = ").push_bind(principal.to_owned());
        if !groups.is_empty() {
            q.push(" OR approver_group = ANY(")
                .push_bind(groups.to_vec())
                .push(")");
        }
        q.push(")");
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(sql_limit(limit));
    let rows = q.build().fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn open_for(
    pool: &PgPool,
    principal: &str,
    target: &str,
    digest: &str,
    policy_version: &str,
    now: Timestamp,
) -> Result<Option<Approval>, StoreError> {
    let row = sqlx::query(
        "SELECT * FROM approvals
         WHERE principal = $1 AND target = $2 AND digest = $3 AND policy_version = $4
           AND status IN ('pending', 'approved') AND expires_at > $5
         ORDER BY id DESC LIMIT 1",
    )
    .bind(principal)
    .bind(target)
    .bind(digest)
    .bind(policy_version)
    .bind(now.to_string())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn decide(
    pool: &PgPool,
    id: &str,
    approve: bool,
    by: &str,
    comment: Option<&str>,
    at: Timestamp,
) -> Result<Option<(Approval, bool)>, StoreError> {
    let status = if approve {
        ApprovalStatus::Approved
    } else {
        ApprovalStatus::Denied
    };
    let changed = sqlx::query(
        "WITH decided AS (
            UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, comment = $4
            WHERE id = $5 AND status = 'pending' AND expires_at > $3
            RETURNING id)
         SELECT pg_notify($6, $7) FROM decided",
    )
    .bind(status.as_str())
    .bind(by)
    .bind(at.to_string())
    .bind(comment)
    .bind(id)
    .bind(CHANNEL)
    .bind(approval_payload(id))
    .fetch_all(pool)
    .await?
    .len()
        == 1;
    Ok(get(pool, id).await?.map(|a| (a, changed)))
}

pub(super) async fn mark_used(
    pool: &PgPool,
    id: &str,
    session_id: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE approvals SET status = 'used', used_at = $1, used_in_session = $2
         WHERE id = $3 AND status = 'approved' AND expires_at > $1",
    )
    .bind(at.to_string())
    .bind(session_id)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub(super) async fn expire(pool: &PgPool, now: Timestamp) -> Result<Vec<Approval>, StoreError> {
    let rows = sqlx::query(
        "WITH expired AS (
            UPDATE approvals SET status = 'expired'
            WHERE status IN ('pending', 'approved') AND expires_at <= $1
            RETURNING *)
         SELECT *, pg_notify($2, $3 || id) AS announced FROM expired ORDER BY id",
    )
    .bind(now.to_string())
    .bind(CHANNEL)
    .bind(StoreChange::APPROVAL_PREFIX)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}
