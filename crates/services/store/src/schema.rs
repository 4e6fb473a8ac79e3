//! The store's schema version, and whether opening a store may migrate it.
//!
//! A new (empty) store is always created with the whole schema. An existing store
//! whose schema is older than this build's is migrated only when the caller says so
//! ([`Migrations::Apply`]: `airlock store migrate`, `airlock serve --migrate`), so that
//! a rolling upgrade of several replicas migrates once, on purpose, after a backup. A
//! store whose schema is newer than this build's (a replica not upgraded yet, or a
//! downgrade) is refused: this build would misread what it does not know.

use sqlx::migrate::Migrator;

use crate::StoreError;

/// What opening a store does with an older schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Applies every pending migration.
    Apply,
    /// Creates a new store, but refuses one whose schema is older
    /// ([`StoreError::SchemaOutdated`]).
    OnlyNew,
}

/// A store's schema version before and after opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The newest migration applied when the store was opened (`None`: a new store).
    pub before: Option<i64>,
    /// The newest migration applied now.
    pub now: i64,
    /// The migrations applied by this opening.
    pub applied: usize,
}

/// The newest migration `migrator` knows.
fn latest(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Decides what to do with a store whose successfully applied migrations are
/// `applied`, and runs the migrator when that is allowed: `run` applies them.
pub(crate) async fn prepare<F, Fut>(
    migrator: &Migrator,
    applied: &[i64],
    mode: Migrations,
    location: &str,
    run: F,
) -> Result<SchemaVersion, StoreError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let latest = latest(migrator);
    let before = applied.iter().copied().max();
    if let Some(unknown) = applied
        .iter()
        .copied()
        .filter(|v| !migrator.iter().any(|m| m.version == *v))
        .max()
    {
        return Err(StoreError::SchemaNewer {
            location: location.to_owned(),
            found: unknown,
            supported: latest,
        });
    }
    let pending = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .count();
    if pending == 0 {
        return Ok(SchemaVersion {
            before,
            now: before.unwrap_or(latest),
            applied: 0,
        });
    }
    if let (Some(found), Migrations::OnlyNew) = (before, mode) {
        return Err(StoreError::SchemaOutdated {
            location: location.to_owned(),
            found,
            needed: latest,
        });
    }
    run().await?;
    Ok(SchemaVersion {
        before,
        now: latest,
        applied: pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migrator() -> Migrator {
        sqlx::migrate!("./migrations")
    }

    async fn plan(applied: &[i64], mode: Migrations) -> Result<SchemaVersion, StoreError> {
        prepare(&migrator(), applied, mode, "test", || async { Ok(()) }).await
    }

    #[tokio::test]
    async fn a_new_store_is_created_in_either_mode() {
        let latest = latest(&migrator());
        for mode in [Migrations::Apply, Migrations::OnlyNew] {
            let v = plan(&[], mode).await.unwrap();
            assert_eq!((v.before, v.now), (None, latest));
            assert_eq!(v.applied, migrator().iter().count());
        }
    }

    #[tokio::test]
    async fn an_older_store_is_migrated_only_when_asked() {
        let latest = latest(&migrator());
        let older: Vec<i64> = (1..latest).collect();
        let err = plan(&older, Migrations::OnlyNew).await.unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaOutdated { found, needed, .. }
            if found == latest - 1 && needed == latest)
        );
        assert!(err.to_string().contains("airlock store migrate"), "{err}");
        let v = plan(&older, Migrations::Apply).await.unwrap();
        assert_eq!((v.before, v.now, v.applied), (Some(latest - 1), latest, 1));
        let current: Vec<i64> = (1..=latest).collect();
        let v = plan(&current, Migrations::OnlyNew).await.unwrap();
        assert_eq!(v.applied, 0);
    }

    #[tokio::test]
    async fn a_newer_store_is_refused_in_either_mode() {
        let latest = latest(&migrator());
        let newer: Vec<i64> = (1..=latest + 1).collect();
        for mode in [Migrations::Apply, Migrations::OnlyNew] {
            let err = plan(&newer, mode).await.unwrap_err();
            assert!(matches!(err, StoreError::SchemaNewer { found, .. } if found == latest + 1));
            assert!(err.to_string().contains("newer"), "{err}");
        }
    }
}
