//! `airlock store`: migrate the store's schema, export it, import an export.

use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use airlock_store::Migrations;
use airlock_store::transfer::{self, Counts};
use anyhow::Context;
use serde_json::json;

use crate::context::{load_config, open_store, open_store_with};
use crate::output;

/// `store migrate`: applies the migrations the store lacks.
pub async fn migrate(config_path: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let (_, v) = open_store_with(&config, Migrations::Apply).await?;
    if as_json {
        output::json(&json!({ "from": v.before, "to": v.now, "applied": v.applied }))?;
    } else if v.applied == 0 {
        println!("the store's schema is up to date (version {})", v.now);
    } else {
        match v.before {
            Some(before) => println!(
                "migrated the store's schema from version {before} to {} ({} migration(s))",
                v.now, v.applied
            ),
            None => println!("created the store's schema (version {})", v.now),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(verb: &str, c: &Counts) -> String {
    format!(
        "{verb} {} sessions, {} events, {} tokens, {} approval requests, {} secrets, {} MCP tool pins",
        c.sessions, c.events, c.tokens, c.approvals, c.secrets, c.mcp_tools
    )
}

/// `store export --output FILE|-`.
pub async fn export(config_path: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config).await?;
    let counts = if output == Path::new("-") {
        let mut out = BufWriter::new(std::io::stdout());
        transfer::export(&*store, &mut out).await?
    } else {
        // Owner-only: the export holds token hashes and sealed secrets.
        let file = create_private(output)
            .with_context(|| format!("cannot create {}", output.display()))?;
        let mut out = BufWriter::new(file);
        let counts = transfer::export(&*store, &mut out).await?;
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot write {}", output.display()))?;
        counts
    };
    // On standard error: standard output may be the export itself.
    eprintln!("{}", summary("exported", &counts));
    Ok(ExitCode::SUCCESS)
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// `store import --input FILE|-`.
pub async fn import(config_path: &Path, input: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config).await?;
    let counts = if input == Path::new("-") {
        let mut reader = BufReader::new(std::io::stdin());
        transfer::import(&*store, &mut reader).await?
    } else {
        let file = std::fs::File::open(input)
            .with_context(|| format!("cannot open {}", input.display()))?;
        transfer::import(&*store, &mut BufReader::new(file)).await?
    };
    let mut err = std::io::stderr();
    let _ = writeln!(err, "{}", summary("imported", &counts));
    let _ = writeln!(
        err,
        "check the chain with `airlock audit verify` (it needs the audit key the events were recorded with)"
    );
    Ok(ExitCode::SUCCESS)
}
