//! Store support for carriers: inbound events deduplicated in the write transaction, orders
//! found by tracking number, dead letters listed and put back.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use dispatch_core::{
    Command, Ctx, OrderFacts, OrderState, TrackingStatus, TrackingUpdate, Warehouse, Warehouses, decide,
};
use dispatch_store::{InboundKey, JobStatus, OrderWrite, SqliteOptions, SqliteStore, Store, Target, WriteMeta};

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

fn facts(ext: &str) -> OrderFacts {
    serde_json::from_value(serde_json::json!({
        "source": "odoo", "external_id": ext, "warehouse": "AMS",
        "customer": {"id": "C-1"}, "service_level": "next_day", "promised_date": "2026-11-27",
        "ship_to": {"name": "A", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
        "lines": [{"sku": "P-1", "qty": 4, "qty_allocated": 4, "unit_value": 10.0}]
    }))
    .unwrap()
}

fn write(target: Target, cmd: Command) -> OrderWrite {
    let whs = warehouses();
    OrderWrite {
        target,
        meta: WriteMeta { actor: "test".into(), roles: vec![], request_id: None, at: now() },
        idempotency: None,
        decide: Box::new(move |cur| decide(cur, cmd.clone(), &Ctx::new(now(), &whs))),
    }
}

fn update(id: &str, status: TrackingStatus) -> TrackingUpdate {
    TrackingUpdate {
        carrier: "mock".into(),
        event_id: id.into(),
        tracking_number: "TRK-1".into(),
        carrier_status: status.code().into(),
        status,
        event_time: now() + Duration::minutes(5),
        detail: None,
    }
}

fn key(id: &str) -> InboundKey {
    InboundKey { source: "carrier:mock".into(), event_id: id.into(), kind: "in_transit".into() }
}

#[tokio::test]
async fn inbound_events_apply_once_and_find_their_order_by_tracking_number() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(SqliteOptions::new(dir.path().join("s.db"))).await.unwrap());
    let f = facts("T/1");
    let nk = Target::NaturalKey { source: f.source.clone(), external_id: f.external_id.clone() };
    let o = store.execute(write(nk, Command::Upsert { facts: Box::new(f), expected_version: None })).await.unwrap();
    assert_eq!(o.order.state, OrderState::Released);
    let id = o.order.id.clone();
    assert_eq!(store.order_by_tracking("TRK-1").await.unwrap(), None);
    let booking =
        Command::RecordBooking { carrier: "mock".into(), tracking_number: "TRK-1".into(), service: Some("x".into()) };
    store.execute(write(Target::Id(id.clone()), booking)).await.unwrap();
    assert_eq!(store.order_by_tracking("TRK-1").await.unwrap(), Some((id.clone(), "mock".to_string())));

    // The same event three times at once (one batch) and once more later: applied once.
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let store = store.clone();
        let w =
            write(Target::Id(id.clone()), Command::RecordTracking { update: update("e1", TrackingStatus::InTransit) });
        tasks.push(tokio::spawn(async move { store.execute_inbound(key("e1"), w).await }));
    }
    let mut fresh = 0;
    for t in tasks {
        let out = t.await.unwrap().unwrap();
        if !out.replayed {
            fresh += 1;
            assert_eq!(out.appended, 2, "tracking.updated and shipment.dispatched");
        }
        assert_eq!(out.order.state, OrderState::Dispatched);
    }
    assert_eq!(fresh, 1);
    let w = write(Target::Id(id.clone()), Command::RecordTracking { update: update("e1", TrackingStatus::InTransit) });
    assert!(store.execute_inbound(key("e1"), w).await.unwrap().replayed);
    let events = store.events(&id).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.data.kind() == "tracking.updated").count(), 1);

    // A refused inbound event leaves no key behind: once the order exists it can apply.
    let w = write(
        Target::Id("ord_missing".into()),
        Command::RecordTracking { update: update("e2", TrackingStatus::Delivered) },
    );
    assert!(store.execute_inbound(key("e2"), w).await.is_err());
    let w = write(Target::Id(id.clone()), Command::RecordTracking { update: update("e2", TrackingStatus::Delivered) });
    let out = store.execute_inbound(key("e2"), w).await.unwrap();
    assert!(!out.replayed);
    assert_eq!(out.order.state, OrderState::Delivered);
}

#[tokio::test]
async fn dead_letters_are_listed_and_put_back_with_a_fresh_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteOptions::new(dir.path().join("s.db"))).await.unwrap();
    let f = facts("T/2");
    let nk = Target::NaturalKey { source: f.source.clone(), external_id: f.external_id.clone() };
    store.execute(write(nk, Command::Upsert { facts: Box::new(f), expected_version: None })).await.unwrap();
    let kinds = ["book_shipment"];
    let jobs = store.claim_jobs("w", &kinds, 10, now(), Duration::seconds(30)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    assert!(store.finish_job(jobs[0].id, "w", JobStatus::Dead, Some("carrier said no")).await.unwrap());
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("carrier said no"));
    assert_eq!(dead[0].attempts, 1);
    assert!(
        store.claim_jobs("w", &kinds, 10, now() + Duration::hours(1), Duration::seconds(30)).await.unwrap().is_empty()
    );

    let back = store.retry_dead_letter(dead[0].id, now()).await.unwrap().unwrap();
    assert_eq!(back.attempts, 0);
    assert!(store.retry_dead_letter(dead[0].id, now()).await.unwrap().is_none(), "no longer dead");
    assert!(store.retry_dead_letter(999, now()).await.unwrap().is_none());
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    let again = store.claim_jobs("w", &kinds, 10, now(), Duration::seconds(30)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
}

#[tokio::test]
async fn a_write_can_finish_its_job_in_the_same_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteOptions::new(dir.path().join("s.db"))).await.unwrap();
    let f = facts("T/3");
    let nk = Target::NaturalKey { source: f.source.clone(), external_id: f.external_id.clone() };
    let o = store.execute(write(nk, Command::Upsert { facts: Box::new(f), expected_version: None })).await.unwrap();
    let jobs = store.claim_jobs("w", &["book_shipment"], 10, now(), Duration::seconds(30)).await.unwrap();
    let booking = Command::RecordBooking { carrier: "mock".into(), tracking_number: "TRK-3".into(), service: None };
    // A refused write leaves the job running.
    let refused = write(Target::Id("ord_missing".into()), booking.clone());
    assert!(store.execute_finishing(refused, jobs[0].id, "w").await.is_err());
    let counts = store.job_counts().await.unwrap();
    assert!(counts.contains(&("book_shipment".to_string(), "running".to_string(), 1)), "{counts:?}");
    let out = store.execute_finishing(write(Target::Id(o.order.id.clone()), booking), jobs[0].id, "w").await.unwrap();
    assert_eq!(out.order.state, OrderState::Booked);
    let counts = store.job_counts().await.unwrap();
    assert!(counts.contains(&("book_shipment".to_string(), "done".to_string(), 1)), "{counts:?}");
    assert!(!store.finish_job(jobs[0].id, "w", JobStatus::Done, None).await.unwrap(), "already done");
}

/// The SQLite writer rewrites only the row when a write changes no indexed column
/// (`write::Indexed`), and the whole projection otherwise. Whichever it did, every column that
/// the board, the KPIs, the lists and the tracking lookup read must agree with the order's
/// document after each step of a shipment: events that move the state, events that do not, and
/// a late one that changes nothing but the timeline.
#[tokio::test]
async fn the_projection_columns_follow_the_document_through_a_shipment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = SqliteStore::open(SqliteOptions::new(&path)).await.unwrap();
    let f = facts("T/9");
    let nk = Target::NaturalKey { source: f.source.clone(), external_id: f.external_id.clone() };
    let id = store
        .execute(write(nk, Command::Upsert { facts: Box::new(f), expected_version: None }))
        .await
        .unwrap()
        .order
        .id;
    let booking =
        Command::RecordBooking { carrier: "mock".into(), tracking_number: "TRK-1".into(), service: Some("x".into()) };
    store.execute(write(Target::Id(id.clone()), booking)).await.unwrap();
    let columns = |step: &str| {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let (state, version, state_since, updated_at, dispatched_at, tracking, doc): (
            String,
            i64,
            i64,
            i64,
            Option<i64>,
            Option<String>,
            String,
        ) = conn
            .query_row(
                "SELECT state, version, state_since, updated_at, dispatched_at, tracking_number, doc \
                 FROM orders WHERE id = ?1",
                [&id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
            )
            .unwrap();
        let o: dispatch_core::Order = serde_json::from_str(&doc).unwrap();
        assert_eq!(state, o.state.code(), "state after {step}");
        assert_eq!(version, o.version as i64, "version after {step}");
        assert_eq!(state_since, o.state_since.timestamp_micros(), "state_since after {step}");
        assert_eq!(updated_at, o.updated_at.timestamp_micros(), "updated_at after {step}");
        let kpi = dispatch_core::kpi::OrderKpi::of(&o);
        assert_eq!(dispatched_at, kpi.dispatched_at.map(|t| t.timestamp_micros()), "dispatched_at after {step}");
        assert_eq!(tracking.as_deref(), Some("TRK-1"), "tracking number after {step}");
        o.state
    };
    assert_eq!(columns("booking"), OrderState::Booked);
    let steps = [
        ("p1", TrackingStatus::PreTransit, 1, OrderState::Booked),
        ("t1", TrackingStatus::InTransit, 2, OrderState::Dispatched),
        ("o1", TrackingStatus::OutForDelivery, 3, OrderState::Dispatched),
        ("d1", TrackingStatus::Delivered, 4, OrderState::Delivered),
        ("late", TrackingStatus::InTransit, 3, OrderState::Delivered),
    ];
    for (event, status, minutes, expected) in steps {
        let update = TrackingUpdate { event_time: now() + Duration::minutes(minutes), ..update(event, status) };
        let w = write(Target::Id(id.clone()), Command::RecordTracking { update });
        let out = store.execute_inbound(key(event), w).await.unwrap();
        assert!(out.appended > 0, "{event} is recorded");
        assert_eq!(columns(event), expected, "after {event}");
    }
}
