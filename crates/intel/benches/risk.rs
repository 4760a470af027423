//! Training and scoring throughput of the risk model (see BENCHMARKS-intel.md).
//! `cargo bench -p dispatchd-intel --bench risk -- [ROWS]` (default 1,000,000).

use std::time::Instant;

use chrono::{TimeZone, Utc};
use dispatch_intel::model::train;
use dispatch_intel::{FeatureList, HistorySpec, ReleaseFacts, TrainOptions};

fn main() {
    let rows: f64 = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(1_000_000.0);
    // Scale 1.0 gives about 552,000 rows over two years.
    let spec = HistorySpec { scale: rows / 552_000.0, ..Default::default() };
    let t = Instant::now();
    let history = spec.generate();
    println!("generated {} rows in {:.1} s", history.len(), t.elapsed().as_secs_f64());
    let now = Utc.with_ymd_and_hms(2026, 11, 1, 6, 0, 0).unwrap();
    let t = Instant::now();
    let model = train(&history, &FeatureList::default(), &TrainOptions::default(), now, &|s| {
        println!("  {s} at {:.1} s", t.elapsed().as_secs_f64())
    })
    .expect("training");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "trained on {} rows (+{} held out) in {secs:.1} s: ROC AUC {:.4}, PR AUC {:.4}, Brier {:.4}, ECE {:.4}",
        model.training_rows,
        model.holdout_rows,
        model.evaluation.overall.roc_auc.unwrap_or(0.0),
        model.evaluation.overall.pr_auc.unwrap_or(0.0),
        model.evaluation.overall.brier,
        model.evaluation.overall.ece
    );
    let bytes = model.to_bytes();
    println!("model file: {} bytes ({:.2} MiB)", bytes.len(), bytes.len() as f64 / 1048576.0);

    let facts: Vec<&ReleaseFacts> = history.iter().rev().take(200_000).map(|r| &r.facts).collect();
    // Batch scoring, one thread.
    let t = Instant::now();
    let probs = model.predict(&facts);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "batch scoring: {} orders in {secs:.3} s = {:.0} orders/s on one core",
        probs.len(),
        probs.len() as f64 / secs
    );
    // One order at a time, as on create/update (probability only, then with explanations).
    let t = Instant::now();
    let mut s = 0.0;
    for f in facts.iter().take(50_000) {
        s += model.raw_score(f);
    }
    let secs = t.elapsed().as_secs_f64();
    println!("single-order scoring: {:.0} orders/s ({s:.1})", 50_000.0 / secs);
    let t = Instant::now();
    for f in facts.iter().take(5_000) {
        std::hint::black_box(model.score(f, 3));
    }
    let secs = t.elapsed().as_secs_f64();
    println!("scoring with explanations: {:.0} orders/s", 5_000.0 / secs);
}
