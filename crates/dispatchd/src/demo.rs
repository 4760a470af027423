//! The demo scenario of the brief's first example: a distributor with three warehouses in
//! different countries, same-day and next-day service, orders from sales, eCommerce and
//! key-account channels, and the realistic mix of problems that keeps dispatchers busy —
//! stock shortages, address anomalies, credit holds, missing export papers, cut-off pressure.
//! Deterministic for a seed and a date.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use dispatch_core::{
    Address, CreditStatus, Customer, Line, OrderFacts, Payment, PaymentStatus, ServiceLevel, Warehouses,
};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;

struct Destination {
    country: &'static str,
    city: &'static str,
    postcode: &'static str,
    street: &'static str,
}

const DESTINATIONS: &[Destination] = &[
    Destination { country: "NL", city: "Amsterdam", postcode: "1012 LG", street: "Damrak 1" },
    Destination { country: "NL", city: "Rotterdam", postcode: "3011 AD", street: "Coolsingel 40" },
    Destination { country: "NL", city: "Utrecht", postcode: "3511 LX", street: "Oudegracht 158" },
    Destination { country: "DE", city: "Berlin", postcode: "10115", street: "Invalidenstraße 117" },
    Destination { country: "DE", city: "Köln", postcode: "50667", street: "Hohe Straße 52" },
    Destination { country: "DE", city: "München", postcode: "80331", street: "Marienplatz 8" },
    Destination { country: "BE", city: "Brussel", postcode: "1000", street: "Rue Neuve 12" },
    Destination { country: "BE", city: "Antwerpen", postcode: "2000", street: "Meir 78" },
    Destination { country: "FR", city: "Paris", postcode: "75001", street: "Rue de Rivoli 99" },
    Destination { country: "FR", city: "Lyon", postcode: "69002", street: "Rue de la République 21" },
    Destination { country: "GB", city: "London", postcode: "SW1A 1AA", street: "Buckingham Gate 3" },
    Destination { country: "GB", city: "Manchester", postcode: "M1 1AE", street: "Market Street 12" },
    Destination { country: "GB", city: "Leeds", postcode: "LS1 4DY", street: "Briggate 27" },
    Destination { country: "PL", city: "Warszawa", postcode: "00-950", street: "Marszałkowska 104" },
    Destination { country: "ES", city: "Madrid", postcode: "28013", street: "Gran Vía 32" },
    Destination { country: "IT", city: "Roma", postcode: "00184", street: "Via Nazionale 75" },
    Destination { country: "US", city: "New York", postcode: "10001", street: "350 Fifth Avenue" },
    Destination { country: "CH", city: "Zürich", postcode: "8001", street: "Bahnhofstrasse 45" },
];

const FAMILIES: &[(&str, f64, f64, bool)] = &[
    // family, unit value, weight kg, hazmat
    ("pumps", 240.0, 7.5, false),
    ("valves", 85.0, 1.2, false),
    ("filters", 22.0, 0.4, false),
    ("motors", 410.0, 12.0, false),
    ("bearings", 14.0, 0.2, false),
    ("seals", 6.5, 0.05, false),
    ("sensors", 130.0, 0.3, false),
    ("cables", 18.0, 0.9, false),
    ("batteries", 95.0, 2.1, true),
    ("chemicals", 55.0, 5.0, true),
];

const COMPANY: &[&str] = &[
    "Acme",
    "Vandermolen",
    "Rheinwerk",
    "Brightwater",
    "Nordhaven",
    "Kessler",
    "Delta Flow",
    "Hollandia",
    "Meridian",
    "Atlas",
    "Brouwer",
    "Fischer",
    "Lumen",
    "Pioneer",
    "Castell",
    "Vulcan",
    "Orion",
    "Weber",
    "Dijkstra",
    "Thames",
];
const SUFFIX: &[(&str, &str)] = &[
    ("NL", "BV"),
    ("DE", "GmbH"),
    ("BE", "NV"),
    ("FR", "SAS"),
    ("GB", "Ltd"),
    ("PL", "Sp. z o.o."),
    ("ES", "SL"),
    ("IT", "Srl"),
    ("US", "Inc."),
    ("CH", "AG"),
];
const CARRIERS: &[&str] = &["dhl", "dpd", "postnl", "ups", "gls", "dhl_freight"];

struct DemoCustomer {
    id: String,
    name: String,
    tier: &'static str,
    credit: CreditStatus,
    owner: String,
    home: usize,
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, weighted: &'a [(T, u32)]) -> &'a T {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut n = rng.random_range(0..total);
    for (item, w) in weighted {
        if n < *w {
            return item;
        }
        n -= w;
    }
    &weighted[weighted.len() - 1].0
}

fn customers(rng: &mut ChaCha8Rng) -> Vec<DemoCustomer> {
    (0..180)
        .map(|i| {
            let home = rng.random_range(0..DESTINATIONS.len());
            let country = DESTINATIONS[home].country;
            let suffix = SUFFIX.iter().find(|(c, _)| *c == country).map_or("", |(_, s)| s);
            let tier =
                *pick(rng, &[("standard", 55), ("silver", 22), ("gold", 15), ("platinum", 5), ("key_account", 3)]);
            let credit = *pick(
                rng,
                &[
                    (CreditStatus::Ok, 88),
                    (CreditStatus::Watch, 5),
                    (CreditStatus::Hold, 4),
                    (CreditStatus::Blocked, 1),
                    (CreditStatus::OverLimit, 2),
                ],
            );
            DemoCustomer {
                id: format!("C-{:04}", 1000 + i),
                name: format!("{} {} {}", COMPANY[i % COMPANY.len()], DESTINATIONS[home].city, suffix),
                tier,
                credit,
                owner: format!("u-{}", rng.random_range(1..=12)),
                home,
            }
        })
        .collect()
}

/// `count` open delivery orders, as the ERP would send them, for warehouses in `whs`.
pub fn orders(seed: u64, count: usize, now: DateTime<Utc>, whs: &Warehouses) -> Vec<OrderFacts> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let customers = customers(&mut rng);
    let codes: Vec<&str> = whs.iter().map(|w| w.code.as_str()).collect();
    let mut seq: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    (0..count)
        .map(|_| {
            let c = &customers[rng.random_range(0..customers.len())];
            // Customers are served from the warehouse in their own country when there is one.
            let home_country = DESTINATIONS[c.home].country;
            let wh_code = whs
                .iter()
                .find(|w| w.country == home_country && rng.random_bool(0.85))
                .map(|w| w.code.as_str())
                .unwrap_or_else(|| codes[rng.random_range(0..codes.len())]);
            let wh = whs.get(wh_code).expect("warehouse from the list");
            let n = seq.entry(wh_code).or_insert(0);
            *n += 1;
            let external_id = format!("{wh_code}/OUT/{:05}", *n);
            let channel = *pick(&mut rng, &[("ecommerce", 50), ("sales", 35), ("key_account", 15)]);
            let service = *pick(
                &mut rng,
                &[
                    (ServiceLevel::SameDay, 10),
                    (ServiceLevel::NextDay, 35),
                    (ServiceLevel::Express, 5),
                    (ServiceLevel::Standard, 40),
                    (ServiceLevel::Economy, 10),
                ],
            );
            let today = wh.local_date(now);
            // Most promises are feasible; some were made for a date that has already slipped.
            let slack_days: i64 =
                if rng.random_bool(0.04) { -rng.random_range(1..=3) } else { rng.random_range(0..=4) };
            let promised: NaiveDate = today + Duration::days(service.transit_days() + slack_days);
            let dest_idx = if rng.random_bool(0.8) { c.home } else { rng.random_range(0..DESTINATIONS.len()) };
            let d = &DESTINATIONS[dest_idx];
            let mut ship_to = Address {
                name: c.name.clone(),
                street: d.street.to_string(),
                city: d.city.to_string(),
                postcode: d.postcode.to_string(),
                country: d.country.to_string(),
            };
            if rng.random_bool(0.04) {
                match rng.random_range(0..3) {
                    0 => ship_to.postcode = ship_to.postcode.replace(' ', "").chars().rev().collect(),
                    1 => ship_to.street.clear(),
                    _ => ship_to.postcode = "UNKNOWN".into(),
                }
            }
            let n_lines = *pick(&mut rng, &[(1usize, 45), (2, 25), (3, 15), (4, 10), (6, 5)]);
            let stock = *pick(&mut rng, &[("full", 84), ("partial", 10), ("none", 6)]);
            let lines: Vec<Line> = (0..n_lines)
                .map(|li| {
                    let (family, value, weight, hazmat) = FAMILIES[rng.random_range(0..FAMILIES.len())];
                    let hazmat = hazmat && rng.random_bool(0.5);
                    let qty = rng.random_range(1..=24u32);
                    let qty_allocated = match stock {
                        "full" => qty,
                        "partial" if li == 0 => qty.saturating_sub(rng.random_range(1..=qty)),
                        "none" => 0,
                        _ => qty,
                    };
                    let value = (value * rng.random_range(0.8..1.25) * 100.0).round() / 100.0;
                    Line {
                        sku: format!("{}-{:03}", &family[..3].to_uppercase(), rng.random_range(1..200)),
                        product_family: Some(family.to_string()),
                        qty,
                        qty_allocated,
                        unit_value: value,
                        unit_cost: Some((value * 0.62 * 100.0).round() / 100.0),
                        weight_kg: Some(weight),
                        hazmat,
                    }
                })
                .collect();
            let payment = if rng.random_bool(0.06) {
                Payment {
                    terms: "prepaid".into(),
                    status: *pick(&mut rng, &[(PaymentStatus::Pending, 3), (PaymentStatus::Paid, 2)]),
                }
            } else {
                Payment {
                    terms: (*pick(&mut rng, &[("net30", 70), ("net14", 20), ("net60", 10)])).into(),
                    status: PaymentStatus::Ok,
                }
            };
            let customs = dispatch_core::readiness::customs_of(&wh.country, &ship_to.country);
            let mut documents = vec!["commercial_invoice".to_string(), "packing_list".to_string()];
            if customs == dispatch_core::readiness::Customs::Export && rng.random_bool(0.7) {
                documents.push("export_declaration".into());
            }
            if lines.iter().any(|l| l.hazmat) && rng.random_bool(0.75) {
                documents.push("dangerous_goods_declaration".into());
            }
            let transport_mode = *pick(&mut rng, &[("parcel", 70), ("ltl", 20), ("courier", 6), ("own_fleet", 4)]);
            OrderFacts {
                source: "odoo".into(),
                external_id,
                warehouse: wh_code.to_string(),
                channel: Some(channel.into()),
                customer: Customer {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    tier: c.tier.into(),
                    credit_status: c.credit,
                    account_owner: Some(c.owner.clone()),
                    email: None,
                    locale: None,
                    notifications_opt_out: false,
                },
                service_level: service,
                promised_date: promised,
                ship_to,
                lines,
                payment,
                documents,
                transport_mode: Some(transport_mode.into()),
                carrier_preference: Some(CARRIERS[rng.random_range(0..CARRIERS.len())].into()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use dispatch_core::{HoldReason, OrderState};

    fn whs() -> Warehouses {
        Warehouses::new(crate::config::example_warehouses().unwrap()).unwrap()
    }

    #[test]
    fn same_seed_same_orders_other_seed_other_orders() {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap();
        assert_eq!(orders(7, 50, now, &whs()), orders(7, 50, now, &whs()));
        assert_ne!(orders(7, 50, now, &whs()), orders(8, 50, now, &whs()));
    }

    #[test]
    fn the_mix_is_realistic() {
        // Tuesday morning in Amsterdam.
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
        let whs = whs();
        let all = orders(1, 2000, now, &whs);
        let evals: Vec<_> =
            all.iter().map(|f| dispatch_core::readiness::evaluate(f, whs.get(&f.warehouse).unwrap(), now)).collect();
        let released = evals.iter().filter(|e| e.outcome == OrderState::Released).count();
        assert!((1000..1700).contains(&released), "released {released}");
        for reason in [
            HoldReason::StockShort,
            HoldReason::StockUnallocated,
            HoldReason::CreditHold,
            HoldReason::AddressInvalid,
            HoldReason::DocsMissing,
            HoldReason::CutoffMissed,
            HoldReason::PaymentPending,
        ] {
            let n = evals.iter().filter(|e| e.hold_reasons.contains(&reason)).count();
            assert!((10..400).contains(&n), "{reason}: {n}");
        }
        for w in ["AMS", "DUS", "MAN"] {
            assert!(all.iter().filter(|f| f.warehouse == w).count() > 300, "{w}");
        }
        for ch in ["sales", "ecommerce", "key_account"] {
            assert!(all.iter().any(|f| f.channel.as_deref() == Some(ch)));
        }
        assert!(all.iter().all(|f| dispatch_core::validate(f, &whs).is_empty()));
    }
}
