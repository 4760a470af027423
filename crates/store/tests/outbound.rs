//! Store support for outbound webhooks and notifications, on SQLite (and on PostgreSQL when
//! TEST_POSTGRES_URL is set): endpoints with sealed secrets, the failure clock, jobs enqueued
//! once per dedupe key, the publish job written with the order events, notifications and
//! their windows, and retention.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use dispatch_core::{Command, Ctx, OrderFacts, Warehouse, Warehouses, decide};
use dispatch_store::testing::Location;
use dispatch_store::{EndpointSecret, NewJob, NotificationRecord, OrderWrite, Target, WebhookEndpointRow, WriteMeta};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap()
}

fn endpoint(id: &str) -> WebhookEndpointRow {
    WebhookEndpointRow {
        id: id.into(),
        url: "http://127.0.0.1:9/hook".into(),
        description: Some("n8n".into()),
        event_types: vec!["order.held".into()],
        secrets: vec![EndpointSecret { sealed: "dsv1:1:abc".into(), created_at: now(), expires_at: None }],
        status: "active".into(),
        disabled_reason: None,
        failing_since: None,
        last_success_at: None,
        created_at: now(),
        updated_at: now(),
    }
}

fn notice(order: &str, kind: &str, key: &str, status: &str, at: DateTime<Utc>) -> NotificationRecord {
    NotificationRecord {
        id: 0,
        order_id: Some(order.into()),
        kind: kind.into(),
        channel: "email".into(),
        recipient: "a@b.example".into(),
        locale: "nl".into(),
        subject: "Bestelling".into(),
        status: status.into(),
        attempts: 0,
        last_error: None,
        dedupe_key: key.into(),
        created_at: at,
        updated_at: at,
    }
}

#[tokio::test]
async fn webhook_endpoints_round_trip_and_keep_a_failure_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Location::fresh(dir.path()).await.open().await;
    store.insert_webhook_endpoint(&endpoint("ep_1")).await.unwrap();
    store.insert_webhook_endpoint(&endpoint("ep_2")).await.unwrap();
    assert!(store.insert_webhook_endpoint(&endpoint("ep_1")).await.is_err(), "ids are unique");
    assert_eq!(store.webhook_endpoint("ep_1").await.unwrap().unwrap(), endpoint("ep_1"));
    assert_eq!(store.webhook_endpoints().await.unwrap().len(), 2);

    let rotated = vec![
        EndpointSecret { sealed: "dsv1:1:new".into(), created_at: now(), expires_at: None },
        EndpointSecret {
            sealed: "dsv1:1:abc".into(),
            created_at: now(),
            expires_at: Some(now() + Duration::hours(24)),
        },
    ];
    assert!(store.set_webhook_secrets("ep_1", &rotated, now()).await.unwrap());
    assert_eq!(store.webhook_endpoint("ep_1").await.unwrap().unwrap().secrets, rotated);
    assert!(!store.set_webhook_secrets("ep_x", &rotated, now()).await.unwrap());

    // The failure clock starts at the first failure and is kept by later ones.
    let e = store.record_webhook_result("ep_1", false, now()).await.unwrap().unwrap();
    assert_eq!(e.failing_since, Some(now()));
    let e = store.record_webhook_result("ep_1", false, now() + Duration::hours(1)).await.unwrap().unwrap();
    assert_eq!(e.failing_since, Some(now()));
    let e = store.record_webhook_result("ep_1", true, now() + Duration::hours(2)).await.unwrap().unwrap();
    assert_eq!((e.failing_since, e.last_success_at), (None, Some(now() + Duration::hours(2))));
    assert!(store.record_webhook_result("ep_x", true, now()).await.unwrap().is_none());

    store.record_webhook_result("ep_1", false, now()).await.unwrap();
    assert!(store.set_webhook_status("ep_1", "disabled", Some("410 Gone"), now()).await.unwrap());
    let e = store.webhook_endpoint("ep_1").await.unwrap().unwrap();
    assert_eq!((e.status.as_str(), e.disabled_reason.as_deref()), ("disabled", Some("410 Gone")));
    assert!(e.failing_since.is_some());
    assert!(store.set_webhook_status("ep_1", "active", None, now()).await.unwrap());
    let e = store.webhook_endpoint("ep_1").await.unwrap().unwrap();
    assert_eq!((e.status.as_str(), e.failing_since), ("active", None), "enabling restarts the clock");

    assert!(store.delete_webhook_endpoint("ep_2").await.unwrap());
    assert!(!store.delete_webhook_endpoint("ep_2").await.unwrap());
    assert_eq!(store.webhook_endpoints().await.unwrap().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn published_events_are_written_with_the_order_and_jobs_enqueue_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Location::fresh(dir.path()).await.open().await;
    let w: Warehouse = serde_json::from_value(serde_json::json!({
        "code": "AMS", "country": "NL", "timezone": "Europe/Amsterdam", "cutoffs": {"next_day": "17:00"}
    }))
    .unwrap();
    let whs = Arc::new(Warehouses::new(vec![w]).unwrap());
    let facts: OrderFacts = serde_json::from_value(serde_json::json!({
        "source": "odoo", "external_id": "X/1", "warehouse": "AMS",
        "customer": {"id": "C-1"}, "service_level": "next_day", "promised_date": "2026-11-27",
        "ship_to": {"name": "A", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
        "lines": [{"sku": "P-1", "qty": 4, "qty_allocated": 0, "unit_value": 10.0}]
    }))
    .unwrap();
    let cmd = Command::Upsert { facts: Box::new(facts), expected_version: None };
    let out = store
        .execute(OrderWrite {
            target: Target::NaturalKey { source: "odoo".into(), external_id: "X/1".into() },
            meta: WriteMeta { actor: "t".into(), roles: vec![], request_id: None, at: now() },
            idempotency: None,
            decide: Box::new(move |cur| decide(cur, cmd.clone(), &Ctx::new(now(), &whs))),
        })
        .await
        .unwrap();
    let jobs = store.claim_jobs("w", &["publish_event"], 10, now(), Duration::seconds(30)).await.unwrap();
    assert_eq!(jobs.len(), 1, "order.held is published with the write");
    assert_eq!(jobs[0].payload["type"], "order.held");
    assert_eq!(jobs[0].order_id.as_deref(), Some(out.order.id.as_str()));

    let job = |key: &str| NewJob {
        kind: "deliver_webhook".into(),
        order_id: None,
        dedupe_key: key.into(),
        payload: serde_json::json!({"k": key}),
        run_at: now(),
    };
    assert_eq!(store.enqueue_jobs(&[job("a"), job("b")], now()).await.unwrap(), 2);
    assert_eq!(store.enqueue_jobs(&[job("a"), job("c")], now()).await.unwrap(), 1, "a is there already");
    assert_eq!(store.enqueue_jobs(&[], now()).await.unwrap(), 0);
    let claimed = store.claim_jobs("w", &["deliver_webhook"], 10, now(), Duration::seconds(30)).await.unwrap();
    assert_eq!(claimed.len(), 3);
    store.close().await;
}

#[tokio::test]
async fn notifications_are_recorded_once_per_key_with_their_status_and_purged_when_old() {
    let dir = tempfile::tempdir().unwrap();
    let store = Location::fresh(dir.path()).await.open().await;
    let t = now();
    let id = store.insert_notification(&notice("ord_1", "delay_notice", "k1", "queued", t)).await.unwrap().unwrap();
    assert!(store.insert_notification(&notice("ord_1", "delay_notice", "k1", "queued", t)).await.unwrap().is_none());
    store
        .insert_notification(&notice("ord_1", "delay_notice", "k2", "suppressed", t + Duration::hours(1)))
        .await
        .unwrap()
        .unwrap();
    // A suppressed notice does not restart the window.
    assert_eq!(store.last_notification_at("ord_1", "delay_notice").await.unwrap(), Some(t));
    assert_eq!(store.last_notification_at("ord_1", "proof_of_delivery").await.unwrap(), None);

    store.update_notification(id, "retrying", 1, Some("SMTP: connection refused"), t).await.unwrap();
    store.update_notification(id, "sent", 2, None, t + Duration::seconds(5)).await.unwrap();
    let all = store.notifications("ord_1").await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].status.as_str(), all[0].attempts), ("sent", 2));
    assert_eq!(all[0].last_error, None);
    assert_eq!(all[0].updated_at, t + Duration::seconds(5));
    assert!(store.notifications("ord_2").await.unwrap().is_empty());

    // Retention: settled notices older than the limit go, a queued one stays.
    store.insert_notification(&notice("ord_1", "exception_alert", "k3", "queued", t)).await.unwrap();
    assert_eq!(store.purge_operational(t).await.unwrap(), 0);
    assert_eq!(store.purge_operational(t + Duration::days(1)).await.unwrap(), 2);
    let left = store.notifications("ord_1").await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].status, "queued");
    store.close().await;
}

/// `PublishEvents::WhileSubscribed`: no endpoint, no publish job; an active endpoint (seen by
/// the next write transaction), a publish job; a disabled one, none again.
#[tokio::test]
async fn changes_are_published_only_while_an_endpoint_is_active() {
    let dir = tempfile::tempdir().unwrap();
    let store = Location::fresh(dir.path())
        .await
        .open_publishing(Default::default(), dispatch_store::PublishEvents::WhileSubscribed)
        .await;
    let w: Warehouse = serde_json::from_value(serde_json::json!({
        "code": "AMS", "country": "NL", "timezone": "Europe/Amsterdam", "cutoffs": {"next_day": "17:00"}
    }))
    .unwrap();
    let whs = Arc::new(Warehouses::new(vec![w]).unwrap());
    let upsert = |n: u32| {
        let facts: OrderFacts = serde_json::from_value(serde_json::json!({
            "source": "odoo", "external_id": format!("X/{n}"), "warehouse": "AMS",
            "customer": {"id": "C-1"}, "service_level": "next_day", "promised_date": "2026-11-27",
            "ship_to": {"name": "A", "street": "Damrak 1", "city": "Amsterdam", "postcode": "1012 LG", "country": "NL"},
            "lines": [{"sku": "P-1", "qty": 4, "qty_allocated": 0, "unit_value": 10.0}]
        }))
        .unwrap();
        let cmd = Command::Upsert { facts: Box::new(facts), expected_version: None };
        let whs = whs.clone();
        OrderWrite {
            target: Target::NaturalKey { source: "odoo".into(), external_id: format!("X/{n}") },
            meta: WriteMeta { actor: "t".into(), roles: vec![], request_id: None, at: now() },
            idempotency: None,
            decide: Box::new(move |cur| decide(cur, cmd.clone(), &Ctx::new(now(), &whs))),
        }
    };
    let published = |store: Arc<dyn dispatch_store::Store>| async move {
        store.claim_jobs("w", &["publish_event"], 10, now(), Duration::seconds(30)).await.unwrap().len()
    };

    store.execute(upsert(1)).await.unwrap();
    assert_eq!(published(store.clone()).await, 0, "nobody subscribes: the hold is not published");

    store.insert_webhook_endpoint(&endpoint("ep_1")).await.unwrap();
    store.execute(upsert(2)).await.unwrap();
    assert_eq!(published(store.clone()).await, 1, "an active endpoint hears the next change");

    assert!(store.set_webhook_status("ep_1", "disabled", Some("test"), now()).await.unwrap());
    store.execute(upsert(3)).await.unwrap();
    assert_eq!(published(store.clone()).await, 0, "a disabled endpoint is not a subscriber");
    store.close().await;
}
