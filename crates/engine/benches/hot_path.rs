//! The per-statement hot path in isolation: classify (cold and cached) and decide.
//! `cargo bench -p airlock-engine --bench hot_path`; numbers in docs/performance.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use airlock_engine::policy::{FunctionCatalog, PolicyEngine, Volatility};
use airlock_engine::sql::{Classifier, ParseOptions};
use airlock_model::{Action, Principal, PrincipalSource, TargetKind, TargetRef};
use criterion::{Criterion, criterion_group, criterion_main};

const PGBENCH_SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
const JOIN: &str = "SELECT c.name, sum(o.total) FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id = 7 GROUP BY c.name ORDER BY 2 DESC LIMIT 10";

struct AllStable;
impl FunctionCatalog for AllStable {
    fn volatility(&self, _: Option<&str>, _: &str) -> Volatility {
        Volatility::Stable
    }
}

fn bench(c: &mut Criterion) {
    let opts = ParseOptions::default();
    c.bench_function("classify/pgbench_select/uncached", |b| {
        b.iter(|| {
            Classifier::new()
                .classify(black_box(PGBENCH_SELECT), opts)
                .unwrap()
        })
    });
    let classifier = Classifier::new();
    classifier.classify(PGBENCH_SELECT, opts).unwrap();
    let mut n = 0u64;
    c.bench_function("classify/pgbench_select/cached_new_literal", |b| {
        b.iter(|| {
            n += 1;
            let q = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {n};");
            classifier.classify(black_box(&q), opts).unwrap()
        })
    });
    let parameterized = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
    classifier.classify(parameterized, opts).unwrap();
    c.bench_function("classify/parameterized/cached_same_text", |b| {
        b.iter(|| classifier.classify(black_box(parameterized), opts).unwrap())
    });
    // A transaction's two ends: parsed every time until e95bef1 cached them.
    c.bench_function("classify/begin/uncached", |b| {
        b.iter(|| {
            Classifier::new()
                .classify(black_box("BEGIN;"), opts)
                .unwrap()
        })
    });
    classifier.classify("BEGIN;", opts).unwrap();
    c.bench_function("classify/begin/cached", |b| {
        b.iter(|| classifier.classify(black_box("BEGIN;"), opts).unwrap())
    });
    c.bench_function("classify/join/uncached", |b| {
        b.iter(|| Classifier::new().classify(black_box(JOIN), opts).unwrap())
    });

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let engine = PolicyEngine::load(&dir).unwrap();
    let principal = Principal {
        name: "crew".into(),
        groups: vec!["ai-agents".into()],
        source: PrincipalSource::ServiceToken,
        expires_at: None,
    };
    let target = TargetRef {
        name: "shop".into(),
        kind: TargetKind::Postgres,
    };
    let actions: Vec<Action> = classifier
        .classify(JOIN, opts)
        .unwrap()
        .remove(0)
        .actions
        .into_iter()
        .map(Action::Sql)
        .collect();
    c.bench_function("decide/join/cached", |b| {
        b.iter(|| engine.decide_all(&principal, &target, black_box(&actions), &AllStable))
    });
    // A new principal name each time: every action misses the decision cache.
    let mut i = 0u64;
    c.bench_function("decide/join/uncached", |b| {
        b.iter(|| {
            i += 1;
            let p = Principal {
                name: format!("crew-{i}"),
                ..principal.clone()
            };
            engine.decide_all(&p, &target, black_box(&actions), &AllStable)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
