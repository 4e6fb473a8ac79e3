//! Airlock's Prometheus metrics, one process-wide set: what the services count as they
//! work, and [`render`] for the admin listener's `/metrics`.
//!
//! Process-wide (like every Prometheus client's default registry) because what is
//! counted happens in every layer: sessions in the session service, decisions and
//! masked values where events are recorded, the recorder's queue in the recorder.
//! Labels are names an operator configured (targets, rules) or fixed words (protocol,
//! decision): never a principal, a statement or a value, so that a scrape reveals
//! nothing an agent sent and the label sets stay small.
//!
//! Where a new metric goes: a field of [`Metrics`], registered in [`Metrics::new`] with
//! its `airlock_` name and help, and a method that the counting layer calls.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A target and its protocol.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
    protocol: String,
}

/// A decision on a target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    target: String,
    protocol: String,
    decision: String,
}

/// A masking rule and what it found (a detector, or `column`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MaskLabels {
    rule: String,
    detector: String,
}

/// An approval step on a target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApprovalLabels {
    target: String,
    step: String,
}

/// A protocol, for sessions refused before they had a target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: String,
}

/// Every metric the gateway keeps.
pub struct Metrics {
    registry: Registry,
    sessions: Family<TargetLabels, Counter>,
    sessions_open: Family<TargetLabels, Gauge>,
    sessions_refused: Family<ProtocolLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    masked: Family<MaskLabels, Counter>,
    approval_steps: Family<ApprovalLabels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("airlock");
        let sessions = Family::<TargetLabels, Counter>::default();
        registry.register(
            "sessions",
            "Sessions opened, by target and protocol",
            sessions.clone(),
        );
        let sessions_open = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "sessions_open",
            "Sessions open now, by target and protocol",
            sessions_open.clone(),
        );
        let sessions_refused = Family::<ProtocolLabels, Counter>::default();
        registry.register(
            "sessions_refused",
            "Connections refused before a session opened (bad credential, unknown target, target unreachable), by protocol",
            sessions_refused.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Statements, requests and tool calls decided (each recorded decision: allow, deny, hold), by target and protocol",
            decisions.clone(),
        );
        let masked = Family::<MaskLabels, Counter>::default();
        registry.register(
            "masked_values",
            "Values masked in results, by masking rule and detector (`column` for column rules)",
            masked.clone(),
        );
        let approval_steps = Family::<ApprovalLabels, Counter>::default();
        registry.register(
            "approval_steps",
            "Steps of held statements' approvals (requested, approved, denied, timed_out, used, ...), by target",
            approval_steps.clone(),
        );
        Metrics {
            registry,
            sessions,
            sessions_open,
            sessions_refused,
            decisions,
            masked,
            approval_steps,
        }
    }

    /// The counters of one target's sessions, resolved once (a session keeps them):
    /// counting a decision is then one atomic add, with no label lookup or allocation
    /// on the statement path.
    pub fn for_target(&self, target: &str, protocol: &str) -> TargetCounters {
        let decision = |d: &str| {
            self.decisions
                .get_or_create(&DecisionLabels {
                    target: target.to_owned(),
                    protocol: protocol.to_owned(),
                    decision: d.to_owned(),
                })
                .clone()
        };
        TargetCounters {
            allow: decision("allow"),
            deny: decision("deny"),
            hold: decision("hold"),
            target: target.to_owned(),
            protocol: protocol.to_owned(),
        }
    }

    /// A session opened on `target`.
    pub fn session_opened(&self, target: &str, protocol: &str) {
        let labels = TargetLabels {
            target: target.to_owned(),
            protocol: protocol.to_owned(),
        };
        self.sessions.get_or_create(&labels).inc();
        self.sessions_open.get_or_create(&labels).inc();
    }

    /// A session on `target` ended.
    pub fn session_ended(&self, target: &str, protocol: &str) {
        let labels = TargetLabels {
            target: target.to_owned(),
            protocol: protocol.to_owned(),
        };
        self.sessions_open.get_or_create(&labels).dec();
    }

    /// A connection was refused before its session opened.
    pub fn session_refused(&self, protocol: &str) {
        self.sessions_refused
            .get_or_create(&ProtocolLabels {
                protocol: protocol.to_owned(),
            })
            .inc();
    }

    /// A decision was recorded.
    pub fn decided(&self, target: &str, protocol: &str, decision: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                target: target.to_owned(),
                protocol: protocol.to_owned(),
                decision: decision.to_owned(),
            })
            .inc();
    }

    /// `n` values were masked by `rule` (what found them: a detector, or `column`).
    pub fn masked(&self, rule: &str, detector: &str, n: u64) {
        self.masked
            .get_or_create(&MaskLabels {
                rule: rule.to_owned(),
                detector: detector.to_owned(),
            })
            .inc_by(n);
    }

    /// An approval took a step.
    pub fn approval_step(&self, target: &str, step: &str) {
        self.approval_steps
            .get_or_create(&ApprovalLabels {
                target: target.to_owned(),
                step: step.to_owned(),
            })
            .inc();
    }
}

/// One target's decision counters (see [`Metrics::for_target`]).
#[derive(Clone, Debug)]
pub struct TargetCounters {
    allow: Counter,
    deny: Counter,
    hold: Counter,
    target: String,
    protocol: String,
}

impl TargetCounters {
    /// A decision was recorded on this target.
    pub fn decided(&self, decision: &str) {
        match decision {
            "allow" => {
                self.allow.inc();
            }
            "deny" => {
                self.deny.inc();
            }
            "hold" => {
                self.hold.inc();
            }
            other => global().decided(&self.target, &self.protocol, other),
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Every metric in the OpenMetrics text format (which Prometheus scrapes), for `/metrics`.
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &METRICS.registry).is_err() {
        out.clear();
        out.push_str("# EOF\n");
    }
    out
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text_with_their_labels() {
        let m = global();
        m.session_opened("shop", "postgres");
        m.decided("shop", "postgres", "deny");
        m.for_target("shop", "postgres").decided("deny");
        m.masked("default", "email", 3);
        m.session_ended("shop", "postgres");
        let text = render();
        assert!(text.contains("# TYPE airlock_sessions counter"), "{text}");
        assert!(
            text.contains(r#"airlock_sessions_total{target="shop",protocol="postgres"}"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"airlock_decisions_total{target="shop",protocol="postgres",decision="deny"}"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"airlock_masked_values_total{rule="default",detector="email"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"airlock_sessions_open{target="shop",protocol="postgres"} 0"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
