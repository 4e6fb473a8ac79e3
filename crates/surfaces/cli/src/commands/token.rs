//! `airlock token create|list|revoke`.

use std::path::Path;
use std::process::ExitCode;

use airlock_identity::Identity;
use airlock_model::Timestamp;
use serde_json::json;

use crate::context::{load_config, open_store};
use crate::output;

pub async fn create(config_path: &Path, args: crate::cli::TokenCreate) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let identity = Identity::new(open_store(&config).await?);
    let minted = identity.mint(&args.name, &args.groups, args.ttl).await?;
    let groups = if args.groups.is_empty() {
        "none".to_string()
    } else {
        args.groups.join(", ")
    };
    println!(
        "created token `{}` (groups: {groups}; expires: {}). It is shown once; store it now:",
        minted.record.name,
        expiry(minted.record.expires_at)
    );
    // The one place a token value is printed: alone on the last line, for scripts.
    println!("{}", minted.token.expose());
    Ok(ExitCode::SUCCESS)
}

fn expiry(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "never".into())
}

pub async fn list(config_path: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tokens = open_store(&config).await?.list_tokens().await?;
    let now = Timestamp::now();
    let status = |t: &airlock_store::TokenRecord| {
        if t.revoked_at.is_some() {
            "revoked"
        } else if t.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        }
    };
    if as_json {
        let items: Vec<_> = tokens
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "groups": t.groups,
                    "created_at": t.created_at,
                    "expires_at": t.expires_at,
                    "revoked_at": t.revoked_at,
                    "last_used_at": t.last_used_at,
                    "status": status(t),
                })
            })
            .collect();
        output::json(&items)?;
    } else {
        let rows: Vec<Vec<String>> = tokens
            .iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    t.groups.join(","),
                    status(t).to_string(),
                    t.created_at.to_string(),
                    expiry(t.expires_at),
                    output::ts(t.last_used_at),
                ]
            })
            .collect();
        output::table(
            &[
                "NAME",
                "GROUPS",
                "STATUS",
                "CREATED",
                "EXPIRES",
                "LAST USED",
            ],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke(config_path: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    if open_store(&config)
        .await?
        .revoke_token(name, Timestamp::now())
        .await?
    {
        println!("revoked token `{name}`: new connections with it are refused");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("no token named `{name}` (see `airlock token list`)");
        Ok(ExitCode::from(1))
    }
}
