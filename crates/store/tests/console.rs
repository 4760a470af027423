//! The console's reads (SQLite, or PostgreSQL when TEST_POSTGRES_URL is set): board counts
//! with aging, the board's filters and search in `list_orders`, and the KPI event read.

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

#[tokio::test]
async fn kpi_events_are_those_of_the_newest_orders_created_since_grouped_by_order() {
    let (_dir, store, ids) = seeded().await;
    let all = store.events_of_orders_since(t0(), 100).await.unwrap();
    let orders: std::collections::BTreeSet<&str> = all.iter().map(|e| e.order_id.as_str()).collect();
    assert_eq!(orders.len(), 4);
    // Grouped by order, each order's events in version order.
    for w in all.windows(2) {
        assert!(w[0].order_id < w[1].order_id || (w[0].order_id == w[1].order_id && w[0].version + 1 == w[1].version));
    }
    let since = store.events_of_orders_since(t0() + Duration::minutes(90), 100).await.unwrap();
    let orders: std::collections::BTreeSet<&str> = since.iter().map(|e| e.order_id.as_str()).collect();
    assert_eq!(orders, [ids[2].as_str(), ids[3].as_str()].into_iter().collect());
    // At most the newest `max_orders`.
    let newest = store.events_of_orders_since(t0(), 1).await.unwrap();
    assert!(newest.iter().all(|e| e.order_id == ids[3]), "{newest:?}");
    // The KPI fold over them: one AMS release on time per released order.
    let k = dispatch_core::kpi::kpis(&all);
    assert_eq!(k.total["AMS"].received, 3);
    assert_eq!(k.total["AMS"].released, 2);
    assert_eq!(k.total["DUS"].on_time_rate(), Some(1.0));
}
