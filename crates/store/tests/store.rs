//! The store on its own (SQLite, or PostgreSQL when TEST_POSTGRES_URL is set): group
//! commit, projections, outbox jobs with leases, idempotency, reopen, leadership, wake-ups.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use dispatch_core::{Command, DomainError, OrderFacts, OrderState, Warehouse, Warehouses, replay};
use dispatch_store::testing::Location;
use dispatch_store::{IdempotencyKey, JobStatus, OrderWrite, Store, StoreError, Target, WriteMeta};

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

fn facts(ext: &str, allocated: u32) -> OrderFacts {
    serde_json::from_value(serde_json::json!({
        "source": "odoo", "external_id": ext, "warehouse": "AMS",
        "customer": {"id": "C-1"}, "service_level": "next_day", "promised_date": "2026-11-27",
        "ship_to": {"name": "A", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
        "lines": [{"sku": "P-1", "qty": 4, "qty_allocated": allocated, "unit_value": 10.0}]
    }))
    .unwrap()
}

fn upsert(f: OrderFacts, idem: Option<&str>) -> OrderWrite {
    let whs = warehouses();
    OrderWrite {
        target: Target::NaturalKey { source: f.source.clone(), external_id: f.external_id.clone() },
        meta: WriteMeta { actor: "test".into(), roles: vec![], request_id: None, at: now() },
        idempotency: idem.map(|k| IdempotencyKey { scope: "t".into(), key: k.into(), request_hash: format!("{f:?}") }),
        decide: dispatch_store::decision(
            Command::Upsert { facts: Box::new(f), expected_version: None },
            now(),
            whs,
            Arc::new(dispatch_core::BuiltinRules),
        ),
    }
}

async fn open(dir: &tempfile::TempDir) -> (Location, Arc<dyn Store>) {
    let loc = Location::fresh(dir.path()).await;
    let store = loc.open().await;
    (loc, store)
}

#[tokio::test]
async fn concurrent_writes_commit_together_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (loc, store) = open(&dir).await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        let store = store.clone();
        tasks.push(tokio::spawn(
            async move { store.execute(upsert(facts(&format!("O/{}", i % 100), i % 5), None)).await },
        ));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.order_count().await.unwrap(), 100);
    store.close().await;

    let store = loc.open().await;
    assert_eq!(store.order_count().await.unwrap(), 100);
    let mut q = dispatch_store::OrderQuery { limit: 1000, ..Default::default() };
    let page = store.list_orders(&q).await.unwrap();
    assert_eq!(page.items.len(), 100);
    assert!(page.next_after.is_none());
    for o in &page.items {
        let rebuilt = replay(&store.events(&o.id).await.unwrap()).unwrap().unwrap();
        assert_eq!(&rebuilt, o);
    }
    q.limit = 30;
    q.states = vec![OrderState::Released];
    let p = store.list_orders(&q).await.unwrap();
    assert!(p.items.iter().all(|o| o.state == OrderState::Released));
}

#[tokio::test]
async fn a_refused_write_does_not_disturb_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = open(&dir).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if i == 25 {
                let mut w = upsert(facts("BAD", 4), None);
                w.decide = Box::new(|_| Err(DomainError::Invalid(vec![])));
                store.execute(w).await
            } else {
                store.execute(upsert(facts(&format!("G/{i}"), 4), None)).await
            }
        }));
    }
    let mut failed = 0;
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            assert!(matches!(e, StoreError::Domain(DomainError::Invalid(_))));
            failed += 1;
        }
    }
    assert_eq!(failed, 1);
    assert_eq!(store.order_count().await.unwrap(), 49);
    assert!(store.order_by_key("odoo", "BAD").await.unwrap().is_none());
}

#[tokio::test]
async fn idempotency_keys_in_one_batch_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = open(&dir).await;
    let (a, b) = tokio::join!(
        store.execute(upsert(facts("I/1", 4), Some("k"))),
        store.execute(upsert(facts("I/1", 4), Some("k")))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.order, b.order);
    assert!(a.replayed != b.replayed, "exactly one of them is the replay");
    assert!(a.created && b.created, "the replay gives the first answer");
    let err = store.execute(upsert(facts("I/1", 2), Some("k"))).await.unwrap_err();
    assert!(matches!(err, StoreError::IdempotencyMismatch));
    assert_eq!(store.events(&a.order.id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn release_enqueues_one_booking_job_claimed_under_a_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = open(&dir).await;
    let released = store.execute(upsert(facts("J/1", 4), None)).await.unwrap();
    assert_eq!(released.order.state, OrderState::Released);
    store.execute(upsert(facts("J/2", 0), None)).await.unwrap(); // held: no job
    let kinds = ["book_shipment"];
    let lease = Duration::seconds(30);

    let jobs = store.claim_jobs("w1", &kinds, 10, now(), lease).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].order_id.as_deref(), Some(released.order.id.as_str()));
    assert_eq!(jobs[0].attempts, 1);
    assert!(store.claim_jobs("w2", &kinds, 10, now(), lease).await.unwrap().is_empty(), "leased");
    // w1 dies; after the lease w2 takes over, and w1's late completion is refused.
    let later = now() + Duration::seconds(31);
    let again = store.claim_jobs("w2", &kinds, 10, later, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert!(!store.finish_job(jobs[0].id, "w1", JobStatus::Done, None).await.unwrap());
    // A retry puts it back for later.
    assert!(store.retry_job(again[0].id, "w2", later + Duration::minutes(5), "carrier 503").await.unwrap());
    assert!(store.claim_jobs("w3", &kinds, 10, later, lease).await.unwrap().is_empty());
    let third = store.claim_jobs("w3", &kinds, 10, later + Duration::minutes(6), lease).await.unwrap();
    assert_eq!(third[0].attempts, 3);
    assert!(store.finish_job(third[0].id, "w3", JobStatus::Done, None).await.unwrap());
    // (The release also wrote a `publish_event` job for subscribers.)
    let counts: Vec<_> = store.job_counts().await.unwrap().into_iter().filter(|c| c.0 == "book_shipment").collect();
    assert_eq!(counts, vec![("book_shipment".to_string(), "done".to_string(), 1)]);
    // The same release never enqueues twice (an identical upsert records nothing).
    store.execute(upsert(facts("J/1", 4), None)).await.unwrap();
    assert!(store.claim_jobs("w4", &kinds, 10, later + Duration::hours(1), lease).await.unwrap().is_empty());
}

#[tokio::test]
async fn one_leader_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (loc, a) = open(&dir).await;
    let b = match &loc {
        Location::Postgres(_) => loc.open().await, // a second node on the same database
        Location::Sqlite(_) => a.clone(),
    };
    let lease = a.try_lead("scheduler").await.unwrap().expect("first claimant leads");
    assert_eq!(lease.name(), "scheduler");
    assert!(b.try_lead("scheduler").await.unwrap().is_none(), "a second leader while the first lives");
    assert!(b.try_lead("other-role").await.unwrap().is_some(), "leadership is per name");
    drop(lease);
    let mut taken = None;
    for _ in 0..50 {
        taken = b.try_lead("scheduler").await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(taken.is_some(), "leadership passes on when the leader goes");
}

#[tokio::test]
async fn workers_wake_up_when_jobs_are_enqueued() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = open(&dir).await;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            store.wait_for_jobs(&["book_shipment"], std::time::Duration::from_secs(20)).await;
            start.elapsed()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    store.execute(upsert(facts("W/1", 4), None)).await.unwrap();
    let waited = waiter.await.unwrap();
    assert!(waited < std::time::Duration::from_secs(10), "woken by the release, not the timeout ({waited:?})");
}
