//! `airlock store export` and `import`: a whole store as JSON lines, to move a
//! deployment from one backend to another (SQLite to PostgreSQL) with its audit chain
//! intact.
//!
//! Written through the [`Store`] trait only, so any backend exports to any other. Events
//! keep their ids, hashes and links as recorded: `audit verify` passes on the imported
//! store with the same audit key. Sealed secrets stay sealed (the importing gateway
//! needs the same master key). The first line names the format and the last one counts
//! the lines before it, so a file cut short is told from a whole one.

use std::io::{BufRead, Write};

use airlock_model::{Approval, SessionSummary, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{
    ChainedEvent, EncodedBatch, McpToolPin, SessionFilter, Store, StoreError, StoreOp,
    StoredSecret, TokenRecord,
};

/// The `format` of the first line.
pub const FORMAT: &str = "airlock-store-export";
/// The version of the line format.
pub const VERSION: u32 = 1;
/// Events read from the source, and stored into the destination, per batch.
const PAGE: usize = 2000;

/// One line of an export: `{"record": "<kind>", ...its fields}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Line {
    /// First: what this is.
    Header {
        format: String,
        version: u32,
        exported_at: Timestamp,
    },
    /// A store setting (the audit key's check value).
    Setting { name: String, value: String },
    /// A service token (its hash).
    Token(TokenRecord),
    /// A sealed secret.
    Secret(StoredSecret),
    /// The master key's check value.
    KeyCheck { value: String },
    /// A pinned MCP tool.
    McpTool(McpToolPin),
    /// A session row (with its end).
    Session(SessionSummary),
    /// An event, as chained.
    Event(ChainedEvent),
    /// An approval request.
    Approval(Box<Approval>),
    /// Last: how many lines came before it.
    End { lines: u64 },
}

/// How many of each were exported or imported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Service tokens.
    pub tokens: u64,
    /// Sessions.
    pub sessions: u64,
    /// Events.
    pub events: u64,
    /// Approval requests.
    pub approvals: u64,
    /// Sealed secrets.
    pub secrets: u64,
    /// Pinned MCP tools.
    pub mcp_tools: u64,
    /// Settings.
    pub settings: u64,
}

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Reading or writing the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing the file.
    #[error("cannot {what} the export: {source}")]
    Io {
        /// Read or write.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The input is not an export this build reads.
    #[error("line {line} of the export: {why}")]
    Format {
        /// The line (from 1).
        line: u64,
        /// What is wrong.
        why: String,
    },
    /// The destination already holds records.
    #[error(
        "the destination store is not empty (it holds {what}): import into a new store, so that the two audit chains do not mix"
    )]
    NotEmpty {
        /// What it holds.
        what: &'static str,
    },
    /// The input ended before its last line; what was read is in the destination.
    #[error(
        "the export ends after line {lines} without its last line (cut short?): the destination holds a partial import; empty it before importing again"
    )]
    Truncated {
        /// Lines read.
        lines: u64,
    },
}

fn write_line(out: &mut (dyn Write + Send), line: &Line, n: &mut u64) -> Result<(), TransferError> {
    let io = |source| TransferError::Io {
        what: "write",
        source,
    };
    serde_json::to_writer(&mut *out, line).map_err(|e| io(e.into()))?;
    out.write_all(b"\n").map_err(io)?;
    *n += 1;
    Ok(())
}

/// Writes every record of `store` to `out`, one JSON object per line.
pub async fn export(
    store: &dyn Store,
    out: &mut (dyn Write + Send),
) -> Result<Counts, TransferError> {
    let mut n = 0;
    let mut counts = Counts::default();
    let header = Line::Header {
        format: FORMAT.into(),
        version: VERSION,
        exported_at: Timestamp::now(),
    };
    write_line(out, &header, &mut n)?;
    for (name, value) in store.all_settings().await? {
        write_line(out, &Line::Setting { name, value }, &mut n)?;
        counts.settings += 1;
    }
    for t in store.list_tokens().await? {
        write_line(out, &Line::Token(t), &mut n)?;
        counts.tokens += 1;
    }
    for s in store.list_secrets().await? {
        write_line(out, &Line::Secret(s), &mut n)?;
        counts.secrets += 1;
    }
    if let Some(value) = store.key_check().await? {
        write_line(out, &Line::KeyCheck { value }, &mut n)?;
    }
    for t in store.all_mcp_tools().await? {
        write_line(out, &Line::McpTool(t), &mut n)?;
        counts.mcp_tools += 1;
    }
    // Sessions before their events: an importer stores a session's row first.
    for s in store.list_sessions(&SessionFilter::default()).await? {
        write_line(out, &Line::Session(s), &mut n)?;
        counts.sessions += 1;
    }
    let mut after = 0;
    loop {
        let page = store.events_after(after, PAGE as i64).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for e in page {
            write_line(out, &Line::Event(e), &mut n)?;
            counts.events += 1;
        }
    }
    for a in store.list_approvals(None, None, -1).await? {
        write_line(out, &Line::Approval(Box::new(a)), &mut n)?;
        counts.approvals += 1;
    }
    write_line(out, &Line::End { lines: n }, &mut n)?;
    out.flush().map_err(|source| TransferError::Io {
        what: "write",
        source,
    })?;
    Ok(counts)
}

/// Refuses a destination that holds anything an import would mix with.
async fn ensure_empty(store: &dyn Store) -> Result<(), TransferError> {
    let sessions = store
        .list_sessions(&SessionFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await?;
    let what = if !store.events_after(0, 1).await?.is_empty() {
        Some("events")
    } else if !sessions.is_empty() {
        Some("sessions")
    } else if !store.list_tokens().await?.is_empty() {
        Some("tokens")
    } else if !store.list_approvals(None, None, 1).await?.is_empty() {
        Some("approval requests")
    } else if !store.list_secrets().await?.is_empty() {
        Some("secrets")
    } else {
        None
    };
    match what {
        Some(what) => Err(TransferError::NotEmpty { what }),
        None => Ok(()),
    }
}

/// Stores `ops` through the store's event log, off the runtime (a log may block).
async fn store_ops(store: &dyn Store, ops: &mut Vec<StoreOp>) -> Result<(), TransferError> {
    if ops.is_empty() {
        return Ok(());
    }
    let batch = EncodedBatch::encode(std::mem::take(ops))?;
    let mut log = store.event_log()?;
    tokio::task::spawn_blocking(move || {
        log.apply(&[batch])?;
        log.make_durable(0)
    })
    .await
    .map_err(|e| StoreError::Write(format!("the import's writer stopped: {e}")))??;
    Ok(())
}

/// Reads an export from `input` into `store`, which must be empty.
pub async fn import(
    store: &dyn Store,
    input: &mut (dyn BufRead + Send),
) -> Result<Counts, TransferError> {
    ensure_empty(store).await?;
    let mut counts = Counts::default();
    let mut ops: Vec<StoreOp> = Vec::with_capacity(PAGE);
    let mut n: u64 = 0;
    let mut text = String::new();
    loop {
        text.clear();
        let read = input
            .read_line(&mut text)
            .map_err(|source| TransferError::Io {
                what: "read",
                source,
            })?;
        if read == 0 {
            store_ops(store, &mut ops).await?;
            return Err(TransferError::Truncated { lines: n });
        }
        n += 1;
        let line: Line =
            serde_json::from_str(text.trim_end()).map_err(|e| TransferError::Format {
                line: n,
                why: e.to_string(),
            })?;
        let format_error = |why: String| TransferError::Format { line: n, why };
        match line {
            Line::Header {
                format, version, ..
            } => {
                if n != 1 || format != FORMAT || version != VERSION {
                    return Err(format_error(format!(
                        "expected the header of {FORMAT} version {VERSION} on line 1 only"
                    )));
                }
            }
            _ if n == 1 => {
                return Err(format_error(format!(
                    "not an {FORMAT} file: it does not start with its header"
                )));
            }
            Line::Setting { name, value } => {
                store.init_setting(&name, &value).await?;
                counts.settings += 1;
            }
            Line::Token(t) => {
                store.insert_token(&t).await?;
                if let Some(at) = t.last_used_at {
                    store.touch_token(&t.name, at).await?;
                }
                if let Some(at) = t.revoked_at {
                    store.revoke_token(&t.name, at).await?;
                }
                counts.tokens += 1;
            }
            Line::Secret(s) => {
                store.put_secret(&s).await?;
                counts.secrets += 1;
            }
            Line::KeyCheck { value } => store.set_key_check(&value).await?,
            Line::McpTool(t) => {
                store.put_mcp_tool(&t).await?;
                counts.mcp_tools += 1;
            }
            Line::Session(s) => {
                ops.push(StoreOp::StartSession(s));
                counts.sessions += 1;
            }
            Line::Event(e) => {
                ops.push(StoreOp::Event(e));
                counts.events += 1;
            }
            Line::Approval(a) => {
                store_ops(store, &mut ops).await?;
                store.insert_approval(&a).await?;
                counts.approvals += 1;
            }
            Line::End { lines } => {
                store_ops(store, &mut ops).await?;
                if lines != n - 1 {
                    return Err(format_error(format!(
                        "the last line counts {lines} lines before it, but {} came",
                        n - 1
                    )));
                }
                return Ok(counts);
            }
        }
        if ops.len() >= PAGE {
            store_ops(store, &mut ops).await?;
        }
    }
}
