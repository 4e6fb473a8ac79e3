//! Airlock's store: tokens, sessions and the hash-chained event log behind one [`Store`]
//! trait, with two interchangeable backends that pass the same tests
//! (`tests/suite.rs`): the embedded SQLite file ([`SqliteStore`], the default) and a
//! shared PostgreSQL database ([`PgStore`]) for several gateways. The web console's
//! sign-ins and OIDC flows live here too, so that every gateway on a store sees them.

mod batch;
pub mod chains;
mod changes;
mod error;
mod marks;
mod postgres;
mod records;
mod schema;
mod sqlite;
pub mod transfer;

pub use batch::{EncodedBatch, EncodedOp};
pub use changes::{StoreChange, StoreChanges, next_change};
pub use error::StoreError;
pub use marks::event_marks;
pub use postgres::{PgEventLog, PgStore};
pub use records::{
    ChainedEvent, ConsoleFlow, ConsoleSignin, McpToolPin, SessionFilter, StoreOp, StoredSecret,
    TokenRecord,
};
pub use schema::{Migrations, SchemaVersion};
pub use sqlite::{STORE_FILE, SqliteEventLog, SqliteStore};

use airlock_model::{Approval, ApprovalStatus, SessionSummary, Timestamp};

/// The recorder's blocking ingest path, owned by one thread: copies records that the
/// recorder's journal has already made durable into the tables readers use.
pub trait EventLog: Send {
    /// Applies the session starts, events and session ends of `batches` in one
    /// transaction, in order. Either all of them are stored or none; durable only after
    /// [`EventLog::make_durable`].
    fn apply(&mut self, batches: &[EncodedBatch]) -> Result<(), StoreError>;
    /// Makes everything applied so far durable and notes that journal `segment` is
    /// fully stored, so that its file may be deleted.
    fn make_durable(&mut self, segment: u64) -> Result<(), StoreError>;
}

/// Held while a gateway records into a chain of a store (see [`Store::claim_writer`]);
/// the claim ends when it is dropped.
pub struct WriterClaim(pub Option<Box<dyn std::any::Any + Send + Sync>>);

/// Persistent state shared by the gateway and the CLI.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Adds a token; `StoreError::Duplicate` if its name exists.
    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// The token whose hash is `token_hash`, or `None`.
    async fn find_token_by_hash(&self, token_hash: &str)
    -> Result<Option<TokenRecord>, StoreError>;
    /// All tokens, by name.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Marks the named token revoked at `at`; `Ok(false)` if no such token exists.
    async fn revoke_token(&self, name: &str, at: Timestamp) -> Result<bool, StoreError>;
    /// Records that the named token was used at `at`.
    async fn touch_token(&self, name: &str, at: Timestamp) -> Result<(), StoreError>;

    /// A blocking writer for the recorder's ingest thread.
    fn event_log(&self) -> Result<Box<dyn EventLog>, StoreError>;
    /// A chain of its own for a new recording gateway ([`chains`]), or `None` when this
    /// store has a single writer, which records into chain 0 (SQLite: its data
    /// directory is locked by the one `serve` that uses it).
    async fn new_chain(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }
    /// Claims the right to extend `chain`, for as long as the returned guard lives:
    /// `airlock serve` holds it. A second gateway on the same chain (a copied
    /// `data_dir`) is refused ([`StoreError::Busy`]) rather than forking it. SQLite's
    /// is the data directory's lock (taken by `serve`), so this claims nothing more there.
    async fn claim_writer(&self, chain: i64) -> Result<WriterClaim, StoreError> {
        let _ = chain;
        Ok(WriterClaim(None))
    }
    /// The last event of `chain` (its highest id), or `None` when it has none.
    async fn chain_head(&self, chain: i64) -> Result<Option<ChainedEvent>, StoreError>;
    /// A value of the store's own settings table (e.g. the audit key's check value).
    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Every setting, by name.
    async fn all_settings(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Sets setting `name` to `value` unless it is set; returns the value it has
    /// afterwards (of two gateways starting at once, the first one's).
    async fn init_setting(&self, name: &str, value: &str) -> Result<String, StoreError>;
    /// Up to `limit` events with id greater than `after_id`, in id order (every
    /// chain's, one range after the other).
    async fn events_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<ChainedEvent>, StoreError>;

    /// Sessions matching `filter`, oldest first.
    async fn list_sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionSummary>, StoreError>;
    /// One session, or `None`.
    async fn get_session(&self, id: &str) -> Result<Option<SessionSummary>, StoreError>;
    /// The events of one session, in order.
    async fn session_events(&self, id: &str) -> Result<Vec<ChainedEvent>, StoreError>;
    /// Marks the sessions of `chain` still open as ended at `at` (after an unclean stop
    /// of the gateway that records into it); returns how many. Other gateways' open
    /// sessions are theirs (a single-writer store has only chain 0: all of them).
    async fn close_dangling_sessions(&self, chain: i64, at: Timestamp) -> Result<u64, StoreError>;

    /// Adds an approval request.
    async fn insert_approval(&self, approval: &Approval) -> Result<(), StoreError>;
    /// One approval request, or `None`.
    async fn get_approval(&self, id: &str) -> Result<Option<Approval>, StoreError>;
    /// Approval requests, newest first, optionally only those with `status`, and only
    /// those `visible_to` may see (requested by that principal, or for one of those
    /// approver groups) when it is given.
    async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        visible_to: Option<(&str, &[String])>,
        limit: i64,
    ) -> Result<Vec<Approval>, StoreError>;
    /// The newest request for exactly this statement (principal, target, digest, policy
    /// version) that is still pending, or approved and unused, and not expired at `now`.
    async fn open_approval_for(
        &self,
        principal: &str,
        target: &str,
        digest: &str,
        policy_version: &str,
        now: Timestamp,
    ) -> Result<Option<Approval>, StoreError>;
    /// Moves a pending, unexpired request to `approved` or `denied` (atomically: of two
    /// deciders one wins). Returns the request as it is afterwards and whether this
    /// call decided it.
    async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        comment: Option<&str>,
        at: Timestamp,
    ) -> Result<Option<(Approval, bool)>, StoreError>;
    /// Marks an approved, unexpired request used by `session_id` (atomically: it runs
    /// once). `Ok(false)` when it was not approved, already used or expired.
    async fn use_approval(
        &self,
        id: &str,
        session_id: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Marks every pending or unused approved request whose time is up as `expired` and
    /// returns them.
    async fn expire_approvals(&self, now: Timestamp) -> Result<Vec<Approval>, StoreError>;

    /// Adds or replaces a sealed secret (keeping its first `created_at`).
    async fn put_secret(&self, secret: &StoredSecret) -> Result<(), StoreError>;
    /// All sealed secrets, by name.
    async fn list_secrets(&self) -> Result<Vec<StoredSecret>, StoreError>;
    /// Deletes a secret; `Ok(false)` if there was none.
    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError>;
    /// The sealed key-check marker, once a master key was first used.
    async fn key_check(&self) -> Result<Option<String>, StoreError>;
    /// Sets the key-check marker (first use of a master key).
    async fn set_key_check(&self, value: &str) -> Result<(), StoreError>;
    /// Replaces every secret and the key check at once (a master key rotation).
    async fn reseal_all(&self, secrets: &[StoredSecret], key_check: &str)
    -> Result<(), StoreError>;

    /// Every MCP target's pinned tools, by target and name.
    async fn all_mcp_tools(&self) -> Result<Vec<McpToolPin>, StoreError>;
    /// The pinned tools of an MCP target, by name.
    async fn mcp_tools(&self, target: &str) -> Result<Vec<McpToolPin>, StoreError>;
    /// Pins a tool first seen, or records what its latest listing said (a change, or
    /// `listed_digest: None` once it matches its pin again). A pin is never replaced
    /// here: only [`Store::accept_mcp_tools`] moves it.
    async fn put_mcp_tool(&self, pin: &McpToolPin) -> Result<(), StoreError>;
    /// Accepts the pending changes of `target`'s tools (or of one `tool`): what was
    /// listed last becomes the pin. Returns the tools accepted.
    async fn accept_mcp_tools(
        &self,
        target: &str,
        tool: Option<&str>,
        at: Timestamp,
    ) -> Result<Vec<String>, StoreError>;

    /// Stores a console sign-in. First deletes every sign-in expired at its
    /// `created_at`, and the oldest of its principal's beyond `per_principal - 1`, so
    /// that one principal has at most `per_principal` (a script signing in over and
    /// over grows nothing but its own list, and signs nobody else out).
    async fn put_console_signin(
        &self,
        signin: &ConsoleSignin,
        per_principal: u32,
    ) -> Result<(), StoreError>;
    /// The console sign-in whose cookie hashes to `key_hash`, unless it expired by `now`.
    async fn console_signin(
        &self,
        key_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ConsoleSignin>, StoreError>;
    /// Ends a console sign-in; `Ok(false)` if there was none.
    async fn delete_console_signin(&self, key_hash: &str) -> Result<bool, StoreError>;
    /// Stores an OIDC sign-in in progress, first deleting those expired at its
    /// `created_at`; `Ok(false)` (and nothing stored) when `limit` unexpired ones are
    /// stored already.
    async fn put_console_flow(&self, flow: &ConsoleFlow, limit: u32) -> Result<bool, StoreError>;
    /// Deletes the OIDC sign-in in progress whose state hashes to `key_hash` and
    /// returns it unless it expired by `now` (atomically: of two callers, one gets it,
    /// so a flow completes once).
    async fn take_console_flow(
        &self,
        key_hash: &str,
        now: Timestamp,
    ) -> Result<Option<ConsoleFlow>, StoreError>;

    /// A feed of the changes other processes (and this one) make to approvals and
    /// tokens, where the backend announces them (PostgreSQL: `LISTEN`/`NOTIFY`), so that
    /// waiters learn of them at once instead of at their next poll. `None` where it does
    /// not (SQLite: one gateway per store; keep polling). A feed can miss announcements
    /// (it says [`StoreChange::Resync`] when it may have): it speeds polling up, it
    /// never replaces it.
    fn changes(&self) -> Option<StoreChanges> {
        None
    }
}
