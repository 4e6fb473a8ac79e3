//! `airlock secret set|list|delete|rotate-key|gen-key`: Airlock's encrypted secret store.
//! Values are read from standard input and never printed; a running gateway picks up a
//! changed value on its next reload (SIGHUP).

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use airlock_vault::Secret;
use airlock_vault::stored::{self, MasterKey};
use anyhow::Context;
use serde_json::json;

use crate::context::{load_config, open_store};
use crate::output;

fn master_key(config: &airlock_config::Config) -> anyhow::Result<MasterKey> {
    MasterKey::configured(config)?.context(
        "no master key: set AIRLOCK_MASTER_KEY (or [secrets] master_key); `airlock secret gen-key` makes one",
    )
}

pub async fn set(config_path: &Path, name: &str) -> anyhow::Result<ExitCode> {
    if !airlock_config::valid_stored_name(name) {
        anyhow::bail!("`{name}` is not a valid secret name (1-128 letters, digits, '-', '_', '.')");
    }
    let config = load_config(config_path)?;
    let key = master_key(&config)?;
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .context("cannot read the value from standard input")?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        anyhow::bail!("the value read from standard input is empty");
    }
    let value = Secret::new(value);
    let store = open_store(&config).await?;
    stored::put(&*store, &key, name, &value).await?;
    println!(
        "stored secret `{name}`; refer to it as secret:{name} (a running gateway uses it after SIGHUP)"
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn list(config_path: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let secrets = open_store(&config).await?.list_secrets().await?;
    if as_json {
        let items: Vec<_> = secrets
            .iter()
            .map(|s| json!({ "name": s.name, "created_at": s.created_at, "updated_at": s.updated_at }))
            .collect();
        output::json(&json!({ "secrets": items }))?;
    } else if secrets.is_empty() {
        println!("no stored secrets");
    } else {
        let rows: Vec<Vec<String>> = secrets
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.created_at.to_string(),
                    s.updated_at.to_string(),
                ]
            })
            .collect();
        output::table(&["NAME", "CREATED", "UPDATED"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(config_path: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    if open_store(&config).await?.delete_secret(name).await? {
        println!("deleted secret `{name}`");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("airlock: no stored secret `{name}`");
        Ok(ExitCode::from(1))
    }
}

pub async fn rotate_key(config_path: &Path, new_key_file: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let old = master_key(&config)?;
    let text = std::fs::read_to_string(new_key_file)
        .with_context(|| format!("cannot read {}", new_key_file.display()))?;
    let new = MasterKey::from_text(&text)?;
    let store = open_store(&config).await?;
    let n = stored::rotate_key(&*store, &old, &new).await?;
    println!(
        "re-encrypted {n} secret(s) with the new key; give the gateway the new key (AIRLOCK_MASTER_KEY or [secrets] master_key) before its next start"
    );
    Ok(ExitCode::SUCCESS)
}

pub fn gen_key() -> anyhow::Result<ExitCode> {
    let (_, text) = MasterKey::generate()?;
    // The one place a key is printed: alone, for `export AIRLOCK_MASTER_KEY=$(...)`.
    println!("{}", text.expose());
    Ok(ExitCode::SUCCESS)
}
