//! Overriding a hold over HTTP: a supervisor lifts a soft hold with a reason and the order is
//! released, booked work follows, the timeline and the audit trail say who and why; the
//! refusals (stale version, not held, hard block, no reason, wrong role) are precise
//! problem+json and write nothing.

mod common;

use chrono::Duration;
use common::{TestApp, order, problem, start_time};
use dispatch_core::Role;
use serde_json::{Value, json};

/// Held past the cut-off at 17:30 Amsterdam time for a next-day promise.
async fn after_cutoff(app: &TestApp, ext: &str) -> Value {
    app.clock.set(start_time() + Duration::hours(8) + Duration::minutes(30));
    let mut body = order(ext);
    body["promised_date"] = json!("2026-11-25");
    let held = app.create(&body).await;
    assert_eq!(held["hold_reasons"], json!(["cutoff_missed"]), "{held}");
    held
}

async fn override_(app: &TestApp, id: &str, body: Value, token: &str, if_match: Option<u64>) -> reqwest::Response {
    let mut req = app.client.post(format!("{}/api/v1/orders/{id}/override", app.url)).bearer_auth(token).json(&body);
    if let Some(v) = if_match {
        req = req.header("if-match", format!("\"{v}\""));
    }
    req.send().await.unwrap()
}

fn why() -> Value {
    json!({"reasons": ["cutoff_missed"], "note": "customer agreed to a one-day delay; ship today"})
}

async fn version_of(app: &TestApp, id: &str) -> u64 {
    app.get_json(&format!("/api/v1/orders/{id}")).await["version"].as_u64().unwrap()
}

#[tokio::test]
async fn a_supervisor_overrides_a_missed_cutoff_and_the_order_is_released_with_who_and_why() {
    let app = TestApp::spawn().await;
    let held = after_cutoff(&app, "WH1/OUT/OV-1").await;
    let id = held["id"].as_str().unwrap();
    let v = held["version"].as_u64().unwrap();
    let r = override_(&app, id, why(), app.token(Role::Supervisor), Some(v)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], format!("\"{}\"", v + 1));
    let o: Value = r.json().await.unwrap();
    assert_eq!(o["state"], "released", "{o}");
    assert_eq!(o["waived"], json!(["cutoff_missed"]));
    assert_eq!(o["overrides"][0]["role"], "supervisor");
    assert_eq!(o["overrides"][0]["note"], "customer agreed to a one-day delay; ship today");
    assert_eq!(o["touched"], true);

    // The timeline: who, what, why, under which policy.
    let tl = app.get_json(&format!("/api/v1/orders/{id}/timeline")).await;
    let last = tl["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "order.overridden");
    assert!(last["actor"].as_str().unwrap().contains("supervisor"), "{last}");
    assert_eq!(last["policy"], app.state.policy.policy().hash);
    assert!(last["summary"].as_str().unwrap().contains("why: customer agreed"), "{last}");

    // The audit trail has the event, with the supervisor's role.
    let audit = app.get_json("/api/v1/audit?limit=500").await;
    let entry = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e.to_string().contains("order.overridden"))
        .unwrap_or_else(|| panic!("no audit entry for the override: {audit}"))
        .clone();
    assert!(entry.to_string().contains("supervisor"), "{entry}");

    // The release was booked like any other: a book_shipment job exists.
    assert_eq!(app.store.order(id).await.unwrap().unwrap().state, dispatch_core::OrderState::Released);
    app.stop().await;
}

#[tokio::test]
async fn refused_overrides_are_precise_and_write_nothing() {
    let app = TestApp::spawn().await;
    let held = after_cutoff(&app, "WH1/OUT/OV-2").await;
    let id = held["id"].as_str().unwrap().to_string();
    let v = held["version"].as_u64().unwrap();
    let sup = app.token(Role::Supervisor).to_string();

    // Stale version → 409.
    let (s, p) = problem(override_(&app, &id, why(), &sup, Some(v - 1)).await).await;
    assert_eq!((s, p["type"].as_str()), (409, Some("urn:dispatchd:problem:version-conflict")), "{p}");
    // No note, no reasons → 422 naming the fields.
    let (s, p) = problem(override_(&app, &id, json!({"reasons": [], "note": " "}), &sup, None).await).await;
    assert_eq!(s, 422, "{p}");
    let fields: Vec<&str> = p["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["reasons", "note"]);
    // Missing field or unknown reason code → 422 from strict parsing.
    let (s, _) = problem(override_(&app, &id, json!({"reasons": ["cutoff_missed"]}), &sup, None).await).await;
    assert_eq!(s, 422);
    let (s, _) = problem(override_(&app, &id, json!({"reasons": ["late"], "note": "x"}), &sup, None).await).await;
    assert_eq!(s, 422);
    // A reason that is not holding the order → 422.
    let body = json!({"reasons": ["policy_hold"], "note": "x"});
    let (s, p) = problem(override_(&app, &id, body, &sup, None).await).await;
    assert_eq!((s, p["type"].as_str()), (422, Some("urn:dispatchd:problem:not-overridable")), "{p}");
    // Dispatchers and finance may not: 403 from the route's permission.
    for role in [Role::Dispatcher, Role::Finance] {
        let r = override_(&app, &id, why(), app.token(role), None).await;
        assert_eq!(r.status(), 403, "{role}");
    }
    assert_eq!(version_of(&app, &id).await, v, "nothing was written");

    // A hard block (invalid address) is not overridable → 422, nothing written.
    let mut body = order("WH1/OUT/OV-3");
    body["ship_to"]["postcode"] = json!("");
    let hard = app.create(&body).await;
    assert_eq!(hard["hold_reasons"], json!(["address_invalid"]), "{hard}");
    let hid = hard["id"].as_str().unwrap();
    let body = json!({"reasons": ["address_invalid"], "note": "driver knows the place"});
    let (s, p) = problem(override_(&app, hid, body, app.admin(), None).await).await;
    assert_eq!((s, p["type"].as_str()), (422, Some("urn:dispatchd:problem:not-overridable")), "{p}");
    assert!(p["detail"].as_str().unwrap().contains("address_invalid"), "{p}");
    assert_eq!(version_of(&app, hid).await, hard["version"].as_u64().unwrap());

    // Overridden once: the order is released, so a second override is 409 (not held).
    assert_eq!(override_(&app, &id, why(), &sup, Some(v)).await.status(), 200);
    let (s, p) = problem(override_(&app, &id, why(), &sup, None).await).await;
    assert_eq!((s, p["type"].as_str()), (409, Some("urn:dispatchd:problem:illegal-transition")), "{p}");
    // Unknown order → 404.
    let (s, _) = problem(override_(&app, "ord_nope", why(), &sup, None).await).await;
    assert_eq!(s, 404);
    app.stop().await;
}
