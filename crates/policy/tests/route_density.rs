//! Route density as a priority term: `route.area`, `route.wave` and `route.density` in the
//! context, the density read from the table the server fills, recorded on the decision, and a
//! replay that uses the density each decision saw.

mod common;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use dispatch_core::ServiceLevel;
use dispatch_policy::{DEFAULT_POLICY, Policy, RecordedDecision, replay};

const TERM: &str = "# [[priority.terms]]
# id = \"route_density\"
# description = \"Orders that share a truck run are picked together.\"
# expr = 'double(route.density - 1)'
# weight = 10.0
# min = 0.0
# max = 100.0
# why = '{route.density} order(s) to {route.area} in wave {route.wave}'
";

/// The default policy with its commented-out route density term switched on.
fn with_density() -> Policy {
    assert!(DEFAULT_POLICY.contains(TERM), "the default policy carries the example term");
    let on: String = TERM.lines().map(|l| format!("{}\n", l.trim_start_matches("# "))).collect();
    Policy::compile(&DEFAULT_POLICY.replace(TERM, &on), "density.toml", None).unwrap()
}

fn facts(ext: &str, postcode: &str) -> dispatch_core::OrderFacts {
    let whs = common::warehouses();
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(5);
    let mut f = common::order(&mut rng, 1, now, &whs);
    f.external_id = ext.into();
    f.warehouse = "AMS".into();
    f.service_level = ServiceLevel::NextDay;
    f.promised_date = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    f.ship_to.country = "NL".into();
    f.ship_to.postcode = postcode.into();
    f
}

#[test]
fn the_default_policy_does_not_read_the_route() {
    assert!(!Policy::default_policy().reads_route());
    let whs = common::warehouses();
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
    let e = Policy::default_policy().evaluate(&facts("A", "1012 LG"), whs.get("AMS").unwrap(), now);
    assert_eq!(e.inputs.route, None, "nothing recorded that no rule read");
}

#[test]
fn the_density_comes_from_the_table_counts_the_order_once_and_is_recorded() {
    let p = with_density();
    assert!(p.reads_route());
    let whs = common::warehouses();
    let wh = whs.get("AMS").unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
    let a = facts("A", "1012 LG");
    let term =
        |e: &dispatch_core::Evaluation| e.priority_terms.iter().find(|t| t.term == "route_density").cloned().unwrap();

    // Nothing counted yet: the order alone.
    let e = p.evaluate(&a, wh, now);
    let r = e.inputs.route.clone().unwrap();
    assert_eq!((r.area.as_str(), r.wave.as_str(), r.density), ("NL-10", "AMS@2026-11-25T16:00Z", 1));
    assert_eq!(term(&e).points, 0);
    let alone = e.priority;

    // The store listed A, B and C in A's wave, D elsewhere.
    let key = "NL-10|AMS@2026-11-25T16:00Z";
    let row = |k: &str, id: &str| (k.to_string(), "odoo".to_string(), id.to_string());
    p.densities.replace([row(key, "A"), row(key, "B"), row(key, "C"), row("NL-30|AMS@2026-11-25T16:00Z", "D")]);
    let e = p.evaluate(&a, wh, now);
    assert_eq!(e.inputs.route.as_ref().unwrap().density, 3, "A and two others");
    assert_eq!(term(&e).points, 20);
    assert_eq!(term(&e).why, "3 order(s) to NL-10 in wave AMS@2026-11-25T16:00Z");
    assert_eq!(e.priority, alone + 20);
    // A new order of the area joins the three.
    assert_eq!(p.evaluate(&facts("N", "1017 XX"), wh, now).inputs.route.unwrap().density, 4);
    // Another area, another count.
    assert_eq!(p.evaluate(&facts("D", "3011 AA"), wh, now).inputs.route.unwrap().density, 1);
    // The recorded value is part of the event's JSON.
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["inputs"]["route"]["density"], 3);
    // The interpreter agrees with the fast path.
    assert_eq!(p.evaluate_interpreted(&a, wh, now).priority, e.priority);
}

#[test]
fn a_rule_can_read_the_density_and_records_what_it_saw() {
    let src = DEFAULT_POLICY.replace(
        "# --- What a passed check says.",
        "[[hold]]\nid = \"lonely-export\"\nwhen = 'order.customs == \"export\" && route.density < 2'\nreason = \"policy_hold\"\nmessage = 'only {route.density} order(s) to {route.area}'\n\n# --- What a passed check says.",
    );
    let p = Policy::compile(&src, "r.toml", None).unwrap();
    let whs = common::warehouses();
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
    let mut f = facts("X", "10001");
    f.ship_to.country = "US".into();
    let e = p.evaluate(&f, whs.get("AMS").unwrap(), now);
    let hit = e.rules.iter().find(|r| r.rule == "lonely-export").unwrap();
    assert_eq!(hit.message, "only 1 order(s) to US-100");
    assert_eq!(hit.seen["route.density"], 1);
}

#[test]
fn replay_uses_the_density_each_decision_saw() {
    let p = Arc::new(with_density());
    let whs = common::warehouses();
    let wh = whs.get("AMS").unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap();
    let f = Arc::new(facts("A", "1012 LG"));
    // Decided under the same policy when five orders shared the wave.
    let e = p.evaluate_at_density(&f, wh, now, 5);
    assert_eq!(e.inputs.route.as_ref().unwrap().density, 5);
    let d = RecordedDecision {
        order_id: "ord_1".into(),
        facts: f.clone(),
        now,
        outcome: e.outcome,
        hold_reasons: e.hold_reasons.clone(),
        priority: e.priority,
        latest_departure: e.inputs.latest_departure,
        policy: e.policy.clone(),
        rules: vec![],
        latest: true,
        route_density: Some(5),
    };
    // Today's table is empty (density 1), yet the replay sees what the decision saw.
    let same = replay(&p, std::slice::from_ref(&d), &whs, 1, 5, &|_| {});
    assert_eq!(same.priority.changed, 0, "{same:?}");
    let without = RecordedDecision { route_density: None, ..d };
    let r = replay(&p, &[without], &whs, 1, 5, &|_| {});
    assert_eq!(r.priority.changed, 1, "without the recorded density the table's value is used");
}
