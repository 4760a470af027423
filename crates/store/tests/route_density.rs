//! Route density in the store: the writer keeps `orders.route_key` for the members of a wave
//! (released or booked orders), and `route_members` lists them from the index. Runs on
//! PostgreSQL when `TEST_POSTGRES_URL` is set (`scripts/with-postgres`), on SQLite otherwise.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use dispatch_core::{Command, Ctx, OrderFacts, Warehouse, Warehouses, decide};
use dispatch_store::testing::Location;
use dispatch_store::{OrderWrite, RouteMember, Store, Target, WriteMeta};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
}

fn warehouses() -> Arc<Warehouses> {
    let w: Warehouse = serde_json::from_value(serde_json::json!({
        "code": "AMS", "country": "NL", "timezone": "Europe/Amsterdam", "cutoffs": {"next_day": "17:00"}
    }))
    .unwrap();
    Arc::new(Warehouses::new(vec![w]).unwrap())
}

fn facts(ext: &str, postcode: &str, promised: &str, allocated: u32) -> OrderFacts {
    serde_json::from_value(serde_json::json!({
        "source": "odoo", "external_id": ext, "warehouse": "AMS",
        "customer": {"id": "C-1"}, "service_level": "next_day", "promised_date": promised,
        "ship_to": {"name": "A", "street": "Damrak 1", "city": "Amsterdam", "postcode": postcode, "country": "NL"},
        "lines": [{"sku": "P-1", "qty": 4, "qty_allocated": allocated, "unit_value": 10.0}]
    }))
    .unwrap()
}

async fn run(store: &Arc<dyn Store>, target: Target, cmd: Command) {
    let whs = warehouses();
    store
        .execute(OrderWrite {
            target,
            meta: WriteMeta { actor: "test".into(), roles: vec![], request_id: None, at: now() },
            idempotency: None,
            decide: Box::new(move |cur| decide(cur, cmd.clone(), &Ctx::new(now(), &whs))),
        })
        .await
        .unwrap();
}

async fn upsert(store: &Arc<dyn Store>, f: OrderFacts) {
    let target = Target::NaturalKey { source: f.source.clone(), external_id: f.external_id.clone() };
    run(store, target, Command::Upsert { facts: Box::new(f), expected_version: None }).await;
}

fn member(key: &str, ext: &str) -> RouteMember {
    RouteMember { route_key: key.into(), source: "odoo".into(), external_id: ext.into() }
}

async fn members(store: &Arc<dyn Store>, from: DateTime<Utc>) -> Vec<RouteMember> {
    let mut m = store.route_members(from).await.unwrap();
    m.sort_by(|a, b| a.external_id.cmp(&b.external_id));
    m
}

#[tokio::test]
async fn the_members_of_each_wave_are_listed_with_their_route_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Location::fresh(dir.path()).await.open().await;
    // Promised Thu 26 Nov, next day: leaves Wed 25 Nov 17:00 Amsterdam = 16:00 UTC.
    let wave = "AMS@2026-11-25T16:00Z";
    upsert(&store, facts("A", "1012 LG", "2026-11-26", 4)).await;
    upsert(&store, facts("B", "1017 AB", "2026-11-26", 4)).await;
    upsert(&store, facts("C", "3011 AA", "2026-11-26", 4)).await;
    // Another wave (a day later), and a held order (stock short): not members.
    upsert(&store, facts("D", "1012 LG", "2026-11-27", 4)).await;
    upsert(&store, facts("E", "1012 LG", "2026-11-26", 1)).await;
    let got = members(&store, now()).await;
    assert_eq!(
        got,
        vec![
            member(&format!("NL-10|{wave}"), "A"),
            member(&format!("NL-10|{wave}"), "B"),
            member(&format!("NL-30|{wave}"), "C"),
            member("NL-10|AMS@2026-11-26T16:00Z", "D"),
        ]
    );
    // Only waves that still lie ahead are read.
    let later = Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap();
    assert_eq!(members(&store, later).await, vec![member("NL-10|AMS@2026-11-26T16:00Z", "D")]);

    // Joining and leaving: E's stock arrives (released: joins); B is cancelled (leaves).
    upsert(&store, facts("E", "1012 LG", "2026-11-26", 4)).await;
    let b = store.order_by_key("odoo", "B").await.unwrap().unwrap();
    run(&store, Target::Id(b.id), Command::Cancel { reason: None, expected_version: None }).await;
    // A moves to another area (the ERP corrected the address): its key follows.
    upsert(&store, facts("A", "3012 CD", "2026-11-26", 4)).await;
    let got: Vec<(String, String)> =
        members(&store, now()).await.into_iter().map(|m| (m.external_id, m.route_key)).collect();
    assert_eq!(
        got,
        vec![
            ("A".into(), format!("NL-30|{wave}")),
            ("C".into(), format!("NL-30|{wave}")),
            ("D".into(), "NL-10|AMS@2026-11-26T16:00Z".into()),
            ("E".into(), format!("NL-10|{wave}")),
        ]
    );
}
