//! The store's errors.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open the store at {location}: {source}")]
    Open {
        /// Where the store lives.
        location: String,
        /// The database error.
        source: sqlx::Error,
    },
    /// The lock that serialises schema migrations between processes could not be taken.
    #[error("cannot lock {location} to migrate the store: {source}")]
    Lock {
        /// The lock file.
        location: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Migrating the schema failed.
    #[error("cannot migrate the store schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique name is already taken.
    #[error("{what} `{name}` already exists")]
    Duplicate {
        /// What kind of thing.
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A stored value could not be read back (a hand-edited row, a newer schema).
    #[error("corrupt {what} in the store: {detail}")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The store's schema is older than this build's, and migrating was not asked for.
    #[error(
        "the store at {location} has schema version {found} and this airlock needs {needed}: back it up, then run `airlock store migrate` (or start once with `airlock serve --migrate`)"
    )]
    SchemaOutdated {
        /// Where the store lives.
        location: String,
        /// Its newest applied migration.
        found: i64,
        /// This build's newest.
        needed: i64,
    },
    /// The store's schema is newer than this build's.
    #[error(
        "the store at {location} has schema version {found}, newer than this airlock knows ({supported}): run the newer airlock, or upgrade this one"
    )]
    SchemaNewer {
        /// Where the store lives.
        location: String,
        /// The newest applied migration this build does not know.
        found: i64,
        /// This build's newest.
        supported: i64,
    },
    /// The store or a part of it is in use by another gateway.
    #[error("the store at {location} is in use: {why}")]
    Busy {
        /// Where the store lives.
        location: String,
        /// What to do about it.
        why: String,
    },
    /// The recorder's write path failed; nothing of the batch was stored.
    #[error("store write failed: {0}")]
    Write(String),
    /// Any other database failure.
    #[error("store query failed: {0}")]
    Database(#[from] sqlx::Error),
}
