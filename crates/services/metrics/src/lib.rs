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
//! On the statement path nothing is looked up: a session resolves its target's handles
//! once ([`Metrics::for_target`]), so a decision, a latency sample or a relayed read is
//! an atomic add (a histogram sample, one short lock). Histograms have fixed buckets.
//! What is cheaper to read than to count (the recorder queue's depth) is read at
//! scrape time.
//!
//! Where a new metric goes: a field of [`Metrics`], registered in [`Metrics::new`] with
//! its `airlock_` name and help, and a method that the counting layer calls (on
//! [`TargetCounters`] when it is counted per statement).

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds (seconds) of the gateway latency buckets: what Airlock adds to a
/// statement runs from tens of microseconds (a read, recorded while it runs) to
/// milliseconds (a write, synced to disk first).
const GATEWAY_LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// Upper bounds (seconds) of the approval latency buckets: a person's time, from
/// seconds to a day.
const APPROVAL_LATENCY_BUCKETS: [f64; 13] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// Upper bounds (seconds) of the store write buckets: one transaction of a batch of
/// records, or making the store durable.
const STORE_WRITE_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram family with fixed buckets.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn gateway_latency_histogram() -> Histogram {
    Histogram::new(GATEWAY_LATENCY_BUCKETS)
}

fn approval_latency_histogram() -> Histogram {
    Histogram::new(APPROVAL_LATENCY_BUCKETS)
}

fn store_write_histogram() -> Histogram {
    Histogram::new(STORE_WRITE_BUCKETS)
}

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

/// Bytes relayed on a target, one way (`to_target` or `to_client`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RelayLabels {
    target: String,
    protocol: String,
    direction: String,
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

/// How an approval request ended (`approved`, `denied`, `expired`), on a target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    target: String,
    outcome: String,
}

/// A protocol, for sessions refused before they had a target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: String,
}

/// A step of the recorder's store writes (`apply`, `make_durable`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    op: String,
}

/// Reads the recorder queue's depth at scrape time (`None` once the recorder is gone).
type QueueProbe = Box<dyn Fn() -> Option<i64> + Send + Sync>;

/// Every metric the gateway keeps.
pub struct Metrics {
    registry: Registry,
    sessions: Family<TargetLabels, Counter>,
    sessions_open: Family<TargetLabels, Gauge>,
    sessions_refused: Family<ProtocolLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    gateway_latency: Histograms<TargetLabels>,
    relayed: Family<RelayLabels, Counter>,
    upstream_connect_errors: Family<TargetLabels, Counter>,
    masked: Family<MaskLabels, Counter>,
    approval_steps: Family<ApprovalLabels, Counter>,
    holds_pending: Family<TargetLabels, Gauge>,
    approval_latency: Histograms<OutcomeLabels>,
    store_writes: Histograms<StoreLabels>,
    store_write_errors: Family<StoreLabels, Counter>,
    recorder_queue: Gauge,
    recorder_queue_capacity: Gauge,
    queue_probe: Mutex<Option<QueueProbe>>,
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
        let gateway_latency: Histograms<TargetLabels> =
            Family::new_with_constructor(gateway_latency_histogram);
        registry.register_with_unit(
            "gateway_latency",
            "Time Airlock adds to a statement or request before the target sees it: from its arrival to its forwarding upstream, or to the decision for one refused or held (an approval's wait excluded), by target and protocol",
            Unit::Seconds,
            gateway_latency.clone(),
        );
        let relayed = Family::<RelayLabels, Counter>::default();
        registry.register_with_unit(
            "relayed",
            "Bytes relayed between clients and targets once a session is open, by target, protocol and direction (to_target, to_client)",
            Unit::Bytes,
            relayed.clone(),
        );
        let upstream_connect_errors = Family::<TargetLabels, Counter>::default();
        registry.register(
            "upstream_connect_errors",
            "Connections to a target that failed (unreachable, timed out, TLS, the target refused Airlock's credential), by target and protocol",
            upstream_connect_errors.clone(),
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
        let holds_pending = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "holds_pending",
            "Statements and requests waiting for an approval now, by target and protocol",
            holds_pending.clone(),
        );
        let approval_latency: Histograms<OutcomeLabels> =
            Family::new_with_constructor(approval_latency_histogram);
        registry.register_with_unit(
            "approval_latency",
            "Time from an approval request to its decision (approved, denied, expired), sampled by the held statement that learns it, by target and outcome",
            Unit::Seconds,
            approval_latency.clone(),
        );
        let store_writes: Histograms<StoreLabels> =
            Family::new_with_constructor(store_write_histogram);
        registry.register_with_unit(
            "store_write",
            "Time of the recorder's writes to the store (apply: one transaction of journalled records; make_durable: the store made durable and a journal segment freed), failed ones included, by op",
            Unit::Seconds,
            store_writes.clone(),
        );
        let store_write_errors = Family::<StoreLabels, Counter>::default();
        registry.register(
            "store_write_errors",
            "Recorder writes to the store that failed (each is retried; meanwhile the gateway refuses statements), by op",
            store_write_errors.clone(),
        );
        let recorder_queue = Gauge::default();
        registry.register(
            "recorder_queue_depth",
            "Submissions (a session's batch of records) waiting in the recorder's queue or being written to its journal",
            recorder_queue.clone(),
        );
        let recorder_queue_capacity = Gauge::default();
        registry.register(
            "recorder_queue_capacity",
            "Submissions the recorder's queue holds; when full, sessions wait to record (back-pressure)",
            recorder_queue_capacity.clone(),
        );
        Metrics {
            registry,
            sessions,
            sessions_open,
            sessions_refused,
            decisions,
            gateway_latency,
            relayed,
            upstream_connect_errors,
            masked,
            approval_steps,
            holds_pending,
            approval_latency,
            store_writes,
            store_write_errors,
            recorder_queue,
            recorder_queue_capacity,
            queue_probe: Mutex::new(None),
        }
    }

    /// The metrics of one target's sessions, resolved once (a session keeps them):
    /// counting a decision, a latency or relayed bytes is then an atomic add (or one
    /// uncontended lock for a histogram), with no label lookup or allocation on the
    /// statement path.
    pub fn for_target(&self, target: &str, protocol: &str) -> TargetCounters {
        let decision = |d: &str| {
            self.decisions.get_or_create_owned(&DecisionLabels {
                target: target.to_owned(),
                protocol: protocol.to_owned(),
                decision: d.to_owned(),
            })
        };
        let relayed = |direction: &str| {
            ByteCounter(self.relayed.get_or_create_owned(&RelayLabels {
                target: target.to_owned(),
                protocol: protocol.to_owned(),
                direction: direction.to_owned(),
            }))
        };
        let labels = TargetLabels {
            target: target.to_owned(),
            protocol: protocol.to_owned(),
        };
        TargetCounters {
            allow: decision("allow"),
            deny: decision("deny"),
            hold: decision("hold"),
            latency: self.gateway_latency.get_or_create_owned(&labels),
            to_target: relayed("to_target"),
            to_client: relayed("to_client"),
            connect_errors: self.upstream_connect_errors.get_or_create_owned(&labels),
            holds_pending: self.holds_pending.get_or_create_owned(&labels),
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

    /// The handles the recorder's ingest thread times its store writes with.
    pub fn store_writes(&self) -> StoreWrites {
        let op = |op: &str| {
            let labels = StoreLabels { op: op.to_owned() };
            StoreWrite {
                seconds: self.store_writes.get_or_create_owned(&labels),
                errors: self.store_write_errors.get_or_create_owned(&labels),
            }
        };
        StoreWrites {
            apply: op("apply"),
            make_durable: op("make_durable"),
        }
    }

    /// Shows the recorder's queue: `capacity` submissions, `depth` read at each scrape
    /// (it returns `None` once the recorder is gone). The last recorder started is the
    /// one shown (a gateway has one).
    pub fn watch_recorder_queue(
        &self,
        capacity: usize,
        depth: impl Fn() -> Option<usize> + Send + Sync + 'static,
    ) {
        self.recorder_queue_capacity
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        let probe: QueueProbe =
            Box::new(move || depth().map(|d| i64::try_from(d).unwrap_or(i64::MAX)));
        if let Ok(mut slot) = self.queue_probe.lock() {
            *slot = Some(probe);
        }
    }

    /// Reads what is read at scrape time.
    fn refresh(&self) {
        if let Ok(probe) = self.queue_probe.lock()
            && let Some(depth) = probe.as_ref()
        {
            self.recorder_queue.set(depth().unwrap_or(0));
        }
    }
}

/// A byte counter of one target and direction, for a relay loop (or a body that
/// outlives its request) to add to.
#[derive(Clone, Debug, Default)]
pub struct ByteCounter(Counter);

impl ByteCounter {
    /// `n` bytes were relayed.
    pub fn add(&self, n: usize) {
        self.0.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

/// One target's metrics, resolved once for a session (see [`Metrics::for_target`]).
#[derive(Clone, Debug)]
pub struct TargetCounters {
    allow: Counter,
    deny: Counter,
    hold: Counter,
    latency: Histogram,
    to_target: ByteCounter,
    to_client: ByteCounter,
    connect_errors: Counter,
    holds_pending: Gauge,
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

    /// `statements` statements or requests that arrived at `arrived` were just
    /// forwarded upstream (or refused, or held): one latency sample each.
    pub fn forwarded(&self, arrived: Instant, statements: usize) {
        self.added(arrived.elapsed(), statements);
    }

    /// `statements` samples of `added`, the time Airlock added to each.
    pub fn added(&self, added: Duration, statements: usize) {
        let seconds = added.as_secs_f64();
        for _ in 0..statements {
            self.latency.observe(seconds);
        }
    }

    /// `n` bytes went from the agent to the target.
    pub fn relayed_to_target(&self, n: usize) {
        self.to_target.add(n);
    }

    /// `n` bytes went from the target (or Airlock, for its own answers) to the agent.
    pub fn relayed_to_client(&self, n: usize) {
        self.to_client.add(n);
    }

    /// The agent-to-target byte counter, for a relay that outlives a borrow.
    pub fn to_target(&self) -> ByteCounter {
        self.to_target.clone()
    }

    /// The target-to-agent byte counter, for a relay (a streamed body) that outlives a
    /// borrow.
    pub fn to_client(&self) -> ByteCounter {
        self.to_client.clone()
    }

    /// Connecting to the target failed.
    pub fn upstream_connect_failed(&self) {
        self.connect_errors.inc();
    }

    /// A statement starts waiting for approval: counted as pending until the returned
    /// guard is dropped (the wait ended, or was abandoned).
    pub fn hold_pending(&self) -> PendingHold {
        self.holds_pending.inc();
        PendingHold(self.holds_pending.clone())
    }

    /// An approval request on this target was decided `outcome` (`approved`, `denied`,
    /// `expired`) `after` its creation.
    pub fn approval_decided(&self, outcome: &str, after: Duration) {
        global()
            .approval_latency
            .get_or_create(&OutcomeLabels {
                target: self.target.clone(),
                outcome: outcome.to_owned(),
            })
            .observe(after.as_secs_f64());
    }
}

/// A statement waiting for approval, counted in `airlock_holds_pending` while it lives.
#[derive(Debug)]
pub struct PendingHold(Gauge);

impl Drop for PendingHold {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One kind of store write: its duration and its failures.
#[derive(Clone, Debug)]
pub struct StoreWrite {
    seconds: Histogram,
    errors: Counter,
}

impl StoreWrite {
    /// Runs `write`, timing it and counting its failure.
    pub fn time<T, E>(&self, write: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let started = Instant::now();
        let result = write();
        self.seconds.observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.errors.inc();
        }
        result
    }
}

/// The recorder's store writes (see [`Metrics::store_writes`]).
#[derive(Clone, Debug)]
pub struct StoreWrites {
    /// Journalled records applied to the store's tables, one transaction.
    pub apply: StoreWrite,
    /// The store made durable up to a journal segment, and the segment freed.
    pub make_durable: StoreWrite,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Every metric in the OpenMetrics text format (which Prometheus scrapes), for `/metrics`.
pub fn render() -> String {
    METRICS.refresh();
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

    /// The value of the sample `name_and_labels` (as printed) in `text`.
    fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
    }

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

    #[test]
    fn a_sessions_latency_and_bytes_show_as_a_histogram_and_counters() {
        let c = global().for_target("lat", "http");
        c.added(Duration::from_micros(300), 2);
        c.added(Duration::from_millis(30), 1);
        c.relayed_to_target(100);
        c.relayed_to_client(4000);
        c.to_client().add(96);
        c.upstream_connect_failed();
        let text = render();
        assert!(
            text.contains("# TYPE airlock_gateway_latency_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT airlock_gateway_latency_seconds seconds"),
            "{text}"
        );
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(
                    r#"airlock_gateway_latency_seconds_bucket{{le="{le}",target="lat",protocol="http"}}"#
                ),
            )
        };
        assert_eq!(bucket("0.00025"), Some(0.0), "{text}");
        assert_eq!(bucket("0.0005"), Some(2.0), "{text}");
        assert_eq!(bucket("0.025"), Some(2.0), "{text}");
        assert_eq!(bucket("0.05"), Some(3.0), "{text}");
        assert_eq!(bucket("+Inf"), Some(3.0), "{text}");
        assert_eq!(
            sample(
                &text,
                r#"airlock_gateway_latency_seconds_count{target="lat",protocol="http"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"airlock_relayed_bytes_total{target="lat",protocol="http",direction="to_target"}"#
            ),
            Some(100.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"airlock_relayed_bytes_total{target="lat",protocol="http",direction="to_client"}"#
            ),
            Some(4096.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"airlock_upstream_connect_errors_total{target="lat",protocol="http"}"#
            ),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn a_pending_hold_counts_until_dropped_and_its_decision_is_timed() {
        let c = global().for_target("held", "postgres");
        let pending = r#"airlock_holds_pending{target="held",protocol="postgres"}"#;
        let first = c.hold_pending();
        let second = c.hold_pending();
        assert_eq!(sample(&render(), pending), Some(2.0));
        drop(first);
        drop(second);
        assert_eq!(sample(&render(), pending), Some(0.0));
        c.approval_decided("approved", Duration::from_secs(42));
        let text = render();
        assert_eq!(
            sample(
                &text,
                r#"airlock_approval_latency_seconds_bucket{le="30.0",target="held",outcome="approved"}"#
            ),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"airlock_approval_latency_seconds_bucket{le="60.0",target="held",outcome="approved"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"airlock_approval_latency_seconds_sum{target="held",outcome="approved"}"#
            ),
            Some(42.0),
            "{text}"
        );
    }

    #[test]
    fn store_writes_are_timed_and_failures_counted_and_the_queue_read_at_scrape() {
        let writes = global().store_writes();
        assert_eq!(writes.apply.time(|| Ok::<_, ()>(7)), Ok(7));
        assert_eq!(
            writes.make_durable.time(|| Err::<(), _>("disk full")),
            Err("disk full")
        );
        let depth = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(3));
        let read = depth.clone();
        global().watch_recorder_queue(64, move || {
            Some(read.load(std::sync::atomic::Ordering::Relaxed))
        });
        let text = render();
        assert!(
            sample(&text, r#"airlock_store_write_seconds_count{op="apply"}"#)
                .is_some_and(|n| n >= 1.0),
            "{text}"
        );
        assert!(
            sample(
                &text,
                r#"airlock_store_write_errors_total{op="make_durable"}"#
            )
            .is_some_and(|n| n >= 1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "airlock_recorder_queue_depth "),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "airlock_recorder_queue_capacity "),
            Some(64.0)
        );
        depth.store(0, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            sample(&render(), "airlock_recorder_queue_depth "),
            Some(0.0)
        );
    }

    #[test]
    fn labels_are_target_protocol_and_fixed_words_only() {
        let text = render();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((_, labels)) = line.split_once('{') else {
                continue;
            };
            let labels = labels.split('}').next().unwrap_or("");
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let name = pair.split('=').next().unwrap_or("");
                assert!(
                    [
                        "target",
                        "protocol",
                        "decision",
                        "direction",
                        "rule",
                        "detector",
                        "step",
                        "outcome",
                        "op",
                        "le"
                    ]
                    .contains(&name),
                    "unexpected label `{name}` in {line}"
                );
            }
        }
    }
}
