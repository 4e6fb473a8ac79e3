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
            if !store.events_after(0, 1).await?.is_empty() {
                anyhow::bail!(
                    "events exist but the audit key ({}) is missing: the chain cannot be checked",
                    config.server.data_dir.join("audit.key").display()
                );
            }
            airlock_vault::Secret::new(String::new())
        }
    };
    let report = airlock_recorder::verify_chain(store.as_ref(), key.expose().as_bytes()).await?;
    warn_about_unreplayed_journal(&config.server.data_dir);
    if as_json {
        output::json(&json!({
            "ok": report.ok(),
            "events": report.events,
            "sessions": report.sessions,
            "chains": report.chains,
            "problems": report.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }))?;
    } else if report.ok() {
        println!("{}", report.summary());
    } else {
        println!("{}:", report.summary());
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

/// After an unclean stop the newest events may still be only in the recorder's journal,
/// which `airlock serve` replays into the store when it starts. Says so (on standard
/// error) when no gateway is running and journal segments are left.
fn warn_about_unreplayed_journal(data_dir: &Path) {
    let lock = data_dir.join("airlock.lock");
    let serving = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock)
        .is_ok_and(|f| f.try_lock().is_err());
    if serving {
        return;
    }
    let journal = data_dir.join("journal");
    let left = std::fs::read_dir(&journal)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.path().extension().is_some_and(|x| x == "jsonl")
                        && e.metadata().is_ok_and(|m| m.len() > 0)
                })
                .count()
        })
        .unwrap_or(0);
    if left > 0 {
        eprintln!(
            "note: {} recorder journal segment(s) in {} are not yet in the store (the gateway stopped uncleanly); `airlock serve` replays them when it starts, and until then the newest events are not checked here",
            left,
            journal.display()
        );
    }
}
