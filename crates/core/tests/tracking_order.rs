//! Property: any permutation and duplication of a shipment's tracking events yields the same
//! final order state and shipment as the in-order sequence, and the timeline keeps every
//! distinct event exactly once (the store deduplicates by carrier event id; this test plays
//! that part with a set).

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
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

fn facts() -> OrderFacts {
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

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap()
}

/// Runs a command and appends what it decided to the log.
fn run(state: Option<Order>, cmd: Command, log: &mut Vec<Event>) -> Option<Order> {
    let whs = warehouses();
    let ctx = Ctx::new(t0(), &whs);
    let events = decide(state.as_ref(), cmd, &ctx).expect("a legal command");
    let mut s = state;
    for data in events {
        let version = s.as_ref().map_or(1, |o| o.version + 1);
        let ev = Event { order_id: "ord_t".into(), version, at: t0(), actor: "carrier".into(), request_id: None, data };
        s = Some(apply(s, &ev).unwrap());
        log.push(ev);
    }
    s
}

fn booked(log: &mut Vec<Event>) -> Order {
    let o = run(None, Command::Upsert { facts: Box::new(facts()), expected_version: None }, log);
    assert_eq!(o.as_ref().unwrap().state, OrderState::Released);
    run(o, Command::RecordBooking { carrier: "mock".into(), tracking_number: "TRK1".into(), service: None }, log)
        .unwrap()
}

/// Feeds updates as the webhook endpoint would: duplicates (same event id) are dropped.
fn feed(updates: &[TrackingUpdate]) -> (Order, Vec<Event>) {
    let mut log = Vec::new();
    let mut o = booked(&mut log);
    let mut seen = HashSet::new();
    for u in updates {
        if !seen.insert(u.event_id.clone()) {
            continue;
        }
        o = run(Some(o), Command::RecordTracking { update: u.clone() }, &mut log).unwrap();
    }
    (o, log)
}

fn update_strategy() -> impl Strategy<Value = (TrackingStatus, i64, bool)> {
    (prop::sample::select(TrackingStatus::ALL.to_vec()), 0i64..12, any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn arrival_order_and_duplicates_do_not_change_the_outcome(
        raw in prop::collection::vec(update_strategy(), 1..14),
        shuffle_seed in any::<u64>(),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        // Distinct carrier events; event times in a small range so ties happen.
        let updates: Vec<TrackingUpdate> = raw
            .iter()
            .enumerate()
            .map(|(i, (status, minute, odd_code))| TrackingUpdate {
                carrier: "mock".into(),
                event_id: format!("evt_{i:02}"),
                tracking_number: "TRK1".into(),
                carrier_status: if *status == TrackingStatus::Unknown && *odd_code {
                    "teleported".into()
                } else {
                    status.code().into()
                },
                status: *status,
                event_time: t0() + Duration::minutes(*minute * 10),
                detail: None,
            })
            .collect();
        let mut in_order = updates.clone();
        in_order.sort_by_key(|u| (u.event_time, u.event_id.clone()));

        // A permutation with duplicates sprinkled in.
        let mut shuffled = updates.clone();
        for d in &dups {
            shuffled.push(d.get(&updates).clone());
        }
        let mut rng = shuffle_seed;
        for i in (1..shuffled.len()).rev() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let j = (rng >> 33) as usize % (i + 1);
            shuffled.swap(i, j);
        }

        let (expected, _) = feed(&in_order);
        let (actual, log) = feed(&shuffled);
        prop_assert_eq!(expected.state, actual.state);
        prop_assert_eq!(&expected.shipment, &actual.shipment);

        // The shipment's status is the greatest known update; unknown codes never set it.
        let best = updates
            .iter()
            .filter(|u| u.status != TrackingStatus::Unknown)
            .max_by(|a, b| tracking::precedence(a, b));
        let tracked = actual.shipment.as_ref().and_then(|s| s.tracking.as_ref());
        prop_assert_eq!(tracked.map(|t| t.event_id.clone()), best.map(|b| b.event_id.clone()));

        // The order's state follows only departure and delivery, monotonically.
        let want = if updates.iter().any(|u| tracking::is_delivery(u.status)) {
            OrderState::Delivered
        } else if updates.iter().any(|u| tracking::is_departure(u.status)) {
            OrderState::Dispatched
        } else {
            OrderState::Booked
        };
        prop_assert_eq!(actual.state, want);

        // Every distinct event is in the timeline exactly once.
        let recorded: Vec<String> = log
            .iter()
            .filter_map(|e| match &e.data {
                EventData::TrackingUpdated { update, .. } => Some(update.event_id.clone()),
                _ => None,
            })
            .collect();
        let distinct: BTreeSet<String> = updates.iter().map(|u| u.event_id.clone()).collect();
        prop_assert_eq!(recorded.len(), distinct.len());
        prop_assert_eq!(recorded.into_iter().collect::<BTreeSet<_>>(), distinct);

        // And the log folds to the projection, as everywhere else.
        let rebuilt = replay(&log).unwrap();
        prop_assert_eq!(rebuilt.as_ref(), Some(&actual));
    }
}

#[test]
fn a_late_in_transit_after_delivery_is_recorded_but_changes_nothing() {
    let at = |m: i64| t0() + Duration::minutes(m);
    let u = |id: &str, status: TrackingStatus, m: i64| TrackingUpdate {
        carrier: "mock".into(),
        event_id: id.into(),
        tracking_number: "TRK1".into(),
        carrier_status: status.code().into(),
        status,
        event_time: at(m),
        detail: None,
    };
    let (o, log) = feed(&[
        u("e1", TrackingStatus::PreTransit, 0),
        u("e3", TrackingStatus::Delivered, 30),
        u("e2", TrackingStatus::InTransit, 10),
        u("e4", TrackingStatus::InTransit, 40),
        u("e5", TrackingStatus::Unknown, 50),
    ]);
    assert_eq!(o.state, OrderState::Delivered);
    let s = o.shipment.unwrap();
    assert_eq!(s.tracking.unwrap().status, TrackingStatus::Delivered);
    assert_eq!(s.delivered_at, Some(at(30)));
    assert_eq!(s.departed_at, Some(at(10)), "the earliest departure scan, although it came late");
    let applied: Vec<(String, bool)> = log
        .iter()
        .filter_map(|e| match &e.data {
            EventData::TrackingUpdated { update, applied } => Some((update.event_id.clone(), *applied)),
            _ => None,
        })
        .collect();
    assert_eq!(
        applied,
        [("e1", true), ("e3", true), ("e2", false), ("e4", false), ("e5", false)]
            .map(|(a, b)| (a.to_string(), b))
            .to_vec()
    );
    // Tracking for an order with no shipment is refused, as is a foreign tracking number.
    let mut l = Vec::new();
    let released = run(None, Command::Upsert { facts: Box::new(facts()), expected_version: None }, &mut l).unwrap();
    let whs = warehouses();
    let ctx = Ctx::new(t0(), &whs);
    let cmd = Command::RecordTracking { update: u("x", TrackingStatus::InTransit, 1) };
    assert!(matches!(decide(Some(&released), cmd, &ctx), Err(DomainError::IllegalTransition { .. })));
    let booked = booked(&mut Vec::new());
    let mut foreign = u("y", TrackingStatus::InTransit, 1);
    foreign.tracking_number = "OTHER".into();
    assert!(matches!(
        decide(Some(&booked), Command::RecordTracking { update: foreign }, &ctx),
        Err(DomainError::Invalid(_))
    ));
}
