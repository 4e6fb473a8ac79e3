//! Sealed secrets and the key check in PostgreSQL (values are never stored in clear:
//! sealing is `airlock-vault`'s job).

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::parse_ts;
use crate::{StoreError, StoredSecret};

fn from_row(row: &PgRow) -> Result<StoredSecret, StoreError> {
    Ok(StoredSecret {
        name: row.try_get("name")?,
        nonce: row.try_get("nonce")?,
        ciphertext: row.try_get("ciphertext")?,
        created_at: parse_ts("secret", &row.try_get::<String, _>("created_at")?)?,
        updated_at: parse_ts("secret", &row.try_get::<String, _>("updated_at")?)?,
    })
}

async fn upsert<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    s: &StoredSecret,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO secrets (name, nonce, ciphertext, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET nonce = excluded.nonce,
           ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
    )
    .bind(&s.name)
    .bind(&s.nonce)
    .bind(&s.ciphertext)
    .bind(s.created_at.to_string())
    .bind(s.updated_at.to_string())
    .execute(executor)
    .await?;
    Ok(())
}

async fn upsert_key_check<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    value: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO vault_meta (name, value) VALUES ('key_check', $1)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(value)
    .execute(executor)
    .await?;
    Ok(())
}

pub(super) async fn put(pool: &PgPool, s: &StoredSecret) -> Result<(), StoreError> {
    upsert(pool, s).await
}

pub(super) async fn list(pool: &PgPool) -> Result<Vec<StoredSecret>, StoreError> {
    let rows = sqlx::query("SELECT * FROM secrets ORDER BY name")
        .fetch_all(pool)
        .await?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn delete(pool: &PgPool, name: &str) -> Result<bool, StoreError> {
    let r = sqlx::query("DELETE FROM secrets WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub(super) async fn key_check(pool: &PgPool) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query("SELECT value FROM vault_meta WHERE name = 'key_check'")
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get("value"))
            .transpose()?,
    )
}

pub(super) async fn set_key_check(pool: &PgPool, value: &str) -> Result<(), StoreError> {
    upsert_key_check(pool, value).await
}

/// Every secret and the key check in one transaction: a rotation is stored whole or
/// not at all.
pub(super) async fn reseal_all(
    pool: &PgPool,
    all: &[StoredSecret],
    key_check: &str,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    for s in all {
        upsert(&mut *tx, s).await?;
    }
    upsert_key_check(&mut *tx, key_check).await?;
    tx.commit().await?;
    Ok(())
}
