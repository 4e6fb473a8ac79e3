//! `airlock mcp tools list|accept`: the pinned tools of MCP targets. A tool whose
//! description or schema changed upstream since it was first listed is blocked (under
//! `pin_tools = true`) until it is accepted here; running gateways read the pins from
//! the store, so an acceptance takes effect without a restart.

use std::path::Path;
use std::process::ExitCode;

use airlock_config::TargetKindConfig;
use airlock_model::Timestamp;
use anyhow::bail;
use serde_json::json;

use crate::context::{load_config, open_store};
use crate::output;

fn check_target(config: &airlock_config::Config, target: &str) -> anyhow::Result<()> {
    match config.targets.iter().find(|t| t.name() == target) {
        Some(t) if t.kind == TargetKindConfig::Mcp => Ok(()),
        Some(_) => bail!("target `{target}` is not kind = \"mcp\""),
        None => {
            let mcp: Vec<&str> = config
                .targets
                .iter()
                .filter(|t| t.kind == TargetKindConfig::Mcp)
                .map(|t| t.name())
                .collect();
            bail!(
                "no target `{target}` is configured (mcp targets: {})",
                if mcp.is_empty() {
                    "none".to_owned()
                } else {
                    mcp.join(", ")
                }
            )
        }
    }
}

pub async fn list_tools(
    config_path: &Path,
    target: &str,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    check_target(&config, target)?;
    let pins = open_store(&config).await?.mcp_tools(target).await?;
    if as_json {
        let tools: Vec<_> = pins
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "state": if p.listed_digest.is_some() { "changed" } else { "pinned" },
                    "digest": p.pinned_digest,
                    "description": p.pinned_description,
                    "listed_digest": p.listed_digest,
                    "listed_description": p.listed_description,
                    "first_seen": p.first_seen,
                    "changed_at": p.changed_at,
                    "accepted_at": p.accepted_at,
                })
            })
            .collect();
        output::json(&json!({ "target": target, "tools": tools }))?;
    } else if pins.is_empty() {
        println!(
            "no tools of `{target}` pinned yet (they are pinned at the first tools/list through Airlock)"
        );
    } else {
        let rows: Vec<Vec<String>> = pins
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    if p.listed_digest.is_some() {
                        "changed".into()
                    } else {
                        "pinned".into()
                    },
                    p.first_seen.to_string(),
                    p.listed_description
                        .clone()
                        .unwrap_or_else(|| p.pinned_description.clone())
                        .chars()
                        .take(80)
                        .collect(),
                ]
            })
            .collect();
        output::table(
            &["TOOL", "STATE", "FIRST SEEN", "DESCRIPTION (AS LISTED NOW)"],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn accept_tools(
    config_path: &Path,
    target: &str,
    tool: Option<&str>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    check_target(&config, target)?;
    let accepted = open_store(&config)
        .await?
        .accept_mcp_tools(target, tool, Timestamp::now())
        .await?;
    if as_json {
        output::json(&json!({ "target": target, "accepted": accepted }))?;
    } else if accepted.is_empty() {
        println!("no changed tools of `{target}` to accept");
    } else {
        println!(
            "accepted the changed tools of `{target}`: {} (allowed again within a second)",
            accepted.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
