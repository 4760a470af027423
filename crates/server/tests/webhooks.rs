//! Carrier tracking webhooks over HTTP: signatures (valid, invalid, rotated, replayed),
//! deduplication, normalization, ordering, and the dead-letter endpoints.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use common::*;
use dispatch_core::{Command, Ctx, Role, decide};
use dispatch_integrations::registry::{CarrierConfig, Credentials};
use dispatch_integrations::webhook::{SignatureScheme, signature_header};
use dispatch_integrations::{Carriers, Secret};
use dispatch_server::clock::Clock;
use dispatch_store::{JobStatus, OrderWrite, Target, WriteMeta};
use serde_json::{Value, json};

fn carriers(secrets: &[&str]) -> Carriers {
    let mut configs = BTreeMap::new();
    let cfg: CarrierConfig = serde_json::from_value(
        json!({"kind": "easypost", "base_url": "http://127.0.0.1:9", "status_map": {"PU": "picked_up"}}),
    )
    .unwrap();
    configs.insert("mockpost".to_string(), cfg);
    let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
    Carriers::build(&configs, None, &|_: &str| Credentials {
        api_key: Some(Secret::new("key")),
        webhook_secrets: secrets.clone(),
    })
    .unwrap()
}

/// A released order booked with `mockpost` under tracking number `tracking`.
async fn booked_order(app: &TestApp, ext: &str, tracking: &str) -> String {
    let o = app.create(&order(ext)).await;
    let id = o["id"].as_str().unwrap().to_string();
    let now = app.clock.now();
    let whs = warehouses();
    let tracking = tracking.to_string();
    app.store
        .execute(OrderWrite {
            target: Target::Id(id.clone()),
            meta: WriteMeta { actor: "test".into(), roles: vec![], request_id: None, at: now },
            idempotency: None,
            decide: Box::new(move |cur| {
                let cmd = Command::RecordBooking {
                    carrier: "mockpost".into(),
                    tracking_number: tracking.clone(),
                    service: None,
                };
                decide(cur, cmd, &Ctx::new(now, &whs))
            }),
        })
        .await
        .unwrap();
    id
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

fn event(id: &str, tracking: &str, status: &str, at: DateTime<Utc>, created: DateTime<Utc>) -> Vec<u8> {
    json!({
        "id": id, "object": "Event", "description": "tracker.updated", "created_at": ts(created),
        "result": {"id": "trk_1", "object": "Tracker", "tracking_code": tracking, "status": status,
            "updated_at": ts(at), "tracking_details": [{"object": "TrackingDetail", "status": status, "datetime": ts(at), "message": "scan"}]}
    })
    .to_string()
    .into_bytes()
}

async fn send(app: &TestApp, body: Vec<u8>, secret: &str) -> reqwest::Response {
    let sig = signature_header(&SignatureScheme::default(), &Secret::new(secret), &body, None);
    app.client
        .post(format!("{}/webhooks/carriers/mockpost", app.url))
        .header("content-type", "application/json")
        .header("X-Hmac-Signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn timeline_kinds(app: &TestApp, id: &str) -> Vec<String> {
    let t = app.get_json(&format!("/api/v1/orders/{id}/timeline")).await;
    t["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

async fn metrics(app: &TestApp) -> String {
    app.client.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn signatures_valid_invalid_rotated_and_replayed() {
    // Rotation in progress: the new and the old secret are both active.
    let app = TestApp::spawn_with_carriers(carriers(&["new-secret", "old-secret"])).await;
    let id = booked_order(&app, "W/1", "TRK-1").await;
    let now = app.clock.now();

    let r = send(&app, event("evt_1", "TRK-1", "in_transit", now - Duration::minutes(5), now), "new-secret").await;
    assert_eq!(r.status(), 200);
    let ack: Value = r.json().await.unwrap();
    assert_eq!(ack["status"], "applied");
    assert_eq!(ack["order_state"], "dispatched");

    // Signed with the old secret: still accepted during the rotation.
    let r =
        send(&app, event("evt_2", "TRK-1", "out_for_delivery", now - Duration::minutes(1), now), "old-secret").await;
    assert_eq!(r.status(), 200);

    // Invalid: a secret that is not active, or a body changed after signing.
    let before = timeline_kinds(&app, &id).await.len();
    let r = send(&app, event("evt_3", "TRK-1", "delivered", now, now), "someone-else").await;
    let (status, _) = problem(r).await;
    assert_eq!(status, 401);
    let body = event("evt_4", "TRK-1", "delivered", now, now);
    let sig = signature_header(&SignatureScheme::default(), &Secret::new("new-secret"), &body, None);
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|b| *b == b'4').unwrap();
    tampered[pos] = b'5';
    let r = app
        .client
        .post(format!("{}/webhooks/carriers/mockpost", app.url))
        .header("X-Hmac-Signature", sig)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app.client.post(format!("{}/webhooks/carriers/mockpost", app.url)).body(body).send().await.unwrap();
    assert_eq!(r.status(), 401, "no signature at all");

    // Replayed: a correctly signed event created 10 minutes ago is outside the window.
    let r = send(&app, event("evt_5", "TRK-1", "delivered", now, now - Duration::minutes(10)), "new-secret").await;
    assert_eq!(r.status(), 401);
    assert_eq!(timeline_kinds(&app, &id).await.len(), before, "refused requests store nothing");
    let o = app.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(o["state"], "dispatched");

    let m = metrics(&app).await;
    for reason in ["mismatch", "missing", "stale"] {
        assert!(
            m.contains(&format!(
                "dispatchd_webhook_signatures_rejected_total{{carrier=\"mockpost\",reason=\"{reason}\"}}"
            )),
            "{reason}: {m}"
        );
    }
    app.stop().await;

    // Rotation finished: only the new secret remains; the old one no longer verifies.
    let app = TestApp::spawn_with_carriers(carriers(&["new-secret"])).await;
    booked_order(&app, "W/2", "TRK-2").await;
    let now = app.clock.now();
    assert_eq!(send(&app, event("evt_6", "TRK-2", "in_transit", now, now), "old-secret").await.status(), 401);
    assert_eq!(send(&app, event("evt_6", "TRK-2", "in_transit", now, now), "new-secret").await.status(), 200);
    // Unknown carrier and no configured secret are refused the same way.
    let r = app.client.post(format!("{}/webhooks/carriers/fedex", app.url)).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn events_are_deduplicated_normalized_and_never_regress() {
    let app = TestApp::spawn_with_carriers(carriers(&["s"])).await;
    let id = booked_order(&app, "W/3", "TRK-3").await;
    let now = app.clock.now();
    let t = |m: i64| now - Duration::minutes(60 - m);

    let ack = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    // Delivery arrives first, then the older scans, a duplicate and an unknown code.
    assert_eq!(
        ack(send(&app, event("e-pre", "TRK-3", "pre_transit", t(0), now), "s").await).await["status"],
        "applied"
    );
    let a = ack(send(&app, event("e-dlv", "TRK-3", "delivered", t(40), now), "s").await).await;
    assert_eq!((a["status"].as_str(), a["order_state"].as_str()), (Some("applied"), Some("delivered")));
    let a = ack(send(&app, event("e-tr", "TRK-3", "in_transit", t(10), now), "s").await).await;
    assert_eq!((a["status"].as_str(), a["order_state"].as_str()), (Some("recorded"), Some("delivered")));
    let a = ack(send(&app, event("e-tr", "TRK-3", "in_transit", t(10), now), "s").await).await;
    assert_eq!(a["status"], "duplicate");
    let a = ack(send(&app, event("e-late", "TRK-3", "in_transit", t(50), now), "s").await).await;
    assert_eq!(a["status"], "recorded", "a late in_transit after delivery does not regress");
    let a = ack(send(&app, event("e-odd", "TRK-3", "teleported", t(55), now), "s").await).await;
    assert_eq!((a["status"].as_str(), a["tracking_status"].as_str()), (Some("recorded"), Some("unknown")));
    let a = ack(send(&app, event("e-pu", "TRK-3", "PU", t(5), now), "s").await).await;
    assert_eq!(a["tracking_status"], "picked_up", "the configured mapping applies");

    let o = app.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(o["state"], "delivered");
    assert_eq!(o["shipment"]["tracking"]["status"], "delivered");
    assert_eq!(o["shipment"]["tracking"]["event_id"], "e-dlv");
    let kinds = timeline_kinds(&app, &id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "tracking.updated").count(), 6, "every distinct event, once: {kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "order.delivered").count(), 1);
    let timeline = app.get_json(&format!("/api/v1/orders/{id}/timeline")).await;
    let unknown = timeline["items"].as_array().unwrap().iter().find(|e| e["update"]["event_id"] == "e-odd").unwrap();
    assert_eq!(unknown["update"]["carrier_status"], "teleported");
    assert_eq!(unknown["applied"], false);

    // Malformed (but signed) → 400; unknown tracking number → 404 so the carrier retries.
    let r = send(&app, b"{\"id\": 1".to_vec(), "s").await;
    assert_eq!(problem(r).await.0, 400);
    let r = send(
        &app,
        json!({"id": "x", "description": "tracker.updated", "created_at": ts(now)}).to_string().into_bytes(),
        "s",
    )
    .await;
    assert_eq!(problem(r).await.0, 400);
    let r = send(&app, event("e-x", "NOPE", "in_transit", t(1), now), "s").await;
    assert_eq!(problem(r).await.0, 404);
    let m = metrics(&app).await;
    assert!(m.contains("dispatchd_tracking_events_total{carrier=\"mockpost\",status=\"unknown\"} 1"), "{m}");
    assert!(m.contains("dispatchd_webhook_duplicates_total{carrier=\"mockpost\"} 1"), "{m}");
}

#[tokio::test]
async fn dead_letters_are_listed_and_reprocessed_by_supervisors() {
    let app = TestApp::spawn().await;
    let o = app.create(&order("W/4")).await;
    let jobs = app.store.claim_jobs("w", &["book_shipment"], 10, app.clock.now(), Duration::seconds(30)).await.unwrap();
    assert_eq!(jobs.len(), 1);
    app.store.finish_job(jobs[0].id, "w", JobStatus::Dead, Some("mockpost: rejected")).await.unwrap();
    let list = app.get_json("/api/v1/dead-letters").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["order_id"], o["id"]);
    assert_eq!(items[0]["last_error"], "mockpost: rejected");
    let path = format!("/api/v1/dead-letters/{}/retry", items[0]["id"]);
    let r = app.post(&path, &json!({}), app.token(Role::Dispatcher)).await;
    assert_eq!(r.status(), 403, "dispatchers may not reprocess");
    let r = app.post(&path, &json!({}), app.token(Role::Supervisor)).await;
    assert_eq!(r.status(), 202);
    assert!(app.get_json("/api/v1/dead-letters").await["items"].as_array().unwrap().is_empty());
    let r = app.post(&path, &json!({}), app.token(Role::Supervisor)).await;
    assert_eq!(problem(r).await.0, 404, "no longer dead");
    let m = metrics(&app).await;
    assert!(m.contains("dispatchd_dead_letters 0"), "{m}");
}
