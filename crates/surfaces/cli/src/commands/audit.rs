//! `airlock audit verify`.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use crate::context::{audit_key, load_config, open_store};
use crate::output;

pub async fn verify(config_path: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config).await?;
    let key = match audit_key(&config, false)? {
        Some(k) => k,
        None => {
            if store.chain_head().await?.is_some() {
                anyhow::bail!(
                    "events exist but the audit key ({}) is missing: the chain cannot be checked",
                    config.server.data_dir.join("audit.key").display()
                );
            }
            airlock_vault::Secret::new(String::new())
        }
    };
    let report = airlock_recorder::verify_chain(store.as_ref(), key.expose().as_bytes()).await?;
    if as_json {
        output::json(&json!({
            "ok": report.ok(),
            "events": report.events,
            "sessions": report.sessions,
            "problems": report.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }))?;
    } else if report.ok() {
        println!(
            "ok: {} events in {} sessions; the chain is intact",
            report.events, report.sessions
        );
    } else {
        println!(
            "FAILED: {} problem(s) in {} events and {} sessions:",
            report.problems.len(),
            report.events,
            report.sessions
        );
        for p in &report.problems {
            println!("  - {p}");
        }
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
