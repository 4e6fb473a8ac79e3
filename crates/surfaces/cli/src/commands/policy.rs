//! `airlock policy schema|check|explain|replay`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use airlock_engine::policy::{FunctionCatalog, NoCatalog, PolicyEngine, describe};
use airlock_engine::sql::{Classifier, ParseOptions};
use airlock_model::{
    Action, Principal, PrincipalSource, TargetKind, TargetRef, Timestamp, Verdict,
};
use airlock_session::Runtime;
use serde_json::{Value, json};

use crate::cli::PolicyExplain;
use crate::context::{load_config, open_store};
use crate::output;

pub fn schema() -> anyhow::Result<ExitCode> {
    print!("{}", airlock_engine::policy::schema_text());
    Ok(ExitCode::SUCCESS)
}

fn engine(config_path: &Path, path: Option<&Path>) -> anyhow::Result<PolicyEngine> {
    let path = match path {
        Some(p) => p.to_owned(),
        None => {
            let config = load_config(config_path)?;
            config.policy.map(|p| p.path).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: no [policy] section; nothing is permitted until one is added",
                    config_path.display()
                )
            })?
        }
    };
    Ok(PolicyEngine::load(&path)?)
}

pub fn check(config_path: &Path, path: Option<&Path>) -> anyhow::Result<ExitCode> {
    match engine(config_path, path) {
        Ok(e) => {
            println!("ok: {} policies, version {}", e.len(), e.version());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

fn verdict_json(v: &Verdict) -> Value {
    let mut j = json!({ "decision": v.decision.label(), "policies": v.policies });
    if let airlock_model::Decision::Deny { reason } | airlock_model::Decision::Hold { reason, .. } =
        &v.decision
    {
        j["reason"] = json!(reason);
    }
    if let airlock_model::Decision::Hold { group, .. } = &v.decision {
        j["approver_group"] = json!(group);
    }
    if let Some(o) = &v.observed {
        j["observed"] = json!(o.label());
    }
    j
}

pub async fn explain(config_path: &Path, args: PolicyExplain) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let engine = engine(config_path, None)?;
    let principal = Principal {
        name: args.principal.clone(),
        groups: args.groups.clone(),
        source: PrincipalSource::ServiceToken,
        expires_at: None,
    };
    let target = TargetRef {
        name: args.target.clone(),
        kind: TargetKind::Postgres,
    };
    // Function volatility comes from the target's catalog when it can be reached.
    let mut catalog_note = "functions: volatility unknown (offline)".to_owned();
    let mut catalog: Arc<dyn FunctionCatalog> = Arc::new(NoCatalog);
    if !args.offline {
        if let Ok(store) = crate::context::open_store(&config).await {
            let _ = crate::context::load_stored_secrets(&config, &*store).await;
        }
        match Runtime::build(config.clone())
            .ok()
            .and_then(|r| r.target(&args.target))
        {
            Some(t) => match airlock_postgres::load_catalog(&t).await {
                Ok(c) => {
                    catalog_note = format!(
                        "functions: volatility from the target's catalog ({} names)",
                        c.len()
                    );
                    catalog = Arc::new(c);
                }
                Err(e) => {
                    catalog_note =
                        format!("functions: volatility unknown (target unreachable: {e})")
                }
            },
            None => {
                catalog_note = format!(
                    "functions: volatility unknown (no target \"{}\" or its secret is missing)",
                    args.target
                )
            }
        }
    }
    let options = ParseOptions {
        standard_conforming_strings: !args.no_standard_conforming_strings,
    };
    let statements = match Classifier::new().classify(&args.sql, options) {
        Ok(s) => s,
        Err(e) => {
            if args.json {
                output::json(
                    &json!({ "decision": "deny", "reason": format!("the statement could not be parsed: {e}") }),
                )?;
            } else {
                println!("deny: the statement could not be parsed, so it would not run: {e}");
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let mut all = Vec::new();
    let mut per_statement = Vec::new();
    for st in &statements {
        let actions: Vec<Action> = st.actions.iter().cloned().map(Action::Sql).collect();
        let per_action: Vec<Value> = actions
            .iter()
            .map(|a| {
                let v = engine.decide(&principal, &target, a, catalog.as_ref());
                json!({ "action": describe(a, &target), "verdict": verdict_json(&v) })
            })
            .collect();
        per_statement.push(json!({ "statement": st.text, "kind": st.kind, "actions": per_action }));
        all.extend(actions);
    }
    let verdict = engine.decide_all(&principal, &target, &all, catalog.as_ref());
    if args.json {
        output::json(&json!({
            "statements": per_statement,
            "verdict": verdict_json(&verdict),
            "policy_version": engine.version(),
            "catalog": catalog_note,
        }))?;
    } else {
        for st in &per_statement {
            println!("statement: {}", st["statement"].as_str().unwrap_or(""));
            for a in st["actions"].as_array().into_iter().flatten() {
                let v = &a["verdict"];
                let by = v["policies"].as_array().filter(|p| !p.is_empty()).map(|p| {
                    format!(
                        " (by {})",
                        p.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
                println!(
                    "  {:<6} {}{}",
                    v["decision"].as_str().unwrap_or(""),
                    a["action"].as_str().unwrap_or(""),
                    by.unwrap_or_default()
                );
            }
        }
        println!("decision: {}", verdict.decision.label());
        if let airlock_model::Decision::Deny { reason }
        | airlock_model::Decision::Hold { reason, .. } = &verdict.decision
        {
            println!("reason: {reason}");
        }
        println!("{catalog_note}; policy version {}", engine.version());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn replay(
    config_path: &Path,
    since: std::time::Duration,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let engine = engine(config_path, None)?;
    let store = open_store(&config).await?;
    let cutoff = Timestamp::now().datetime() - time_duration(since);
    let classifier = Classifier::new();
    // Function volatility from each target's catalog, as the gateway decided with it.
    let _ = crate::context::load_stored_secrets(&config, &*store).await;
    let runtime = Runtime::build(config.clone()).ok();
    let mut catalogs: std::collections::HashMap<String, Arc<dyn FunctionCatalog>> =
        std::collections::HashMap::new();
    let mut changes = Vec::new();
    let mut checked = 0u64;
    for session in store.list_sessions(&Default::default()).await? {
        if session.started_at.datetime() < cutoff
            && session.ended_at.is_some_and(|e| e.datetime() < cutoff)
        {
            continue;
        }
        let Some(name) = session.principal.clone() else {
            continue;
        };
        let events = store.session_events(&session.id).await?;
        let groups: Vec<String> = events
            .iter()
            .find(|e| e.kind == "connect")
            .and_then(|e| serde_json::from_str::<Value>(&e.detail).ok())
            .and_then(|d| d.get("groups").cloned())
            .and_then(|g| serde_json::from_value(g).ok())
            .unwrap_or_default();
        let principal = Principal {
            name,
            groups,
            source: PrincipalSource::ServiceToken,
            expires_at: None,
        };
        let target = TargetRef {
            name: session.target.clone(),
            kind: TargetKind::Postgres,
        };
        if !catalogs.contains_key(&target.name) {
            let loaded: Arc<dyn FunctionCatalog> =
                match runtime.as_ref().and_then(|r| r.target(&target.name)) {
                    Some(t) => match airlock_postgres::load_catalog(&t).await {
                        Ok(c) => Arc::new(c),
                        Err(_) => Arc::new(NoCatalog),
                    },
                    None => Arc::new(NoCatalog),
                };
            catalogs.insert(target.name.clone(), loaded);
        }
        let catalog = catalogs
            .get(&target.name)
            .cloned()
            .unwrap_or_else(|| Arc::new(NoCatalog));
        for e in events
            .iter()
            .filter(|e| matches!(e.kind.as_str(), "query" | "parse"))
        {
            let (Some(text), Some(recorded)) = (&e.statement, &e.decision) else {
                continue;
            };
            if Timestamp::parse(&e.at)
                .map(|t| t.datetime() < cutoff)
                .unwrap_or(false)
            {
                continue;
            }
            checked += 1;
            let now = match classifier.classify(text, ParseOptions::default()) {
                Ok(st) => {
                    let actions: Vec<Action> = st
                        .into_iter()
                        .flat_map(|s| s.actions)
                        .map(Action::Sql)
                        .collect();
                    engine.decide_all(&principal, &target, &actions, catalog.as_ref())
                }
                Err(_) => continue,
            };
            if now.decision.label() != recorded {
                changes.push(json!({
                    "session": session.id, "seq": e.seq, "at": e.at, "principal": principal.name,
                    "target": target.name, "statement": text, "recorded": recorded, "now": verdict_json(&now),
                }));
            }
        }
    }
    if as_json {
        output::json(
            &json!({ "checked": checked, "changed": changes, "policy_version": engine.version() }),
        )?;
    } else {
        println!(
            "{checked} recorded statements re-decided with policy version {}; {} would now be decided differently",
            engine.version(),
            changes.len()
        );
        for c in &changes {
            println!(
                "  {} seq {} {}: {} -> {}  {}",
                c["session"].as_str().unwrap_or(""),
                c["seq"],
                c["principal"].as_str().unwrap_or(""),
                c["recorded"].as_str().unwrap_or(""),
                c["now"]["decision"].as_str().unwrap_or(""),
                c["statement"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn time_duration(d: std::time::Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}
