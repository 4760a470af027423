//! Throughput of the pure decision path (issue 2 target: readiness evaluation alone
//! ≥ 200,000 orders/s on one core).
//!
//! Run with `cargo bench -p dispatchd-core --bench readiness`. Each iteration evaluates a
//! whole batch of varied, realistic orders, so criterion's "thrpt" line reads in orders/s.

use std::hint::black_box;

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dispatch_core::{Command, Ctx, OrderFacts, Warehouse, Warehouses, decide, readiness};
use serde_json::json;

/// Orders per batch: a few hundred, so the mix (warehouses, service levels, failures) is broad.
const BATCH: usize = 400;

/// A deterministic small PRNG (splitmix64), so every run benches the same orders.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

fn warehouses() -> Vec<Warehouse> {
    [
        json!({"code":"AMS","country":"NL","timezone":"Europe/Amsterdam","cutoffs":{"same_day":"12:00","next_day":"17:00","express":"16:00","standard":"18:00","economy":"18:00"}}),
        json!({"code":"DUS","country":"DE","timezone":"Europe/Berlin","cutoffs":{"same_day":"11:30","next_day":"17:30","express":"16:00"}}),
        json!({"code":"MAN","country":"GB","timezone":"Europe/London","cutoffs":{"same_day":"11:00","next_day":"16:30"}}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).expect("warehouse JSON"))
    .collect()
}

/// One order shaped like the body in design.md, varied the way real traffic varies: mostly
/// domestic and ready, some cross-border, short-allocated, on credit hold, unpaid, late.
fn order(i: usize, rng: &mut Rng, today: chrono::NaiveDate) -> OrderFacts {
    let (wh, home) = *rng.pick(&[("AMS", "NL"), ("DUS", "DE"), ("MAN", "GB")]);
    let dest = if rng.chance(80) { home } else { *rng.pick(&["NL", "DE", "GB"]) };
    let (street, city, postcode) = match dest {
        "NL" => ("Damrak 1", "Amsterdam", "1012 LG"),
        "DE" => ("Invalidenstraße 116", "Berlin", "10115"),
        _ => ("1 Piccadilly", "Manchester", "M1 1AE"),
    };
    let postcode = if rng.chance(3) { "XX" } else { postcode };
    let service = *rng.pick(&["same_day", "next_day", "next_day", "express", "standard", "standard", "economy"]);
    let tier = *rng.pick(&["standard", "standard", "silver", "gold", "platinum", "key_account"]);
    let credit = if rng.chance(90) { "ok" } else { *rng.pick(&["watch", "hold", "blocked", "over_limit"]) };
    let pay = if rng.chance(85) { "ok" } else { *rng.pick(&["paid", "authorized", "pending", "unpaid", "overdue"]) };
    let families = ["pumps", "valves", "seals", "motors", "filters"];
    let lines: Vec<_> = (0..1 + rng.below(5))
        .map(|l| {
            let qty = 1 + rng.below(20);
            let allocated = if rng.chance(92) { qty } else { rng.below(qty) };
            json!({"sku": format!("P-{}", rng.below(5000)), "product_family": rng.pick(&families),
                   "qty": qty, "qty_allocated": allocated, "unit_value": 5.0 + (rng.below(50_000) as f64) / 100.0,
                   "unit_cost": 3.0 + (rng.below(30_000) as f64) / 100.0, "weight_kg": 0.2 + (rng.below(200) as f64) / 10.0,
                   "hazmat": l == 0 && rng.chance(2)})
        })
        .collect();
    let mut documents = vec![];
    if rng.chance(70) {
        documents.push("commercial_invoice");
    }
    if rng.chance(40) {
        documents.push("export_declaration");
    }
    let promised = today + Duration::days(rng.below(7) as i64);
    let v = json!({
        "source": "odoo", "external_id": format!("WH1/OUT/{i:05}"), "warehouse": wh,
        "channel": rng.pick(&["ecommerce", "sales", "key_account"]),
        "customer": {"id": format!("C-{}", rng.below(900)), "name": "Acme BV", "tier": tier,
                     "credit_status": credit, "account_owner": "u-7"},
        "service_level": service, "promised_date": promised.to_string(),
        "ship_to": {"name": "Acme BV", "street": street, "city": city, "postcode": postcode, "country": dest},
        "lines": lines,
        "payment": {"terms": "net30", "status": pay},
        "documents": documents,
        "transport_mode": "parcel", "carrier_preference": rng.pick(&["dhl", "ups", "dpd", "postnl"]),
    });
    serde_json::from_value(v).expect("order JSON")
}

fn fixture() -> (Vec<OrderFacts>, Warehouses, DateTime<Utc>) {
    // A fixed Wednesday morning, so results do not depend on the day the bench runs.
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 9, 30, 0).single().expect("valid instant");
    let mut rng = Rng(42);
    let orders = (0..BATCH).map(|i| order(i, &mut rng, now.date_naive())).collect();
    (orders, Warehouses::new(warehouses()).expect("warehouses"), now)
}

fn bench(c: &mut Criterion) {
    let (orders, whs, now) = fixture();
    let pairs: Vec<(&OrderFacts, &Warehouse)> =
        orders.iter().map(|o| (o, whs.get(&o.warehouse).expect("known warehouse"))).collect();
    let held = pairs.iter().filter(|(o, w)| !readiness::evaluate(o, w, now).hold_reasons.is_empty()).count();
    eprintln!("fixture: {BATCH} orders, {held} of them held by readiness checks");

    let mut g = c.benchmark_group("foundation");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("readiness_evaluate", |b| {
        b.iter(|| {
            for (facts, wh) in &pairs {
                black_box(readiness::evaluate(black_box(facts), wh, black_box(now)));
            }
        })
    });
    let ctx = Ctx::new(now, &whs);
    // decide() takes the command by value; cloning the facts into it is part of every real
    // upsert too (the server owns the parsed body), but is kept out of the measurement.
    g.bench_function("decide_upsert_new", |b| {
        b.iter_batched(
            || {
                orders
                    .iter()
                    .map(|o| Command::Upsert { facts: Box::new(o.clone()), expected_version: None })
                    .collect::<Vec<_>>()
            },
            |cmds| {
                for cmd in cmds {
                    black_box(decide(None, cmd, &ctx).expect("a new order is accepted"));
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
