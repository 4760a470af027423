//! Demo-like orders for the policy tests: every readiness problem of the demo scenario (stock,
//! credit, payment, address, export papers, hazmat, slipped promises), several warehouses in
//! different zones, random instants around cut-offs.

#![allow(dead_code)]

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use dispatch_core::{
    Address, CreditStatus, Customer, Line, OrderFacts, Payment, PaymentStatus, ServiceLevel, Warehouse, Warehouses,
};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;

pub fn warehouses() -> Warehouses {
    let list: Vec<Warehouse> = serde_json::from_value(serde_json::json!([
        {"code": "AMS", "name": "Amsterdam DC", "country": "NL", "timezone": "Europe/Amsterdam",
         "cutoffs": {"same_day": "12:00", "next_day": "17:00", "express": "16:00", "standard": "18:00", "economy": "18:00"}},
        {"code": "DUS", "name": "Düsseldorf DC", "country": "DE", "timezone": "Europe/Berlin",
         "cutoffs": {"same_day": "11:30", "next_day": "17:30"}},
        {"code": "MAN", "name": "Manchester DC", "country": "GB", "timezone": "Europe/London",
         "default_cutoff": "16:30", "cutoffs": {"same_day": "11:00", "next_day": "16:30"}}
    ]))
    .unwrap();
    Warehouses::new(list).unwrap()
}

const DEST: &[(&str, &str, &str)] = &[
    ("NL", "Amsterdam", "1012 LG"),
    ("NL", "Utrecht", "3511 LX"),
    ("DE", "Berlin", "10115"),
    ("BE", "Brussel", "1000"),
    ("FR", "Paris", "75001"),
    ("GB", "London", "SW1A 1AA"),
    ("GB", "Leeds", "LS1 4DY"),
    ("PL", "Warszawa", "00-950"),
    ("US", "New York", "10001"),
    ("CH", "Zürich", "8001"),
];

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|x| x.1).sum();
    let mut n = rng.random_range(0..total);
    for (x, w) in items {
        if n < *w {
            return *x;
        }
        n -= w;
    }
    items[items.len() - 1].0
}

/// An instant in late 2026, uniformly over ±2 weeks around 24 Nov.
pub fn instant(rng: &mut ChaCha8Rng) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 10, 0, 0, 0).unwrap() + Duration::seconds(rng.random_range(0..28 * 86_400))
}

pub fn order(rng: &mut ChaCha8Rng, n: usize, now: DateTime<Utc>, whs: &Warehouses) -> OrderFacts {
    let codes: Vec<&Warehouse> = whs.iter().collect();
    let wh = codes[rng.random_range(0..codes.len())];
    let service = pick(
        rng,
        &[
            (ServiceLevel::SameDay, 10),
            (ServiceLevel::NextDay, 35),
            (ServiceLevel::Express, 5),
            (ServiceLevel::Standard, 40),
            (ServiceLevel::Economy, 10),
        ],
    );
    let today: NaiveDate = wh.local_date(now);
    let slack: i64 = if rng.random_bool(0.06) { -rng.random_range(1..=3) } else { rng.random_range(0..=4) };
    let promised = today + Duration::days(service.transit_days() + slack);
    let (country, city, postcode) = DEST[rng.random_range(0..DEST.len())];
    let mut ship_to = Address {
        name: "Acme".into(),
        street: "Main 1".into(),
        city: city.into(),
        postcode: postcode.into(),
        country: country.into(),
    };
    if rng.random_bool(0.05) {
        match rng.random_range(0..3) {
            0 => ship_to.postcode = "UNKNOWN".into(),
            1 => ship_to.street.clear(),
            _ => ship_to.postcode.clear(),
        }
    }
    let stock = pick(rng, &[("full", 82), ("partial", 10), ("none", 8)]);
    let n_lines = rng.random_range(1..=4);
    let lines = (0..n_lines)
        .map(|li| {
            let qty = rng.random_range(1..=24u32);
            let qty_allocated = match stock {
                "partial" if li == 0 => qty.saturating_sub(rng.random_range(1..=qty)),
                "none" => 0,
                _ => qty,
            };
            Line {
                sku: format!("P-{}", rng.random_range(1..200)),
                product_family: rng.random_bool(0.9).then(|| "pumps".to_string()),
                qty,
                qty_allocated,
                unit_value: (rng.random_range(1.0..500.0f64) * 100.0).round() / 100.0,
                unit_cost: rng.random_bool(0.8).then(|| (rng.random_range(0.5..300.0f64) * 100.0).round() / 100.0),
                weight_kg: rng.random_bool(0.9).then(|| rng.random_range(0.05..15.0)),
                hazmat: rng.random_bool(0.07),
            }
        })
        .collect();
    let mut documents = vec!["commercial_invoice".to_string()];
    if rng.random_bool(0.5) {
        documents.push("export_declaration".into());
    }
    if rng.random_bool(0.5) {
        documents.push("dangerous_goods_declaration".into());
    }
    if rng.random_bool(0.1) {
        documents.clear();
    }
    OrderFacts {
        source: "odoo".into(),
        external_id: format!("{}/OUT/{n:06}", wh.code),
        warehouse: wh.code.clone(),
        channel: rng
            .random_bool(0.9)
            .then(|| pick(rng, &[("sales", 1), ("ecommerce", 1), ("key_account", 1)]).to_string()),
        customer: Customer {
            id: format!("C-{}", rng.random_range(1000..1200)),
            name: "Acme".into(),
            tier: pick(
                rng,
                &[("standard", 5), ("silver", 2), ("gold", 2), ("platinum", 1), ("key_account", 1), ("odd", 1)],
            )
            .into(),
            credit_status: pick(
                rng,
                &[
                    (CreditStatus::Ok, 85),
                    (CreditStatus::Watch, 5),
                    (CreditStatus::Hold, 4),
                    (CreditStatus::Blocked, 3),
                    (CreditStatus::OverLimit, 3),
                ],
            ),
            account_owner: rng.random_bool(0.5).then(|| "u-1".to_string()),
            email: None,
            locale: None,
            notifications_opt_out: false,
        },
        service_level: service,
        promised_date: promised,
        ship_to,
        lines,
        payment: Payment {
            terms: pick(rng, &[("net30", 3), ("prepaid", 1)]).into(),
            status: pick(
                rng,
                &[
                    (PaymentStatus::Ok, 80),
                    (PaymentStatus::Paid, 4),
                    (PaymentStatus::Authorized, 4),
                    (PaymentStatus::Pending, 3),
                    (PaymentStatus::Unpaid, 3),
                    (PaymentStatus::Failed, 3),
                    (PaymentStatus::Overdue, 3),
                ],
            ),
        },
        documents,
        transport_mode: rng
            .random_bool(0.95)
            .then(|| pick(rng, &[("parcel", 70), ("ltl", 20), ("courier", 6), ("own_fleet", 4)]).to_string()),
        carrier_preference: rng.random_bool(0.7).then(|| pick(rng, &[("dhl", 1), ("dpd", 1), ("ups", 1)]).to_string()),
    }
}

/// `count` orders, each with the instant it is evaluated at.
pub fn orders(seed: u64, count: usize) -> Vec<(OrderFacts, DateTime<Utc>)> {
    let whs = warehouses();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let now = instant(&mut rng);
            (order(&mut rng, i, now, &whs), now)
        })
        .collect()
}
