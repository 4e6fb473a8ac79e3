//! The web console's sign-ins and OIDC flows in SQLite: hashes of their cookies and
//! states, never the values (see [`crate::ConsoleSignin`], [`crate::ConsoleFlow`]).

use sqlx::{Row, SqlitePool};

use super::parse_ts;
use crate::{ConsoleFlow, ConsoleSignin, StoreError};

fn principal_json(signin: &ConsoleSignin) -> Result<String, StoreError> {
    serde_json::to_string(&signin.principal).map_err(|e| StoreError::Corrupt {
        what: "console sign-in principal",
        detail: e.to_string(),
    })
}

fn signin_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ConsoleSignin, StoreError> {
    let principal: String = row.try_get("principal")?;
    Ok(ConsoleSignin {
        key_hash: row.try_get("key_hash")?,
        principal: serde_json::from_str(&principal).map_err(|e| StoreError::Corrupt {
            what: "console sign-in principal",
            detail: e.to_string(),
        })?,
        created_at: parse_ts("console sign-in", &row.try_get::<String, _>("created_at")?)?,
        expires_at: parse_ts("console sign-in", &row.try_get::<String, _>("expires_at")?)?,
    })
}

fn flow_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ConsoleFlow, StoreError> {
    Ok(ConsoleFlow {
        key_hash: row.try_get("key_hash")?,
        nonce: row.try_get("nonce")?,
        challenge: row.try_get("challenge")?,
        created_at: parse_ts("console flow", &row.try_get::<String, _>("created_at")?)?,
        expires_at: parse_ts("console flow", &row.try_get::<String, _>("expires_at")?)?,
    })
}

pub(super) async fn put_signin(
    pool: &SqlitePool,
    signin: &ConsoleSignin,
    per_principal: u32,
) -> Result<(), StoreError> {
    let principal = principal_json(signin)?;
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM console_signins WHERE expires_at <= ?")
        .bind(signin.created_at.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM console_signins WHERE key_hash IN (
           SELECT key_hash FROM console_signins WHERE principal_name = ?
           ORDER BY created_at DESC, key_hash LIMIT -1 OFFSET ?)",
    )
    .bind(&signin.principal.name)
    .bind(i64::from(per_principal.saturating_sub(1)))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO console_signins (key_hash, principal_name, principal, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&signin.key_hash)
    .bind(&signin.principal.name)
    .bind(principal)
    .bind(signin.created_at.to_string())
    .bind(signin.expires_at.to_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn signin(
    pool: &SqlitePool,
    key_hash: &str,
    now: airlock_model::Timestamp,
) -> Result<Option<ConsoleSignin>, StoreError> {
    let row = sqlx::query("SELECT * FROM console_signins WHERE key_hash = ? AND expires_at > ?")
        .bind(key_hash)
        .bind(now.to_string())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(signin_from_row).transpose()
}

pub(super) async fn delete_signin(pool: &SqlitePool, key_hash: &str) -> Result<bool, StoreError> {
    let r = sqlx::query("DELETE FROM console_signins WHERE key_hash = ?")
        .bind(key_hash)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub(super) async fn put_flow(
    pool: &SqlitePool,
    flow: &ConsoleFlow,
    limit: u32,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM console_flows WHERE expires_at <= ?")
        .bind(flow.created_at.to_string())
        .execute(&mut *tx)
        .await?;
    let r = sqlx::query(
        "INSERT INTO console_flows (key_hash, nonce, challenge, created_at, expires_at)
         SELECT ?, ?, ?, ?, ? WHERE (SELECT count(*) FROM console_flows) < ?",
    )
    .bind(&flow.key_hash)
    .bind(&flow.nonce)
    .bind(&flow.challenge)
    .bind(flow.created_at.to_string())
    .bind(flow.expires_at.to_string())
    .bind(i64::from(limit))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(r.rows_affected() == 1)
}

pub(super) async fn take_flow(
    pool: &SqlitePool,
    key_hash: &str,
    now: airlock_model::Timestamp,
) -> Result<Option<ConsoleFlow>, StoreError> {
    let row = sqlx::query("DELETE FROM console_flows WHERE key_hash = ? RETURNING *")
        .bind(key_hash)
        .fetch_optional(pool)
        .await?;
    Ok(row
        .as_ref()
        .map(flow_from_row)
        .transpose()?
        .filter(|f| f.expires_at > now))
}
