//! `airlock sessions list|show`: the recorded sessions, and one session replayed event by
//! event.

use std::path::Path;
use std::process::ExitCode;

use airlock_model::{EventKind, SessionEvent, Timestamp};
use airlock_store::{ChainedEvent, SessionFilter};
use serde_json::{Value, json};

use crate::cli::{SessionOutcome, SessionsList};
use crate::context::{load_config, open_store};
use crate::output;

pub async fn list(config_path: &Path, args: SessionsList) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config).await?;
    let mut marks = airlock_model::SessionMarks::default();
    for outcome in &args.outcome {
        match outcome {
            SessionOutcome::Denied => marks.denied = true,
            SessionOutcome::Held => marks.held = true,
            SessionOutcome::Masked => marks.masked = true,
            SessionOutcome::Error => marks.error = true,
        }
    }
    let filter = SessionFilter {
        target: args.target,
        principal: args.principal,
        protocol: args.protocol,
        marks,
        limit: args.limit,
        ..SessionFilter::default()
    };
    let sessions = store.list_sessions(&filter).await?;
    if args.json {
        output::json(&sessions)?;
    } else {
        let rows: Vec<Vec<String>> = sessions
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    s.started_at.to_string(),
                    output::ts(s.ended_at),
                    s.principal.clone().unwrap_or_else(|| "(refused)".into()),
                    s.target.clone(),
                    s.client_addr.clone(),
                ]
            })
            .collect();
        output::table(
            &["ID", "STARTED", "ENDED", "PRINCIPAL", "TARGET", "CLIENT"],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn to_event(e: &ChainedEvent) -> anyhow::Result<SessionEvent> {
    Ok(SessionEvent {
        seq: e.seq,
        at: Timestamp::parse(&e.at)?,
        kind: EventKind::parse(&e.kind)
            .ok_or_else(|| anyhow::anyhow!("event {}: unknown kind `{}`", e.id, e.kind))?,
        statement: e.statement.clone(),
        decision: e.decision.clone(),
        detail: serde_json::from_str(&e.detail)?,
    })
}

pub async fn show(config_path: &Path, id: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let store = open_store(&config).await?;
    let Some(session) = store.get_session(id).await? else {
        eprintln!("no session with id `{id}` (see `airlock sessions list`)");
        return Ok(ExitCode::from(1));
    };
    let events = store
        .session_events(id)
        .await?
        .iter()
        .map(to_event)
        .collect::<anyhow::Result<Vec<_>>>()?;
    if as_json {
        let mut value = serde_json::to_value(&session)?;
        if let Value::Object(map) = &mut value {
            map.insert("events".into(), serde_json::to_value(&events)?);
        }
        output::json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("session   {}", session.id);
    println!(
        "principal {}",
        session.principal.as_deref().unwrap_or("(refused)")
    );
    println!("target    {} ({})", session.target, session.protocol);
    println!("client    {}", session.client_addr);
    println!("started   {}", session.started_at);
    println!("ended     {}", output::ts(session.ended_at));
    println!();
    for e in &events {
        println!("{}", replay_line(e));
    }
    Ok(ExitCode::SUCCESS)
}

/// One event as a replay line: seq, time, kind, decision, then the statement or the
/// detail that matters for the kind.
fn replay_line(e: &SessionEvent) -> String {
    let head = format!("{:>4}  {}  {:<15}", e.seq, e.at, e.kind.as_str());
    let decision = e
        .decision
        .as_deref()
        .map(|d| format!("[{d}] "))
        .unwrap_or_default();
    let body = match (&e.statement, e.kind) {
        (Some(s), EventKind::Bind) => format!(
            "{s}  params={}",
            e.detail.get("params").unwrap_or(&json!([]))
        ),
        (Some(s), _) => s.clone(),
        (None, EventKind::Result) => result_text(&e.detail),
        (None, _) => e.detail.to_string(),
    };
    format!("{head} {decision}{body}")
}

fn result_text(d: &Value) -> String {
    let ms = d
        .get("duration_us")
        .and_then(Value::as_u64)
        .map(|us| format!(" ({:.3} ms)", us as f64 / 1000.0))
        .unwrap_or_default();
    if let Some(err) = d.get("error") {
        let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return format!(
            "{} {}: {}{ms}",
            field("severity"),
            field("code"),
            field("message")
        );
    }
    if let Some(tag) = d.get("tag").and_then(Value::as_str) {
        return format!("{tag}{ms}");
    }
    format!("{d}{ms}")
}
