//! Full evaluation with the default policy (every rule, every check sentence, priority and the
//! carrier choice) and what-if replay. Numbers and commands: BENCHMARKS-policy.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dispatch_core::{OrderFacts, Warehouse, Warehouses};
use dispatch_policy::{Policy, RecordedDecision, replay};

#[path = "../tests/common/mod.rs"]
mod common;

/// CPU seconds used so far by this thread (`thread`) or the whole process, from /proc (Linux):
/// a measure of work that the other processes on a shared machine do not inflate.
fn cpu_seconds(thread: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(if thread { "/proc/thread-self/stat" } else { "/proc/self/stat" }).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the command name.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn sample(n: usize) -> (Warehouses, Vec<(OrderFacts, DateTime<Utc>)>) {
    (common::warehouses(), common::orders(7, n))
}

fn evaluation(c: &mut Criterion) {
    let policy = Policy::default_policy();
    let (whs, orders) = sample(10_000);
    let pairs: Vec<(&OrderFacts, &Warehouse, DateTime<Utc>)> =
        orders.iter().map(|(f, t)| (f, whs.get(&f.warehouse).unwrap(), *t)).collect();
    // Throughput per CPU-second of one thread: what one core does, whatever else runs.
    for (name, builtin) in [("default policy", false), ("built-in rules", true)] {
        let start = cpu_seconds(true);
        let wall = Instant::now();
        let passes = 5;
        for _ in 0..passes {
            for (f, w, t) in &pairs {
                if builtin {
                    black_box(dispatch_core::readiness::evaluate(f, w, *t));
                } else {
                    black_box(policy.evaluate(f, w, *t));
                }
            }
        }
        let n = (passes * pairs.len()) as f64;
        if let (Some(a), Some(b)) = (start, cpu_seconds(true)) {
            eprintln!(
                "{name}: {:.0} orders per CPU-second on one core ({:.2} CPU-s, {:.2?} wall for {n} evaluations)",
                n / (b - a).max(0.01),
                b - a,
                wall.elapsed()
            );
        }
    }
    let mut g = c.benchmark_group("evaluate");
    g.throughput(Throughput::Elements(pairs.len() as u64));
    g.sample_size(10);
    g.bench_function("default_policy_10k_orders", |b| {
        b.iter(|| {
            for (f, w, t) in &pairs {
                black_box(policy.evaluate(f, w, *t));
            }
        })
    });
    g.bench_function("builtin_rules_10k_orders", |b| {
        b.iter(|| {
            for (f, w, t) in &pairs {
                black_box(dispatch_core::readiness::evaluate(f, w, *t));
            }
        })
    });
    g.finish();
}

/// One million recorded decisions (100,000 orders, ten evaluations each as time passes),
/// replayed under a candidate that tightens the credit rule, on all cores.
fn replay_million(c: &mut Criterion) {
    let (whs, orders) = sample(100_000);
    let mut decisions = Vec::with_capacity(1_000_000);
    for (i, (f, t)) in orders.into_iter().enumerate() {
        let facts = Arc::new(f);
        let wh = whs.get(&facts.warehouse).unwrap();
        for k in 0..10 {
            let now = t + Duration::minutes(37 * k);
            let e = dispatch_core::readiness::evaluate(&facts, wh, now);
            decisions.push(RecordedDecision {
                order_id: format!("ord_{i:08}"),
                facts: facts.clone(),
                now,
                outcome: e.outcome,
                hold_reasons: e.hold_reasons,
                priority: e.priority,
                latest_departure: e.inputs.latest_departure,
                policy: e.policy,
                rules: vec![],
                latest: k == 9,
                route_density: None,
            });
        }
    }
    let candidate = Policy::compile(
        &dispatch_policy::DEFAULT_POLICY
            .replace(r#"["hold", "blocked", "over_limit"]"#, r#"["hold", "blocked", "over_limit", "watch"]"#),
        "candidate.toml",
        None,
    )
    .unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = Instant::now();
    let cpu = cpu_seconds(false);
    let report = replay(&candidate, &decisions, &whs, threads, 10, &|_| {});
    let cpu = cpu.zip(cpu_seconds(false)).map_or(0.0, |(a, b)| b - a);
    eprintln!(
        "replay: {} decisions on {threads} thread(s) in {:.2?} wall, {cpu:.1} CPU-s; {} changed",
        report.decisions,
        start.elapsed(),
        report.changed
    );
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(decisions.len() as u64));
    g.sample_size(10);
    g.bench_function("one_million_decisions", |b| {
        b.iter(|| black_box(replay(&candidate, &decisions, &whs, threads, 10, &|_| {})))
    });
    g.finish();
    let _ = Utc.timestamp_opt(0, 0);
}

criterion_group!(benches, evaluation, replay_million);
criterion_main!(benches);
