//! Tool pinning: the first listing of a target's tools fixes each tool's fingerprint
//! (description and schemas); a later listing that differs is a change, recorded, and
//! under `pin_tools` the changed tool is hidden and its calls denied, in every session,
//! until an operator accepts the change (`airlock mcp tools accept`).
//!
//! The pins live in the store, so that they survive restarts, are shared by replicas,
//! and an acceptance by the CLI (another process) takes effect without a restart: each
//! target's pins are re-read from the store at most once a second, when a request needs
//! them. Listings are compared in memory (answers are rewritten synchronously as they
//! stream) and what they found is written back in the background.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_engine::mcp::tools::ToolPrint;
use airlock_model::Timestamp;
use airlock_store::{McpToolPin, Store};

/// How long a target's pins read from the store are used before being read again.
const FRESH: Duration = Duration::from_secs(1);

#[derive(Default)]
struct TargetPins {
    pins: HashMap<String, McpToolPin>,
    loaded: Option<Instant>,
}

/// The pinned tools of every MCP target.
#[derive(Default)]
pub struct ToolPins {
    store: Option<Arc<dyn Store>>,
    targets: Mutex<HashMap<String, TargetPins>>,
}

impl ToolPins {
    /// Pins kept in `store`.
    pub fn with_store(store: Arc<dyn Store>) -> Self {
        ToolPins {
            store: Some(store),
            targets: Mutex::default(),
        }
    }

    /// Re-reads `target`'s pins from the store unless they were read within [`FRESH`].
    pub async fn refresh(&self, target: &str) {
        let Some(store) = &self.store else {
            return;
        };
        let fresh = self
            .targets
            .lock()
            .ok()
            .and_then(|t| t.get(target).and_then(|p| p.loaded))
            .is_some_and(|at| at.elapsed() < FRESH);
        if fresh {
            return;
        }
        match store.mcp_tools(target).await {
            Ok(rows) => {
                if let Ok(mut targets) = self.targets.lock() {
                    let entry = targets.entry(target.to_owned()).or_default();
                    entry.pins = rows.into_iter().map(|p| (p.name.clone(), p)).collect();
                    entry.loaded = Some(Instant::now());
                }
            }
            Err(e) => tracing::warn!(target, error = %e, "could not read the pinned MCP tools"),
        }
    }

    /// Compares a listing with the pins (pinning tools seen for the first time) and
    /// returns the names of the tools that differ from their pin.
    pub fn observe(&self, target: &str, listed: &[ToolPrint]) -> Vec<String> {
        let Ok(mut targets) = self.targets.lock() else {
            return Vec::new();
        };
        let pins = &mut targets.entry(target.to_owned()).or_default().pins;
        let mut changed = Vec::new();
        let mut writes = Vec::new();
        let now = Timestamp::now();
        for t in listed {
            match pins.get_mut(&t.name) {
                None => {
                    let pin = McpToolPin {
                        target: target.to_owned(),
                        name: t.name.clone(),
                        pinned_digest: t.digest.clone(),
                        pinned_description: t.description.clone(),
                        listed_digest: None,
                        listed_description: None,
                        first_seen: now,
                        changed_at: None,
                        accepted_at: None,
                    };
                    writes.push(pin.clone());
                    pins.insert(t.name.clone(), pin);
                }
                Some(pin) if pin.pinned_digest == t.digest => {
                    if pin.listed_digest.take().is_some() {
                        pin.listed_description = None;
                        pin.changed_at = None;
                        writes.push(pin.clone());
                    }
                }
                Some(pin) => {
                    if pin.listed_digest.as_deref() != Some(t.digest.as_str()) {
                        tracing::warn!(target, tool = %t.name, "an MCP tool's description or schema changed since it was pinned");
                        pin.listed_digest = Some(t.digest.clone());
                        pin.listed_description = Some(t.description.clone());
                        pin.changed_at.get_or_insert(now);
                        writes.push(pin.clone());
                    }
                    changed.push(t.name.clone());
                }
            }
        }
        if let Some(store) = self.store.clone()
            && !writes.is_empty()
        {
            tokio::spawn(async move {
                for pin in writes {
                    if let Err(e) = store.put_mcp_tool(&pin).await {
                        tracing::warn!(tool = %pin.name, error = %e, "could not store an MCP tool's pin");
                    }
                }
            });
        }
        changed
    }

    /// Whether `tool` of `target` is known: `Some(true)` listed and unchanged,
    /// `Some(false)` changed since pinned, `None` never listed.
    pub fn state(&self, target: &str, tool: &str) -> Option<bool> {
        let targets = self.targets.lock().ok()?;
        let pin = targets.get(target)?.pins.get(tool)?;
        Some(pin.listed_digest.is_none())
    }
}
