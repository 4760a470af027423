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
    policy_evaluation(&model);
}

/// The model as the policy's risk source (what `dispatch_server::intel::Scorer` does).
struct Source<'m>(&'m dispatch_intel::RiskModel);

impl dispatch_policy::RiskSource for Source<'_> {
    fn score(&self, q: &dispatch_policy::RiskQuery<'_>) -> Option<dispatch_policy::RiskScore> {
        let f = dispatch_intel::facts::from_facts(
            q.facts,
            q.warehouse,
            q.now,
            q.carrier,
            Some(q.latest_departure),
            Some(40),
            // As the server does: failures are not tracked live and read as 0, never missing.
            Some(0),
        );
        Some(dispatch_policy::RiskScore {
            late_departure: self.0.late_departure(&f),
            model_version: self.0.version.clone(),
        })
    }

    fn factors(&self, q: &dispatch_policy::RiskQuery<'_>, top: usize) -> Vec<dispatch_core::risk::RiskFactor> {
        let f = dispatch_intel::facts::from_facts(
            q.facts,
            q.warehouse,
            q.now,
            q.carrier,
            Some(q.latest_departure),
            Some(40),
            // As the server does: failures are not tracked live and read as 0, never missing.
            Some(0),
        );
        self.0
            .score(&f, top)
            .factors
            .into_iter()
            .map(|x| dispatch_core::risk::RiskFactor {
                feature: x.feature,
                contribution: x.contribution,
                text: x.sentence,
            })
            .collect()
    }
}

/// The default policy (whose `late_departure_risk` term reads `risk`) on one core: without a
/// model, with the model scoring every order, and how many decisions the risk changed.
fn policy_evaluation(model: &dispatch_intel::RiskModel) {
    let whs: Vec<dispatch_core::Warehouse> = serde_json::from_value(serde_json::json!([
        {"code": "AMS", "name": "Amsterdam DC", "country": "NL", "timezone": "Europe/Amsterdam",
         "cutoffs": {"same_day": "12:00", "next_day": "17:00", "standard": "18:00"}},
        {"code": "DUS", "name": "Düsseldorf DC", "country": "DE", "timezone": "Europe/Berlin",
         "cutoffs": {"same_day": "11:30", "next_day": "17:30"}},
        {"code": "MAN", "name": "Manchester DC", "country": "GB", "timezone": "Europe/London",
         "cutoffs": {"same_day": "11:00", "next_day": "16:30"}}
    ]))
    .expect("warehouses");
    let families = ["pumps", "valves", "sensors", "motors", "fittings"];
    let countries = [("NL", "1012 LG"), ("DE", "10115"), ("GB", "SW1A 1AA"), ("FR", "75001"), ("PL", "00-950")];
    let carriers = ["dhl", "dpd", "ups", "gls", "dhl_freight"];
    let base = Utc.with_ymd_and_hms(2026, 11, 2, 5, 0, 0).unwrap();
    let orders: Vec<(dispatch_core::OrderFacts, chrono::DateTime<Utc>, usize)> = (0..20_000usize)
        .map(|i| {
            let (country, postcode) = countries[i % countries.len()];
            let facts: dispatch_core::OrderFacts = serde_json::from_value(serde_json::json!({
                "source": "bench", "external_id": format!("B-{i}"), "warehouse": whs[i % 3].code,
                "customer": {"id": "C-1", "name": "Acme", "tier": "gold", "credit_status": "ok"},
                "service_level": "next_day", "promised_date": "2026-11-06",
                "ship_to": {"name": "Acme", "street": "Main 1", "city": "City", "postcode": postcode, "country": country},
                "lines": [{"sku": "P-1", "product_family": families[(i / 5) % families.len()], "qty": 1 + (i % 4) as u32,
                           "qty_allocated": 1 + (i % 4) as u32, "unit_value": 80.0, "weight_kg": 4.0}],
                "payment": {"terms": "net30", "status": "ok"},
                "documents": ["commercial_invoice", "customs_declaration"],
                "transport_mode": "parcel", "carrier_preference": carriers[(i / 25) % carriers.len()]
            }))
            .expect("facts");
            (facts, base + chrono::Duration::minutes((i % 1440) as i64 * 7), i % 3)
        })
        .collect();
    let policy = dispatch_policy::Policy::default_policy();
    let source = Source(model);
    let t = Instant::now();
    for (f, now, w) in &orders {
        std::hint::black_box(policy.evaluate(f, &whs[*w], *now));
    }
    let plain = orders.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut changed = 0;
    for (f, now, w) in &orders {
        let e = policy.evaluate_scored(f, &whs[*w], *now, Some(&source));
        changed += usize::from(e.risk.is_some());
    }
    let scored = orders.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "default policy evaluation, one core: {plain:.0} orders/s without a model, {scored:.0} orders/s with the model scoring \
         ({changed} of {} decisions changed by the risk term, each with explanations)",
        orders.len()
    );
}
