//! The PostgreSQL backend: the same tables as the SQLite store (timestamps as RFC 3339
//! text, JSON as text) on a shared server, so that several gateways can use one store.
//! Events are one row per event here (the `events` table); see [`PgEventLog`] for the
//! recorder's ingest path.
//!
//! Deciding or expiring an approval, and adding or revoking a token, are announced to
//! the other processes on the store (`NOTIFY`, see [`changes`]); [`Store::changes`]
//! listens.
//!
//! The password is given apart from the URL and never appears in an error or a log
//! line: errors name the server as `postgres://user@host:port/database`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use airlock_model::{Approval, ApprovalStatus, SessionMarks, SessionSummary, Timestamp};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use crate::schema::{self, Migrations, SchemaVersion};
use crate::sqlite::{parse_opt_ts, parse_ts};
use crate::{
    ChainedEvent, EventLog, McpToolPin, SessionFilter, Store, StoreError, StoredSecret,
    TokenRecord, chains,
};

mod approvals;
mod changes;
mod console;
mod event_log;
mod mcp_tools;
mod secrets;
mod writer_claim;
pub use event_log::PgEventLog;

/// Connections in a store's pool.
const POOL_SIZE: u32 = 8;
/// How long a query waits for a free connection (or a new one) before it fails. While
/// the store is down every query waits this long (sqlx retries a refused connection
/// until then) before the gateway refuses what needed it: short enough that an agent
/// gets a clear error promptly, long enough to ride out a busy pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The first key of the advisory lock a recording gateway holds on its chain ("alkc"
/// in ASCII); the second is the chain's number (see `writer_claim`).
const WRITER_LOCK: i32 = 0x616c_6b63;

/// PostgreSQL-backed [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Connect options (with the password), for the recorder's own connection.
    options: PgConnectOptions,
    /// The server and database, without the password, for errors.
    location: String,
    /// Change announcements, shared by the clones.
    announcer: Arc<changes::Announcer>,
    /// Whether this process holds the writer lock, shared by the clones, the claim and
    /// the recorder's writer.
    writer: Arc<writer_claim::Holder>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not derived: the connect options hold the password.
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// `url` without its password (in the user part or a `password=` parameter), for an
/// error about a URL that could not be parsed.
fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let at = rest + at;
            if let Some(colon) = out[rest..at].find(':') {
                out.replace_range(rest + colon + 1..at, "***");
            }
        }
    }
    if let Some(query) = out.find('?') {
        let (head, params) = out.split_at(query + 1);
        let params: Vec<String> = params
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
}

/// Where `options` point, without the password.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    )
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/database`, with
    /// any libpq-style parameters sqlx accepts), with `password` when given (it wins
    /// over one in the URL), and applies pending migrations. Several processes may
    /// connect at once: the migrator holds an advisory lock.
    pub async fn connect(url: &str, password: Option<&str>) -> Result<PgStore, StoreError> {
        Ok(Self::connect_checked(url, password, Migrations::Apply)
            .await?
            .0)
    }

    /// Connects like [`PgStore::connect`]; an older schema is migrated only as `mode`
    /// allows (see [`crate::schema`]). Replicas starting at once are safe: the
    /// migrator holds an advisory lock while it migrates.
    pub async fn connect_checked(
        url: &str,
        password: Option<&str>,
        mode: Migrations,
    ) -> Result<(PgStore, SchemaVersion), StoreError> {
        let mut options = PgConnectOptions::from_str(url).map_err(|source| StoreError::Open {
            location: redact(url),
            source,
        })?;
        if let Some(password) = password {
            options = options.password(password);
        }
        let location = describe(&options);
        // A pooled connection is checked before use: after a store restart the broken
        // ones are replaced rather than handed out.
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(true)
            .connect_with(options.clone())
            .await
            .map_err(|source| StoreError::Open {
                location: location.clone(),
                source,
            })?;
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&pool)
                .await?;
        let applied: Vec<i64> = if has_table {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&pool)
                .await?
        } else {
            Vec::new()
        };
        let migrator = sqlx::migrate!("./migrations_pg");
        let version = schema::prepare(&migrator, &applied, mode, &location, || async {
            migrator.run(&pool).await.map_err(StoreError::from)
        })
        .await?;
        let announcer = Arc::new(changes::Announcer::new(options.clone(), location.clone()));
        Ok((
            PgStore {
                pool,
                options,
                location,
                announcer,
                writer: Arc::default(),
            },
            version,
        ))
    }
}

/// `StoreError::Duplicate` for a unique violation, the database error otherwise.
fn unique(result: sqlx::Error, what: &'static str, name: &str) -> StoreError {
    match result {
        sqlx::Error::Database(e) if e.is_unique_violation() => StoreError::Duplicate {
            what,
            name: name.to_owned(),
        },
        other => StoreError::from(other),
    }
}

/// A `LIMIT` as SQLite reads it: a negative limit is no limit (`LIMIT NULL` here).
fn limit(n: i64) -> Option<i64> {
    (n >= 0).then_some(n)
}

fn token_from_row(row: &PgRow) -> Result<TokenRecord, StoreError> {
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

fn session_from_row(row: &PgRow) -> Result<SessionSummary, StoreError> {
    Ok(SessionSummary {
        id: row.try_get("id")?,
        principal: row.try_get("principal")?,
        target: row.try_get("target")?,
        protocol: row.try_get("protocol")?,
        client_addr: row.try_get("client_addr")?,
        started_at: parse_ts("session", &row.try_get::<String, _>("started_at")?)?,
        ended_at: parse_opt_ts("session", row.try_get("ended_at")?)?,
        marks: SessionMarks {
            denied: row.try_get("denied")?,
            held: row.try_get("held")?,
            masked: row.try_get("masked")?,
            error: row.try_get("error")?,
        },
    })
}

fn event_from_row(row: &PgRow) -> Result<ChainedEvent, StoreError> {
    Ok(ChainedEvent {
        id: row.try_get("id")?,
        session_id: row.try_get("session_id")?,
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        kind: row.try_get("kind")?,
        statement: row.try_get("statement")?,
        decision: row.try_get("decision")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

macro_rules! session_columns {
    () => {
        "id, principal, target, protocol, client_addr, started_at, ended_at, denied, held, masked, error"
    };
}

macro_rules! event_columns {
    () => {
        "id, session_id, seq, at, kind, statement, decision, detail, prev_hash, hash"
    };
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let groups = serde_json::to_string(&token.groups).map_err(|e| StoreError::Corrupt {
            what: "token groups",
            detail: e.to_string(),
        })?;
        // Announced in the same statement: sent when (and only if) it commits.
        sqlx::query(
            "WITH added AS (
                INSERT INTO tokens (name, token_hash, groups, created_at, expires_at, revoked_at, last_used_at)
                VALUES ($1, $2, $3, $4, $5, NULL, NULL)
                RETURNING name)
             SELECT pg_notify($6, $7) FROM added",
        )
        .bind(&token.name)
        .bind(&token.token_hash)
        .bind(groups)
        .bind(token.created_at.to_string())
        .bind(token.expires_at.map(|t| t.to_string()))
        .bind(changes::CHANNEL)
        .bind(changes::TOKENS_PAYLOAD)
        .execute(&self.pool)
        .await
        .map_err(|e| unique(e, "token", &token.name))?;
        Ok(())
    }

    async fn find_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM tokens WHERE token_hash = $1")
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
        // PostgreSQL returns the rows matched, changed or not: a token revoked before
        // keeps its first revocation time and still counts as found. Announced in the
        // same statement.
        let found = sqlx::query(
            "WITH revoked AS (
                UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE name = $2
                RETURNING name)
             SELECT pg_notify($3, $4) FROM revoked",
        )
        .bind(at.to_string())
        .bind(name)
        .bind(changes::CHANNEL)
        .bind(changes::TOKENS_PAYLOAD)
        .fetch_all(&self.pool)
        .await?;
        Ok(!found.is_empty())
    }

    async fn touch_token(&self, name: &str, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE name = $2")
            .bind(at.to_string())
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn new_chain(&self) -> Result<Option<i64>, StoreError> {
        // The sequence never hands a number out twice; a chain imported from another
        // store (`airlock store import`) may own a number it has not reached yet, so
        // numbers whose range already holds events are skipped.
        loop {
            let chain: i64 = sqlx::query_scalar("SELECT nextval('recorder_chains')")
                .fetch_one(&self.pool)
                .await?;
            let used: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM events WHERE id >= $1 AND id < $2)",
            )
            .bind(chains::first_id(chain))
            .bind(chains::end_id(chain))
            .fetch_one(&self.pool)
            .await?;
            if chain > chains::MAX_CHAIN {
                return Err(StoreError::Busy {
                    location: self.location.clone(),
                    why: format!(
                        "every chain number up to {} is taken (recorder_chains)",
                        chains::MAX_CHAIN
                    ),
                });
            }
            if !used {
                return Ok(Some(chain));
            }
        }
    }

    async fn claim_writer(&self, chain: i64) -> Result<crate::WriterClaim, StoreError> {
        writer_claim::claim(&self.options, &self.location, &self.writer, chain).await
    }

    fn event_log(&self) -> Result<Box<dyn EventLog>, StoreError> {
        // Connects on first use, on the ingest thread (not inside this runtime).
        Ok(Box::new(PgEventLog::new(
            self.options.clone(),
            self.location.clone(),
            self.writer.clone(),
        )))
    }

    async fn chain_head(&self, chain: i64) -> Result<Option<ChainedEvent>, StoreError> {
        let sql = concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE id >= $1 AND id < $2 ORDER BY id DESC LIMIT 1"
        );
        let row = sqlx::query(sql)
            .bind(chains::first_id(chain))
            .bind(chains::end_id(chain))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(event_from_row).transpose()
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
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
        let stored: Option<String> = sqlx::query_scalar(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING value",
        )
        .bind(name)
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        match stored {
            Some(v) => Ok(v),
            None => self
                .setting(name)
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    what: "setting",
                    detail: format!("setting {name} vanished as it was set"),
                }),
        }
    }

    async fn events_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<ChainedEvent>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let sql = concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE id > $1 ORDER BY id LIMIT $2"
        );
        let rows = sqlx::query(sql)
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn list_sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionSummary>, StoreError> {
        let mut q = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE true"
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
                q.push(format_args!(" AND {column}"));
            }
        }
        if let Some(id) = &filter.before {
            // A row-value comparison the (…, started_at, id) indexes answer by seeking;
            // an unknown id compares as NULL, so it lists nothing (as in SQLite).
            q.push(" AND (started_at, id) < (SELECT started_at, id FROM sessions WHERE id = ")
                .push_bind(id.clone())
                .push(")");
        }
        q.push(" ORDER BY started_at DESC, id DESC");
        if let Some(n) = filter.limit {
            q.push(" LIMIT ").push_bind(limit(n));
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
        let sql = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = $1"
        );
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn session_events(&self, id: &str) -> Result<Vec<ChainedEvent>, StoreError> {
        let sql = concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE session_id = $1 ORDER BY seq, id"
        );
        let rows = sqlx::query(sql).bind(id).fetch_all(&self.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn close_dangling_sessions(&self, chain: i64, at: Timestamp) -> Result<u64, StoreError> {
        // Only the sessions whose events are in `chain` (and those that recorded
        // nothing at all): the other replicas' open sessions are theirs. A session's
        // start and first event are stored in one batch.
        let r = sqlx::query(
            "UPDATE sessions s SET ended_at = $1 WHERE ended_at IS NULL AND (
               EXISTS (SELECT 1 FROM events e WHERE e.session_id = s.id AND e.id >= $2 AND e.id < $3)
               OR NOT EXISTS (SELECT 1 FROM events e WHERE e.session_id = s.id))",
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

    async fn put_secret(&self, secret: &StoredSecret) -> Result<(), StoreError> {
        secrets::put(&self.pool, secret).await
    }

    async fn list_secrets(&self) -> Result<Vec<StoredSecret>, StoreError> {
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

    async fn reseal_all(&self, all: &[StoredSecret], key_check: &str) -> Result<(), StoreError> {
        secrets::reseal_all(&self.pool, all, key_check).await
    }

    async fn all_mcp_tools(&self) -> Result<Vec<crate::McpToolPin>, StoreError> {
        mcp_tools::list_all(&self.pool).await
    }

    async fn mcp_tools(&self, target: &str) -> Result<Vec<McpToolPin>, StoreError> {
        mcp_tools::list(&self.pool, target).await
    }

    async fn put_mcp_tool(&self, pin: &McpToolPin) -> Result<(), StoreError> {
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

    fn changes(&self) -> Option<crate::StoreChanges> {
        self.announcer.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_cut_out_of_urls() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/airlock?sslmode=require"),
            "postgres://app:***@db:5432/airlock?sslmode=require"
        );
        assert_eq!(
            redact("postgres://app@db/airlock?password=s3cret&sslmode=require"),
            "postgres://app@db/airlock?password=***&sslmode=require"
        );
        assert_eq!(redact("postgres://db/airlock"), "postgres://db/airlock");
        assert_eq!(
            redact("postgres://a:b@c:d@host/x"),
            "postgres://a:***@host/x"
        );
    }
}
