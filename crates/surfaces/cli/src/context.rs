//! What commands share: the loaded configuration, the store, the audit key.

use std::path::Path;
use std::sync::Arc;

use airlock_config::Config;
use airlock_store::{Migrations, SchemaVersion, SqliteStore, Store};
use airlock_vault::Secret;
use anyhow::Context;

/// Loads and validates the configuration file.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(airlock_config::load_file(path)?)
}

/// Creates `data_dir` (owner-only) if needed.
pub fn ensure_data_dir(config: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = &config.server.data_dir;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data_dir {}", dir.display()))?;
    }
    Ok(())
}

/// Opens the store in `data_dir`, creating both if needed; a store whose schema is
/// older than this build's is refused (`airlock store migrate` migrates it).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(open_store_with(config, Migrations::OnlyNew).await?.0)
}

/// Opens the store, migrating an older schema only as `mode` allows; with the schema
/// version found and reached.
pub async fn open_store_with(
    config: &Config,
    mode: Migrations,
) -> anyhow::Result<(Arc<dyn Store>, SchemaVersion)> {
    ensure_data_dir(config)?;
    if let Some(url) = &config.store.url {
        // Several replicas share it; each keeps its own data_dir (journal, TLS).
        let password = config
            .store
            .password
            .as_ref()
            .map(airlock_vault::resolve)
            .transpose()
            .context("[store] password")?;
        let (store, version) = airlock_store::PgStore::connect_checked(
            url,
            password.as_ref().map(|p| p.expose()),
            mode,
        )
        .await
        .context("cannot open the PostgreSQL store ([store] url)")?;
        return Ok((Arc::new(store), version));
    }
    let (store, version) = SqliteStore::open_checked(
        &config.server.data_dir.join(airlock_store::STORE_FILE),
        mode,
    )
    .await?;
    Ok((Arc::new(store), version))
}

/// Opens the encrypted store's secrets that `config` needs (with its master key) and
/// puts them in force for `secret:` references. A wrong master key is an error.
pub async fn load_stored_secrets(config: &Config, store: &dyn Store) -> anyhow::Result<()> {
    airlock_vault::stored::load(store, config)
        .await
        .context("cannot open Airlock's secret store")
}

/// The audit chain's key: `[audit] key`, or `data_dir/audit.key`, generated on first use
/// when `create` is set.
pub fn audit_key(config: &Config, create: bool) -> anyhow::Result<Option<Secret>> {
    if let Some(reference) = &config.audit.key {
        return Ok(Some(airlock_vault::resolve(reference)?));
    }
    let path = config.server.data_dir.join("audit.key");
    if !path.exists() {
        if !create {
            return Ok(None);
        }
        write_private(&path, hex::encode(rand::random::<[u8; 32]>()).as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let reference = airlock_config::SecretRef::File(path);
    Ok(Some(airlock_vault::resolve(&reference)?))
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}
