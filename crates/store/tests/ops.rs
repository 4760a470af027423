//! The live-operations aggregates behind the anomaly series (SQLite, or PostgreSQL when
//! TEST_POSTGRES_URL is set): holds entered (a re-hold is not a new hold), holds that aged
//! past the threshold unresolved, failed carrier bookings per hour, warehouse and carrier,
//! and the carrier attempt totals of a time range.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use dispatch_core::{Command, OrderFacts, OrderState, Warehouse, Warehouses};
use dispatch_store::testing::Location;
use dispatch_store::{CarrierAttempt, CarrierAttemptTotal, OpsCount, OpsCounter, OrderWrite, Store, Target, WriteMeta};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
}

fn h(hours: i64) -> DateTime<Utc> {
    t0() + Duration::hours(hours)
}

fn warehouses() -> Arc<Warehouses> {
    let list: Vec<Warehouse> = serde_json::from_value(serde_json::json!([
        {"code": "AMS", "country": "NL", "timezone": "Europe/Amsterdam", "cutoffs": {"next_day": "17:00"}},
        {"code": "DUS", "country": "DE", "timezone": "Europe/Berlin", "cutoffs": {"next_day": "17:30"}}
    ]))
    .unwrap();
    Arc::new(Warehouses::new(list).unwrap())
}

fn facts(ext: &str, wh: &str, credit: &str, channel: &str) -> OrderFacts {
    serde_json::from_value(serde_json::json!({
        "source": "odoo", "external_id": ext, "warehouse": wh, "channel": channel,
        "customer": {"id": "C-1", "credit_status": credit}, "service_level": "next_day", "promised_date": "2026-11-27",
        "ship_to": {"name": "A", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
        "lines": [{"sku": "P-1", "qty": 4, "qty_allocated": 4, "unit_value": 10.0}],
        "carrier_preference": "dhl"
    }))
    .unwrap()
}

async fn run(store: &Arc<dyn Store>, target: Target, cmd: Command, at: DateTime<Utc>) -> OrderState {
    let w = OrderWrite {
        target,
        meta: WriteMeta { actor: "test".into(), roles: vec![], request_id: None, at },
        idempotency: None,
        decide: dispatch_store::decision(cmd, at, warehouses(), Arc::new(dispatch_core::BuiltinRules)),
    };
    store.execute(w).await.unwrap().order.state
}

async fn put(store: &Arc<dyn Store>, f: OrderFacts, at: DateTime<Utc>) -> OrderState {
    let target = Target::NaturalKey { source: f.source.clone(), external_id: f.external_id.clone() };
    run(store, target, Command::Upsert { facts: Box::new(f), expected_version: None }, at).await
}

fn attempt(at: DateTime<Utc>, carrier: &str, wh: &str, outcome: &str) -> CarrierAttempt {
    CarrierAttempt {
        at,
        carrier: carrier.into(),
        warehouse: wh.into(),
        order_id: Some("ord_x".into()),
        outcome: outcome.into(),
    }
}

/// A count as a comparable tuple: (counter, hour, warehouse, carrier, count).
type Row = (OpsCounter, DateTime<Utc>, String, Option<String>, i64);

fn sorted(mut v: Vec<OpsCount>) -> Vec<Row> {
    let mut out: Vec<_> = v.drain(..).map(|c| (c.counter, c.hour, c.warehouse, c.carrier, c.count)).collect();
    out.sort();
    out
}

#[tokio::test]
async fn holds_entered_and_aged_and_booking_failures_are_counted_per_hour() {
    let dir = tempfile::tempdir().unwrap();
    let store = Location::fresh(dir.path()).await.open().await;
    // A/1: held at 08:00, held again for a changed fact at 08:30 (not a new hold), never resolved.
    assert_eq!(put(&store, facts("A/1", "AMS", "hold", "ecommerce"), h(0)).await, OrderState::OnHold);
    assert_eq!(
        put(&store, facts("A/1", "AMS", "hold", "sales"), h(0) + Duration::minutes(30)).await,
        OrderState::OnHold
    );
    // A/2: held at 09:10, released at 10:00: resolved before it aged.
    let m10 = Duration::minutes(10);
    assert_eq!(put(&store, facts("A/2", "AMS", "hold", "ecommerce"), h(1) + m10).await, OrderState::OnHold);
    assert_eq!(put(&store, facts("A/2", "AMS", "ok", "ecommerce"), h(2)).await, OrderState::Released);
    // A/3: held at 09:20, cancelled at 14:00: aged at 13:20.
    assert_eq!(put(&store, facts("A/3", "AMS", "hold", "ecommerce"), h(1) + m10 * 2).await, OrderState::OnHold);
    let a3 = Target::NaturalKey { source: "odoo".into(), external_id: "A/3".into() };
    let cancel = Command::Cancel { reason: None, expected_version: None };
    assert_eq!(run(&store, a3, cancel, h(6)).await, OrderState::Cancelled);
    // A/4: released at 08:00, held at 11:00 (a new hold after a release).
    assert_eq!(put(&store, facts("A/4", "AMS", "ok", "ecommerce"), h(0)).await, OrderState::Released);
    assert_eq!(put(&store, facts("A/4", "AMS", "hold", "ecommerce"), h(3)).await, OrderState::OnHold);
    // D/1: released, then an exception at 10:30 (an exception does not "age" as a hold).
    assert_eq!(put(&store, facts("D/1", "DUS", "ok", "ecommerce"), h(0)).await, OrderState::Released);
    let d1 = Target::NaturalKey { source: "odoo".into(), external_id: "D/1".into() };
    let raise = Command::RaiseException { reason: "carrier booking failed".into() };
    assert_eq!(run(&store, d1, raise, h(2) + m10 * 3).await, OrderState::Exception);

    for a in [
        attempt(h(0) + m10, "dhl", "AMS", "server_error"),
        attempt(h(0) + m10 * 2, "dhl", "AMS", "timeout"),
        attempt(h(0) + m10 * 3, "dhl", "AMS", CarrierAttempt::BOOKED),
        attempt(h(2), "ups", "DUS", "rejected"),
        attempt(h(9), "ups", "DUS", "rejected"),
    ] {
        store.record_carrier_attempt(&a).await.unwrap();
    }

    let all = store.ops_counts(h(-1), h(8), Duration::hours(4)).await.unwrap();
    let ams = || "AMS".to_string();
    use OpsCounter::*;
    assert_eq!(
        sorted(all),
        vec![
            (HoldsEntered, h(0), ams(), None, 1),
            (HoldsEntered, h(1), ams(), None, 2),
            (HoldsEntered, h(2), "DUS".into(), None, 1),
            (HoldsEntered, h(3), ams(), None, 1),
            (HoldsAged, h(4), ams(), None, 1),
            (HoldsAged, h(5), ams(), None, 1),
            (HoldsAged, h(7), ams(), None, 1),
            (BookingFailures, h(0), ams(), Some("dhl".into()), 2),
            (BookingFailures, h(2), "DUS".into(), Some("ups".into()), 1),
        ]
    );
    // The range bounds the hour a hold aged in, not the hour it began.
    let later = store.ops_counts(h(4), h(6), Duration::hours(4)).await.unwrap();
    assert_eq!(sorted(later), vec![(HoldsAged, h(4), ams(), None, 1), (HoldsAged, h(5), ams(), None, 1)]);
    // A longer threshold: A/3 was cancelled 4 h 40 min after it began.
    let long = store.ops_counts(h(-1), h(12), Duration::hours(5)).await.unwrap();
    let aged: Vec<_> = sorted(long).into_iter().filter(|c| c.0 == HoldsAged).collect();
    assert_eq!(aged, vec![(HoldsAged, h(5), ams(), None, 1), (HoldsAged, h(8), ams(), None, 1)]);

    let totals = store.carrier_attempt_totals(h(0), h(1)).await.unwrap();
    assert_eq!(totals, vec![CarrierAttemptTotal { carrier: "dhl".into(), attempts: 3, failures: 2 }]);
    let totals = store.carrier_attempt_totals(h(0), h(10)).await.unwrap();
    assert_eq!(
        totals,
        vec![
            CarrierAttemptTotal { carrier: "dhl".into(), attempts: 3, failures: 2 },
            CarrierAttemptTotal { carrier: "ups".into(), attempts: 2, failures: 2 },
        ]
    );
    assert!(store.carrier_attempt_totals(h(10), h(11)).await.unwrap().is_empty());

    // Retention removes old attempts with the other operational rows.
    store.purge_operational(h(1)).await.unwrap();
    let totals = store.carrier_attempt_totals(h(-1), h(10)).await.unwrap();
    assert_eq!(totals, vec![CarrierAttemptTotal { carrier: "ups".into(), attempts: 2, failures: 2 }]);
    store.close().await;
}
