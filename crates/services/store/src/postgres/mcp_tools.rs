//! Pinned MCP tool fingerprints in PostgreSQL.

use airlock_model::Timestamp;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::{parse_opt_ts, parse_ts};
use crate::{McpToolPin, StoreError};

fn from_row(row: &PgRow) -> Result<McpToolPin, StoreError> {
    Ok(McpToolPin {
        target: row.try_get("target")?,
        name: row.try_get("name")?,
        pinned_digest: row.try_get("pinned_digest")?,
        pinned_description: row.try_get("pinned_description")?,
        listed_digest: row.try_get("listed_digest")?,
        listed_description: row.try_get("listed_description")?,
        first_seen: parse_ts("mcp tool", &row.try_get::<String, _>("first_seen")?)?,
        changed_at: parse_opt_ts("mcp tool", row.try_get("changed_at")?)?,
        accepted_at: parse_opt_ts("mcp tool", row.try_get("accepted_at")?)?,
    })
}

pub(super) async fn list(pool: &PgPool, target: &str) -> Result<Vec<McpToolPin>, StoreError> {
    let rows = sqlx::query("SELECT * FROM mcp_tools WHERE target = $1 ORDER BY name")
        .bind(target)
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn list_all(pool: &PgPool) -> Result<Vec<McpToolPin>, StoreError> {
    let rows = sqlx::query("SELECT * FROM mcp_tools ORDER BY target, name")
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn put(pool: &PgPool, p: &McpToolPin) -> Result<(), StoreError> {
    // A tool first seen by two replicas at once keeps the first pin.
    sqlx::query(
        "INSERT INTO mcp_tools (target, name, pinned_digest, pinned_description, listed_digest,
           listed_description, first_seen, changed_at, accepted_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (target, name) DO UPDATE SET listed_digest = excluded.listed_digest,
           listed_description = excluded.listed_description,
           changed_at = CASE WHEN excluded.listed_digest IS NULL THEN NULL
                             ELSE COALESCE(mcp_tools.changed_at, excluded.changed_at) END",
    )
    .bind(&p.target)
    .bind(&p.name)
    .bind(&p.pinned_digest)
    .bind(&p.pinned_description)
    .bind(&p.listed_digest)
    .bind(&p.listed_description)
    .bind(p.first_seen.to_string())
    .bind(p.changed_at.map(|t| t.to_string()))
    .bind(p.accepted_at.map(|t| t.to_string()))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn accept(
    pool: &PgPool,
    target: &str,
    tool: Option<&str>,
    at: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "UPDATE mcp_tools SET pinned_digest = listed_digest,
           pinned_description = listed_description,
           listed_digest = NULL, listed_description = NULL, changed_at = NULL, accepted_at = $1
         WHERE target = $2 AND listed_digest IS NOT NULL AND ($3::text IS NULL OR name = $3)
         RETURNING name",
    )
    .bind(at.to_string())
    .bind(target)
    .bind(tool)
    .fetch_all(pool)
    .await?;
    let mut names: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String, _>("name"))
        .collect::<Result<_, _>>()?;
    names.sort();
    Ok(names)
}
