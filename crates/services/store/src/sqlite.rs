//! The embedded SQLite backend: one file in `data_dir`, WAL mode, `synchronous = FULL`
//! so that a committed recorder batch survives a crash of the gateway or the machine.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use airlock_model::{Approval, ApprovalStatus, SessionSummary, Timestamp};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, SqlitePool};

use crate::schema::{self, Migrations, SchemaVersion};
use crate::{ChainedEvent, EventLog, SessionFilter, Store, StoreError, TokenRecord, chains};

mod approvals;
mod console;
mod event_blocks;
mod event_log;
mod mcp_tools;
mod secrets;
pub use event_log::SqliteEventLog;

/// The store file's name inside `data_dir`.
pub const STORE_FILE: &str = "airlock.db";

/// SQLite-backed [`Store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: std::path::PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/airlock.db` and applies pending migrations.
    pub async fn open_in(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_file(&data_dir.join(STORE_FILE)).await
    }

    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn open_file(path: &Path) -> Result<Self, StoreError> {
        Ok(Self::open_checked(path, Migrations::Apply).await?.0)
    }

    /// Opens (creating if needed) the database file at `path`; an older schema is
    /// migrated only as `mode` allows (see [`crate::schema`]).
    pub async fn open_checked(
        path: &Path,
        mode: Migrations,
    ) -> Result<(Self, SchemaVersion), StoreError> {
        let location = path.display().to_string();
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|source| StoreError::Open {
                location: location.clone(),
                source,
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // Held while the first connection is made (it may switch a new file to WAL) and
        // while migrating; see [`lock_for_migration`].
        let lock = lock_for_migration(path).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                location: location.clone(),
                source,
            })?;
        let has_table: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
        )
        .fetch_one(&pool)
        .await?;
        let applied: Vec<i64> = if has_table {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&pool)
                .await?
        } else {
            Vec::new()
        };
        let migrator = sqlx::migrate!("./migrations");
        let version = schema::prepare(&migrator, &applied, mode, &location, || async {
            migrator.run(&pool).await.map_err(StoreError::from)
        })
        .await?;
        drop(lock);
        Ok((
            SqliteStore {
                pool,
                path: path.to_owned(),
            },
            version,
        ))
    }
}

/// Takes an exclusive lock on `<store>.migrate-lock`, waiting for another process's.
///
/// sqlx's SQLite migrator takes no lock of its own: two processes opening a fresh store at
/// the same moment (`airlock serve` starting while `airlock token create` runs) would both
/// see migration 1 as pending and the second would fail on "table already exists"; the
/// switch of a new file to WAL can fail the same way with "database is locked". With the
/// lock the second process waits, then finds nothing left to do.
async fn lock_for_migration(path: &Path) -> Result<std::fs::File, StoreError> {
    let lock_path = path.with_extension("migrate-lock");
    let lock_error = |source: std::io::Error| StoreError::Lock {
        location: lock_path.display().to_string(),
        source,
    };
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(lock_error)?;
    tokio::task::spawn_blocking(move || lock_file.lock().map(|()| lock_file))
        .await
        .map_err(|e| lock_error(std::io::Error::other(e)))?
        .map_err(lock_error)
}

pub(crate) fn parse_ts(what: &'static str, text: &str) -> Result<Timestamp, StoreError> {
    Timestamp::parse(text).map_err(|e| StoreError::Corrupt {
        what,
        detail: format!("timestamp `{text}`: {e}"),
    })
}

pub(crate) fn parse_opt_ts(
    what: &'static str,
    text: Option<String>,
) -> Result<Option<Timestamp>, StoreError> {
    text.map(|t| parse_ts(what, &t)).transpose()
}

fn token_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<TokenRecord, StoreError> {
    let groups: String = row.try_get("groups")?;
    Ok(TokenRecord {
        name: row.try_get("name")?,
        token_hash: row.try_get("token_hash")?,
        groups: serde_json::from_str(&groups).map_err(|e| StoreError::Corrupt {
            what: "token groups",
            detail: e.to_string(),
        })?,
        created_at: parse_ts("token", &row.try_get::<String, _>("created_at")?)?,
        expires_at: parse_opt_ts("token", row.try_get("expires_at")?)?,
        revoked_at: parse_opt_ts("token", row.try_get("revoked_at")?)?,
        last_used_at: parse_opt_ts("token", row.try_get("last_used_at")?)?,
    })
}

fn session_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<SessionSummary, StoreError> {
    Ok(SessionSummary {
        id: row.try_get("id")?,
        principal: row.try_get("principal")?,
        target: row.try_get("target")?,
        protocol: row.try_get("protocol")?,
        client_addr: row.try_get("client_addr")?,
        started_at: parse_ts("session", &row.try_get::<String, _>("started_at")?)?,
        ended_at: parse_opt_ts("session", row.try_get("ended_at")?)?,
        marks: airlock_model::SessionMarks {
            denied: row.try_get("denied")?,
            held: row.try_get("held")?,
            masked: row.try_get("masked")?,
            error: row.try_get("error")?,
        },
    })
}

macro_rules! session_columns {
    () => {
        "id, principal, target, protocol, client_addr, started_at, ended_at, denied, held, masked, error"
    };
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let groups = serde_json::to_string(&token.groups).map_err(|e| StoreError::Corrupt {
            what: "token groups",
            detail: e.to_string(),
        })?;
        let result = sqlx::query(
            "INSERT INTO tokens (name, token_hash, groups, created_at, expires_at, revoked_at, last_used_at)
             VALUES (?, ?, ?, ?, ?, NULL, NULL)",
        )
        .bind(&token.name)
        .bind(&token.token_hash)
        .bind(groups)
        .bind(token.created_at.to_string())
        .bind(token.expires_at.map(|t| t.to_string()))
        .execute(&self.pool)
        .await;
        match result {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Duplicate {
                    what: "token",
                    name: token.name.clone(),
                })
            }
            other => other.map(|_| ()).map_err(StoreError::from),
        }
    }

    async fn find_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tokens ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, name: &str, at: Timestamp) -> Result<bool, StoreError> {
        let exists = sqlx::query("SELECT 1 FROM tokens WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        if exists {
            sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?")
                .bind(at.to_string())
                .bind(name)
                .execute(&self.pool)
                .await?;
        }
        Ok(exists)
    }

    async fn touch_token(&self, name: &str, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE tokens SET last_used_at = ? WHERE name = ?")
            .bind(at.to_string())
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn event_log(&self) -> Result<Box<dyn EventLog>, StoreError> {
        Ok(Box::new(SqliteEventLog::open(&self.path)?))
    }

    async fn chain_head(&self, chain: i64) -> Result<Option<ChainedEvent>, StoreError> {
        // The block holding the chain's highest id has the highest `last_id` of the
        // chain's blocks and starts less than MAX_SPAN before the chain's newest block
        // (a block holds one batch of one session: never two chains).
        let (first, end) = (chains::first_id(chain), chains::end_id(chain));
        let row = sqlx::query(
            "SELECT session_id, events FROM event_blocks
             WHERE first_id >= ? AND first_id < ?
               AND first_id > (SELECT coalesce(max(first_id), 0) FROM event_blocks
                               WHERE first_id >= ? AND first_id < ?) - ?
             ORDER BY last_id DESC LIMIT 1",
        )
        .bind(first)
        .bind(end)
        .bind(first)
        .bind(end)
        .bind(event_blocks::MAX_SPAN)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let events =
            event_blocks::decode(&row.try_get::<String, _>(0)?, &row.try_get::<String, _>(1)?)?;
        Ok(events.into_iter().max_by_key(|e| e.id))
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn all_settings(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT name, value FROM settings ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn init_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        self.setting(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                what: "setting",
                detail: format!("setting {name} vanished as it was set"),
            })
    }

    async fn events_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<ChainedEvent>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let mut found: Vec<ChainedEvent> = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        // Blocks in key order from the first that can hold an id above `after_id`;
        // the next `limit` ids are known once a block starts above the highest of
        // them (ids only grow within a block). Gaps (deleted events) are skipped over
        // like the old table's `WHERE id > ? ORDER BY id LIMIT ?` did.
        let mut cursor = after_id.saturating_sub(event_blocks::MAX_SPAN);
        loop {
            let rows = sqlx::query(
                "SELECT first_id, session_id, events FROM event_blocks
                 WHERE first_id > ? AND last_id > ? ORDER BY first_id LIMIT 16",
            )
            .bind(cursor)
            .bind(after_id)
            .fetch_all(&self.pool)
            .await?;
            let Some(last_row) = rows.last() else {
                break;
            };
            let next_cursor: i64 = last_row.try_get(0)?;
            let mut complete = false;
            for row in &rows {
                let first: i64 = row.try_get(0)?;
                if found.len() >= limit && found.last().is_some_and(|e| first > e.id) {
                    complete = true;
                    break;
                }
                let block = event_blocks::decode(
                    &row.try_get::<String, _>(1)?,
                    &row.try_get::<String, _>(2)?,
                )?;
                found.extend(block.into_iter().filter(|e| e.id > after_id));
                found.sort_by_key(|e| e.id);
                found.truncate(limit);
            }
            if complete {
                break;
            }
            cursor = next_cursor;
        }
        Ok(found)
    }

    async fn list_sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let mut q = QueryBuilder::new(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE 1 = 1"
        ));
        if let Some(t) = &filter.target {
            q.push(" AND target = ").push_bind(t.clone());
        }
        if let Some(p) = &filter.principal {
            q.push(" AND principal = ").push_bind(p.clone());
        }
        if let Some(p) = &filter.protocol {
            q.push(" AND protocol = ").push_bind(p.clone());
        }
        if let Some(t) = filter.since {
            q.push(" AND started_at >= ").push_bind(t.to_string());
        }
        if let Some(t) = filter.until {
            q.push(" AND started_at < ").push_bind(t.to_string());
        }
        let m = filter.marks;
        for (set, column) in [
            (m.denied, "denied"),
            (m.held, "held"),
            (m.masked, "masked"),
            (m.error, "error"),
        ] {
            if set {
                q.push(format_args!(" AND {column} = 1"));
            }
        }
        if let Some(id) = &filter.before {
            // A row-value comparison the (…, started_at, id) indexes answer by seeking.
            q.push(" AND (started_at, id) < (SELECT started_at, id FROM sessions WHERE id = ")
                .push_bind(id.clone())
                .push(")");
        }
        q.push(" ORDER BY started_at DESC, id DESC");
        if let Some(n) = filter.limit {
            q.push(" LIMIT ").push_bind(n);
        }
        let rows = q.build().fetch_all(&self.pool).await?;
        let mut sessions = rows
            .iter()
            .map(session_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if !filter.newest_first {
            sessions.reverse();
        }
        Ok(sessions)
    }

    async fn get_session(&self, id: &str) -> Result<Option<SessionSummary>, StoreError> {
        let sql = concat!("SELECT ", session_columns!(), " FROM sessions WHERE id = ?");
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn session_events(&self, id: &str) -> Result<Vec<ChainedEvent>, StoreError> {
        let rows =
            sqlx::query("SELECT events FROM event_blocks WHERE session_id = ? ORDER BY first_id")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        let mut events = Vec::new();
        for row in &rows {
            events.extend(event_blocks::decode(id, &row.try_get::<String, _>(0)?)?);
        }
        events.sort_by_key(|e| (e.seq, e.id));
        Ok(events)
    }

    async fn close_dangling_sessions(&self, chain: i64, at: Timestamp) -> Result<u64, StoreError> {
        // The chain's sessions, and those that recorded nothing at all; a session
        // recorded in another chain (imported from a shared store) is left as it is.
        // A block holds one session's events of one chain.
        let r = sqlx::query(
            "UPDATE sessions SET ended_at = ? WHERE ended_at IS NULL AND (
               EXISTS (SELECT 1 FROM event_blocks b WHERE b.session_id = sessions.id
                       AND b.first_id >= ? AND b.first_id < ?)
               OR NOT EXISTS (SELECT 1 FROM event_blocks b WHERE b.session_id = sessions.id))",
        )
        .bind(at.to_string())
        .bind(chains::first_id(chain))
        .bind(chains::end_id(chain))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn insert_approval(&self, approval: &Approval) -> Result<(), StoreError> {
        approvals::insert(&self.pool, approval).await
    }

    async fn get_approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        approvals::get(&self.pool, id).await
    }

    async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        visible_to: Option<(&str, &[String])>,
        limit: i64,
    ) -> Result<Vec<Approval>, StoreError> {
        approvals::list(&self.pool, status, visible_to, limit).await
    }

    async fn open_approval_for(
        &self,
        principal: &str,
        target: &str,
        digest: &str,
        policy_version: &str,
        now: Timestamp,
    ) -> Result<Option<Approval>, StoreError> {
        approvals::open_for(&self.pool, principal, target, digest, policy_version, now).await
    }

    async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        comment: Option<&str>,
        at: Timestamp,
    ) -> Result<Option<(Approval, bool)>, StoreError> {
        approvals::decide(&self.pool, id, approve, by, comment, at).await
    }

    async fn use_approval(
        &self,
        id: &str,
        session_id: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        approvals::mark_used(&self.pool, id, session_id, at).await
    }

    async fn expire_approvals(&self, now: Timestamp) -> Result<Vec<Approval>, StoreError> {
        approvals::expire(&self.pool, now).await
    }

    async fn put_secret(&self, secret: &crate::StoredSecret) -> Result<(), StoreError> {
        secrets::put(&self.pool, secret).await
    }

    async fn list_secrets(&self) -> Result<Vec<crate::StoredSecret>, StoreError> {
        secrets::list(&self.pool).await
    }

    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        secrets::delete(&self.pool, name).await
    }

    async fn key_check(&self) -> Result<Option<String>, StoreError> {
        secrets::key_check(&self.pool).await
    }

    async fn set_key_check(&self, value: &str) -> Result<(), StoreError> {
        secrets::set_key_check(&self.pool, value).await
    }

    async fn reseal_all(
        &self,
        all: &[crate::StoredSecret],
        key_check: &str,
    ) -> Result<(), StoreError> {
        secrets::reseal_all(&self.pool, all, key_check).await
    }

    async fn all_mcp_tools(&self) -> Result<Vec<crate::McpToolPin>, StoreError> {
        mcp_tools::list_all(&self.pool).await
    }

    async fn mcp_tools(&self, target: &str) -> Result<Vec<crate::McpToolPin>, StoreError> {
        mcp_tools::list(&self.pool, target).await
    }

    async fn put_mcp_tool(&self, pin: &crate::McpToolPin) -> Result<(), StoreError> {
        mcp_tools::put(&self.pool, pin).await
    }

    async fn accept_mcp_tools(
        &self,
        target: &str,
        tool: Option<&str>,
        at: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        mcp_tools::accept(&self.pool, target, tool, at).await
    }

    async fn put_console_signin(
        &self,
        signin: &crate::ConsoleSignin,
        per_principal: u32,
    ) -> Result<(), StoreError> {
        console::put_signin(&self.pool, signin, per_principal).await
    }

    async fn console_signin(
        &self,
        key_hash: &str,
        now: Timestamp,
    ) -> Result<Option<crate::ConsoleSignin>, StoreError> {
        console::signin(&self.pool, key_hash, now).await
    }

    async fn delete_console_signin(&self, key_hash: &str) -> Result<bool, StoreError> {
        console::delete_signin(&self.pool, key_hash).await
    }

    async fn put_console_flow(
        &self,
        flow: &crate::ConsoleFlow,
        limit: u32,
    ) -> Result<bool, StoreError> {
        console::put_flow(&self.pool, flow, limit).await
    }

    async fn take_console_flow(
        &self,
        key_hash: &str,
        now: Timestamp,
    ) -> Result<Option<crate::ConsoleFlow>, StoreError> {
        console::take_flow(&self.pool, key_hash, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EncodedBatch, StoreOp};

    async fn temp_store() -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "airlock-store-test-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        (SqliteStore::open_in(&dir).await.unwrap(), dir)
    }

    /// Stores `ops` as the recorder's ingest thread does.
    fn apply(store: &SqliteStore, ops: &[StoreOp]) {
        let batch = EncodedBatch::encode(ops.to_vec()).unwrap();
        store.event_log().unwrap().apply(&[batch]).unwrap();
    }

    /// A session of principal `p` on `shop` starting now.
    fn session_started(id: &str) -> StoreOp {
        StoreOp::StartSession(SessionSummary {
            id: id.into(),
            principal: Some("p".into()),
            target: "shop".into(),
            protocol: "postgres".into(),
            client_addr: "127.0.0.1:1".into(),
            started_at: Timestamp::now(),
            ended_at: None,
            marks: airlock_model::SessionMarks::default(),
        })
    }

    fn uuid_like() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    fn token(name: &str, hash: &str) -> TokenRecord {
        TokenRecord {
            name: name.into(),
            token_hash: hash.into(),
            groups: vec!["ai-agents".into()],
            created_at: Timestamp::now(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_opening_a_fresh_store_at_once_all_succeed() {
        // Each open has its own pool and its own lock file handle, as separate processes do.
        for _ in 0..5 {
            let dir = std::env::temp_dir().join(format!(
                "airlock-store-race-{}-{}",
                std::process::id(),
                uuid_like()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let opens: Vec<_> = (0..4)
                .map(|_| {
                    let path = dir.join(STORE_FILE);
                    tokio::spawn(async move { SqliteStore::open_file(&path).await })
                })
                .collect();
            for open in opens {
                open.await.unwrap().unwrap();
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[tokio::test]
    async fn tokens_round_trip_and_duplicates_are_refused() {
        let (store, _dir) = temp_store().await;
        store.insert_token(&token("a", "h1")).await.unwrap();
        let err = store.insert_token(&token("a", "h2")).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate { .. }), "{err}");
        let found = store.find_token_by_hash("h1").await.unwrap().unwrap();
        assert_eq!(found.groups, vec!["ai-agents".to_string()]);
        assert!(store.revoke_token("a", Timestamp::now()).await.unwrap());
        assert!(!store.revoke_token("nope", Timestamp::now()).await.unwrap());
        assert!(
            store
                .find_token_by_hash("h1")
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        );
    }

    #[tokio::test]
    async fn sessions_list_oldest_first_and_limit_keeps_the_newest() {
        let (store, _dir) = temp_store().await;
        let mut ops = Vec::new();
        for i in 0..3 {
            ops.push(session_started(&format!("s{i}")));
        }
        apply(&store, &ops);
        let all = store
            .list_sessions(&SessionFilter::default())
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["s0", "s1", "s2"]
        );
        let last = store
            .list_sessions(&SessionFilter {
                limit: Some(2),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            last.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["s1", "s2"]
        );
        assert_eq!(
            store
                .close_dangling_sessions(0, Timestamp::now())
                .await
                .unwrap(),
            3
        );
    }

    fn marked_event(
        id: i64,
        session: &str,
        seq: i64,
        kind: &str,
        decision: Option<&str>,
        detail: &str,
    ) -> StoreOp {
        StoreOp::Event(ChainedEvent {
            id,
            session_id: session.into(),
            seq,
            at: Timestamp::now().to_string(),
            kind: kind.into(),
            statement: None,
            decision: decision.map(str::to_owned),
            detail: detail.into(),
            prev_hash: String::new(),
            hash: String::new(),
        })
    }

    #[tokio::test]
    async fn sessions_are_marked_by_their_events_and_paged_newest_first_by_key() {
        let (store, _dir) = temp_store().await;
        let mut ops = Vec::new();
        for i in 0..7 {
            ops.push(session_started(&format!("s{i}")));
        }
        ops.push(marked_event(1, "s1", 1, "query", Some("deny"), "{}"));
        ops.push(marked_event(
            2,
            "s2",
            1,
            "result",
            None,
            r#"{"masked":{"pii":{"email":1}}}"#,
        ));
        ops.push(marked_event(
            3,
            "s3",
            1,
            "approval",
            None,
            r#"{"step":"requested"}"#,
        ));
        apply(&store, &ops);
        // Later batches: a new mark on a marked session, an error at its end.
        apply(
            &store,
            &[
                marked_event(4, "s2", 2, "query", Some("deny"), "{}"),
                marked_event(
                    5,
                    "s4",
                    1,
                    "disconnect",
                    None,
                    r#"{"reason":"target_closed","error":true}"#,
                ),
                StoreOp::EndSession {
                    id: "s4".into(),
                    at: Timestamp::now(),
                },
            ],
        );
        let ids = |v: Vec<SessionSummary>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
        let with = |marks: airlock_model::SessionMarks| SessionFilter {
            marks,
            newest_first: true,
            ..Default::default()
        };
        let denied = airlock_model::SessionMarks {
            denied: true,
            ..Default::default()
        };
        assert_eq!(
            ids(store.list_sessions(&with(denied)).await.unwrap()),
            ["s2", "s1"]
        );
        let both = airlock_model::SessionMarks {
            denied: true,
            masked: true,
            ..Default::default()
        };
        assert_eq!(ids(store.list_sessions(&with(both)).await.unwrap()), ["s2"]);
        let held = airlock_model::SessionMarks {
            held: true,
            ..Default::default()
        };
        assert_eq!(ids(store.list_sessions(&with(held)).await.unwrap()), ["s3"]);
        let error = airlock_model::SessionMarks {
            error: true,
            ..Default::default()
        };
        assert_eq!(
            ids(store.list_sessions(&with(error)).await.unwrap()),
            ["s4"]
        );
        let s2 = store.get_session("s2").await.unwrap().unwrap();
        assert!(s2.marks.denied && s2.marks.masked && !s2.marks.held && !s2.marks.error);
        // Pages of 3, newest first, each after the last id of the one before.
        let page = |before: Option<String>| SessionFilter {
            before,
            limit: Some(3),
            newest_first: true,
            ..Default::default()
        };
        let first = ids(store.list_sessions(&page(None)).await.unwrap());
        assert_eq!(first, ["s6", "s5", "s4"]);
        let second = ids(store.list_sessions(&page(Some("s4".into()))).await.unwrap());
        assert_eq!(second, ["s3", "s2", "s1"]);
        let third = ids(store.list_sessions(&page(Some("s1".into()))).await.unwrap());
        assert_eq!(third, ["s0"]);
        let protocol = SessionFilter {
            protocol: Some("http".into()),
            ..Default::default()
        };
        assert!(store.list_sessions(&protocol).await.unwrap().is_empty());
        let future = SessionFilter {
            since: Some(Timestamp::now().plus(std::time::Duration::from_secs(60))),
            ..Default::default()
        };
        assert!(store.list_sessions(&future).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn batches_of_events_are_stored_whole_and_in_order_around_session_changes() {
        // 70 events in one batch, with a session starting and one ending in between
        // (what a busy ingest batch looks like).
        let (store, _dir) = temp_store().await;
        let event = |id: i64| {
            StoreOp::Event(ChainedEvent {
                id,
                session_id: if id <= 40 { "a".into() } else { "b".into() },
                seq: id,
                at: format!("2026-11-26T00:00:00.{id:06}Z"),
                kind: "query".into(),
                statement: (id % 2 == 0).then(|| format!("select {id}")),
                decision: (id % 3 == 0).then(|| "allow".to_string()),
                detail: format!("{{\"n\":{id}}}"),
                prev_hash: format!("p{id}"),
                hash: format!("h{id}"),
            })
        };
        let mut ops = vec![session_started("a")];
        ops.extend((1..=40).map(event));
        ops.push(session_started("b"));
        ops.push(StoreOp::EndSession {
            id: "a".into(),
            at: Timestamp::now(),
        });
        ops.extend((41..=70).map(event));
        apply(&store, &ops);
        let stored = store.events_after(0, 1000).await.unwrap();
        let expected: Vec<ChainedEvent> = ops
            .iter()
            .filter_map(|op| match op {
                StoreOp::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(stored, expected);
        let sessions = store
            .list_sessions(&SessionFilter::default())
            .await
            .unwrap();
        assert!(sessions.iter().any(|s| s.id == "a" && s.ended_at.is_some()));
        assert!(sessions.iter().any(|s| s.id == "b" && s.ended_at.is_none()));
    }

    #[tokio::test]
    async fn a_store_with_one_row_per_event_is_migrated_into_blocks() {
        let dir = std::env::temp_dir().join(format!(
            "airlock-store-migrate-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(STORE_FILE);
        {
            // The schema before migration 5, with events written as it wrote them.
            let options = SqliteConnectOptions::from_str("sqlite://")
                .unwrap()
                .filename(&path)
                .create_if_missing(true);
            let pool = SqlitePoolOptions::new()
                .connect_with(options)
                .await
                .unwrap();
            let mut before = sqlx::migrate!("./migrations");
            before.migrations = before
                .migrations
                .iter()
                .filter(|m| m.version < 5)
                .cloned()
                .collect::<Vec<_>>()
                .into();
            before.run(&pool).await.unwrap();
            for (id, session, statement) in [
                (1, "a", Some("select 'x\"y'")),
                (2, "b", None),
                (3, "a", None),
            ] {
                sqlx::query(
                    "INSERT INTO events (id, session_id, seq, at, kind, statement, decision, detail, prev_hash, hash)
                     VALUES (?, ?, ?, '2026-01-01T00:00:00Z', 'query', ?, 'allow', '{\"k\": [1, \"two\"]}', 'p', 'h')",
                )
                .bind(id)
                .bind(session)
                .bind(if id == 3 { 2 } else { 1 })
                .bind(statement)
                .execute(&pool)
                .await
                .unwrap();
            }
            pool.close().await;
        }
        let store = SqliteStore::open_file(&path).await.unwrap();
        let events = store.events_after(0, 10).await.unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].statement.as_deref(), Some("select 'x\"y'"));
        assert_eq!(
            events[0].detail, "{\"k\": [1, \"two\"]}",
            "detail text kept byte for byte"
        );
        assert_eq!(events[0].decision.as_deref(), Some("allow"));
        assert_eq!(events[1].statement, None);
        assert_eq!(
            store
                .session_events("a")
                .await
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            [1, 3]
        );
        // The view shows an operator one row per event, as the table did.
        let rows: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT id, session_id, statement FROM events ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(rows[0], (1, "a".into(), Some("select 'x\"y'".into())));
        assert_eq!(rows.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
