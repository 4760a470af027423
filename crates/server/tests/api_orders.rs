//! The order API against the real server: create, upsert, idempotency, filters, pagination,
//! timeline, cancel, optimistic concurrency.

mod common;

use common::*;
use dispatch_core::{Event, Order, Role};
use serde_json::{Value, json};

#[tokio::test]
async fn create_then_upsert_by_natural_key() {
    let app = TestApp::spawn().await;
    let r = app.post("/api/v1/orders", &order("WH1/OUT/1"), app.admin()).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["etag"], "\"2\"");
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let o: Value = r.json().await.unwrap();
    for field in
        ["id", "source", "external_id", "version", "state", "hold_reasons", "priority", "checks", "ship_to", "lines"]
    {
        assert!(o.get(field).is_some(), "missing {field}: {o}");
    }
    assert_eq!(o["state"], "released");
    assert_eq!(o["hold_reasons"], json!([]));
    assert_eq!(location, format!("/api/v1/orders/{}", o["id"].as_str().unwrap()));

    // The same facts again: nothing recorded, same version.
    let r = app.post("/api/v1/orders", &order("WH1/OUT/1"), app.admin()).await;
    assert_eq!(r.status(), 200);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["id"], o["id"]);
    assert_eq!(again["version"], 2);

    // Stock is taken away: re-evaluated and held.
    let mut changed = order("WH1/OUT/1");
    changed["lines"][0]["qty_allocated"] = json!(1);
    let held: Value = app.post("/api/v1/orders", &changed, app.admin()).await.json().await.unwrap();
    assert_eq!(held["version"], 4);
    assert_eq!(held["state"], "on_hold");
    assert_eq!(held["hold_reasons"], json!(["stock_short"]));
    assert_eq!(app.order_count().await, 1);
}

#[tokio::test]
async fn every_failing_reason_is_returned() {
    let app = TestApp::spawn().await;
    let mut o = order("WH1/OUT/2");
    o["lines"][0]["qty_allocated"] = json!(0);
    o["customer"]["credit_status"] = json!("hold");
    o["ship_to"]["postcode"] = json!("12");
    o["ship_to"]["country"] = json!("US");
    o["lines"][0]["hazmat"] = json!(true);
    let v = app.create(&o).await;
    assert_eq!(v["state"], "on_hold");
    assert_eq!(v["hold_reasons"], json!(["stock_unallocated", "credit_hold", "address_invalid", "docs_missing"]));
    let docs = v["checks"].as_array().unwrap().iter().find(|c| c["check"] == "documents").unwrap();
    assert_eq!(docs["detail"], "missing: export_declaration, dangerous_goods_declaration");
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer() {
    let app = TestApp::spawn().await;
    let send = |body: Value| {
        app.client
            .post(format!("{}/api/v1/orders", app.url))
            .bearer_auth(app.admin())
            .header("idempotency-key", "k-1")
            .json(&body)
            .send()
    };
    let first = send(order("IDEM/1")).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let second = send(order("IDEM/1")).await.unwrap();
    assert_eq!(second.status(), 201, "same key, same body: the same answer");
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    let id = first["id"].as_str().unwrap();
    let timeline = app.get_json(&format!("/api/v1/orders/{id}/timeline")).await;
    assert_eq!(timeline["items"].as_array().unwrap().len(), 2, "no second set of events");

    // Same key, different body: refused, nothing written.
    let mut other = order("IDEM/1");
    other["lines"][0]["qty"] = json!(9);
    let (status, body) = problem(send(other).await.unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(body["type"], "urn:dispatchd:problem:idempotency-key-reused");
    let now = app.get_json(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(now["version"], 2);
    assert_eq!(now["lines"][0]["qty"], 4);
    // The key is scoped to the caller: another token may use the same key.
    let r = app
        .client
        .post(format!("{}/api/v1/orders", app.url))
        .bearer_auth(app.token(Role::Dispatcher))
        .header("idempotency-key", "k-1")
        .json(&order("IDEM/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn filters_and_keyset_pagination() {
    let app = TestApp::spawn().await;
    for i in 0..23 {
        let mut o = order(&format!("PAGE/{i:02}"));
        o["warehouse"] = json!(if i % 2 == 0 { "AMS" } else { "DUS" });
        if i % 2 == 1 {
            o["ship_to"] = json!({"name": "Acme GmbH", "street": "Hohe Straße 1", "city": "Köln", "postcode": "50667", "country": "DE"});
        }
        if i % 3 == 0 {
            o["customer"]["credit_status"] = json!("blocked");
        }
        app.create(&o).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/v1/orders?limit=10&cursor={c}"),
            None => "/api/v1/orders?limit=10".to_string(),
        };
        let page = app.get_json(&q).await;
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["external_id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 23, "every order exactly once");
    assert_eq!(seen, sorted, "creation order");

    let held = app.get_json("/api/v1/orders?state=on_hold&limit=100").await;
    assert_eq!(held["items"].as_array().unwrap().len(), 8);
    assert!(held["items"].as_array().unwrap().iter().all(|o| o["state"] == "on_hold"));
    let dus = app.get_json("/api/v1/orders?warehouse=DUS&state=released,on_hold").await;
    assert_eq!(dus["items"].as_array().unwrap().len(), 11);
    let credit = app.get_json("/api/v1/orders?reason=credit_hold&warehouse=AMS").await;
    assert_eq!(credit["items"].as_array().unwrap().len(), 4);
    assert_eq!(app.get_json("/api/v1/orders?state=delivered").await["items"], json!([]));

    for bad in ["state=flying", "limit=0", "limit=x", "cursor=%21%21", "reason=sleepy", "sort=wat"] {
        let (status, _) = problem(app.get(&format!("/api/v1/orders?{bad}"), app.admin()).await).await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn timeline_records_every_decision_with_its_inputs() {
    let app = TestApp::spawn().await;
    let mut o = order("TL/1");
    o["documents"] = json!([]);
    o["ship_to"] = json!({"name": "Acme Ltd", "street": "Market Street 1", "city": "Manchester", "postcode": "M1 1AE", "country": "GB"});
    let created = app.create(&o).await;
    let id = created["id"].as_str().unwrap().to_string();
    o["documents"] = json!(["commercial_invoice", "export_declaration"]);
    app.create(&o).await;
    let t = app.get_json(&format!("/api/v1/orders/{id}/timeline")).await;
    let items = t["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["order.received", "order.evaluated", "order.updated", "order.evaluated"]);
    assert_eq!(items[1]["outcome"], "on_hold");
    assert_eq!(items[1]["inputs"]["customs"], "export");
    assert_eq!(items[1]["inputs"]["timezone"], "Europe/Amsterdam");
    assert!(items[1]["summary"].as_str().unwrap().contains("docs_missing"));
    assert_eq!(items[2]["changed"], json!(["documents"]));
    assert_eq!(items[3]["outcome"], "released");
    assert!(items.iter().all(|e| e["actor"] == "token:test-admin"));
    assert!(items.iter().all(|e| e["request_id"].is_string()), "request ids recorded");

    // The projection is exactly the fold of the timeline's events.
    let events: Vec<Event> = items.iter().map(|e| serde_json::from_value(e.clone()).unwrap()).collect();
    let rebuilt = dispatch_core::replay(&events).unwrap().unwrap();
    let stored: Order = serde_json::from_value(app.get_json(&format!("/api/v1/orders/{id}")).await).unwrap();
    assert_eq!(rebuilt, stored);
}

#[tokio::test]
async fn cancel_and_its_refusals() {
    let app = TestApp::spawn().await;
    let o = app.create(&order("C/1")).await;
    let id = o["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/v1/orders/{id}/cancel"),
            &json!({"reason": "customer withdrew"}),
            app.token(Role::Dispatcher),
        )
        .await;
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["state"], "cancelled");
    assert_eq!(c["status_note"], "customer withdrew");
    // Cancelling again changes nothing.
    let again: Value =
        app.post(&format!("/api/v1/orders/{id}/cancel"), &json!({}), app.admin()).await.json().await.unwrap();
    assert_eq!(again["version"], c["version"]);
    // A cancelled order is not reopened by the ERP sending it again with changes.
    let mut changed = order("C/1");
    changed["lines"][0]["qty"] = json!(5);
    let (status, body) = problem(app.post("/api/v1/orders", &changed, app.admin()).await).await;
    assert_eq!(status, 409);
    assert_eq!(body["type"], "urn:dispatchd:problem:illegal-transition");
    // Cancel without a body works too.
    let o2 = app.create(&order("C/2")).await;
    let r = app
        .client
        .post(format!("{}/api/v1/orders/{}/cancel", app.url, o2["id"].as_str().unwrap()))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn stale_versions_are_409_and_write_nothing() {
    let app = TestApp::spawn().await;
    let o = app.create(&order("V/1")).await;
    let id = o["id"].as_str().unwrap();
    let mut changed = order("V/1");
    changed["lines"][0]["qty_allocated"] = json!(2);
    let stale = |body: Value| {
        app.client
            .post(format!("{}/api/v1/orders", app.url))
            .bearer_auth(app.admin())
            .header("if-match", "\"1\"")
            .json(&body)
            .send()
    };
    let (status, body) = problem(stale(changed.clone()).await.unwrap()).await;
    assert_eq!(status, 409);
    assert_eq!(body["type"], "urn:dispatchd:problem:version-conflict");
    let r = app
        .client
        .post(format!("{}/api/v1/orders/{id}/cancel", app.url))
        .bearer_auth(app.admin())
        .header("if-match", "7")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(r).await.0, 409);
    assert_eq!(app.get_json(&format!("/api/v1/orders/{id}")).await["version"], 2);
    // With the current version it goes through.
    let r = app
        .client
        .post(format!("{}/api/v1/orders", app.url))
        .bearer_auth(app.admin())
        .header("if-match", "\"2\"")
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"4\"");
}

#[tokio::test]
async fn concurrent_writers_keep_every_stream_consistent() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            // Ten distinct orders, each updated by four writers at once.
            let mut o = order(&format!("CC/{}", i % 10));
            o["lines"][0]["qty_allocated"] = json!(i % 5);
            let r = app.post("/api/v1/orders", &o, app.admin()).await;
            assert!(r.status() == 200 || r.status() == 201, "{}", r.status());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(app.order_count().await, 10);
    let list = app.get_json("/api/v1/orders?limit=100").await;
    for o in list["items"].as_array().unwrap() {
        let id = o["id"].as_str().unwrap();
        let t = app.get_json(&format!("/api/v1/orders/{id}/timeline")).await;
        let events: Vec<Event> =
            t["items"].as_array().unwrap().iter().map(|e| serde_json::from_value(e.clone()).unwrap()).collect();
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>(), "no gaps, no duplicates");
        let rebuilt = dispatch_core::replay(&events).unwrap().unwrap();
        assert_eq!(serde_json::to_value(rebuilt).unwrap(), *o);
    }
}
