//! Approval requests in SQLite. Deciding and using are single conditional UPDATEs, so
//! that two approvers (or two sessions) racing on one request cannot both win.

use airlock_model::{Approval, ApprovalStatus, Timestamp};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::{parse_opt_ts, parse_ts};
use crate::StoreError;

fn corrupt(what: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Approval, StoreError> {
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

pub(super) async fn insert(pool: &SqlitePool, a: &Approval) -> Result<(), StoreError> {
    let params = serde_json::to_string(&a.params).map_err(|e| corrupt("approval params", e))?;
    let policies =
        serde_json::to_string(&a.policies).map_err(|e| corrupt("approval policies", e))?;
    sqlx::query(
        "INSERT INTO approvals (id, status, session_id, principal, target, protocol, statement,
            params, digest, policy_version, policies, approver_group, reason, created_at,
            expires_at, decided_by, decided_at, comment, used_at, used_in_session)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

pub(super) async fn get(pool: &SqlitePool, id: &str) -> Result<Option<Approval>, StoreError> {
    let row = sqlx::query("SELECT * FROM approvals WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn list(
    pool: &SqlitePool,
    status: Option<ApprovalStatus>,
    visible_to: Option<(&str, &[String])>,
    limit: i64,
) -> Result<Vec<Approval>, StoreError> {
    let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM approvals WHERE 1 = 1");
    if let Some(s) = status {
        q.push(" AND status = ").push_bind(s.as_str());
    }
    if let Some((principal, groups)) = visible_to {
        q.push(" AND (principal = ").push_bind(principal.to_owned());
        if !groups.is_empty() {
            q.push(" OR approver_group IN (");
            let mut sep = q.separated(", ");
            for g in groups {
                sep.push_bind(g.clone());
            }
            sep.push_unseparated(")");
        }
        q.push(")");
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
    let rows = q.build().fetch_all(pool).await?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn open_for(
    pool: &SqlitePool,
    principal: &str,
    target: &str,
    digest: &str,
    policy_version: &str,
    now: Timestamp,
) -> Result<Option<Approval>, StoreError> {
    let row = sqlx::query(
        "SELECT * FROM approvals
         WHERE principal = ? AND target = ? AND digest = ? AND policy_version = ?
           AND status IN ('pending', 'approved') AND expires_at > ?
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
    pool: &SqlitePool,
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
        "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, comment = ?
         WHERE id = ? AND status = 'pending' AND expires_at > ?",
    )
    .bind(status.as_str())
    .bind(by)
    .bind(at.to_string())
    .bind(comment)
    .bind(id)
    .bind(at.to_string())
    .execute(pool)
    .await?
    .rows_affected()
        == 1;
    Ok(get(pool, id).await?.map(|a| (a, changed)))
}

pub(super) async fn mark_used(
    pool: &SqlitePool,
    id: &str,
    session_id: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "UPDATE approvals SET status = 'used', used_at = ?, used_in_session = ?
         WHERE id = ? AND status = 'approved' AND expires_at > ?",
    )
    .bind(at.to_string())
    .bind(session_id)
    .bind(id)
    .bind(at.to_string())
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub(super) async fn expire(pool: &SqlitePool, now: Timestamp) -> Result<Vec<Approval>, StoreError> {
    let rows = sqlx::query(
        "UPDATE approvals SET status = 'expired'
         WHERE status IN ('pending', 'approved') AND expires_at <= ?
         RETURNING *",
    )
    .bind(now.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SqliteStore, Store};
    use std::time::Duration;

    fn sample(id: &str, now: Timestamp) -> Approval {
        Approval {
            id: id.into(),
            status: ApprovalStatus::Pending,
            session_id: "s1".into(),
            principal: "agent".into(),
            target: "shop".into(),
            protocol: "postgres".into(),
            statement: "DELETE FROM orders WHERE id = 7".into(),
            params: serde_json::json!([]),
            digest: "d1".into(),
            policy_version: "v1".into(),
            policies: vec!["delete-needs-dba".into()],
            approver_group: "dba".into(),
            reason: "delete needs approval".into(),
            created_at: now,
            expires_at: now.plus(Duration::from_secs(3600)),
            decided_by: None,
            decided_at: None,
            comment: None,
            used_at: None,
            used_in_session: None,
        }
    }

    async fn store() -> SqliteStore {
        let dir = std::env::temp_dir().join(format!(
            "airlock-approvals-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        SqliteStore::open_in(&dir).await.expect("store")
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn an_approval_is_decided_once_and_used_once() {
        let s = store().await;
        let now = Timestamp::now();
        s.insert_approval(&sample("a1", now)).await.expect("insert");
        let open = s
            .open_approval_for("agent", "shop", "d1", "v1", now)
            .await
            .expect("lookup");
        assert_eq!(open.map(|a| a.id), Some("a1".into()));
        // Other policy version, other principal: not this approval.
        assert!(
            s.open_approval_for("agent", "shop", "d1", "v2", now)
                .await
                .expect("lookup")
                .is_none()
        );
        assert!(
            s.open_approval_for("other", "shop", "d1", "v1", now)
                .await
                .expect("lookup")
                .is_none()
        );
        // Not approved yet: cannot be used.
        assert!(!s.use_approval("a1", "s2", now).await.expect("use"));
        let (a, won) = s
            .decide_approval("a1", true, "dana", Some("ok"), now)
            .await
            .expect("decide")
            .expect("exists");
        assert!(won);
        assert_eq!(a.status, ApprovalStatus::Approved);
        assert_eq!(a.decided_by.as_deref(), Some("dana"));
        // A second decision loses and changes nothing.
        let (a, won) = s
            .decide_approval("a1", false, "eve", Some("no"), now)
            .await
            .expect("decide")
            .expect("exists");
        assert!(!won);
        assert_eq!(a.status, ApprovalStatus::Approved);
        assert_eq!(a.comment.as_deref(), Some("ok"));
        assert!(s.use_approval("a1", "s2", now).await.expect("use"));
        assert!(
            !s.use_approval("a1", "s3", now).await.expect("use"),
            "used twice"
        );
        let a = s.get_approval("a1").await.expect("get").expect("exists");
        assert_eq!(a.status, ApprovalStatus::Used);
        assert_eq!(a.used_in_session.as_deref(), Some("s2"));
        assert!(
            s.open_approval_for("agent", "shop", "d1", "v1", now)
                .await
                .expect("lookup")
                .is_none()
        );
        assert!(
            s.decide_approval("nope", true, "dana", None, now)
                .await
                .expect("decide")
                .is_none()
        );
    }

    #[tokio::test]
    async fn requests_expire_and_cannot_be_decided_after() {
        let s = store().await;
        let then = Timestamp::now();
        let mut a = sample("a2", then);
        a.expires_at = then.plus(Duration::from_secs(1));
        s.insert_approval(&a).await.expect("insert");
        s.insert_approval(&sample("a3", then))
            .await
            .expect("insert");
        let later = then.plus(Duration::from_secs(2));
        let (a, won) = s
            .decide_approval("a2", true, "dana", None, later)
            .await
            .expect("decide")
            .expect("exists");
        assert!(!won, "decided after expiry");
        assert_eq!(a.status, ApprovalStatus::Pending);
        let expired = s.expire_approvals(later).await.expect("expire");
        assert_eq!(
            expired.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            vec!["a2"]
        );
        assert_eq!(expired[0].status, ApprovalStatus::Expired);
        let pending = s
            .list_approvals(Some(ApprovalStatus::Pending), None, 10)
            .await
            .expect("list");
        assert_eq!(pending.len(), 1);
        assert_eq!(
            s.list_approvals(None, None, 10).await.expect("list").len(),
            2
        );
        let dba = vec!["dba".to_owned()];
        let ops = vec!["ops".to_owned()];
        assert_eq!(
            s.list_approvals(None, Some(("someone", &dba)), 10)
                .await
                .expect("list")
                .len(),
            2
        );
        assert_eq!(
            s.list_approvals(None, Some(("agent", &ops)), 10)
                .await
                .expect("list")
                .len(),
            2
        );
        assert!(
            s.list_approvals(None, Some(("someone", &ops)), 10)
                .await
                .expect("list")
                .is_empty()
        );
        assert!(
            s.list_approvals(None, Some(("someone", &[])), 10)
                .await
                .expect("list")
                .is_empty()
        );
    }
}
