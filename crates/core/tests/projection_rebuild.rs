//! Property: whatever commands an order goes through, rebuilding its projection from the
//! (JSON round-tripped) event log gives exactly the projection that was kept along the way.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use dispatch_core::*;
use proptest::prelude::*;

fn warehouses() -> Warehouses {
    let w: Warehouse = serde_json::from_value(serde_json::json!({
        "code": "AMS", "country": "NL", "timezone": "Europe/Amsterdam",
        "cutoffs": {"same_day": "12:00", "next_day": "17:00"}
    }))
    .unwrap();
    Warehouses::new(vec![w]).unwrap()
}

fn base_facts() -> OrderFacts {
    serde_json::from_value(serde_json::json!({
        "source": "odoo", "external_id": "WH1/OUT/1", "warehouse": "AMS", "channel": "sales",
        "customer": {"id": "C-1", "name": "Acme", "tier": "gold", "credit_status": "ok"},
        "service_level": "next_day", "promised_date": "2026-12-02",
        "ship_to": {"name": "Acme", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
        "lines": [{"sku": "P-1", "qty": 4, "qty_allocated": 4, "unit_value": 120.0}],
        "payment": {"terms": "net30", "status": "ok"}, "documents": ["commercial_invoice"]
    }))
    .unwrap()
}

fn facts_strategy() -> impl Strategy<Value = OrderFacts> {
    (
        0u32..=5,
        prop::sample::select(vec!["ok", "hold", "watch"]),
        prop::sample::select(vec!["1012 LG", "XX", ""]),
        0i64..10,
        any::<bool>(),
    )
        .prop_map(|(alloc, credit, postcode, days, hazmat)| {
            let mut f = base_facts();
            f.lines[0].qty_allocated = alloc.min(4);
            f.lines[0].hazmat = hazmat;
            f.customer.credit_status = CreditStatus::from_code(credit).unwrap();
            f.ship_to.postcode = postcode.into();
            f.promised_date = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap() + Duration::days(days);
            f
        })
}

#[derive(Debug, Clone)]
enum Step {
    Upsert(Box<OrderFacts>),
    Cancel,
    Reevaluate,
    Book,
    Depart,
    Deliver,
    Exception,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => facts_strategy().prop_map(|f| Step::Upsert(Box::new(f))),
        1 => Just(Step::Cancel),
        2 => Just(Step::Reevaluate),
        2 => Just(Step::Book),
        1 => Just(Step::Depart),
        1 => Just(Step::Deliver),
        1 => Just(Step::Exception),
    ]
}

fn command(step: &Step, now: DateTime<Utc>) -> Command {
    match step {
        Step::Upsert(f) => Command::Upsert { facts: f.clone(), expected_version: None },
        Step::Cancel => Command::Cancel { reason: Some("test".into()), expected_version: None },
        Step::Reevaluate => Command::Reevaluate,
        Step::Book => Command::RecordBooking { carrier: "dhl".into(), tracking_number: "T".into(), service: None },
        Step::Depart => Command::RecordDeparture { at: now },
        Step::Deliver => Command::RecordDelivery { at: now },
        Step::Exception => Command::RaiseException { reason: "x".into() },
    }
}

proptest! {
    #[test]
    fn rebuilding_from_the_event_log_gives_the_stored_projection(
        first in facts_strategy(),
        steps in prop::collection::vec(step_strategy(), 0..25),
    ) {
        let whs = warehouses();
        let mut now = Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap();
        let mut log: Vec<Event> = Vec::new();
        let mut projection: Option<Order> = None;
        for step in std::iter::once(Step::Upsert(Box::new(first))).chain(steps) {
            now += Duration::minutes(37);
            let ctx = Ctx::new(now, &whs);
            // Refusals are fine (an illegal transition); they must just record nothing.
            let Ok(events) = decide(projection.as_ref(), command(&step, now), &ctx) else { continue };
            for data in events {
                let version = projection.as_ref().map_or(1, |o| o.version + 1);
                let ev = Event { order_id: "ord_p".into(), version, at: now, actor: "prop".into(), request_id: None, data };
                projection = Some(apply(projection, &ev).unwrap());
                log.push(ev);
            }
        }
        // Through JSON, as the store keeps both.
        let stored_log: Vec<Event> = serde_json::from_str(&serde_json::to_string(&log).unwrap()).unwrap();
        let stored_projection: Option<Order> =
            serde_json::from_str(&serde_json::to_string(&projection).unwrap()).unwrap();
        let rebuilt = replay(&stored_log).unwrap();
        prop_assert_eq!(&rebuilt, &stored_projection);
        prop_assert_eq!(rebuilt.map(|o| o.version), Some(log.len() as u64));
    }

    #[test]
    fn evaluation_is_deterministic(f in facts_strategy(), minutes in 0i64..20_000) {
        let whs = warehouses();
        let now = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap() + Duration::minutes(minutes);
        let w = whs.get("AMS").unwrap();
        let a = readiness::evaluate(&f, w, now);
        let b = readiness::evaluate(&f, w, now);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.outcome == OrderState::Released, a.hold_reasons.is_empty());
        prop_assert_eq!(a.checks.iter().filter(|c| !c.passed).count() >= a.hold_reasons.len(), true);
    }
}
