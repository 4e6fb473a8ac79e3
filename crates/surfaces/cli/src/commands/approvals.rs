//! `airlock approvals list|show`, `airlock approve`, `airlock deny`: the store directly,
//! like the other operator commands. A decision is taken as the principal of the
//! approver's token, with the same rules as the admin API (member of the request's
//! group, never one's own request); the gateway picks it up within a second.

use std::path::Path;
use std::process::ExitCode;

use airlock_approvals::{Approvals, DecideError};
use airlock_identity::Identity;
use airlock_model::{Approval, ApprovalStatus};
use airlock_vault::Secret;
use anyhow::Context;
use serde_json::json;

use crate::context::{load_config, open_store};
use crate::output;

fn parse_status(text: &str) -> anyhow::Result<Option<ApprovalStatus>> {
    if text == "all" {
        return Ok(None);
    }
    ApprovalStatus::parse(text).map(Some).with_context(|| {
        format!("unknown status `{text}`: use pending, approved, denied, expired, used or all")
    })
}

pub async fn list(config_path: &Path, args: crate::cli::ApprovalsList) -> anyhow::Result<ExitCode> {
    let status = parse_status(&args.status)?;
    if !(1..=10_000).contains(&args.limit) {
        anyhow::bail!("--limit must be between 1 and 10000");
    }
    let config = load_config(config_path)?;
    let store = open_store(&config).await?;
    // Lapsed requests are shown as expired, whether or not a gateway is running.
    Approvals::new(store.clone()).expire_due().await?;
    let approvals = store.list_approvals(status, None, args.limit).await?;
    if args.json {
        output::json(&json!({ "approvals": approvals }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if approvals.is_empty() {
        println!("no {} approval requests", args.status);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = approvals
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.status.to_string(),
                a.principal.clone(),
                a.target.clone(),
                a.approver_group.clone(),
                a.expires_at.to_string(),
                one_line(&a.statement, 60),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "STATUS",
            "PRINCIPAL",
            "TARGET",
            "GROUP",
            "EXPIRES",
            "STATEMENT",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// The statement on one line, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

pub async fn show(config_path: &Path, id: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config).await?;
    Approvals::new(store.clone()).expire_due().await?;
    let Some(a) = store.get_approval(id).await? else {
        eprintln!(
            "airlock: no approval request `{id}` exists (see `airlock approvals list --status all`)"
        );
        return Ok(ExitCode::from(1));
    };
    if as_json {
        output::json(&a)?;
    } else {
        print_approval(&a);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_approval(a: &Approval) {
    println!("id:             {}", a.id);
    println!("status:         {}", a.status);
    println!("principal:      {}", a.principal);
    println!("target:         {} ({})", a.target, a.protocol);
    println!("approver group: {}", a.approver_group);
    println!("reason:         {}", a.reason);
    println!(
        "policies:       {} (version {})",
        a.policies.join(", "),
        a.policy_version
    );
    println!("session:        {}", a.session_id);
    println!("requested:      {}", a.created_at);
    println!("expires:        {}", a.expires_at);
    if let Some(by) = &a.decided_by {
        println!("decided by:     {by} at {}", output::ts(a.decided_at));
    }
    if let Some(c) = &a.comment {
        println!("comment:        {c}");
    }
    if let Some(at) = a.used_at {
        println!(
            "used:           {at} in session {}",
            a.used_in_session.as_deref().unwrap_or("-")
        );
    }
    println!("statement:\n{}", a.statement);
    if a.params.as_array().is_some_and(|p| !p.is_empty()) {
        println!("parameters:     {}", a.params);
    }
}

pub async fn decide(
    config_path: &Path,
    id: &str,
    token: &str,
    approve: bool,
    comment: Option<String>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config).await?;
    let approver = Identity::new(store.clone())
        .authenticate(&Secret::new(token.to_owned()))
        .await
        .context("the approver's token was refused")?;
    match Approvals::new(store)
        .decide(id, &approver, approve, comment)
        .await
    {
        Ok(a) => {
            if as_json {
                output::json(&a)?;
            } else {
                let verb = if approve { "approved" } else { "denied" };
                println!(
                    "{verb} request {} of `{}` on target `{}` as `{}`",
                    a.id, a.principal, a.target, approver.name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(
            e @ (DecideError::NotFound(_)
            | DecideError::Forbidden(_)
            | DecideError::Conflict(_)
            | DecideError::Invalid(_)),
        ) => {
            eprintln!("airlock: {e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
