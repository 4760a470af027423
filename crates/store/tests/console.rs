//! The console's reads (SQLite, or PostgreSQL when TEST_POSTGRES_URL is set): board counts
//! with aging, the board's filters and search in `list_orders`, the risk bands, and the KPIs from the projection.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use dispatch_core::{Command, OrderFacts, OrderState, Warehouse, Warehouses};
use dispatch_store::testing::Location;
use dispatch_store::{OrderQuery, OrderSort, OrderWrite, Store, Target, WriteMeta};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
}

fn warehouses() -> Arc<Warehouses> {
    let list: Vec<Warehouse> = serde_json::from_value(serde_json::json!([
        {"code": "AMS", "country": "NL", "timezone": "Europe/Amsterdam", "cutoffs": {"next_day": "17:00", "standard": "18:00"}},
        {"code": "DUS", "country": "DE", "timezone": "Europe/Berlin", "cutoffs": {"next_day": "17:30", "standard": "18:00"}}
    ]))
    .unwrap();
    Arc::new(Warehouses::new(list).unwrap())
}

fn facts(ext: &str, wh: &str, customer: &str, level: &str, credit: &str, carrier: &str, channel: &str) -> OrderFacts {
    serde_json::from_value(serde_json::json!({
        "source": "odoo", "external_id": ext, "warehouse": wh, "channel": channel,
        "customer": {"id": customer, "credit_status": credit}, "service_level": level, "promised_date": "2026-11-27",
        "ship_to": {"name": "A", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
        "lines": [{"sku": "P-1", "qty": 4, "qty_allocated": 4, "unit_value": 10.0}],
        "carrier_preference": carrier
    }))
    .unwrap()
}

async fn put(store: &Arc<dyn Store>, f: OrderFacts, at: DateTime<Utc>) -> String {
    let w = OrderWrite {
        target: Target::NaturalKey { source: f.source.clone(), external_id: f.external_id.clone() },
        meta: WriteMeta { actor: "test".into(), roles: vec![], request_id: None, at },
        idempotency: None,
        decide: dispatch_store::decision(
            Command::Upsert { facts: Box::new(f), expected_version: None },
            at,
            warehouses(),
            Arc::new(dispatch_core::BuiltinRules),
        ),
    };
    store.execute(w).await.unwrap().order.id
}

async fn seeded() -> (tempfile::TempDir, Arc<dyn Store>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Location::fresh(dir.path()).await.open().await;
    let ids = vec![
        put(&store, facts("A/1", "AMS", "C-1", "next_day", "ok", "dhl", "ecommerce"), t0()).await,
        put(&store, facts("A/2", "AMS", "C-2", "standard", "ok", "ups", "sales"), t0() + Duration::hours(1)).await,
        put(&store, facts("A/3", "AMS", "C-1", "next_day", "hold", "dhl", "ecommerce"), t0() + Duration::hours(2))
            .await,
        put(&store, facts("D/1", "DUS", "C-3", "next_day", "ok", "dhl", "sales"), t0() + Duration::hours(3)).await,
    ];
    (dir, store, ids)
}

#[tokio::test]
async fn the_board_counts_per_warehouse_and_state_with_the_oldest_and_the_aged() {
    let (_dir, store, _) = seeded().await;
    let cells = store.board(t0() + Duration::minutes(90)).await.unwrap();
    let cell = |w: &str, s: &str| cells.iter().find(|c| c.warehouse == w && c.state == s).cloned();
    let ams = cell("AMS", "released").expect("AMS released");
    assert_eq!((ams.count, ams.aged), (2, 2), "{cells:?}");
    assert_eq!(ams.oldest_since, Some(t0()));
    let held = cell("AMS", "on_hold").expect("AMS on hold");
    assert_eq!((held.count, held.aged, held.oldest_since), (1, 0, Some(t0() + Duration::hours(2))));
    let dus = cell("DUS", "released").unwrap();
    assert_eq!((dus.count, dus.aged), (1, 0));
    assert_eq!(cells.len(), 3);
    // Holds by reason, from the distinct reason lists.
    assert_eq!(store.counts().await.unwrap().holds_by_reason, vec![("credit_hold".to_string(), 1)]);
}

#[tokio::test]
async fn list_orders_filters_by_service_level_channel_carrier_and_searches_by_id_number_or_customer() {
    let (_dir, store, ids) = seeded().await;
    let ext = |q: OrderQuery| {
        let store = store.clone();
        async move {
            let mut v: Vec<String> =
                store.list_orders(&q).await.unwrap().items.into_iter().map(|o| o.facts.external_id).collect();
            v.sort();
            v
        }
    };
    let base = OrderQuery { limit: 50, ..Default::default() };
    assert_eq!(ext(OrderQuery { service_level: Some("standard".into()), ..base.clone() }).await, ["A/2"]);
    assert_eq!(ext(OrderQuery { channel: Some("sales".into()), ..base.clone() }).await, ["A/2", "D/1"]);
    assert_eq!(ext(OrderQuery { carrier: Some("dhl".into()), ..base.clone() }).await, ["A/1", "A/3", "D/1"]);
    assert_eq!(ext(OrderQuery { search: Some("A/2".into()), ..base.clone() }).await, ["A/2"]);
    assert_eq!(ext(OrderQuery { search: Some("C-1".into()), ..base.clone() }).await, ["A/1", "A/3"]);
    assert_eq!(ext(OrderQuery { search: Some(ids[3].clone()), ..base.clone() }).await, ["D/1"]);
    assert!(ext(OrderQuery { search: Some("nothing".into()), ..base.clone() }).await.is_empty());
    // Combined with the dispatch sequence of the released queue.
    let q = OrderQuery {
        states: vec![OrderState::Released],
        carrier: Some("dhl".into()),
        sort: OrderSort::Priority,
        ..base.clone()
    };
    assert_eq!(ext(q).await, ["A/1", "D/1"]);
}

async fn run(store: &Arc<dyn Store>, id: &str, cmd: Command, at: DateTime<Utc>) -> dispatch_core::Order {
    let w = OrderWrite {
        target: Target::Id(id.to_string()),
        meta: WriteMeta { actor: "user:sam".into(), roles: vec![], request_id: None, at },
        idempotency: None,
        decide: dispatch_store::decision(cmd, at, warehouses(), Arc::new(dispatch_core::BuiltinRules)),
    };
    store.execute(w).await.unwrap().order
}

/// The KPI columns the writer keeps are what folding each order's events gives, and
/// `kpis_since` counts every order received in the window from them.
#[tokio::test]
async fn kpis_come_from_the_projection_and_agree_with_the_event_fold() {
    let (_dir, store, ids) = seeded().await;
    // A/1 is booked and departs; A/2 is held for the missed cut-off, a supervisor overrides
    // it, then it is booked and departs too: touched.
    let later = t0() + Duration::days(4);
    run(
        &store,
        &ids[0],
        Command::RecordBooking { carrier: "dhl".into(), tracking_number: "T1".into(), service: None },
        t0() + Duration::hours(1),
    )
    .await;
    run(&store, &ids[0], Command::RecordDeparture { at: t0() + Duration::hours(5) }, t0() + Duration::hours(5)).await;
    let held = run(&store, &ids[1], Command::Reevaluate, later).await;
    assert_eq!(held.hold_reasons, vec![dispatch_core::HoldReason::CutoffMissed]);
    let over = Command::OverrideHolds {
        reasons: vec![dispatch_core::HoldReason::CutoffMissed],
        note: "customer accepts a late delivery".into(),
        roles: vec![dispatch_core::Role::Supervisor],
        expected_version: Some(held.version),
    };
    assert_eq!(run(&store, &ids[1], over, later).await.state, OrderState::Released);
    run(
        &store,
        &ids[1],
        Command::RecordBooking { carrier: "ups".into(), tracking_number: "T2".into(), service: None },
        later,
    )
    .await;
    run(&store, &ids[1], Command::RecordDeparture { at: later + Duration::hours(1) }, later + Duration::hours(1)).await;

    let mut events = Vec::new();
    for id in &ids {
        events.extend(store.events(id).await.unwrap());
    }
    let mut folded = dispatch_core::kpi::kpis(&events);
    // The store counts cycle times to 0.1 h (a histogram in SQL); the fold to the second.
    let res = dispatch_store::kpi_rows::CYCLE_RESOLUTION_SECS;
    for b in folded.daily.values_mut().chain(folded.total.values_mut()) {
        for c in &mut b.cycle_secs {
            *c = *c / res * res;
        }
    }
    let stored = store.kpis_since(t0()).await.unwrap();
    assert_eq!(stored, folded);
    let ams = &stored.total["AMS"];
    assert_eq!((ams.received, ams.released, ams.dispatched), (3, 2, 2));
    assert_eq!((ams.dispatched_touchless, ams.touchless_rate()), (1, Some(0.5)), "the override is a touch");
    assert_eq!(ams.cycle_percentile(0.5), Some(5 * 3600));
    assert_eq!(stored.total["DUS"].on_time_rate(), Some(1.0));
    // Only orders received in the window.
    let since = store.kpis_since(t0() + Duration::minutes(90)).await.unwrap();
    assert_eq!((since.total["AMS"].received, since.total["DUS"].received), (1, 1));
    assert!(store.kpis_since(t0() + Duration::days(30)).await.unwrap().total.is_empty());
}

/// An evaluator that records a model score: the built-in rules, and a late-departure
/// probability per customer.
struct Scoring;

impl dispatch_core::Evaluator for Scoring {
    fn evaluate(&self, f: &OrderFacts, wh: &Warehouse, now: DateTime<Utc>) -> dispatch_core::Evaluation {
        let mut e = dispatch_core::readiness::evaluate(f, wh, now);
        let p = match f.customer.id.as_str() {
            "C-1" => Some(0.8),
            "C-2" => Some(0.35),
            "C-3" => Some(0.05),
            _ => None,
        };
        e.scored =
            p.map(|late_departure| dispatch_core::risk::ModelScore { model_version: "m1".into(), late_departure });
        e
    }
}

#[tokio::test]
async fn the_board_filters_by_the_risk_band_the_projection_keeps() {
    use dispatch_core::risk::RiskBand;
    let dir = tempfile::tempdir().unwrap();
    let store = Location::fresh(dir.path()).await.open().await;
    for (ext, customer) in [("R/1", "C-1"), ("R/2", "C-2"), ("R/3", "C-3"), ("R/4", "C-4"), ("R/5", "C-1")] {
        let f = facts(ext, "AMS", customer, "next_day", "ok", "dhl", "sales");
        let w = OrderWrite {
            target: Target::NaturalKey { source: f.source.clone(), external_id: f.external_id.clone() },
            meta: WriteMeta { actor: "test".into(), roles: vec![], request_id: None, at: t0() },
            idempotency: None,
            decide: dispatch_store::decision(
                Command::Upsert { facts: Box::new(f), expected_version: None },
                t0(),
                warehouses(),
                Arc::new(Scoring),
            ),
        };
        let o = store.execute(w).await.unwrap().order;
        assert_eq!(o.state, OrderState::Released);
    }
    let band = |b: RiskBand| {
        let store = store.clone();
        async move {
            let q = OrderQuery {
                states: vec![OrderState::Released],
                risk: Some(b),
                sort: OrderSort::Priority,
                limit: 50,
                ..Default::default()
            };
            let page = store.list_orders(&q).await.unwrap();
            let mut v: Vec<(String, Option<f64>)> =
                page.items.into_iter().map(|o| (o.facts.external_id, o.late_departure_risk)).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
    };
    assert_eq!(band(RiskBand::High).await, [("R/1".to_string(), Some(0.8)), ("R/5".to_string(), Some(0.8))]);
    assert_eq!(band(RiskBand::Medium).await, [("R/2".to_string(), Some(0.35))]);
    // The unscored order (no model score) is in no band.
    assert_eq!(band(RiskBand::Low).await, [("R/3".to_string(), Some(0.05))]);
}
